"""The memory transport: what tests can inspect, serialize mode, options, errors.

The behaviour every transport shares (delays, redelivery, consumers...) is checked by the
contract suite in test_transport_contract_memory.py.
"""

from __future__ import annotations

import threading
import time

import attrs
import pytest

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.stamps import (
    BusNameStamp,
    DelayStamp,
    HandledStamp,
    ReceivedStamp,
    TransportMessageIdStamp,
)
from messenger_core.transport import Transport, UndecodableMessage
from messenger_core.transports.memory import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_REDELIVER_TIMEOUT,
    MemoryQueue,
    MemoryTransport,
    MemoryTransportFactory,
)


@attrs.frozen
class OrderPlaced:
    order_id: int
    quantity: int = 1


@pytest.fixture
def serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced)
    return JsonSerializer(registry)


@pytest.fixture
def transport(serializer: JsonSerializer) -> MemoryTransport:
    return MemoryTransport(serializer)


def id_of(envelope: Envelope) -> str:
    stamp = envelope.last(TransportMessageIdStamp)
    assert stamp is not None
    return stamp.id


def create(serializer: JsonSerializer, dsn: str, **options: object) -> MemoryTransport:
    return MemoryTransportFactory().create(Dsn.parse(dsn), options, serializer)


# -- sending and receiving ---------------------------------------------------------------------


def test_send_gives_each_message_a_new_id(transport: MemoryTransport) -> None:
    first = transport.send(Envelope(OrderPlaced(1)))
    second = transport.send(Envelope(OrderPlaced(2)))

    assert first.message == OrderPlaced(1)
    assert id_of(first) != id_of(second)


def test_get_hands_out_the_oldest_available_message_once(transport: MemoryTransport) -> None:
    transport.send(Envelope(OrderPlaced(1), [DelayStamp(delay_ms=60_000)]))
    transport.send(Envelope(OrderPlaced(2)))
    transport.send(Envelope(OrderPlaced(3)))

    assert [e.message for e in transport.get()] == [OrderPlaced(2)]
    assert [e.message for e in transport.get()] == [OrderPlaced(3)]
    assert transport.get() == []
    assert transport.message_count() == 3  # the delayed one and the two reserved ones


def test_stored_envelopes_lose_their_non_sendable_stamps(transport: MemoryTransport) -> None:
    sent = transport.send(
        Envelope(OrderPlaced(1), [BusNameStamp(bus_name="bus"), HandledStamp(handler_name="h")])
    )

    # What the sender gets back is its own envelope, plus the id.
    assert sent.all(HandledStamp) == (HandledStamp(handler_name="h"),)
    [received] = transport.get()
    assert received.all(BusNameStamp) == (BusNameStamp(bus_name="bus"),)
    assert received.all(HandledStamp) == ()
    assert id_of(received) == id_of(sent)


def test_ack_needs_the_transport_message_id(transport: MemoryTransport) -> None:
    with pytest.raises(TransportError, match="TransportMessageIdStamp"):
        transport.ack(Envelope(OrderPlaced(1)))


def test_keepalive_of_a_message_another_consumer_took_over_is_an_error(
    serializer: JsonSerializer,
) -> None:
    queue = MemoryQueue()
    first = MemoryTransport(serializer, queue=queue, redeliver_timeout=0.05)
    second = MemoryTransport(serializer, queue=queue, redeliver_timeout=0.05)
    first.send(Envelope(OrderPlaced(1)))
    [held] = first.get()
    first.keepalive(held)

    deadline = time.monotonic() + 5
    while not (taken := second.get()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.message for e in taken] == [OrderPlaced(1)]
    with pytest.raises(TransportError, match="not reserved by this receiver"):
        first.keepalive(held)
    second.keepalive(taken[0])


