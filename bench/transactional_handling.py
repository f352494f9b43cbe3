"""Benchmark: what transactional handling (``sql_transaction``, ``redis_transaction``) costs.

One worker in this process consumes ``--messages`` messages whose handler records the
message's id once: a row in a table (SQL) or an ``HINCRBY`` (Redis).

- **plain**: no middleware; the handler writes on a connection of its own, committed at once
  (at least once: a crash between the write and the acknowledgement repeats the write);
- **transactional**: the middleware on the bus; the handler writes through
  ``current_connection()`` / ``current_pipeline()``, committed with the acknowledgement.

Figures are messages per second, the median of ``--repeats`` runs, and the ratio
transactional / plain. Queued first (not timed). Services come from
``MESSENGER_TEST_POSTGRESQL_DSN``, ``MESSENGER_TEST_MYSQL_DSN`` and ``MESSENGER_TEST_REDIS_DSN``
(local defaults). Run: ``python bench/transactional_handling.py --backends sqlite,postgresql``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa

from messenger_core import Envelope, Messenger

DSNS = {
    "postgresql": os.environ.get("MESSENGER_TEST_POSTGRESQL_DSN")
    or "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": os.environ.get("MESSENGER_TEST_MYSQL_DSN") or "mysql://root@127.0.0.1:3306/test",
    "redis": os.environ.get("MESSENGER_TEST_REDIS_DSN") or "redis://127.0.0.1:6379",
}


@attrs.frozen
class Job:
    id: int


class Sql:
    """A SQL backend: the queue's DSN, and a table of records on the same database."""

    def __init__(self, backend: str, directory: Path) -> None:
        from messenger_transport_sql.engine import sqlalchemy_url  # noqa: PLC0415
        from messenger_transport_sql.options import parse_options  # noqa: PLC0415

        from messenger_core.dsn import Dsn  # noqa: PLC0415

        self.table_name = f"bench_{uuid.uuid4().hex[:10]}"
        base = f"sqlite:///{directory / 'bench.db'}" if backend == "sqlite" else DSNS[backend]
        self.dsn = f"{base}?table_name={self.table_name}"
        url = sqlalchemy_url(Dsn.parse(base), parse_options({}, backend))
        self.engine = sa.create_engine(url)
        self.records = sa.Table(
            f"{self.table_name}_rec",
            sa.MetaData(),
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job_id", sa.Integer, nullable=False),
        )
        self.records.create(self.engine)

    def middleware(self) -> str:
        return "sql_transaction"

    def plain_writer(self) -> Callable[[int], None]:
        engine, insert = self.engine, self.records.insert()

        def write(job_id: int) -> None:
            with engine.begin() as connection:
                connection.execute(insert, {"job_id": job_id})

        return write

    def transactional_writer(self) -> Callable[[int], None]:
        from messenger_transport_sql import current_connection  # noqa: PLC0415

        insert = self.records.insert()
        return lambda job_id: current_connection().execute(insert, {"job_id": job_id}) and None

    def recorded(self) -> int:
        with self.engine.connect() as connection:
            count = sa.select(sa.func.count()).select_from(self.records)
            return int(connection.execute(count).scalar_one())

    def close(self) -> None:
        self.records.drop(self.engine)
        with self.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {self.table_name}")
        self.engine.dispose()


class Redis:
    """The Redis backend: a stream, and a hash of records on the same server."""

    def __init__(self, _backend: str, _directory: Path) -> None:
        import redis  # noqa: PLC0415

        self.stream = f"bench_{uuid.uuid4().hex[:10]}"
        self.dsn = f"{DSNS['redis']}?stream={self.stream}"
        self.key = f"{self.stream}:rec"
        self.client: Any = redis.Redis.from_url(DSNS["redis"])

    def middleware(self) -> str:
        return "redis_transaction"

    def plain_writer(self) -> Callable[[int], None]:
        client, key = self.client, self.key
        return lambda job_id: client.hincrby(key, str(job_id), 1) and None

    def transactional_writer(self) -> Callable[[int], None]:
        from messenger_transport_redis import current_pipeline  # noqa: PLC0415

        key = self.key
        return lambda job_id: current_pipeline().hincrby(key, str(job_id), 1) and None

    def recorded(self) -> int:
        return int(self.client.hlen(self.key))

    def close(self) -> None:
        self.client.delete(self.stream, f"{self.stream}__queue", self.key)
        self.client.close()


def run_once(backend: str, transactional: bool, messages: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        store = (Redis if backend == "redis" else Sql)(backend, Path(directory))
        try:
            buses = {"messenger.bus.default": {"middleware": [store.middleware()]}}
            messenger = Messenger(
                config={
                    "transports": {"jobs": store.dsn},
                    "routing": {Job: "jobs"},
                    "buses": buses if transactional else {},
                }
            )
            write = store.transactional_writer() if transactional else store.plain_writer()

            @messenger.handler
            def on_job(message: Job) -> None:
                write(message.id)

            transport: Any = messenger.get_transport("jobs")
            for start in range(0, messages, 1000):
                batch = range(start, min(start + 1000, messages))
                transport.send_batch([Envelope(Job(n)) for n in batch])
            worker = messenger.worker(["jobs"])
            started = time.perf_counter()
            worker.run(limit=messages, sleep=0.01)
            took = time.perf_counter() - started
            messenger.close()
            assert store.recorded() == messages, "every message recorded once"
            return messages / took
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mysql,redis")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    print(f"{arguments.messages} messages, one worker, median of {arguments.repeats} runs")
    print(f"{'backend':<12}{'plain msg/s':>14}{'transactional msg/s':>22}{'ratio':>8}")
    for backend in arguments.backends.split(","):
        figures = {}
        for transactional in (False, True):
            runs = [
                run_once(backend, transactional, arguments.messages)
                for _ in range(arguments.repeats)
            ]
            figures[transactional] = statistics.median(runs)
        ratio = figures[True] / figures[False]
        print(f"{backend:<12}{figures[False]:>14,.0f}{figures[True]:>22,.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
