"""The application ``messenger consume`` runs in the SQL restart and start-up tests.

Configured by environment variables the tests set: ``MESSENGER_RESTART_CONFIG`` (the
``messenger.toml``) and ``MESSENGER_RESTART_STATE`` (a directory; the handler appends one line
``<id> <pid>`` per handled message to ``handled.log`` there).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs

from messenger_core import Messenger

STATE = Path(os.environ["MESSENGER_RESTART_STATE"])

messenger = Messenger.from_config(os.environ["MESSENGER_RESTART_CONFIG"])


@attrs.frozen
class Order:
    """What the tests send as ``tests.Order`` (see ``sql_test_support``)."""

    id: int
    text: str = ""


messenger.register_message(Order, "tests.Order")


@messenger.handler
def on_order(message: Order) -> None:
    # One short O_APPEND write per line: lines of several processes never interleave.
    with (STATE / "handled.log").open("a", encoding="utf-8") as log:
        log.write(f"{message.id} {os.getpid()}\n")
    time.sleep(0.02)  # some work: a restart finds the worker busy, not only waiting
