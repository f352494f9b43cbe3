"""The application of the ``sql_transaction`` crash test (``test_sql_transaction_processes``).

``MESSENGER_SQL_TX_CONFIG`` names its ``messenger.toml`` (the ``sql_transaction`` middleware
on the default bus); handlers insert the message's id into table ``MESSENGER_SQL_TX_TABLE``
through the transaction. A :class:`Slow` one then appends ``started ID`` to the file
``MESSENGER_SQL_TX_LOG`` and waits, its write not committed, until ``<log>.release`` exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
import sqlalchemy as sa
from messenger_transport_sql import current_connection

from messenger_core import Messenger

messenger = Messenger.from_config(os.environ["MESSENGER_SQL_TX_CONFIG"])
LOG = Path(os.environ["MESSENGER_SQL_TX_LOG"])
RECORDS = sa.table(os.environ["MESSENGER_SQL_TX_TABLE"], sa.column("job_id"))


@attrs.frozen
class Ping:
    """Recorded at once."""

    id: int


@attrs.frozen
class Slow:
    """Recorded, then held uncommitted until the test releases it."""

    id: int


def _record(job_id: int) -> None:
    current_connection().execute(sa.insert(RECORDS).values(job_id=job_id))


@messenger.handler
def on_ping(message: Ping) -> None:
    _record(message.id)


@messenger.handler
def on_slow(message: Slow) -> None:
    _record(message.id)
    with LOG.open("a", encoding="utf-8") as log:
        log.write(f"started {message.id}\n")
    release = LOG.with_name(LOG.name + ".release")
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def fill(pings: int, slow: int) -> None:
    """Dispatch ``Ping(0 .. pings - 1)``, then ``Slow(slow)``."""
    for number in range(pings):
        messenger.bus.dispatch(Ping(number))
    messenger.bus.dispatch(Slow(slow))
    messenger.close()
