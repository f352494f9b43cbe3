"""``await bus.dispatch_async(message)`` to PostgreSQL: inserted through psycopg's async
connection on the loop; SQLite keeps the thread path.

Against the real server. The transport is a :class:`SqlTransport` that records the thread of
each send (``send`` or ``send_async``): the native path sends on the loop's thread, the thread
path in a ``messenger-dispatch`` thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from messenger_transport_sql import SqlTransport
from messenger_transport_sql.engine import backend_of, create_engine, sqlalchemy_url
from messenger_transport_sql.options import parse_options
from sql_test_support import Database, Order, open_database

from messenger_core import DelayStamp, Envelope, MessageBus, Messenger
from messenger_core._bus_middleware import middleware_context
from messenger_core.dsn import Dsn
from messenger_core.errors import BrokerUnreachableError, TransportError
from messenger_core.middleware import Next
from messenger_core.middleware.stack import build_stack
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.testing.async_send import RecordingSends, sent_on_loop
from messenger_core.testing.services import free_port


class RecordingSqlTransport(RecordingSends, SqlTransport):
    """The SQL transport, recording where each send ran."""


def _transport(messenger: Messenger, dsn: Dsn, **options: Any) -> RecordingSqlTransport:
    """A transport as the factory builds it (its own engine), added as ``sql``."""
    parsed = parse_options(dsn.with_options(options), backend_of(dsn), dsn=dsn)
    transport = RecordingSqlTransport(
        create_engine(dsn, parsed),
        messenger.serializer(),
        parsed,
        description=str(dsn),
        dispose_engine=True,
    )
    messenger.add_transport("sql", transport)
    messenger.route(Order, "sql")
    return transport


@pytest.fixture
def messenger() -> Iterator[Messenger]:
    messenger = Messenger(autoload=False)
    messenger.register_message(Order)
    yield messenger
    messenger.close()


@pytest.fixture
def postgresql(tmp_path: Path) -> Iterator[Database]:
    database = open_database("postgresql", tmp_path)
    yield database
    database.close()


@pytest.fixture
def transport(messenger: Messenger, postgresql: Database) -> RecordingSqlTransport:
    return _transport(messenger, postgresql.dsn())


def _rows(database: Database) -> list[Any]:
    return database.execute(
        "SELECT id, body, headers, queue_name, created_at, available_at, delivered_at "
        "FROM {table} ORDER BY id"
    )


def _consume(messenger: Messenger, count: int) -> list[Order]:
    handled: list[Order] = []

    def on_order(message: Order) -> None:
        handled.append(message)

    messenger.handler(on_order)
    messenger.worker(["sql"]).run(limit=count, time_limit=15, sleep=0.05)
    return handled


def _listener(database: Database) -> psycopg.Connection[Any]:
    url = sqlalchemy_url(database.dsn(), parse_options({}, "postgresql"))
    connection = psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    )
    connection.execute(f'LISTEN "{database.table_name}"')
    return connection


def _notifications(listener: psycopg.Connection[Any], count: int) -> list[psycopg.Notify]:
    """The first ``count`` notifications ``listener`` receives, or those of 2 seconds.

    Polled with a query, which reads what the server sent: psycopg's ``notifies(timeout=)``
    is 3.2's, and the plugin allows 3.1.
    """
    received: list[psycopg.Notify] = []
    listener.add_notify_handler(received.append)
    deadline = time.monotonic() + 2
    while len(received) < count and time.monotonic() < deadline:
        listener.execute("SELECT 1")
        time.sleep(0.02)
    return received[:count]


def test_the_row_is_the_one_dispatch_inserts_notified_alike_and_consumed(
    messenger: Messenger, transport: RecordingSqlTransport, postgresql: Database
) -> None:
    # The table does not exist yet: the first send creates it (auto_setup), trigger included.
    native = asyncio.run(messenger.bus.dispatch_async(Order(1, "native")))
    assert sent_on_loop(transport.calls, 1)
    listener = _listener(postgresql)
    try:
        again = asyncio.run(messenger.bus.dispatch_async(Order(1, "native")))
        synchronous = messenger.bus.dispatch(Order(1, "native"))
        notified = [(n.channel, n.payload) for n in _notifications(listener, 2)]
    finally:
        listener.close()
    assert notified == [(postgresql.table_name, "default")] * 2

    assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]
    # The very statement the sync sender compiled on connecting.
    assert transport._async_sender is not None
    assert transport._async_sender._statement() == transport._db.fast.insert
    rows = _rows(postgresql)
    assert [str(row.id) for row in rows] == [
        e.last(TransportMessageIdStamp).id  # type: ignore[union-attr]
        for e in (native, again, synchronous)
    ]
    for row in rows:
        assert (row.body, row.headers, row.queue_name) == (
            rows[-1].body,
            rows[-1].headers,
            rows[-1].queue_name,
        )
        assert row.available_at == row.created_at.replace(microsecond=0)
        assert row.delivered_at is None
    assert _consume(messenger, 3) == [Order(1, "native")] * 3


def test_a_delayed_message_is_available_later_as_from_dispatch(
    messenger: Messenger, transport: RecordingSqlTransport, postgresql: Database
) -> None:
    delay = DelayStamp(delay_ms=300)
    native = asyncio.run(messenger.bus.dispatch_async(Order(2), delay))
    assert sent_on_loop(transport.calls, 1)
    synchronous = messenger.bus.dispatch(Order(2), delay)
    assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]
    rows = _rows(postgresql)
    assert len(rows) == 2
    assert rows[0].headers == rows[1].headers
    for row in rows:
        assert row.available_at - row.created_at == timedelta(milliseconds=300)
    assert _consume(messenger, 2) == [Order(2), Order(2)]


def test_each_event_loop_gets_a_connection_of_its_own_closed_with_the_loop(
    messenger: Messenger, transport: RecordingSqlTransport, postgresql: Database
) -> None:
    assert transport._async_sender is not None
    connections = transport._async_sender._connections  # (to see them closed)

    async def send(number: int) -> Envelope:
        envelope = await messenger.bus.dispatch_async(Order(number))
        assert len(connections._entries) >= 1
        return envelope

    asyncio.run(send(1))
    assert connections._entries == {}  # closed as its loop shut down
    asyncio.run(send(2))
    in_thread: list[Envelope] = []
    threads = [
        threading.Thread(target=lambda n=n: in_thread.append(asyncio.run(send(n))), name=f"t{n}")
        for n in (3, 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(in_thread) == 2
    assert connections._entries == {}
    assert sorted(transport.calls) == sorted(
        [("send_async", threading.main_thread().name)] * 2
        + [("send_async", "t3"), ("send_async", "t4")]
    )
    assert len(_rows(postgresql)) == 4


def test_a_closed_transport_refuses_as_dispatch_does(
    messenger: Messenger, transport: RecordingSqlTransport
) -> None:
    asyncio.run(messenger.bus.dispatch_async(Order(1)))
    transport.close()
    with pytest.raises(TransportError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Order(1))
    assert "is closed" in str(native.value)
    assert str(native.value) == str(synchronous.value)


def test_a_failing_insert_raises_what_dispatch_raises(
    messenger: Messenger, postgresql: Database
) -> None:
    postgresql.execute("CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)")
    _transport(messenger, postgresql.dsn(), auto_setup="false")
    with pytest.raises(TransportError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Order(1))
    assert "UndefinedColumn" in str(native.value)
    assert str(native.value) == str(synchronous.value)


def test_an_unreachable_server_raises_what_dispatch_raises(messenger: Messenger) -> None:
    dsn = Dsn.parse(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    _transport(messenger, dsn, reconnect_timeout="0.3")
    with pytest.raises(BrokerUnreachableError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    with pytest.raises(BrokerUnreachableError) as synchronous:
        messenger.bus.dispatch(Order(1))
    assert str(native.value).split("(")[0] == str(synchronous.value).split("(")[0]


def _unknown(envelope: Envelope, next: Next) -> Envelope:
    return next(envelope)


def test_a_middleware_that_did_not_opt_in_sends_in_a_thread(
    messenger: Messenger, transport: RecordingSqlTransport, postgresql: Database
) -> None:
    name = messenger.config.default_bus
    bus = MessageBus(name, build_stack(middleware_context(messenger, name), [_unknown]))
    asyncio.run(bus.dispatch_async(Order(5)))
    assert len(transport.calls) == 1
    kind, thread = transport.calls[0]
    assert kind == "send"
    assert thread.startswith("messenger-dispatch")
    assert len(_rows(postgresql)) == 1


def test_sqlite_sends_in_a_thread(messenger: Messenger, tmp_path: Path) -> None:
    transport = _transport(messenger, Dsn.parse(f"sqlite:///{tmp_path / 'messages.db'}"))
    assert not transport.sends_async
    envelope = asyncio.run(messenger.bus.dispatch_async(Order(6)))
    assert len(transport.calls) == 1
    kind, thread = transport.calls[0]
    assert kind == "send"
    assert thread.startswith("messenger-dispatch")
    assert envelope.last(TransportMessageIdStamp) is not None
    assert transport.message_count() == 1
