"""``sql_transaction`` with the connection really lost during ``COMMIT``: exactly once.

The worker talks to PostgreSQL or MariaDB through :mod:`commit_cutting_proxy`, which loses
the connection at the ``COMMIT`` of the first handler transaction (the handler's write and the
delete of the message's row): after the server committed it (the reply lost), before the
server got it (rolled back), or with the ``COMMIT`` arriving after the client lost the
connection. Each time the handler's write exists exactly once in the end, the message is
handled once more exactly when the first try was not applied, and nothing is parked or
rejected, even with no retries left. (SQLite runs in the worker's process: there is no
connection to lose.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from commit_cutting_proxy import Cut, commit_cutting_proxy
from messenger_transport_sql import current_connection, lost_commit
from messenger_transport_sql.backends.postgresql import PostgreSqlBackend
from sql_test_support import Database, unique_table

from messenger_core import Messenger
from messenger_core.dsn import DsnHost
from messenger_core.testing.cutting_proxy import CuttingProxy
from messenger_core.worker_stats import WorkerStats


@attrs.frozen
class Job:
    """Recorded by its handler in the test's table, through the transaction."""

    id: int


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest, database_factory: Any) -> Database:
    """PostgreSQL, then MariaDB/MySQL, with a messages table of the test's own."""
    database: Database = database_factory(request.param)
    return database


class App:
    """A ``jobs`` queue reached through ``proxy``, the middleware on the bus, a failure
    transport; the handler notes, at each try, how often its write exists already (read
    directly, not through the proxy)."""

    def __init__(
        self,
        database: Database,
        records: sa.Table,
        engine: sa.Engine,
        proxy: CuttingProxy,
        *,
        max_retries: int,
    ) -> None:
        self.database = database
        self.records = records
        self.engine = engine
        dsn = database.dsn(queue_name="jobs", fetch_size=1, redeliver_timeout=2)
        options = {**dsn.options, "sslmode": "disable"} if database.backend == "postgresql" else {}
        dsn = attrs.evolve(
            dsn,
            hosts=(DsnHost("127.0.0.1", proxy.port),),
            options=options or dsn.options,
        )
        failed = database.dsn(queue_name="failed")
        config = {
            "transports": {
                "jobs": {
                    "dsn": dsn.to_url(mask_password=False),
                    "retry_strategy": {"max_retries": max_retries, "delay": 0},
                },
                "failed": failed.to_url(mask_password=False),
            },
            "failure_transport": "failed",
            "routing": {Job: "jobs"},
            "buses": {"messenger.bus.default": {"middleware": ["sql_transaction"]}},
        }
        self.messenger = messenger = Messenger(config=config)
        self.seen: list[int] = []
        """How often the message's write existed when each try started."""

        @messenger.handler
        def on_job(message: Job) -> None:
            self.seen.append(self.recorded().count(message.id))
            current_connection().execute(records.insert().values(job_id=message.id))

    def recorded(self) -> list[int]:
        with self.engine.connect() as connection:
            return sorted(connection.execute(sa.select(self.records.c.job_id)).scalars())

    def consume(self, **limits: Any) -> WorkerStats:
        return self.messenger.worker(["jobs"]).run(sleep=0.01, **limits)

    def rows(self) -> list[str]:
        """The queues of the rows left in the messages table."""
        return [row[0] for row in self.database.execute("SELECT queue_name FROM {table}")]

    def assert_settled_for_good(self) -> None:
        """No row left (none in the failure queue either), and nothing comes back after
        ``redeliver_timeout`` (2 s)."""
        assert self.rows() == []
        again = self.consume(time_limit=2.5)
        assert (again.received, again.failed) == (0, 0)


@contextmanager
def app_behind(
    database: Database, cut: Cut, *, delay: float = 0.0, max_retries: int = 2
) -> Iterator[tuple[App, CuttingProxy]]:
    """An :class:`App` on ``database`` whose connections go through a proxy cutting ``cut``
    at the COMMIT of the first transaction that writes the test's records table."""
    engine = database.engine()
    records = sa.Table(
        unique_table(),
        sa.MetaData(),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
    )
    records.create(engine)
    host = database.dsn().hosts[0]
    upstream = (host.host, host.port or (5432 if database.backend == "postgresql" else 3306))
    marker = records.name.encode()
    try:
        with commit_cutting_proxy(upstream, database.backend, cut, marker, delay=delay) as proxy:
            app = App(database, records, engine, proxy, max_retries=max_retries)
            try:
                yield app, proxy
            finally:
                app.messenger.close()
    finally:
        records.drop(engine)
        engine.dispose()


