"""The application that ``messenger consume`` runs in this plugin's real-process tests.

``MESSENGER_SQL_APP_CONFIG`` names its ``messenger.toml``. Handlers append lines to the file
``MESSENGER_SQL_APP_LOG``: ``handled ID`` for each message, and ``started ID`` first for a
:class:`Slow` one, whose handler then waits until the file ``<log>.release`` exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs

from messenger_core import Messenger

messenger = Messenger.from_config(os.environ["MESSENGER_SQL_APP_CONFIG"])
LOG = Path(os.environ["MESSENGER_SQL_APP_LOG"])


@attrs.frozen
class Ping:
    """Handled at once."""

    id: str


@attrs.frozen
class Slow:
    """Handled when the test releases it."""

    id: str


def _record(event: str, message_id: str) -> None:
    with LOG.open("a", encoding="utf-8") as log:
        log.write(f"{event} {message_id}\n")


@messenger.handler
def on_ping(message: Ping) -> None:
    _record("handled", message.id)


@messenger.handler
def on_slow(message: Slow) -> None:
    _record("started", message.id)
    release = LOG.with_name(LOG.name + ".release")
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    _record("handled", message.id)