def test_keepalive_with_seconds_extends_the_reservation_beyond_the_timeout(
    serializer: JsonSerializer,
) -> None:
    queue = MemoryQueue()
    first = MemoryTransport(serializer, queue=queue, redeliver_timeout=0.05)
    second = MemoryTransport(serializer, queue=queue, redeliver_timeout=0.05)
    first.send(Envelope(OrderPlaced(1)))
    [held] = first.get()
    first.keepalive(held, 60)

    time.sleep(0.2)  # four times the redeliver timeout
    assert second.get() == []


def test_send_batch_stores_nothing_when_one_envelope_cannot_be_encoded(
    serializer: JsonSerializer,
) -> None:
    transport = MemoryTransport(serializer, serialize=True)

    with pytest.raises(TypeError, match="not JSON serializable"):
        transport.send_batch([Envelope(OrderPlaced(1)), Envelope(OrderPlaced(2, object()))])  # type: ignore[arg-type]

    assert transport.message_count() == 0
    assert transport.sent == []


def test_consumers_in_threads_share_one_queue(serializer: JsonSerializer) -> None:
    queue = MemoryQueue()
    producer = MemoryTransport(serializer, queue=queue)
    producer.send_batch([Envelope(OrderPlaced(n)) for n in range(1000)])
    received: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        consumer = MemoryTransport(serializer, queue=queue)
        while envelopes := consumer.get():
            for envelope in envelopes:
                consumer.ack(envelope)
                with lock:
                    received.append(envelope.message.order_id)

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(received) == list(range(1000))
    assert producer.message_count() == 0
    assert len(producer.acknowledged) == 1000


# -- inspection --------------------------------------------------------------------------------


def test_sent_acknowledged_and_rejected_record_what_happened_in_order(
    transport: MemoryTransport,
) -> None:
    for order_id in (1, 2, 3):
        transport.send(Envelope(OrderPlaced(order_id)))
    one, two, three = (transport.get()[0] for _ in range(3))
    transport.ack(two.with_(ReceivedStamp(transport_name="async")))
    transport.reject(one)
    transport.ack(three)

    assert [e.message for e in transport.sent] == [OrderPlaced(1), OrderPlaced(2), OrderPlaced(3)]
    assert all(e.last(TransportMessageIdStamp) for e in transport.sent)
    assert [e.message for e in transport.acknowledged] == [OrderPlaced(2), OrderPlaced(3)]
    # Acknowledged and rejected envelopes are kept as the consumer passed them.
    assert transport.acknowledged[0].last(ReceivedStamp) == ReceivedStamp(transport_name="async")
    assert [e.message for e in transport.rejected] == [OrderPlaced(1)]
    assert transport.message_count() == 0
    assert transport.sent[0].message == OrderPlaced(1), "sent keeps finished messages"


def test_reset_forgets_everything(transport: MemoryTransport) -> None:
    transport.send(Envelope(OrderPlaced(1)))
    transport.send(Envelope(OrderPlaced(2)))
    transport.ack(transport.get()[0])

    transport.reset()

    assert transport.sent == []
    assert transport.acknowledged == []
    assert transport.rejected == []
    assert transport.message_count() == 0
    assert transport.get() == []


def test_transports_over_one_queue_see_the_same_records(serializer: JsonSerializer) -> None:
    queue = MemoryQueue()
    producer = MemoryTransport(serializer, queue=queue)
    consumer = MemoryTransport(serializer, queue=queue)
    producer.send(Envelope(OrderPlaced(1)))
    consumer.ack(consumer.get()[0])

    assert [e.message for e in producer.acknowledged] == [OrderPlaced(1)]
    assert len(consumer.sent) == 1


def test_all_and_find_include_reserved_and_delayed_messages(transport: MemoryTransport) -> None:
    delayed = transport.send(Envelope(OrderPlaced(1), [DelayStamp(delay_ms=60_000)]))
    transport.send(Envelope(OrderPlaced(2)))
    [reserved] = transport.get()

    assert [e.message for e in transport.all()] == [OrderPlaced(1), OrderPlaced(2)]
    assert [e.message for e in transport.all(limit=1)] == [OrderPlaced(1)]
    found = transport.find(id_of(delayed))
    assert found is not None
    assert found.message == OrderPlaced(1)
    assert id_of(found) == id_of(delayed)
    transport.ack(reserved)
    assert transport.find(id_of(reserved)) is None


