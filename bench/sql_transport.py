"""Benchmark of the SQL transport against the raw database driver, on each database.

    python bench/sql_transport.py [--databases sqlite,postgresql,mysql] [--messages 20000]
                                  [--runs 3] [--batch-size 1000] [--fetch-size 100]

For each database and run, on fresh tables:

1. **send**: ``--messages`` messages sent one by one (one transaction each);
2. **batch send**: as many again with ``send_batch``, ``--batch-size`` per call;
3. **consume, default options**: one worker *process* (the real ``Worker``, what ``messenger
   consume`` runs) receives, handles and acknowledges the first half of them with the
   transport's default options (no option given: what a user gets out of the box);
4. **consume, tuned**: another worker process consumes the other half with ``fetch_size`` =
   ``--fetch-size``.

A reference for the defaults: the raw driver running Symfony Messenger's Doctrine transport's
statements (per message: a transaction selecting and locking one row and marking it
delivered, then the acknowledgement's delete), without PHP and without decoding, so an upper
bound of what Symfony reaches on the same machine.

The same three steps run with the raw driver (sqlite3, psycopg, PyMySQL) doing the same SQL by
hand (same table layout, same statements, same transactions) with a pre-encoded body: the
ratio transport/raw shows what the transport adds (serialization with the JSON serializer,
SQLAlchemy, envelopes). Figures are messages per second, the median of ``--runs`` runs.

PostgreSQL and MySQL/MariaDB come from ``MESSENGER_TEST_POSTGRESQL_DSN`` and
``MESSENGER_TEST_MYSQL_DSN`` (default: the local services); SQLite uses a temporary file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _workload import OrderPlaced, envelope, serializer
from messenger_transport_sql import SqlTransport, SqlTransportFactory, SqlTransportOptions

from messenger_core import Messenger
from messenger_core.dsn import Dsn

DEFAULT_DSNS = {
    "postgresql": os.environ.get("MESSENGER_TEST_POSTGRESQL_DSN")
    or "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": os.environ.get("MESSENGER_TEST_MYSQL_DSN") or "mysql://root@127.0.0.1:3306/test",
}


HOUR = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite."""
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"


# -- the transport ---------------------------------------------------------------------------
def make_transport(dsn: str, table: str, **options: Any) -> SqlTransport:
    parsed = Dsn.parse(dsn)
    return SqlTransportFactory().create(parsed, {"table_name": table, **options}, serializer())


def transport_send(dsn: str, table: str, count: int) -> float:
    transport = make_transport(dsn, table)
    try:
        transport.setup()
        envelopes = [envelope(number) for number in range(count)]
        started = time.perf_counter()
        for each in envelopes:
            transport.send(each)
        return count / (time.perf_counter() - started)
    finally:
        transport.close()


def transport_send_batch(dsn: str, table: str, count: int, batch_size: int) -> float:
    transport = make_transport(dsn, table)
    try:
        envelopes = [envelope(number) for number in range(count)]
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            transport.send_batch(envelopes[start : start + batch_size])
        return count / (time.perf_counter() - started)
    finally:
        transport.close()


