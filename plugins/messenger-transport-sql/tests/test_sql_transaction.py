"""The ``sql_transaction`` middleware: handlers' writes and the acknowledgement commit together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from messenger_transport_sql import NoTransactionError, SqlTransport, current_connection
from messenger_transport_sql.engine import sqlalchemy_url
from messenger_transport_sql.options import parse_options
from sql_test_support import Database, unique_table

from messenger_core import Envelope, Messenger
from messenger_core.errors import ConfigurationError
from messenger_core.stamps import ReceivedStamp, TransportMessageIdStamp


@attrs.frozen
class Job:
    """A message whose handler records its id through the transaction."""

    id: int
    fail: bool = False


@attrs.frozen
class FollowUp:
    """Dispatched by a handler to the ``jobs`` queue."""

    id: int


@attrs.frozen
class Chain:
    """Its handler dispatches ``FollowUp(id)``, then fails if ``fail``."""

    id: int
    fail: bool = False


@attrs.frozen
class Local:
    """Not routed: handled where it is dispatched."""


class Boom(Exception):
    """A handler failed after writing."""


@pytest.fixture
def records(database: Database) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """The application's table of handled ids, and an engine to read it."""
    engine = sa.create_engine(sqlalchemy_url(database.dsn(), parse_options({}, database.backend)))
    table = sa.Table(
        unique_table(),
        sa.MetaData(),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
    )
    table.create(engine)
    yield engine, table
    table.drop(engine)
    engine.dispose()


def _recorded(records: tuple[sa.Engine, sa.Table]) -> list[int]:
    engine, table = records
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(table.c.job_id)).scalars())


def _messenger(
    database: Database,
    records: tuple[sa.Engine, sa.Table],
    *,
    middleware: Any = "sql_transaction",
    **transports: Any,
) -> tuple[Messenger, list[str]]:
    """An application with a ``jobs`` SQL queue (and ``transports``), the middleware on the
    default bus, and handlers that record through the transaction; also the list of errors
    the handlers met."""
    _, table = records
    config = {
        "transports": {
            "jobs": {
                "dsn": str(database.dsn(queue_name="jobs", fetch_size=10, redeliver_timeout=3)),
                "retry_strategy": {"max_retries": 2, "delay": 0},
            },
            **transports,
        },
        "routing": {Job: "jobs", FollowUp: "jobs", Chain: "jobs"},
        "buses": {"messenger.bus.default": {"middleware": [middleware]}},
    }
    messenger = Messenger(config=config)
    errors: list[str] = []
    failed_once: set[int] = set()

    @messenger.handler
    def on_job(message: Job) -> None:
        try:
            connection = current_connection()
        except NoTransactionError as error:
            errors.append(str(error))
            return
        connection.execute(table.insert().values(job_id=message.id))
        if message.fail and message.id not in failed_once:
            failed_once.add(message.id)
            raise Boom(f"job {message.id} fails once, after writing")

    @messenger.handler
    def on_follow_up(message: FollowUp) -> None:
        current_connection().execute(table.insert().values(job_id=message.id))

    @messenger.handler
    def on_chain(message: Chain) -> None:
        messenger.bus.dispatch(FollowUp(message.id))
        if message.fail:
            raise Boom("after dispatching")

    @messenger.handler
    def on_local(message: Local) -> None:
        try:
            current_connection()
        except NoTransactionError as error:
            errors.append(str(error))

    return messenger, errors


def _jobs(messenger: Messenger) -> SqlTransport:
    transport = messenger.get_transport("jobs")
    assert isinstance(transport, SqlTransport)
    return transport