def test_repr_shows_the_counts(transport: MemoryTransport) -> None:
    for order_id in (1, 2, 3):
        transport.send(Envelope(OrderPlaced(order_id)))
    transport.ack(transport.get()[0])
    transport.get()

    assert repr(transport) == (
        "MemoryTransport(waiting=1, reserved=1, sent=3, acknowledged=1, rejected=0, "
        "serialize=False)"
    )


# -- serialize mode ----------------------------------------------------------------------------


def test_serialize_mode_round_trips_messages_through_the_serializer(
    serializer: JsonSerializer,
) -> None:
    transport = MemoryTransport(serializer, serialize=True)
    message = OrderPlaced(7, quantity=3)
    transport.send(Envelope(message, [BusNameStamp(bus_name="bus")]))

    [received] = transport.get()

    assert received.message == message
    assert received.message is not message  # it was decoded, not passed along
    assert received.all(BusNameStamp) == (BusNameStamp(bus_name="bus"),)
    assert [e.message for e in transport.sent] == [message]


def test_serialize_mode_catches_a_message_that_cannot_survive_a_real_transport(
    serializer: JsonSerializer,
) -> None:
    # attrs does not check types: a float slipped into an int field, which JSON carries but
    # cannot be read back as the declared type.
    bad = OrderPlaced(1, quantity=1.5)  # type: ignore[arg-type]

    plain = MemoryTransport(serializer)
    plain.send(Envelope(bad))
    assert [e.message for e in plain.get()] == [bad], "without serialize the bug goes unseen"

    serializing = MemoryTransport(serializer, serialize=True)
    sent = serializing.send(Envelope(bad))
    [received] = serializing.get()
    assert isinstance(received.message, UndecodableMessage)
    assert b"1.5" in received.message.body
    assert "quantity" in received.message.reason
    assert id_of(received) == id_of(sent)
    serializing.reject(received)
    assert serializing.message_count() == 0


def test_serialize_mode_keeps_undecodable_messages_as_they_were(
    serializer: JsonSerializer,
) -> None:
    transport = MemoryTransport(serializer, serialize=True)
    poison = UndecodableMessage(b"{broken", {"type": "nobody.Knows"}, "not JSON")
    transport.send(Envelope(poison))

    [received] = transport.get()

    assert isinstance(received.message, UndecodableMessage)
    assert received.message.body == b"{broken"
    assert received.message.headers.get("type") == "nobody.Knows"


# -- the factory and its options ---------------------------------------------------------------


@pytest.mark.parametrize("dsn", ["memory://", "in-memory://", "memory://default"])
def test_factory_builds_a_transport_with_default_options(
    serializer: JsonSerializer, dsn: str
) -> None:
    transport = create(serializer, dsn)

    assert isinstance(transport, Transport)
    assert transport.serialize is False
    assert transport.redeliver_timeout == DEFAULT_REDELIVER_TIMEOUT
    assert transport.serializer is serializer


def test_factory_gives_every_transport_its_own_queue(serializer: JsonSerializer) -> None:
    first = create(serializer, "memory://")
    second = create(serializer, "memory://")
    first.send(Envelope(OrderPlaced(1)))

    assert second.get() == []
    assert second.message_count() == 0


def test_factory_reads_options_from_the_dsn(serializer: JsonSerializer) -> None:
    transport = create(serializer, "memory://?serialize=TRUE&redeliver_timeout=2.5")

    assert transport.serialize is True
    assert transport.redeliver_timeout == 2.5


def test_explicit_options_override_the_dsn(serializer: JsonSerializer) -> None:
    transport = create(
        serializer, "in-memory://?serialize=true&redeliver_timeout=9", serialize=False
    )

    assert transport.serialize is False
    assert transport.redeliver_timeout == 9.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("No", False),
    ],
)
def test_boolean_options_accept_the_usual_spellings(
    serializer: JsonSerializer, text: str, expected: bool
) -> None:
    assert create(serializer, f"memory://?serialize={text}").serialize is expected
    assert create(serializer, "memory://", serialize=text).serialize is expected