def transport_consume(dsn: str, table: str, count: int, fetch_size: int) -> float:
    """The real worker (``messenger consume``'s loop) handling every message, then acking it.

    ``fetch_size`` 0 gives the transport no option at all (its defaults).
    """
    options: dict[str, Any] = {}
    if fetch_size:
        options["fetch_size"] = fetch_size
        if dsn.startswith("postgres"):
            options["get_notify_timeout"] = 100
    handled = 0

    def on_order_placed(message: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    with Messenger(autoload=False) as messenger:
        messenger.handler(on_order_placed)
        messenger.add_transport("bench", make_transport(dsn, table, **options))
        worker = messenger.worker(["bench"])
        started = time.perf_counter()
        worker.run(limit=count, sleep=0.001, handle_signals=False)
        elapsed = time.perf_counter() - started
    assert handled == count, f"handled {handled} of {count}"
    return count / elapsed


# -- the raw drivers ---------------------------------------------------------------------------
class Raw:
    """The same SQL by hand with the database's DB-API driver."""

    placeholder = "%s"

    def __init__(self, dsn: str, table: str) -> None:
        self.table = table
        self.connection: Any = self.connect(Dsn.parse(dsn))
        body, headers = serializer().encode(envelope(0)).body, {"type": "bench.OrderPlaced"}
        self.body = body.decode()
        self.headers = json.dumps(headers)

    def connect(self, dsn: Dsn) -> Any:
        raise NotImplementedError

    def row(self) -> tuple[Any, ...]:
        now = utcnow()
        return (self.body, self.headers, "default", now, now)

    @property
    def insert_sql(self) -> str:
        p = self.placeholder
        return (
            f"INSERT INTO {self.table} (body, headers, queue_name, created_at, available_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p})"
        )

    def send(self, count: int) -> float:
        raise NotImplementedError

    def send_batch(self, count: int, batch_size: int) -> float:
        raise NotImplementedError

    def consume(self, count: int, fetch_size: int) -> float:
        raise NotImplementedError

    def consume_symfony(self, count: int) -> float:
        """Symfony's Doctrine transport's statements: per message, a transaction that selects
        (and locks) one row and marks it delivered, then a delete on acknowledgement. (No PHP,
        no decoding, and the fast index: an upper bound of Symfony's rate.)"""
        raise NotImplementedError

    def symfony_select(self) -> str:
        p = self.placeholder
        return (
            f"SELECT id, body, headers, queue_name, created_at, available_at, delivered_at "
            f"FROM {self.table} WHERE queue_name = {p} "
            f"AND (delivered_at IS NULL OR delivered_at < {p}) AND available_at <= {p} "
            "ORDER BY available_at ASC LIMIT 1"
        )

    def close(self) -> None:
        self.connection.close()


class RawSqlite(Raw):
    placeholder = "?"

    def connect(self, dsn: Dsn) -> Any:
        import sqlite3  # noqa: PLC0415

        connection = sqlite3.connect(dsn.path[1:], isolation_level=None, timeout=60)
        connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def row(self) -> tuple[Any, ...]:
        now = sqlite_time(utcnow())
        return (self.body, self.headers, "default", now, now)

    def send(self, count: int) -> float:
        sql, cursor = self.insert_sql, self.connection.cursor()
        started = time.perf_counter()
        for _ in range(count):
            cursor.execute(sql, self.row())  # autocommit: one implicit transaction
            assert cursor.lastrowid
        return count / (time.perf_counter() - started)

    def send_batch(self, count: int, batch_size: int) -> float:
        cursor = self.connection.cursor()
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            rows = [self.row() for _ in range(min(batch_size, count - start))]
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(self.insert_sql, rows)
            cursor.execute("SELECT last_insert_rowid()").fetchall()
            cursor.execute("COMMIT")
        return count / (time.perf_counter() - started)

    def consume(self, count: int, fetch_size: int) -> float:
        cursor, table = self.connection.cursor(), self.table
        reserve = (
            f"UPDATE {table} SET delivered_at = ? WHERE id IN (SELECT id FROM {table} "
            "WHERE queue_name = ? AND (delivered_at IS NULL OR delivered_at < ?) "
            f"AND available_at <= ? ORDER BY available_at, id LIMIT {fetch_size}) "
            "RETURNING id, body, headers, available_at"
        )
        delete = f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))"
        received, acked = 0, "[]"
        started = time.perf_counter()
        while received < count:
            now = utcnow()
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(delete, (acked,))  # the previous batch's acknowledgements
            rows = cursor.execute(
                reserve, (sqlite_time(now), "default", sqlite_time(now - HOUR), sqlite_time(now))
            ).fetchall()
            cursor.execute("COMMIT")
            received += len(rows)
            acked = json.dumps([row[0] for row in rows])
        cursor.execute(delete, (acked,))
        return count / (time.perf_counter() - started)

    def consume_symfony(self, count: int) -> float:
        cursor, table = self.connection.cursor(), self.table
        started = time.perf_counter()
        for _ in range(count):
            now = utcnow()
            cursor.execute("BEGIN IMMEDIATE")
            row = cursor.execute(
                self.symfony_select(),
                ("default", sqlite_time(now - HOUR), sqlite_time(now)),
            ).fetchone()
            cursor.execute(
                f"UPDATE {table} SET delivered_at = ? WHERE id = ?", (sqlite_time(now), row[0])
            )
            cursor.execute("COMMIT")
            cursor.execute(f"DELETE FROM {table} WHERE id = ?", (row[0],))
        return count / (time.perf_counter() - started)


