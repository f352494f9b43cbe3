"""The application the Redis process tests run with ``messenger consume``.

Configured by environment variables the tests set:

- ``MESSENGER_REDIS_TEST_CONFIG``: the ``messenger.toml`` to build the application from;
- ``MESSENGER_REDIS_TEST_LOG``: a file where handlers append ``handled <id> <pid>`` lines;
- ``MESSENGER_REDIS_TEST_DELAY``: seconds each ``Job`` handler sleeps (default 0).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs

from messenger_core import Messenger
from messenger_core.errors import UnrecoverableMessageError

LOG = Path(os.environ["MESSENGER_REDIS_TEST_LOG"])
DELAY = float(os.environ.get("MESSENGER_REDIS_TEST_DELAY", "0"))

messenger = Messenger.from_config(os.environ["MESSENGER_REDIS_TEST_CONFIG"])


@attrs.frozen
class Job:
    """Handled (after ``DELAY`` seconds)."""

    id: int


@attrs.frozen
class Doomed:
    """Its handler always fails for good: it goes to the failure transport at once."""

    id: int


def record(event: str, number: int) -> None:
    """Append one line to the log (one short O_APPEND write per line)."""
    with LOG.open("a", encoding="utf-8") as log:
        log.write(f"{event} {number} {os.getpid()}\n")


@messenger.handler
def on_job(message: Job) -> None:
    if DELAY:
        time.sleep(DELAY)
    record("handled", message.id)


@messenger.handler
def on_doomed(message: Doomed) -> None:
    record("failed", message.id)
    raise UnrecoverableMessageError(f"doomed {message.id}")
