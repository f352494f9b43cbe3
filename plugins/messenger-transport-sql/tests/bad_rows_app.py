"""The application the bad-row worker tests run with ``messenger consume``.

``MESSENGER_BAD_ROWS_CONFIG`` names its ``messenger.toml``; each handled ``Ping`` appends its
id to ``MESSENGER_BAD_ROWS_LOG``.
"""

from __future__ import annotations

import os

import attrs

from messenger_core import Messenger

messenger = Messenger.from_config(os.environ["MESSENGER_BAD_ROWS_CONFIG"])


@attrs.frozen
class Ping:
    """A good message."""

    id: str


@messenger.handler
def on_ping(message: Ping) -> None:
    with open(os.environ["MESSENGER_BAD_ROWS_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{message.id}\n")