class RawPostgresql(Raw):
    def connect(self, dsn: Dsn) -> Any:
        import psycopg  # noqa: PLC0415

        return psycopg.connect(
            host=dsn.host,
            port=dsn.port or 5432,
            user=dsn.user,
            password=dsn.password,
            dbname=dsn.path.lstrip("/"),
            autocommit=True,
        )

    def send(self, count: int) -> float:
        sql, connection = self.insert_sql + " RETURNING id", self.connection
        started = time.perf_counter()
        for _ in range(count):
            connection.execute(sql, self.row()).fetchone()
        return count / (time.perf_counter() - started)

    def send_batch(self, count: int, batch_size: int) -> float:
        connection = self.connection
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            rows = [self.row() for _ in range(min(batch_size, count - start))]
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(self.insert_sql, rows)
        return count / (time.perf_counter() - started)

    def consume(self, count: int, fetch_size: int) -> float:
        connection, table = self.connection, self.table
        # One statement per batch: delete the previous batch, reserve the next.
        reserve = (
            f"WITH acked AS (DELETE FROM {table} WHERE id = ANY(%(ids)s)), "
            f"picked AS (SELECT id FROM {table} WHERE queue_name = %(queue)s "
            "AND (delivered_at IS NULL OR delivered_at < %(limit)s) AND available_at <= %(now)s "
            f"AND id != ALL(%(ids)s) ORDER BY available_at, id LIMIT {fetch_size} "
            f"FOR UPDATE SKIP LOCKED) UPDATE {table} SET delivered_at = %(now)s FROM picked "
            f"WHERE {table}.id = picked.id "
            f"RETURNING {table}.id, {table}.body, {table}.headers, {table}.available_at"
        )
        connection.execute("SET enable_sort = off")
        received, acked = 0, list[int]()
        started = time.perf_counter()
        while received < count:
            now = utcnow()
            params = {"ids": acked, "queue": "default", "limit": now - HOUR, "now": now}
            rows = connection.execute(reserve, params).fetchall()
            received += len(rows)
            acked = [row[0] for row in rows]
        connection.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (acked,))
        return count / (time.perf_counter() - started)

    def consume_symfony(self, count: int) -> float:
        connection, table = self.connection, self.table
        select = self.symfony_select() + " FOR UPDATE SKIP LOCKED"
        started = time.perf_counter()
        for _ in range(count):
            now = utcnow()
            with connection.transaction():
                row = connection.execute(select, ("default", now - HOUR, now)).fetchone()
                connection.execute(
                    f"UPDATE {table} SET delivered_at = %s WHERE id = %s", (now, row[0])
                )
            connection.execute(f"DELETE FROM {table} WHERE id = %s", (row[0],))
        return count / (time.perf_counter() - started)


class RawMysql(Raw):
    def connect(self, dsn: Dsn) -> Any:
        import pymysql  # type: ignore[import-untyped]  # noqa: PLC0415

        connection = pymysql.connect(
            host=dsn.host,
            port=dsn.port or 3306,
            user=dsn.user,
            password=dsn.password or "",
            database=dsn.path.lstrip("/"),
            charset="utf8mb4",
            autocommit=False,
        )
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return connection

    def send(self, count: int) -> float:
        connection = self.connection
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for _ in range(count):
                cursor.execute(self.insert_sql, self.row())
                connection.commit()
        return count / (time.perf_counter() - started)

    def send_batch(self, count: int, batch_size: int) -> float:
        connection = self.connection
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for start in range(0, count, batch_size):
                rows = [self.row() for _ in range(min(batch_size, count - start))]
                cursor.executemany(self.insert_sql, rows)
                connection.commit()
        return count / (time.perf_counter() - started)

    def consume(self, count: int, fetch_size: int) -> float:
        connection, table = self.connection, self.table
        select = (
            f"SELECT id, body, headers, available_at FROM {table} WHERE queue_name = %s "
            "AND (delivered_at IS NULL OR delivered_at < %s) AND available_at <= %s "
            f"ORDER BY available_at, id LIMIT {fetch_size} FOR UPDATE SKIP LOCKED"
        )
        received, acked = 0, ()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            while received < count:
                now = utcnow()
                if acked:  # the previous batch's acknowledgements, in the same transaction
                    cursor.execute(f"DELETE FROM {table} WHERE id IN %s", (acked,))
                cursor.execute(select, ("default", now - HOUR, now))
                rows = cursor.fetchall()
                acked = tuple(row[0] for row in rows)
                if acked:
                    cursor.execute(
                        f"UPDATE {table} SET delivered_at = %s WHERE id IN %s", (now, acked)
                    )
                connection.commit()
                received += len(rows)
            if acked:
                cursor.execute(f"DELETE FROM {table} WHERE id IN %s", (acked,))
            connection.commit()
        return count / (time.perf_counter() - started)

    def consume_symfony(self, count: int) -> float:
        connection, table = self.connection, self.table
        select = self.symfony_select() + " FOR UPDATE SKIP LOCKED"
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for _ in range(count):
                now = utcnow()
                cursor.execute(select, ("default", now - HOUR, now))
                row = cursor.fetchone()
                cursor.execute(f"UPDATE {table} SET delivered_at = %s WHERE id = %s", (now, row[0]))
                connection.commit()
                cursor.execute(f"DELETE FROM {table} WHERE id = %s", (row[0],))
                connection.commit()
        return count / (time.perf_counter() - started)


RAW: dict[str, type[Raw]] = {"sqlite": RawSqlite, "postgresql": RawPostgresql, "mysql": RawMysql}


