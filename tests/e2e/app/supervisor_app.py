"""The application of the supervisor and concurrency process tests.

Built from ``MESSENGER_E2E_CONFIG`` (a ``jobs`` transport the tests choose: PostgreSQL or
Redis). Its handlers record each message they handle where the tests can count them from
another process: ``MESSENGER_E2E_RECORD`` is a Redis DSN (one ``HINCRBY <key> <id> 1`` per
message, key ``MESSENGER_E2E_RECORD_KEY``) or a PostgreSQL DSN (one row per message in table
``MESSENGER_E2E_RECORD_KEY``). Duplicates stay visible either way: an id handled twice counts 2.

``MESSENGER_E2E_HANDLER_SLEEP`` (seconds) makes each handler wait, ``sync`` or ``async``
(``MESSENGER_E2E_HANDLER_KIND``), recording ``start`` before and the id after.

With ``MESSENGER_E2E_TRANSACTIONAL=1`` (the configuration then lists the ``sql_transaction`` or
``redis_transaction`` middleware) the ``handled`` record goes through the transaction of the
message's handling (``current_connection()`` / ``current_pipeline()``): it is committed with
the acknowledgement, or not at all.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import attrs

from messenger_core import Envelope, Messenger

RECORD = os.environ.get("MESSENGER_E2E_RECORD", "")
KEY = os.environ.get("MESSENGER_E2E_RECORD_KEY", "handled")
SLEEP = float(os.environ.get("MESSENGER_E2E_HANDLER_SLEEP", "0"))
KIND = os.environ.get("MESSENGER_E2E_HANDLER_KIND", "sync")
TRANSACTIONAL = os.environ.get("MESSENGER_E2E_TRANSACTIONAL") == "1"

messenger = Messenger.from_config(os.environ["MESSENGER_E2E_CONFIG"])


@attrs.frozen
class Job:
    id: int


_LOCAL = threading.local()


def _redis() -> Any:
    import redis  # noqa: PLC0415  (only the Redis runs need it)

    client = getattr(_LOCAL, "redis", None)
    if client is None:
        client = _LOCAL.redis = redis.Redis.from_url(RECORD)
    return client


def _postgresql() -> Any:
    import psycopg  # noqa: PLC0415  (only the PostgreSQL runs need it)

    connection = getattr(_LOCAL, "pg", None)
    if connection is None:
        connection = _LOCAL.pg = psycopg.connect(RECORD, autocommit=True)
        # This connection only records, for the test to count: its commits need not wait for
        # the disk (one fsync per message made the records, not the transport, the bottleneck
        # of the 100,000-message runs). A commit is still atomic and seen by the test's
        # connection at once; only a crash of PostgreSQL itself, which no test causes, could
        # lose the last ones. The transport's own commits, and the records that go through
        # them (MESSENGER_E2E_TRANSACTIONAL), keep PostgreSQL's default.
        connection.execute("SET synchronous_commit = off")
    return connection


def record(event: str, job_id: int) -> None:
    """Count ``job_id`` under ``event`` (``handled`` or ``start``) in the record store."""
    if TRANSACTIONAL and event == "handled":
        _record_in_transaction(job_id)
    elif RECORD.startswith("redis"):
        _redis().hincrby(f"{KEY}:{event}", str(job_id), 1)
    else:
        _postgresql().execute(
            f"INSERT INTO {KEY} (event, job_id, pid) VALUES (%s, %s, %s)",
            (event, job_id, os.getpid()),
        )


def _record_in_transaction(job_id: int) -> None:
    if RECORD.startswith("redis"):
        from messenger_transport_redis import current_pipeline  # noqa: PLC0415

        current_pipeline().hincrby(f"{KEY}:handled", str(job_id), 1)
    else:
        import sqlalchemy as sa  # noqa: PLC0415
        from messenger_transport_sql import current_connection  # noqa: PLC0415

        statement = sa.text(f"INSERT INTO {KEY} (event, job_id, pid) VALUES ('handled', :j, :p)")
        current_connection().execute(statement, {"j": job_id, "p": os.getpid()})


if KIND == "async":

    @messenger.handler
    async def on_job_async(message: Job) -> None:
        if SLEEP:
            await asyncio.to_thread(record, "start", message.id)
            await asyncio.sleep(SLEEP)
        await asyncio.to_thread(record, "handled", message.id)

else:

    @messenger.handler
    def on_job(message: Job) -> None:
        if SLEEP:
            record("start", message.id)
            time.sleep(SLEEP)
        record("handled", message.id)


def fill(count: int, batch: int = 1000) -> None:
    """Send jobs ``0 .. count - 1`` to the ``jobs`` transport, ``batch`` per call."""
    transport = messenger.get_transport("jobs")
    for start in range(0, count, batch):
        envelopes = [Envelope(Job(n)) for n in range(start, min(start + batch, count))]
        transport.send_batch(envelopes)  # type: ignore[attr-defined]
    messenger.close()


if __name__ == "__main__":
    import sys

    fill(int(sys.argv[1]))
