"""Reconnecting after an outage: error classification, deferred settlements, LISTEN again.

The outage tests stop the PostgreSQL server of the tests' own (``postgres_server``, conftest).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from messenger_transport_sql import SqlTransport, SqlTransportFactory
from messenger_transport_sql.reconnect import ErrorKind, ReconnectPolicy, classify
from servers import PostgresServer
from sql_test_support import make_serializer, order, unique_table

from messenger_core.dsn import Dsn
from messenger_core.errors import TransportError


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(kind: type[sa.exc.DBAPIError], orig: Exception, *, invalidated: bool = False) -> Any:
    return kind("SELECT 1", None, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("backend", "error", "expected"),
    [
        # A refused connection: psycopg gives it no SQLSTATE, SQLAlchemy does not call it a
        # disconnect (the bug: it was not retried).
        ("postgresql", _wrapped(sa.exc.OperationalError, _PgError("refused", None)), "OUTAGE"),
        ("postgresql", _wrapped(sa.exc.OperationalError, _PgError("x", "57P01")), "OUTAGE"),
        ("postgresql", _wrapped(sa.exc.OperationalError, _PgError("x", "08006")), "OUTAGE"),
        ("postgresql", _wrapped(sa.exc.OperationalError, _PgError("x", "57P03")), "OUTAGE"),
        (
            "postgresql",
            _wrapped(sa.exc.DatabaseError, _PgError("gone", "XX000"), invalidated=True),
            "OUTAGE",
        ),
        ("postgresql", _wrapped(sa.exc.OperationalError, _PgError("x", "40P01")), "RETRY"),
        ("postgresql", _wrapped(sa.exc.ProgrammingError, _PgError("x", "42P01")), "MISSING_TABLE"),
        ("postgresql", _wrapped(sa.exc.ProgrammingError, _PgError("x", "42601")), "FATAL"),
        # A statement timeout is an OperationalError with a SQLSTATE: not an outage.
        ("postgresql", _wrapped(sa.exc.OperationalError, _PgError("x", "57014")), "FATAL"),
        (
            "mysql",
            _wrapped(sa.exc.OperationalError, pymysql.err.OperationalError(2003, "refused")),
            "OUTAGE",
        ),
        (
            "mysql",
            _wrapped(sa.exc.OperationalError, pymysql.err.OperationalError(2013, "lost")),
            "OUTAGE",
        ),
        ("mysql", _wrapped(sa.exc.InterfaceError, pymysql.err.InterfaceError(0, "")), "OUTAGE"),
        (
            "mysql",
            _wrapped(sa.exc.OperationalError, pymysql.err.OperationalError(1213, "deadlock")),
            "RETRY",
        ),
        (
            "mysql",
            _wrapped(sa.exc.ProgrammingError, pymysql.err.ProgrammingError(1146, "no table")),
            "MISSING_TABLE",
        ),
        (
            "mysql",
            _wrapped(sa.exc.ProgrammingError, pymysql.err.ProgrammingError(1064, "syntax")),
            "FATAL",
        ),
        ("sqlite", _wrapped(sa.exc.OperationalError, Exception("database is locked")), "OUTAGE"),
        (
            "sqlite",
            _wrapped(sa.exc.OperationalError, Exception("unable to open database file")),
            "OUTAGE",
        ),
        (
            "sqlite",
            _wrapped(sa.exc.OperationalError, Exception("no such table: x")),
            "MISSING_TABLE",
        ),
        ("sqlite", _wrapped(sa.exc.OperationalError, Exception("near x: syntax error")), "FATAL"),
    ],
)
def test_errors_are_classified_by_what_they_call_for(
    backend: str, error: sa.exc.DBAPIError, expected: str
) -> None:
    assert classify(error, backend) is ErrorKind[expected]


def test_the_backoff_doubles_up_to_its_bound_and_close_cuts_a_wait_short() -> None:
    policy = ReconnectPolicy("test", timeout=10)
    policy.succeeded()
    delays = []
    for _ in range(10):
        before = time.monotonic()
        policy.failed("test", Exception("down"))
        delays.append(policy._next_attempt - before)
    assert 0.07 < delays[0] <= 0.1
    assert all(later >= earlier * 0.8 for earlier, later in itertools.pairwise(delays))
    assert 3.9 < max(delays) <= 5.0
    assert policy.in_outage
    threading.Timer(0.2, policy.close).start()
    started = time.monotonic()
    assert not policy.wait_for_attempt(time.monotonic() + 30)
    assert time.monotonic() - started < 5
    policy.succeeded()
    assert not policy.in_outage


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[tuple[PostgresServer, Dsn]]:
    postgres_server.ensure_started()
    base = Dsn.parse(postgres_server.dsn)
    yield postgres_server, base
    postgres_server.ensure_started()


def _transport(base: Dsn, table: str, **options: Any) -> SqlTransport:
    dsn = Dsn.parse(f"{base}?table_name={table}")
    return SqlTransportFactory().create(dsn, options, make_serializer())


@pytest.mark.slow
def test_an_ack_during_an_outage_is_written_once_the_database_is_back(
    pg: tuple[PostgresServer, Dsn],
) -> None:
    server, base = pg
    table = unique_table()
    consumer = _transport(base, table, redeliver_timeout=2)
    producer = _transport(base, table)
    try:
        consumer.setup()
        producer.send(order(1))
        received = consumer.get()
        assert [envelope.message.id for envelope in received] == [1]
        server.stop()
        try:
            consumer.ack(received[0])  # no error: deferred
            assert consumer.get() == []  # no error: nothing while the database is down
        finally:
            server.start()
        deadline = time.monotonic() + 30
        while consumer.message_count() != 0 or producer.find("1") is not None:
            assert time.monotonic() < deadline, "the deferred acknowledgement was not written"
            consumer.get()
        # Long past the redelivery timeout: acknowledged for good, never redelivered.
        time.sleep(2.5)
        assert consumer.get() == []
        assert producer.all() == []
    finally:
        consumer.close()
        producer.close()


@pytest.mark.slow
def test_a_listening_consumer_listens_again_after_a_restart(
    pg: tuple[PostgresServer, Dsn],
) -> None:
    server, base = pg
    table = unique_table()
    # Without a notification an idle consumer would not look for 10 minutes: a get() that
    # returns the message before its 4 s wait is over was woken by the notification. (Each
    # idle get() below waits those 4 s in full, hence not longer.)
    consumer = _transport(
        base, table, get_notify_timeout=4000, check_delayed_interval=600_000, redeliver_timeout=100
    )
    producer = _transport(base, table)
    try:
        consumer.setup()
        assert consumer.get() == []
        server.restart(1.0)
        deadline = time.monotonic() + 30
        # The first calls after the restart find the connections broken and reconnect.
        while True:
            got = consumer.get()
            assert got == []
            if consumer.waits_for_messages and _listening(consumer):
                break
            assert time.monotonic() < deadline, "the consumer did not LISTEN again"
        threading.Timer(0.5, lambda: producer.send(order(7))).start()
        started = time.monotonic()
        got = consumer.get()
        took = time.monotonic() - started
        assert [envelope.message.id for envelope in got] == [7], "no notification woke get()"
        assert took < 3.5, f"get() waited {took:.1f} s: the notification did not wake it"
        consumer.ack(got[0])
    finally:
        consumer.close()
        producer.close()


def _listening(transport: SqlTransport) -> bool:
    listener = transport._listener
    return listener is not None and listener.listening


def test_a_sqlite_file_briefly_missing_at_connect_time_is_waited_for(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    dsn = Dsn.parse(f"sqlite:///{directory / 'queue.db'}?auto_setup=false&reconnect_timeout=30")
    producer = SqlTransportFactory().create(dsn, {}, make_serializer())
    producer.setup()
    producer.send(order(1))
    producer.close()
    hidden = tmp_path / "elsewhere"
    directory.rename(hidden)  # the file is gone for a moment: a new connection cannot open it
    consumer = SqlTransportFactory().create(dsn, {}, make_serializer())
    try:
        assert consumer.get() == []
        hidden.rename(directory)
        received = consumer.get()
        assert [envelope.message.id for envelope in received] == [1]
        consumer.ack(received[0])
    finally:
        consumer.close()


def test_a_sqlite_file_that_stays_missing_fails_with_one_readable_line(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "queue.db"
    dsn = Dsn.parse(f"sqlite:///{path}?auto_setup=false&reconnect_timeout=1")
    consumer = SqlTransportFactory().create(dsn, {}, make_serializer())
    message = ""
    try:
        deadline = time.monotonic() + 30
        while not message and time.monotonic() < deadline:
            try:
                assert consumer.get() == []
            except TransportError as error:
                message = str(error)
    finally:
        consumer.close()
    assert message, "get() kept returning nothing"
    assert "\n" not in message
    assert "tried for 1.0 s" in message, message
    assert "unable to open database file" in message, message
    assert "check that the database file (and its directory) exists" in message, message