def test_a_commit_applied_whose_reply_is_lost_counts_as_handled_once(
    server: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with app_behind(server, Cut.AFTER) as (app, proxy):
        app.messenger.bus.dispatch(Job(1))
        with caplog.at_level(logging.WARNING, "messenger"):
            stats = app.consume(limit=1, time_limit=20)
        assert proxy.cut_done.is_set(), "the connection was cut after the COMMIT"
        assert proxy.applied is True, "the server committed"
        assert (stats.handled, stats.failed, stats.retried, stats.parked) == (1, 0, 0, 0)
        assert app.seen == [0], "handled once"
        assert app.recorded() == [1]
        assert "applied, the reply to its COMMIT lost" in caplog.text
        app.assert_settled_for_good()
        assert app.seen == [0], "not handled again"
        assert app.recorded() == [1]


# With max_retries 0 too: a lost connection is no failure of the message's, it is retried.
@pytest.mark.parametrize("max_retries", [2, 0])
def test_a_commit_that_never_reached_the_server_is_handled_again_and_applied_once(
    server: Database, max_retries: int
) -> None:
    with app_behind(server, Cut.BEFORE, max_retries=max_retries) as (app, proxy):
        app.messenger.bus.dispatch(Job(1))
        first = app.consume(limit=1, time_limit=20)
        assert proxy.cut_done.is_set(), "the connection was cut before the COMMIT"
        assert proxy.applied is False
        assert app.recorded() == [], "the failed try wrote nothing"
        assert (first.failed, first.retried, first.parked, first.rejected) == (1, 1, 0, 0)
        second = app.consume(limit=1, time_limit=20)
        assert second.handled == 1
        assert app.seen == [0, 0], "the second try found nothing of the first"
        assert app.recorded() == [1]
        app.assert_settled_for_good()
        assert app.recorded() == [1]


def test_a_commit_arriving_after_the_connection_was_lost_is_never_applied(
    server: Database,
) -> None:
    # The COMMIT reaches the server 4 s after the client lost the connection: the old session
    # must be ended at once (not waited for), so that the late COMMIT finds nothing to commit
    # once the message was retried.
    with app_behind(server, Cut.LATE, delay=4.0) as (app, proxy):
        app.messenger.bus.dispatch(Job(1))
        started = time.monotonic()
        first = app.consume(limit=1, time_limit=20)
        assert time.monotonic() - started < 3.5, "the old session was ended, not waited for"
        assert (first.failed, first.retried, first.parked, first.rejected) == (1, 1, 0, 0)
        assert proxy.cut_done.wait(10), "the late COMMIT was passed on"
        assert proxy.applied is False, "its session was ended before it came"
        assert app.recorded() == []
        second = app.consume(limit=1, time_limit=20)
        assert second.handled == 1
        assert app.seen == [0, 0]
        assert app.recorded() == [1]
        app.assert_settled_for_good()
        assert app.recorded() == [1]


@pytest.fixture
def refused_terminate(database_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """PostgreSQL, where ending the old session is refused: the check asks under a role of
    the test's own that may not end it (a real refusal by the server)."""
    database: Database = database_factory("postgresql")
    role = unique_table()
    database.execute(f"CREATE ROLE {role} NOLOGIN")
    original = PostgreSqlBackend.end_session

    def end_session(self: PostgreSqlBackend, connection: sa.Connection, session_id: int) -> None:
        connection.exec_driver_sql(f"SET LOCAL ROLE {role}")
        original(self, connection, session_id)

    monkeypatch.setattr(PostgreSqlBackend, "end_session", end_session)
    yield database
    database.execute(f"DROP ROLE {role}")


def test_a_refused_end_of_session_is_logged_and_the_check_waits_for_the_old_transaction(
    refused_terminate: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # The late COMMIT (2 s) is not stopped; the row lock makes the check wait for it, so
    # that the answer is still right: applied, handled once.
    with app_behind(refused_terminate, Cut.LATE, delay=2.0) as (app, proxy):
        app.messenger.bus.dispatch(Job(1))
        with caplog.at_level(logging.WARNING, "messenger"):
            stats = app.consume(limit=1, time_limit=20)
        assert "could not end the session of a transaction whose COMMIT was lost" in caplog.text
        assert "permission denied" in caplog.text or "must be" in caplog.text
        assert proxy.cut_done.wait(10)
        assert proxy.applied is True, "the late COMMIT was applied"
        assert (stats.handled, stats.failed, stats.retried, stats.parked) == (1, 0, 0, 0)
        assert app.seen == [0]
        assert app.recorded() == [1]
        app.assert_settled_for_good()
        assert app.recorded() == [1]


def test_an_outcome_that_cannot_be_told_is_left_to_the_message_s_row(
    refused_terminate: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old transaction outlives the check's lock wait (1 s here): neither acknowledged
    # nor retried (a retry copy could be handled on top of an applied transaction). The
    # late COMMIT then applies: the row is gone, and the message never comes back.
    monkeypatch.setattr(lost_commit, "LOCK_WAIT", 1)
    with app_behind(refused_terminate, Cut.LATE, delay=3.0) as (app, proxy):
        app.messenger.bus.dispatch(Job(1))
        with caplog.at_level(logging.WARNING, "messenger"):
            stats = app.consume(limit=1, time_limit=20)
        assert "its outcome cannot be told now" in caplog.text
        assert (stats.failed, stats.retried, stats.parked, stats.rejected) == (0, 0, 0, 0)
        assert proxy.cut_done.wait(10)
        assert proxy.applied is True
        assert app.recorded() == [1]
        app.assert_settled_for_good()
        assert app.seen == [0]
        assert app.recorded() == [1]