# -- running -----------------------------------------------------------------------------------
def consume_in_child(kind: str, dsn: str, table: str, count: int, fetch_size: int) -> float:
    """Run the consumer in its own process (a worker is a process of its own)."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, dsn, table, str(count), str(fetch_size)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def child(kind: str, dsn: str, table: str, count: int, fetch_size: int) -> None:
    if kind == "transport":
        rate = transport_consume(dsn, table, count, fetch_size)
    elif kind.startswith("symfony:"):
        raw = RAW[kind.removeprefix("symfony:")](dsn, table)
        try:
            rate = raw.consume_symfony(count)
        finally:
            raw.close()
    else:
        raw = RAW[kind](dsn, table)
        try:
            rate = raw.consume(count, fetch_size)
        finally:
            raw.close()
    print(rate)


@contextmanager
def fresh_table(dsn: str) -> Iterator[str]:
    """A new, empty messages table (created by the transport's setup), dropped afterwards."""
    table = f"bench_{uuid.uuid4().hex[:12]}"
    transport = make_transport(dsn, table)
    transport.setup()
    transport.close()
    try:
        yield table
    finally:
        import sqlalchemy as sa  # noqa: PLC0415
        from messenger_transport_sql.engine import create_engine  # noqa: PLC0415
        from messenger_transport_sql.options import SqlTransportOptions  # noqa: PLC0415

        engine = create_engine(Dsn.parse(dsn), SqlTransportOptions())
        with engine.connect() as connection, connection.begin():
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            if engine.dialect.name == "postgresql":  # the notify trigger's function
                connection.execute(sa.text(f'DROP FUNCTION IF EXISTS "notify_{table}"()'))
        engine.dispose()


DEFAULTS = "consume, default options"
TUNED = "consume, tuned"
SYMFONY = "consume, Symfony's statements"


def one_run(database: str, dsn: str, args: argparse.Namespace, raw_first: bool) -> dict[str, float]:
    n, batch, fetch = args.messages, args.batch_size, args.fetch_size
    figures: dict[str, float] = {}

    def ours() -> None:
        with fresh_table(dsn) as table:
            figures["send"] = transport_send(dsn, table, n)
            figures["batch send"] = transport_send_batch(dsn, table, n, batch)
            figures[DEFAULTS] = consume_in_child("transport", dsn, table, n, 0)
            figures[TUNED] = consume_in_child("transport", dsn, table, n, fetch)

    def theirs() -> None:
        with fresh_table(dsn) as table:
            raw = RAW[database](dsn, table)
            try:
                figures["raw send"] = raw.send(n)
                figures["raw batch send"] = raw.send_batch(n, batch)
                raw.send_batch(n, batch)  # for Symfony's statements
            finally:
                raw.close()
            figures[SYMFONY] = consume_in_child(f"symfony:{database}", dsn, table, n, 1)
            # The raw driver with the transport's default fetch size.
            default_fetch = SqlTransportOptions().fetch_size
            figures[f"raw {DEFAULTS}"] = consume_in_child(database, dsn, table, n, default_fetch)
            figures[f"raw {TUNED}"] = consume_in_child(database, dsn, table, n, fetch)

    # Alternate which goes first, so that a drift of the machine's speed favours neither.
    for step in (theirs, ours) if raw_first else (ours, theirs):
        step()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--fetch-size", type=int, default=100)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as directory:
        dsns = {**DEFAULT_DSNS, "sqlite": f"sqlite:///{Path(directory) / 'bench.db'}"}
        print(
            f"{args.messages} messages one by one, {args.messages} in batches of "
            f"{args.batch_size}; half of them consumed by one process with the default "
            f"options (fetch_size {SqlTransportOptions().fetch_size}), the other half by "
            f"another with fetch_size {args.fetch_size}; median of {args.runs} runs, messages/s"
        )
        for database in args.databases.split(","):
            runs = [
                one_run(database, dsns[database], args, raw_first=bool(number % 2))
                for number in range(args.runs)
            ]
            report(database, runs)


def report(database: str, runs: list[dict[str, float]]) -> None:
    median: Callable[[str], float] = lambda key: statistics.median(run[key] for run in runs)  # noqa: E731
    print(f"\n{database}")
    print(f"  {'':24} {'transport':>10} {'raw driver':>11} {'ratio':>6}")
    for figure in ("send", "batch send", DEFAULTS, TUNED):
        ours, raw = median(figure), median(f"raw {figure}")
        print(f"  {figure:24} {ours:10,.0f} {raw:11,.0f} {ours / raw:6.2f}")
    print(f"  default options / tuned: {median(DEFAULTS) / median(TUNED):.2f}")
    symfony = median(SYMFONY)
    print(
        f"  Symfony's Doctrine statements by hand: {symfony:,.0f} "
        f"(default options: {median(DEFAULTS) / symfony:.2f}x)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, dsn, table, count, fetch_size = sys.argv[2:7]
        child(kind, dsn, table, int(count), int(fetch_size))
    else:
        main()
