"""The application the encryption tests build, in the test process and in real processes.

Configured by environment variables the tests set:

- ``MESSENGER_ENCRYPTION_TEST_CONFIG``: the ``messenger.toml`` to build it from;
- ``MESSENGER_ENCRYPTION_TEST_STATE``: a directory where handlers leave a line per handled
  message (``handled.log``) and look for the flag file ``broken`` (then ``Confidential``'s
  handler fails with an error quoting the message).

``python -m encryption_dispatch`` dispatches from a separate process.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from messenger_core import Messenger

ENCRYPTED_BUS = "messenger.bus.encrypted"


@attrs.frozen
class Confidential:
    """Dispatched on the encrypted bus."""

    text: str


@attrs.frozen
class Public:
    """Dispatched on the default (plaintext) bus."""

    text: str


def _state() -> Path:
    return Path(os.environ["MESSENGER_ENCRYPTION_TEST_STATE"])


def _record(kind: str, text: str) -> None:
    with (_state() / "handled.log").open("a", encoding="utf-8") as log:
        log.write(f"{kind} {text}\n")


def handled() -> list[str]:
    """The lines the handlers wrote, oldest first."""
    path = _state() / "handled.log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def create_app() -> Messenger:
    """The application, from the configuration the environment names."""
    messenger = Messenger.from_config(os.environ["MESSENGER_ENCRYPTION_TEST_CONFIG"])

    @messenger.handler(bus=ENCRYPTED_BUS)
    def on_confidential(message: Confidential) -> None:
        if (_state() / "broken").exists():
            raise RuntimeError(f"cannot process {message.text}")
        _record("confidential", message.text)

    @messenger.handler
    def on_public(message: Public) -> None:
        _record("public", message.text)

    return messenger