def test_options_accept_typed_values(serializer: JsonSerializer) -> None:
    transport = create(serializer, "memory://", serialize=True, redeliver_timeout=30)

    assert transport.serialize is True
    assert transport.redeliver_timeout == 30.0


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, None])
def test_a_bad_boolean_is_a_configuration_error(serializer: JsonSerializer, value: object) -> None:
    with pytest.raises(ConfigurationError, match="'serialize' must be a boolean"):
        create(serializer, "memory://", serialize=value)


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", 0, True, None])
def test_a_bad_redeliver_timeout_is_a_configuration_error(
    serializer: JsonSerializer, value: object
) -> None:
    with pytest.raises(
        ConfigurationError, match="'redeliver_timeout' must be a number of seconds > 0"
    ):
        create(serializer, "memory://", redeliver_timeout=value)


def test_an_unknown_option_is_named_with_the_known_ones(serializer: JsonSerializer) -> None:
    with pytest.raises(ConfigurationError) as raised:
        create(serializer, "memory://?serialise=true")

    assert "'serialise' (did you mean 'serialize'?)" in str(raised.value)
    assert "for the memory transport memory://?serialise=true;" in str(raised.value)
    assert "known options: serialize, redeliver_timeout" in str(raised.value)


def test_another_scheme_is_a_configuration_error(serializer: JsonSerializer) -> None:
    with pytest.raises(ConfigurationError, match="memory:// and in-memory://"):
        create(serializer, "redis://localhost")


def test_the_constructor_refuses_a_non_positive_timeout(serializer: JsonSerializer) -> None:
    with pytest.raises(ConfigurationError, match="redeliver_timeout"):
        MemoryTransport(serializer, redeliver_timeout=0)


# -- bounded records (issue 9) -------------------------------------------------------------------


def _send_and_settle(transport: MemoryTransport, count: int) -> None:
    for number in range(count):
        transport.send(Envelope(OrderPlaced(number)))
        [received] = transport.get()
        (transport.ack if number % 2 else transport.reject)(received)


def test_the_records_keep_the_latest_history_size_envelopes(serializer: JsonSerializer) -> None:
    transport = create(serializer, "memory://?history_size=5")

    _send_and_settle(transport, 103)

    assert [e.message.order_id for e in transport.sent] == [98, 99, 100, 101, 102]
    assert [e.message.order_id for e in transport.acknowledged] == [93, 95, 97, 99, 101]
    assert [e.message.order_id for e in transport.rejected] == [94, 96, 98, 100, 102]
    assert transport.message_count() == 0


def test_records_are_bounded_by_default(transport: MemoryTransport) -> None:
    _send_and_settle(transport, DEFAULT_HISTORY_SIZE + 50)

    assert len(transport.sent) == DEFAULT_HISTORY_SIZE
    assert len(transport.acknowledged) + len(transport.rejected) <= 2 * DEFAULT_HISTORY_SIZE
    assert transport.sent[-1].message == OrderPlaced(DEFAULT_HISTORY_SIZE + 49)


def test_history_size_zero_keeps_no_records_but_every_message(
    serializer: JsonSerializer,
) -> None:
    transport = create(serializer, "memory://", history_size=0)
    for number in range(10):
        transport.send(Envelope(OrderPlaced(number)))

    assert transport.sent == []
    assert transport.message_count() == 10  # the queue itself is never trimmed
    [received] = transport.get()
    transport.ack(received)
    assert transport.acknowledged == []
    assert transport.message_count() == 9


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_a_bad_history_size_is_a_clear_error(serializer: JsonSerializer, value: str) -> None:
    with pytest.raises(ConfigurationError, match="history_size"):
        create(serializer, f"memory://?history_size={value}")
