"""The application the end-to-end tests run in real processes.

Configured by environment variables the tests set:

- ``MESSENGER_E2E_CONFIG``: the ``messenger.toml`` to build the application from;
- ``MESSENGER_E2E_STATE``: a directory where handlers leave traces (``handled.log``, one line
  per handled or attempted message) and look for flag files the tests create.

``python -m e2e_dispatch KIND ID`` dispatches one message from a separate process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs

from messenger_core import Messenger

STATE = Path(os.environ["MESSENGER_E2E_STATE"])
LOG = STATE / "handled.log"

messenger = Messenger.from_config(os.environ["MESSENGER_E2E_CONFIG"])


@attrs.frozen
class Ping:
    """Handled at once."""

    id: str


@attrs.frozen
class Blocking:
    """Its handler runs until the file ``release-<id>`` exists (a long-running handler)."""

    id: str


@attrs.frozen
class Flaky:
    """Its handler fails until the file ``fixed`` exists."""

    id: str


def record(event: str, message_id: str) -> None:
    """Append ``event id pid time`` to the log; one short write per line (O_APPEND)."""
    with LOG.open("a", encoding="utf-8") as log:
        log.write(f"{event} {message_id} {os.getpid()} {time.time():.6f}\n")


@messenger.handler
def on_ping(message: Ping) -> None:
    record("handled", message.id)


@messenger.handler
def on_blocking(message: Blocking) -> None:
    record("started", message.id)
    release = STATE / f"release-{message.id}"
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    record("handled", message.id)


@messenger.handler
def on_flaky(message: Flaky) -> None:
    if not (STATE / "fixed").exists():
        record("attempt", message.id)
        raise ConnectionError(f"the payment service is down (order {message.id})")
    record("handled", message.id)


KINDS: dict[str, type[Ping | Blocking | Flaky]] = {
    "ping": Ping,
    "blocking": Blocking,
    "flaky": Flaky,
}