def test_the_handlers_writes_commit_with_the_acknowledgement(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, errors = _messenger(database, records)
    try:
        for number in range(5):
            messenger.bus.dispatch(Job(number))
        stats = messenger.worker(["jobs"]).run(limit=5, sleep=0.01)
        assert stats.handled == 5
        assert errors == []
        assert _recorded(records) == [0, 1, 2, 3, 4]
        assert _jobs(messenger).message_count() == 0
        # Settled in the transactions: no acknowledgement is left to write.
        assert _jobs(messenger)._acks.pending == []
    finally:
        messenger.close()
    assert database.execute("SELECT count(*) FROM {table}") == [(0,)]


def test_a_failing_handler_rolls_back_and_the_retry_records_once(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, _ = _messenger(database, records)
    try:
        messenger.bus.dispatch(Job(1, fail=True))
        messenger.bus.dispatch(Job(2))
        # Job 1 fails (its write rolled back) and is retried as a new message.
        stats = messenger.worker(["jobs"]).run(limit=3, sleep=0.01)
        assert stats.handled == 2
        assert _recorded(records) == [1, 2], "the failed attempt's write was rolled back"
        assert _jobs(messenger).message_count() == 0
    finally:
        messenger.close()


def test_the_worker_s_ack_after_the_commit_deletes_nothing(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, _ = _messenger(database, records)
    try:
        messenger.bus.dispatch(Job(7))
        transport = _jobs(messenger)
        [received] = transport.get()
        row_id = int(received.last(TransportMessageIdStamp).id)  # type: ignore[union-attr]
        handled = messenger.bus.dispatch(received.with_(ReceivedStamp(transport_name="jobs")))
        assert handled.message == Job(7)
        assert _recorded(records) == [7]
        assert database.execute("SELECT count(*) FROM {table}") == [(0,)]
        # A new row with the same id: an acknowledgement that still deleted would take it.
        database.execute(
            "INSERT INTO {table} (id, body, headers, queue_name, created_at, available_at) "
            "VALUES (:id, 'x', '{{}}', 'other', :now, :now)",
            {"id": row_id, "now": "2030-01-01 00:00:00"},
        )
        transport.ack(received)
        transport.flush()
        assert database.execute("SELECT count(*) FROM {table}") == [(1,)]
    finally:
        messenger.close()


def test_a_message_settled_by_another_consumer_is_not_handled_again(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, _ = _messenger(database, records)
    try:
        messenger.bus.dispatch(Job(3))
        transport = _jobs(messenger)
        [received] = transport.get()
        other = database.transport(queue_name="jobs")  # settles it (its reservation expired)
        other.reject(received)
        messenger.bus.dispatch(received.with_(ReceivedStamp(transport_name="jobs")))
        assert _recorded(records) == [], "the handler did not run: the row was gone"
        transport.ack(received)
    finally:
        messenger.close()


def test_messages_a_handler_dispatches_join_its_transaction(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, _ = _messenger(database, records)
    try:
        transport = _jobs(messenger)
        for chain in (Chain(1, fail=True), Chain(2)):
            messenger.bus.dispatch(chain)
            [received] = transport.get()
            received = received.with_(ReceivedStamp(transport_name="jobs"))
            if chain.fail:
                with pytest.raises(Exception, match="after dispatching"):
                    messenger.bus.dispatch(received)
                assert transport.message_count() == 0, "the follow-up was rolled back"
                transport.reject(received)
            else:
                messenger.bus.dispatch(received)
                transport.ack(received)
        assert [envelope.message for envelope in transport.all()] == [FollowUp(2)]
    finally:
        messenger.close()


def test_messages_from_another_transport_get_a_transaction_on_the_named_one(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    middleware = {"name": "sql_transaction", "options": {"transport": "jobs"}}
    messenger, errors = _messenger(
        database, records, middleware=middleware, memory={"dsn": "memory://"}
    )
    try:
        memory = messenger.get_transport("memory")
        memory.send(Envelope(Job(1)))
        memory.send(Envelope(Job(2, fail=True)))
        stats = messenger.worker(["memory"]).run(limit=3, sleep=0.01)
        assert stats.handled == 2
        assert errors == []
        assert _recorded(records) == [1, 2]
    finally:
        messenger.close()


def test_without_the_option_messages_from_another_transport_have_no_transaction(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, errors = _messenger(database, records, memory={"dsn": "memory://"})
    try:
        messenger.get_transport("memory").send(Envelope(Job(1)))
        messenger.worker(["memory"]).run(limit=1, sleep=0.01)
        assert len(errors) == 1
        assert "no transaction" in errors[0]
    finally:
        messenger.close()


def test_a_dispatched_message_handled_at_once_has_no_transaction(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, errors = _messenger(database, records)
    try:
        messenger.bus.dispatch(Local())  # not routed: handled in the dispatching process
    finally:
        messenger.close()
    assert len(errors) == 1
    assert "no transaction" in errors[0]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"transactional": True}, "unknown option 'transactional'"),
        ({"transport": "nope"}, "option 'transport' must name a configured SQL transport"),
        ({"outbox": "perhaps"}, "outbox"),
    ],
)
def test_bad_options_stop_the_bus_being_built(
    database: Database, records: tuple[sa.Engine, sa.Table], options: dict[str, Any], expected: str
) -> None:
    middleware = {"name": "sql_transaction", "options": options}
    messenger, _ = _messenger(database, records, middleware=middleware)
    try:
        with pytest.raises(ConfigurationError, match=expected):
            messenger.bus.dispatch(Job(1))
    finally:
        messenger.close()


@attrs.frozen
class AsyncJob:
    """Handled by an async handler, slowly."""

    id: int


def test_handler_threads_and_async_handlers_each_get_their_transaction(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    if database.backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: handler threads would take turns")
    messenger, _ = _messenger(database, records)
    _, table = records

    @messenger.handler
    async def on_async_job(message: AsyncJob) -> None:
        await asyncio.sleep(0.2)  # the keepalive runs meanwhile: it leaves the row alone
        current_connection().execute(table.insert().values(job_id=message.id))

    try:
        transport = _jobs(messenger)
        transport.send_batch([Envelope(AsyncJob(number)) for number in range(8)])
        worker = messenger.worker(["jobs"], concurrency=4, keepalive_interval=0.05)
        stats = worker.run(limit=8, sleep=0.01)
        assert stats.handled == 8
        assert _recorded(records) == list(range(8))
        assert transport.message_count() == 0
    finally:
        messenger.close()


@attrs.frozen
class Pair:
    """Two handlers record it: ``id`` and ``id + 1000``; the second fails the first time."""

    id: int


def test_a_retry_runs_again_the_handlers_whose_writes_were_rolled_back(
    database: Database, records: tuple[sa.Engine, sa.Table]
) -> None:
    messenger, _ = _messenger(database, records)
    _, table = records
    failed: list[int] = []

    @messenger.handler
    def first(message: Pair) -> None:
        current_connection().execute(table.insert().values(job_id=message.id))

    @messenger.handler
    def second(message: Pair) -> None:
        current_connection().execute(table.insert().values(job_id=message.id + 1000))
        if not failed:
            failed.append(message.id)
            raise Boom("the second handler fails once")

    try:
        _jobs(messenger).send(Envelope(Pair(5)))
        stats = messenger.worker(["jobs"]).run(limit=2, sleep=0.01)
        assert stats.handled == 1
        assert failed == [5]
        assert _recorded(records) == [5, 1005], "the first handler ran again on the retry"
    finally:
        messenger.close()
