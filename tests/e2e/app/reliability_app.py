"""The application of the reliability process tests (``test_process_reliability.py``).

Built from ``MESSENGER_E2E_CONFIG``; handlers leave ``event id pid`` lines in
``MESSENGER_E2E_STATE/handled.log``. It registers one transport of its own, ``unreachable://``:
a failure store that is down (every ``send`` is refused), to test a worker whose failure
transport is unavailable without depending on how a broker plugin reconnects.

:func:`dispatch` sends messages (the tests run it in a separate process).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from messenger_core import Envelope, Messenger, UnrecoverableMessageError
from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer

STATE = Path(os.environ["MESSENGER_E2E_STATE"])


class UnreachableTransport:
    """A store that is down: ``send`` is refused, and it never has messages."""

    def send(self, envelope: Envelope) -> Envelope:
        raise ConnectionRefusedError("the failure store is unreachable (connection refused)")

    def get(self) -> list[Envelope]:
        return []

    def ack(self, envelope: Envelope) -> None:
        """Nothing to acknowledge."""

    def reject(self, envelope: Envelope) -> None:
        """Nothing to reject."""

    def close(self) -> None:
        """Nothing to release."""


class UnreachableFactory:
    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> UnreachableTransport:
        return UnreachableTransport()


messenger = Messenger.from_config(
    os.environ["MESSENGER_E2E_CONFIG"], transports={"unreachable": UnreachableFactory()}
)


@attrs.frozen
class Ping:
    """Handled at once."""

    id: str


@attrs.frozen
class Poison:
    """Its handler always fails for good: the message must be parked."""

    id: str


def record(event: str, message_id: str) -> None:
    with (STATE / "handled.log").open("a", encoding="utf-8") as log:
        log.write(f"{event} {message_id} {os.getpid()}\n")


@messenger.handler
def on_ping(message: Ping) -> None:
    record("handled", message.id)


@messenger.handler
def on_poison(message: Poison) -> None:
    record("attempt", message.id)
    raise UnrecoverableMessageError(f"poison {message.id}")


def dispatch(kind: str, *ids: str) -> None:
    """Dispatch ``Ping`` or ``Poison`` messages (the tests call it from a process of their own)."""
    cls = {"ping": Ping, "poison": Poison}[kind]
    for each in ids:
        messenger.bus.dispatch(cls(each))
