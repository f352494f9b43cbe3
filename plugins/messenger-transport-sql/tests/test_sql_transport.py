"""The SQL transport's own behaviour beyond the contract suite, on every database."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from messenger_transport_sql import BODY_ENCODING_HEADER, SqlTransport
from sql_test_support import Database, Order, order

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage


def _ids(envelopes: list[Envelope]) -> list[int]:
    return [envelope.message.id for envelope in envelopes]


def _rows(database: Database, queue: str = "default") -> list[Any]:
    table = database.table
    return database.run(sa.select(table).where(table.c.queue_name == queue).order_by(table.c.id))


def _id(envelope: Envelope) -> str:
    stamp = envelope.last(TransportMessageIdStamp)
    assert stamp is not None
    return stamp.id


def _receive(transport: SqlTransport, count: int, timeout: float = 5.0) -> list[Envelope]:
    received: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        received.extend(transport.get())
    return received


class BytesSerializer:
    """Sends ``bytes`` messages as they are: lets a test choose the exact body."""

    def encode(self, envelope: Envelope) -> TransportMessage:
        return TransportMessage(envelope.message, {"type": "bytes"})

    def decode(self, message: TransportMessage) -> Envelope:
        return Envelope(message.body)


# -- receiving -------------------------------------------------------------------------------
def test_get_reserves_fetch_size_messages_oldest_first(database: Database) -> None:
    transport = database.transport(fetch_size=10)
    transport.send_batch([order(number) for number in range(15)])
    first = transport.get()
    assert _ids(first) == list(range(10))
    assert all(row.delivered_at is not None for row in _rows(database)[:10])
    assert all(row.delivered_at is None for row in _rows(database)[10:])
    assert _ids(transport.get()) == list(range(10, 15))


def test_delayed_messages_wait_their_turn(database: Database) -> None:
    transport = database.transport(fetch_size=10)
    sent = transport.send(order(1, "later", DelayStamp(delay_ms=60_000)))
    transport.send(order(2, "now"))
    assert _ids(transport.get()) == [2]
    row = next(row for row in _rows(database) if str(row.id) == _id(sent))
    assert row.available_at - row.created_at == timedelta(seconds=60)
    assert transport.message_count() == 1, "a delayed message is waiting too"


def test_queues_share_a_table_without_seeing_each_other(database: Database) -> None:
    emails = database.transport(queue_name="emails")
    invoices = database.transport(queue_name="invoices")
    sent = emails.send(order(1, "email"))
    invoices.send(order(2, "invoice"))
    assert _ids(_receive(invoices, 1)) == [2]
    assert invoices.find(_id(sent)) is None
    assert invoices.message_count() == 0
    assert emails.message_count() == 1
    assert _ids(emails.get()) == [1]


# -- acknowledging ---------------------------------------------------------------------------
def test_with_fetch_size_1_an_ack_deletes_at_once(database: Database) -> None:
    transport = database.transport(fetch_size=1)
    transport.send(order(1))
    transport.ack(_receive(transport, 1)[0])
    assert _rows(database) == []


def test_batched_acks_are_deleted_with_the_next_get(database: Database) -> None:
    transport = database.transport(fetch_size=10)
    transport.send_batch([order(number) for number in range(15)])
    for envelope in transport.get():
        transport.ack(envelope)
    assert len(_rows(database)) == 15, "deferred: deleted with the next get"
    assert _ids(transport.get()) == list(range(10, 15))
    assert len(_rows(database)) == 5


def test_flush_keepalive_and_close_delete_deferred_acks(database: Database) -> None:
    transport = database.transport(fetch_size=10)
    transport.send_batch([order(number) for number in range(4)])
    first, second, third, fourth = transport.get()
    transport.ack(first)
    transport.flush()
    assert len(_rows(database)) == 3
    transport.ack(second)
    transport.keepalive(third)
    assert len(_rows(database)) == 2
    transport.ack(third)
    transport.ack(fourth)
    transport.close()
    assert _rows(database) == []


def test_acks_beyond_fetch_size_are_deleted_at_once(database: Database) -> None:
    transport = database.transport(fetch_size=2)
    transport.send_batch([order(number) for number in range(4)])
    held = transport.get() + transport.get()  # a consumer holding two batches
    for envelope in held[:2]:
        transport.ack(envelope)
    assert len(_rows(database)) == 4
    transport.ack(held[2])  # the third pending one
    assert len(_rows(database)) == 1


def test_close_releases_received_messages_for_other_consumers(database: Database) -> None:
    leaving = database.transport(fetch_size=5)
    leaving.send_batch([order(number) for number in range(5)])
    held = leaving.get()
    leaving.ack(held[0])
    leaving.reject(held[1])
    leaving.close()
    other = database.transport(fetch_size=5)
    assert _ids(other.get()) == [2, 3, 4], "released at once, not after redeliver_timeout"


def test_close_does_not_release_a_reservation_taken_over_by_another(database: Database) -> None:
    slow = database.transport(redeliver_timeout=0.5)
    slow.send(order(1))
    assert len(_receive(slow, 1)) == 1
    time.sleep(0.7)  # the reservation runs out
    taker = database.transport(redeliver_timeout=0.5)
    assert _ids(_receive(taker, 1)) == [1]
    slow.close()  # must not hand the message taker holds to a third consumer
    third = database.transport()
    assert third.get() == []


def test_keepalive_renews_the_reservation(database: Database) -> None:
    transport = database.transport(redeliver_timeout=60)
    transport.send(order(1))
    envelope = _receive(transport, 1)[0]
    long_ago = datetime(2001, 2, 3, 4, 5, 6)
    database.run(sa.update(database.table).values(delivered_at=long_ago))
    transport.keepalive(envelope)
    assert _rows(database)[0].delivered_at > long_ago + timedelta(days=365)


def test_settling_needs_the_id_stamp(database: Database) -> None:
    transport = database.transport()
    with pytest.raises(TransportError, match="TransportMessageIdStamp"):
        transport.ack(order(1))
    with pytest.raises(TransportError, match="not the id"):
        transport.reject(order(1, "", TransportMessageIdStamp(id="1-0")))


# -- listing ---------------------------------------------------------------------------------
def test_find_and_all_do_not_reserve(database: Database) -> None:
    transport = database.transport()
    sent = transport.send_batch([order(number) for number in range(3)])
    ids = [_id(envelope) for envelope in sent]
    assert [_id(envelope) for envelope in transport.all()] == ids
    assert _ids(transport.all(limit=1)) == [0]
    assert transport.all(limit=0) == []
    found = transport.find(ids[2])
    assert found is not None
    assert found.message == Order(2)
    assert transport.find("not-a-number") is None
    assert transport.find("999999999") is None
    assert all(row.delivered_at is None for row in _rows(database))


def test_received_messages_are_not_listed_nor_counted(database: Database) -> None:
    transport = database.transport(fetch_size=1)
    transport.send_batch([order(1), order(2)])
    _receive(transport, 1)
    assert _ids(transport.all()) == [2]
    assert transport.message_count() == 1


# -- bodies and headers ----------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"\xff\xfe binary \x00 ciphertext", b"nul \x00 in utf-8"])
def test_bodies_that_are_not_text_travel_base64(database: Database, body: bytes) -> None:
    transport = database.transport(serializer=BytesSerializer())
    transport.send(Envelope(body))
    row = _rows(database)[0]
    assert json.loads(row.headers) == {"type": "bytes", BODY_ENCODING_HEADER: "base64"}
    received = _receive(transport, 1)[0]
    assert received.message == body


def test_text_bodies_are_stored_as_they_are(database: Database) -> None:
    transport = database.transport()
    transport.send(order(1, "naïve ✓ ünïcode"))
    row = _rows(database)[0]
    assert json.loads(row.body) == {"id": 1, "text": "naïve ✓ ünïcode"}
    assert json.loads(row.headers)["type"] == "tests.Order"


def test_rows_that_cannot_be_read_come_out_undecodable(database: Database) -> None:
    transport = database.transport(fetch_size=10)
    transport.setup()
    now = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    row = {"queue_name": "default", "created_at": now, "available_at": now}
    database.run(sa.insert(database.table).values(body="{}", headers="not json", **row))
    encoded = json.dumps({BODY_ENCODING_HEADER: "base64"})
    database.run(sa.insert(database.table).values(body="!!", headers=encoded, **row))
    transport.send(order(3))
    received = _receive(transport, 3)
    assert len(received) == 3
    bad_headers, bad_base64, good = received
    assert isinstance(bad_headers.message, UndecodableMessage)
    assert "headers" in bad_headers.message.reason
    assert bad_headers.message.headers == {"X-Messenger-Raw-Headers": "not json"}
    assert isinstance(bad_base64.message, UndecodableMessage)
    assert "base64" in bad_base64.message.reason
    assert good.message == Order(3)
    for envelope in received:
        assert envelope.last(TransportMessageIdStamp) is not None
        transport.ack(envelope)


# -- setup -----------------------------------------------------------------------------------
def test_auto_setup_creates_the_table_on_first_use(database: Database) -> None:
    transport = database.transport()
    transport.send(order(1))
    assert _ids(_receive(transport, 1)) == [1]


def test_without_auto_setup_a_missing_table_is_an_error(database: Database) -> None:
    transport = database.transport(auto_setup=False)
    with pytest.raises(TransportError, match="cannot send"):
        transport.send(order(1))
    transport.setup()
    transport.send(order(1))


def test_a_closed_transport_refuses_work(database: Database) -> None:
    transport = database.transport()
    transport.close()
    transport.close()
    with pytest.raises(TransportError, match="closed"):
        transport.send(order(1))


# -- PostgreSQL notifications ----------------------------------------------------------------
def test_an_idle_postgresql_consumer_wakes_up_on_notify(database_factory: Any) -> None:
    database = database_factory("postgresql")
    # Without notifications this get() would wait the full 20 s and then return nothing.
    consumer = database.transport(get_notify_timeout=20_000)
    producer = database.transport()
    producer.setup()
    received: list[Envelope] = []
    started = threading.Event()

    def consume() -> None:
        started.set()
        received.extend(consumer.get())

    thread = threading.Thread(target=consume)
    thread.start()
    started.wait()
    time.sleep(0.2)
    producer.send(order(7))
    thread.join(timeout=10)
    assert _ids(received) == [7], "get() did not wake up when the message came"
    thread.join()


def test_setup_creates_the_postgresql_notify_trigger(database_factory: Any) -> None:
    database = database_factory("postgresql")
    database.transport().setup()
    triggers = database.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:table)",
        {"table": database.table_name},
    )
    assert [row.tgname for row in triggers] == ["notify_trigger"]


def test_only_a_notified_postgresql_consumer_tells_workers_it_waits(
    database_factory: Any,
) -> None:
    postgresql = database_factory("postgresql")
    assert postgresql.transport().waits_for_messages
    assert not postgresql.transport(use_notify=False).waits_for_messages
    assert not database_factory("sqlite").transport().waits_for_messages


def test_postgresql_without_notify_polls(database_factory: Any) -> None:
    database = database_factory("postgresql")
    transport = database.transport(use_notify=False)
    assert transport.get() == []
    transport.send(order(1))
    assert _ids(transport.get()) == [1]
