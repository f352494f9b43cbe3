"""The application the AMQP process tests run with ``messenger consume``.

Configured by environment variables the tests set:

- ``MESSENGER_AMQP_TEST_CONFIG``: the ``messenger.toml`` to build the application from;
- ``MESSENGER_AMQP_TEST_LOG``: a file where handlers append ``started <id> <pid>`` and
  ``handled <id> <pid>`` lines;
- ``MESSENGER_AMQP_TEST_DELAY``: seconds each ``Job`` handler sleeps (default 0).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs

from messenger_core import Messenger

LOG = Path(os.environ["MESSENGER_AMQP_TEST_LOG"])
DELAY = float(os.environ.get("MESSENGER_AMQP_TEST_DELAY", "0"))

messenger = Messenger.from_config(os.environ["MESSENGER_AMQP_TEST_CONFIG"])


@attrs.frozen
class Job:
    """Handled (after ``DELAY`` seconds)."""

    id: int


def record(event: str, number: int) -> None:
    """Append one line to the log (one short O_APPEND write per line)."""
    with LOG.open("a", encoding="utf-8") as log:
        log.write(f"{event} {number} {os.getpid()}\n")


@messenger.handler
def on_job(message: Job) -> None:
    if DELAY:
        record("started", message.id)
        time.sleep(DELAY)
    record("handled", message.id)
