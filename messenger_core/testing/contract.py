"""The transport contract suite: the tests every transport, core or plugin, must pass.

A transport's test module subclasses :class:`TransportContract` and provides one fixture,
``make_transport``; the suite then runs every test that the transport's declared
:class:`~messenger_core.transport.TransportCapabilities` call for, and skips the others with
the reason "transport does not declare <flag>"::

    from collections.abc import Mapping
    from typing import Any, ClassVar

    import pytest

    from messenger_core.dsn import Dsn
    from messenger_core.testing import TransportContract
    from messenger_transport_sql import SqlTransportFactory  # the transport under test

    class TestSqliteTransport(TransportContract):
        # Options that make an abandoned message come back soon, how long to wait for it,
        # and how long to poll get() for a message that should arrive.
        redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 1}
        redelivery_wait = 5.0
        receive_timeout = 5.0

        @pytest.fixture
        def make_transport(self, contract_serializer, tmp_path):
            dsn = Dsn.parse(f"sqlite:///{tmp_path / 'queue.db'}?queue_name=contract")

            def make(**options):
                return SqlTransportFactory().create(dsn, options, contract_serializer)

            return make

``make_transport`` returns a callable taking transport options as keyword arguments (they
override the defaults). Every call must build a *new* transport object, with its own
connection, over the *same* queue, and that queue must be fresh (empty) for each test: the
suite uses several such objects as separate consumers (to model a consumer that died, or
consumers in several threads). Transports must use ``contract_serializer``, a JSON serializer
that knows the suite's messages and turns a :class:`PoisonMessage` into a body it cannot
decode. The suite closes every transport it made; ``setup()`` is called on the first one
when the transport declares ``setup``. A transport needing a service (a database, a broker)
should skip (or fail, under ``MESSENGER_REQUIRE_SERVICES=1``) inside ``make_transport`` with
:func:`messenger_core.testing.services.require_service`.

A transport that keeps message objects in memory instead of serializing them (the memory
transport without ``serialize``) sets ``serializes_messages = False``: poison messages cannot
happen there and the poison test is skipped.

The broker-restart test (the idea of Watermill's ``RestartServiceCommand``) needs a way to
restart the transport's server. A subclass whose transports talk to a server the tests started
themselves (on a spare port: never restart a shared service) overrides the fixture
``restart_service`` to return a callable ``restart(downtime)`` that stops the server, waits
``downtime`` seconds and starts it again, returning once it accepts connections. The default
fixture returns ``None`` and the test is skipped ("the transport's tests give no way to restart
its server"). The test sends messages, restarts the server while a consumer keeps calling
``get()`` and ``ack()`` in a thread, and asserts that no call raised, every message arrived
(at least once: one whose acknowledgement was lost with the connection may come again) and
the consumer still receives new messages afterwards.

Run the suite with pytest as usual; each test's name says which promise it checks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import attrs
import pytest

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import (
    BusNameStamp,
    DelayStamp,
    HandledStamp,
    RedeliveryStamp,
    TransportMessageIdStamp,
)
from messenger_core.transport import (
    BatchSender,
    KeepaliveReceiver,
    ListableReceiver,
    MessageCountAware,
    QueueReceiver,
    Receiver,
    SetupableTransport,
    Transport,
    TransportCapabilities,
    TransportMessage,
    UndecodableMessage,
)

__all__ = [
    "POISON_BODY",
    "ContractMessage",
    "PoisonMessage",
    "PoisonInjectingSerializer",
    "TransportContract",
    "TransportPool",
    "make_contract_serializer",
]

POISON_BODY = b"{not json"
"""The body a :class:`PoisonMessage` is sent with: no JSON serializer can decode it."""

_POLL_INTERVAL = 0.02
"""Seconds between two ``get()`` calls while polling."""
_QUIET_PERIOD = 0.3
"""Seconds during which a consumer must receive nothing to show a message is not available."""
_CONCURRENT_MESSAGES = 200
_CONCURRENT_CONSUMERS = 4
_BATCH_SIZE = 50
_FIFO_MESSAGES = 20
_RESTART_DOWNTIME = 2.0
"""Seconds the server stays down in the broker-restart test."""
_RESTART_MESSAGES = 30


@attrs.frozen
class ContractMessage:
    """The message the suite sends: an ``id`` to track it by and some text."""

    id: int
    text: str


@attrs.frozen
class PoisonMessage:
    """Sent through ``contract_serializer``, this becomes a message that cannot be decoded."""

    note: str = "poison"


class PoisonInjectingSerializer:
    """Wraps a serializer so that a :class:`PoisonMessage` is encoded as an undecodable body.

    The poison keeps the headers (message type, stamps) of a :class:`ContractMessage`, so a
    transport cannot tell it apart until its serializer tries to decode it.
    """

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner

    def encode(self, envelope: Envelope) -> TransportMessage:
        """Encode with the wrapped serializer; a poison message gets :data:`POISON_BODY`."""
        if isinstance(envelope.message, PoisonMessage):
            decoy = self.inner.encode(Envelope(ContractMessage(-1, "poison"), envelope.stamps))
            return attrs.evolve(decoy, body=POISON_BODY)
        return self.inner.encode(envelope)

    def decode(self, message: TransportMessage) -> Envelope:
        """Decode with the wrapped serializer."""
        return self.inner.decode(message)


def make_contract_serializer() -> Serializer:
    """The JSON serializer knowing :class:`ContractMessage`, turning poison into bad bodies."""
    registry = MessageTypeRegistry()
    registry.register(ContractMessage)
    return PoisonInjectingSerializer(JsonSerializer(registry))


class TransportPool:
    """Builds transports with ``make_transport`` and closes them all at the end of a test.

    Thread-safe: consumer threads build their own transports through it.
    """

    def __init__(self, make: Callable[..., Transport]) -> None:
        self._make = make
        self._open: list[Transport] = []
        self._lock = threading.Lock()

    def new(self, **options: Any) -> Transport:
        """A new transport (a new consumer) over the test's queue."""
        transport = self._make(**options)
        with self._lock:
            self._open.append(transport)
        return transport

    def close(self, transport: Transport) -> None:
        """Close ``transport`` now (a consumer that goes away); it is not closed again."""
        with self._lock:
            self._open = [each for each in self._open if each is not transport]
        transport.close()

    def close_all(self) -> None:
        """Close every transport still open, newest first; raise the first error, if any."""
        with self._lock:
            transports, self._open = self._open, []
        errors: list[BaseException] = []
        for transport in reversed(transports):
            try:
                transport.close()
            except Exception as error:  # close the others anyway
                errors.append(error)
        if errors:
            raise errors[0]


def _require(transport: Transport, flag: str) -> None:
    if not getattr(type(transport).capabilities, flag):
        pytest.skip(f"transport does not declare {flag}")


def _message(envelope: Envelope) -> Any:
    return envelope.message


def _id_of(envelope: Envelope) -> str:
    stamp = envelope.last(TransportMessageIdStamp)
    assert stamp is not None, f"received envelope has no TransportMessageIdStamp: {envelope!r}"
    return stamp.id


def _receive(receiver: Receiver, count: int, timeout: float) -> list[Envelope]:
    """Poll ``receiver`` until ``count`` envelopes came or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    received: list[Envelope] = []
    while True:
        got = list(receiver.get())
        received.extend(got)
        if len(received) >= count or time.monotonic() >= deadline:
            return received
        if not got:
            time.sleep(_POLL_INTERVAL)


def _receive_one(receiver: Receiver, timeout: float) -> Envelope:
    received = _receive(receiver, 1, timeout)
    assert received, f"no message received within {timeout} s"
    assert len(received) == 1, f"expected one message, got {len(received)}: {received!r}"
    return received[0]


def _assert_nothing(receiver: Receiver, seconds: float = _QUIET_PERIOD, why: str = "") -> None:
    """``receiver`` receives nothing for ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        received = list(receiver.get())
        assert not received, f"expected no message{why}, got {received!r}"
        if time.monotonic() >= deadline:
            return
        time.sleep(_POLL_INTERVAL)


def _contract_ids(envelopes: list[Envelope]) -> list[int]:
    ids = []
    for envelope in envelopes:
        assert isinstance(envelope.message, ContractMessage), envelope
        ids.append(envelope.message.id)
    return ids


class TransportContract:
    """Base class of a transport's contract tests; see the module documentation.

    Subclasses provide the ``make_transport`` fixture and may override the class variables.
    """

    redelivery_options: ClassVar[Mapping[str, Any]] = {}
    """Options that make a message whose consumer died come back soon."""
    redelivery_wait: ClassVar[float] = 5.0
    """Maximum seconds to wait for that redelivery."""
    receive_timeout: ClassVar[float] = 5.0
    """Maximum seconds the tests poll ``get()`` for a message that should arrive."""
    serializes_messages: ClassVar[bool] = True
    """Whether messages go through the serializer (false only for in-process storage)."""
    restart_wait: ClassVar[float] = 60.0
    """Maximum seconds the broker-restart test waits for every message after the restart."""

    # -- fixtures --------------------------------------------------------------------------
    @pytest.fixture
    def contract_serializer(self) -> Serializer:
        """The serializer transports under test use: see :func:`make_contract_serializer`."""
        return make_contract_serializer()

    @pytest.fixture
    def contract_transports(
        self, make_transport: Callable[..., Transport]
    ) -> Iterator[TransportPool]:
        """Every transport a test builds, closed when it ends."""
        pool = TransportPool(make_transport)
        yield pool
        pool.close_all()

    @pytest.fixture
    def restart_service(self) -> Callable[[float], None] | None:
        """How to restart the server the transports talk to: a callable taking the downtime
        in seconds (stop, wait, start, return once it accepts connections), or ``None`` when
        the tests cannot restart it (the default: the broker-restart test is skipped)."""
        return None

    @pytest.fixture
    def transport(self, contract_transports: TransportPool) -> Transport:
        """A transport with default options, set up if it can be."""
        transport = contract_transports.new()
        if type(transport).capabilities.setup:
            assert isinstance(transport, SetupableTransport)
            transport.setup()
        return transport

    # -- what the transport declares -------------------------------------------------------
    def test_declares_capabilities_and_implements_them(self, transport: Transport) -> None:
        capabilities = type(transport).capabilities
        assert isinstance(capabilities, TransportCapabilities)
        assert isinstance(transport, Transport)
        for flag, protocol in (
            ("message_count", MessageCountAware),
            ("listing", ListableReceiver),
            ("keepalive", KeepaliveReceiver),
            ("batch_send", BatchSender),
            ("setup", SetupableTransport),
            ("queues", QueueReceiver),
        ):
            declared = getattr(capabilities, flag)
            implemented = isinstance(transport, protocol)
            assert declared == implemented, (
                f"capabilities.{flag} is {declared} but the transport "
                f"{'implements' if implemented else 'does not implement'} {protocol.__name__}"
            )

    # -- send, get, ack, reject ------------------------------------------------------------
    def test_send_then_get_returns_the_message_with_its_sendable_stamps(
        self, transport: Transport
    ) -> None:
        bus = BusNameStamp(bus_name="contract.bus")
        redelivery = RedeliveryStamp(
            retry_count=2, redelivered_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        )
        sent = transport.send(
            Envelope(
                ContractMessage(1, "hello ✓"),
                [bus, redelivery, HandledStamp(handler_name="contract.handler", result="done")],
            )
        )
        assert sent.message == ContractMessage(1, "hello ✓")

        received = _receive_one(transport, self.receive_timeout)
        assert received.message == ContractMessage(1, "hello ✓")
        assert len(received.all(TransportMessageIdStamp)) == 1
        sent_id = sent.last(TransportMessageIdStamp)
        if sent_id is not None:
            assert _id_of(received) == sent_id.id
        assert received.all(BusNameStamp) == (bus,)
        assert received.all(RedeliveryStamp) == (redelivery,)
        assert received.all(HandledStamp) == (), "a NonSendableStamp travelled"
        transport.ack(received)

    def test_get_on_an_empty_queue_returns_nothing(self, transport: Transport) -> None:
        assert list(transport.get()) == []

    def test_a_received_message_is_not_handed_to_another_consumer(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        transport.send(Envelope(ContractMessage(1, "reserved")))
        received = _receive_one(transport, self.receive_timeout)
        other = contract_transports.new()
        _assert_nothing(other, why=" while another consumer holds the message")
        transport.ack(received)
        _assert_nothing(other, seconds=0, why=" after the message was acknowledged")

    def test_ack_removes_the_message_for_good(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        self._check_removed_for_good(transport, contract_transports, transport.ack)

    def test_reject_removes_the_message_for_good(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        self._check_removed_for_good(transport, contract_transports, transport.reject)

    def _check_removed_for_good(
        self,
        transport: Transport,
        pool: TransportPool,
        finish: Callable[[Envelope], None],
    ) -> None:
        transport.send(Envelope(ContractMessage(1, "finished")))
        first = _receive_one(transport, self.receive_timeout)
        finish(first)
        # The queue goes on with the next message, and only with that one.
        transport.send(Envelope(ContractMessage(2, "next")))
        following = _receive_one(transport, self.receive_timeout)
        assert following.message == ContractMessage(2, "next")
        transport.ack(following)
        other = pool.new(**self.redelivery_options)
        _assert_nothing(transport, why=" from the finishing consumer")
        _assert_nothing(other, seconds=0, why=" from another consumer")
        if type(transport).capabilities.message_count:
            assert isinstance(transport, MessageCountAware)
            assert transport.message_count() == 0
        if type(transport).capabilities.listing:
            assert isinstance(transport, ListableReceiver)
            assert transport.find(_id_of(first)) is None

    # -- ordering and delays ---------------------------------------------------------------
    def test_fifo_messages_come_out_in_the_order_they_were_sent(self, transport: Transport) -> None:
        _require(transport, "fifo")
        for number in range(_FIFO_MESSAGES):
            transport.send(Envelope(ContractMessage(number, f"message {number}")))
        received: list[Envelope] = []
        while len(received) < _FIFO_MESSAGES:
            got = _receive(transport, 1, self.receive_timeout)
            if not got:
                break
            for envelope in got:
                received.append(envelope)
                transport.ack(envelope)
        assert _contract_ids(received) == list(range(_FIFO_MESSAGES))

    def test_delay_holds_a_message_back_without_blocking_others(self, transport: Transport) -> None:
        _require(transport, "delay")
        before_send = time.monotonic()
        transport.send(Envelope(ContractMessage(1, "delayed"), [DelayStamp(delay_ms=1500)]))
        transport.send(Envelope(ContractMessage(2, "now")))

        immediate = _receive_one(transport, self.receive_timeout)
        assert immediate.message == ContractMessage(2, "now"), "the delayed message came first"
        transport.ack(immediate)
        # Half a second of slack for clocks of a server that decides availability.
        _assert_nothing(
            transport,
            seconds=max(0.0, before_send + 1.0 - time.monotonic()),
            why=" before the delay (1.5 s) ran out",
        )
        delayed = _receive_one(transport, self.receive_timeout + 1.5)
        assert delayed.message == ContractMessage(1, "delayed")
        transport.ack(delayed)

    # -- counting and listing --------------------------------------------------------------
    def test_message_count_counts_waiting_messages(self, transport: Transport) -> None:
        _require(transport, "message_count")
        assert isinstance(transport, MessageCountAware)
        assert transport.message_count() == 0
        for number in range(3):
            transport.send(Envelope(ContractMessage(number, "counted")))
        assert transport.message_count() == 3
        for envelope in _receive(transport, 3, self.receive_timeout):
            transport.ack(envelope)
        assert transport.message_count() == 0
        transport.send(Envelope(ContractMessage(3, "counted")))
        assert transport.message_count() == 1
        transport.reject(_receive_one(transport, self.receive_timeout))
        assert transport.message_count() == 0

    def test_listing_all_and_find(self, transport: Transport) -> None:
        _require(transport, "listing")
        assert isinstance(transport, ListableReceiver)
        assert list(transport.all()) == []
        gone = transport.send(Envelope(ContractMessage(0, "acknowledged")))
        transport.ack(_receive_one(transport, self.receive_timeout))
        for number in range(1, 4):
            transport.send(Envelope(ContractMessage(number, "listed")))

        listed = list(transport.all())
        assert _contract_ids(listed) == [1, 2, 3]
        ids = [_id_of(envelope) for envelope in listed]
        assert len(set(ids)) == 3
        assert _contract_ids(list(transport.all(limit=2))) == [1, 2]

        found = transport.find(ids[1])
        assert found is not None
        assert found.message == ContractMessage(2, "listed")
        assert _id_of(found) == ids[1]
        gone_id = gone.last(TransportMessageIdStamp)
        if gone_id is not None:
            assert transport.find(gone_id.id) is None, "found an acknowledged message"

        # Listing and finding do not reserve: all three can still be received.
        received = _receive(transport, 3, self.receive_timeout)
        assert sorted(_contract_ids(received)) == [1, 2, 3]
        for envelope in received:
            transport.ack(envelope)
        assert transport.find(ids[0]) is None, "found an acknowledged message"
        assert list(transport.all()) == []

    # -- consumers that die, consumers in parallel -----------------------------------------
    def test_redelivery_after_a_consumer_died(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        _require(transport, "redelivery")
        for number, text in enumerate(("acknowledged", "rejected", "abandoned")):
            transport.send(Envelope(ContractMessage(number, text)))
        dying = contract_transports.new(**self.redelivery_options)
        reserving_from = time.monotonic()
        held = {_message(e).text: e for e in _receive(dying, 3, self.receive_timeout)}
        assert sorted(held) == ["abandoned", "acknowledged", "rejected"]
        dying.ack(held["acknowledged"])
        dying.reject(held["rejected"])
        contract_transports.close(dying)  # without acknowledging "abandoned"

        survivor = contract_transports.new(**self.redelivery_options)
        redelivered = _receive(survivor, 1, self.redelivery_wait)
        took = time.monotonic() - reserving_from  # at least the redelivery timeout
        assert redelivered, (
            f"the abandoned message did not come back within {self.redelivery_wait} s"
        )
        assert [_message(e) for e in redelivered] == [ContractMessage(2, "abandoned")], (
            "an acknowledged or rejected message came back"
        )
        survivor.ack(redelivered[0])

        # Had the ack not removed it, it would come back after about the same time.
        watcher = contract_transports.new(**self.redelivery_options)
        _assert_nothing(
            watcher,
            seconds=min(self.redelivery_wait, took + _QUIET_PERIOD),
            why=" after the redelivered message was acknowledged",
        )

    def test_concurrent_consumers_receive_every_message_exactly_once(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        _require(transport, "concurrent_consumers")
        envelopes = [
            Envelope(ContractMessage(number, f"message {number}"))
            for number in range(_CONCURRENT_MESSAGES)
        ]
        if type(transport).capabilities.batch_send:
            assert isinstance(transport, BatchSender)
            transport.send_batch(envelopes)
        else:
            for envelope in envelopes:
                transport.send(envelope)

        received: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        done = threading.Event()
        # Consumers stop once every message came, or when none came for receive_timeout.
        last_progress = [time.monotonic()]

        def consume() -> None:
            try:
                # Built in the thread: some connections must stay in the thread that made them.
                consumer = contract_transports.new()
                try:
                    while not done.is_set():
                        got = list(consumer.get())
                        if got:  # hold two at once: what is in flight must stay reserved
                            got += consumer.get()
                        for envelope in got:
                            consumer.ack(envelope)
                            with lock:
                                received.append(_message(envelope).id)
                                last_progress[0] = time.monotonic()
                                if len(received) >= _CONCURRENT_MESSAGES:
                                    done.set()
                        if not got:
                            if time.monotonic() - last_progress[0] > self.receive_timeout:
                                break
                            time.sleep(_POLL_INTERVAL)
                finally:
                    contract_transports.close(consumer)
            except BaseException as error:
                errors.append(error)
                done.set()

        threads = [
            threading.Thread(target=consume, name=f"contract-consumer-{number}")
            for number in range(_CONCURRENT_CONSUMERS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        counts = Counter(received)
        duplicates = sorted(id for id, times in counts.items() if times > 1)
        missing = sorted(set(range(_CONCURRENT_MESSAGES)) - set(received))
        assert not duplicates, f"received more than once: {duplicates}"
        assert not missing, f"never received: {missing}"
        _assert_nothing(transport, seconds=0)

    # -- batches, poison -------------------------------------------------------------------
    def test_send_batch_sends_every_message(self, transport: Transport) -> None:
        _require(transport, "batch_send")
        assert isinstance(transport, BatchSender)
        sent = transport.send_batch(
            [Envelope(ContractMessage(number, "batched")) for number in range(_BATCH_SIZE)]
        )
        assert [_message(e) for e in sent] == [
            ContractMessage(number, "batched") for number in range(_BATCH_SIZE)
        ]
        received = _receive(transport, _BATCH_SIZE, self.receive_timeout)
        for envelope in received:
            transport.ack(envelope)
        assert sorted(_contract_ids(received)) == list(range(_BATCH_SIZE))
        assert len({_id_of(envelope) for envelope in received}) == _BATCH_SIZE

    def test_poison_message_is_received_as_undecodable_and_does_not_block(
        self, transport: Transport
    ) -> None:
        if not self.serializes_messages:
            pytest.skip("transport does not serialize messages")
        transport.send(Envelope(PoisonMessage("acknowledged")))
        transport.send(Envelope(PoisonMessage("rejected")))
        transport.send(Envelope(ContractMessage(1, "good")))

        received = _receive(transport, 3, self.receive_timeout)
        poison = [e for e in received if isinstance(e.message, UndecodableMessage)]
        good = [e for e in received if not isinstance(e.message, UndecodableMessage)]
        assert not any(isinstance(e.message, PoisonMessage) for e in received), (
            "the transport did not use its serializer; set serializes_messages = False"
        )
        assert len(poison) == 2, f"expected two undecodable messages, got {received!r}"
        assert [_message(e) for e in good] == [ContractMessage(1, "good")]
        for envelope in poison:
            message = envelope.message
            assert message.body == POISON_BODY
            assert message.reason
            _id_of(envelope)
        transport.ack(poison[0])
        transport.reject(poison[1])
        transport.ack(good[0])
        _assert_nothing(transport, seconds=0)
        if type(transport).capabilities.message_count:
            assert isinstance(transport, MessageCountAware)
            assert transport.message_count() == 0

    # -- setup, keepalive ------------------------------------------------------------------
    def test_setup_is_idempotent(self, transport: Transport) -> None:
        _require(transport, "setup")
        assert isinstance(transport, SetupableTransport)
        transport.setup()
        transport.setup()
        transport.send(Envelope(ContractMessage(1, "after setup")))
        received = _receive_one(transport, self.receive_timeout)
        assert received.message == ContractMessage(1, "after setup")
        transport.ack(received)

    def test_keepalive_keeps_a_message_reserved(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        _require(transport, "keepalive")
        consumer = contract_transports.new(**self.redelivery_options)
        assert isinstance(consumer, KeepaliveReceiver)
        transport.send(Envelope(ContractMessage(1, "kept alive")))
        transport.send(Envelope(ContractMessage(2, "abandoned")))
        held = _receive(consumer, 2, self.receive_timeout)
        assert len(held) == 2, f"expected two messages, got {held!r}"
        # The first one received was reserved first: keeping it alive while the second one's
        # reservation runs out shows that keepalive extends a reservation.
        kept, abandoned = held
        consumer.keepalive(kept)
        consumer.keepalive(kept, 0.1)  # "I will call again within 0.1 s"

        if not type(transport).capabilities.redelivery:
            consumer.ack(kept)
            consumer.ack(abandoned)
            return
        other = contract_transports.new(**self.redelivery_options)
        deadline = time.monotonic() + self.redelivery_wait
        redelivered: list[Envelope] = []
        while not redelivered and time.monotonic() < deadline:
            consumer.keepalive(kept)
            redelivered = list(other.get())
            time.sleep(_POLL_INTERVAL)
        assert redelivered, (
            f"the abandoned message did not come back within {self.redelivery_wait} s"
        )
        assert [_message(e) for e in redelivered] == [_message(abandoned)], (
            "the message kept alive was redelivered"
        )
        other.ack(redelivered[0])
        quiet_until = time.monotonic() + _QUIET_PERIOD
        while time.monotonic() < quiet_until:
            consumer.keepalive(kept)
            assert list(other.get()) == [], "the message kept alive was redelivered"
            time.sleep(_POLL_INTERVAL)
        consumer.ack(kept)

    # -- the server restarts ---------------------------------------------------------------
    def test_a_consumer_carries_on_after_the_server_restarts(
        self,
        transport: Transport,
        contract_transports: TransportPool,
        restart_service: Callable[[float], None] | None,
    ) -> None:
        if restart_service is None:
            pytest.skip("the transport's tests give no way to restart its server")
        before = _RESTART_MESSAGES // 3
        for number in range(before):
            transport.send(Envelope(ContractMessage(number, "before the restart")))

        received: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        stop = threading.Event()

        def consume() -> None:
            # The consumer never stops calling get() and ack(), as a worker would: neither
            # may raise because the server went away for a moment.
            consumer = contract_transports.new(**self.redelivery_options)
            while not stop.is_set():
                try:
                    got = list(consumer.get())
                    for envelope in got:
                        consumer.ack(envelope)
                        with lock:
                            received.append(_message(envelope).id)
                        time.sleep(_POLL_INTERVAL)  # some work: the restart finds it busy
                except BaseException as error:
                    errors.append(error)
                    return
                if not got:
                    time.sleep(_POLL_INTERVAL)

        thread = threading.Thread(target=consume, name="contract-restart-consumer")
        thread.start()
        try:
            deadline = time.monotonic() + self.receive_timeout
            while len(received) < before // 2 and time.monotonic() < deadline and not errors:
                time.sleep(_POLL_INTERVAL)
            assert received, f"nothing was received within {self.receive_timeout} s"
            restart_service(_RESTART_DOWNTIME)
            # The producer's connection broke too: sending must reconnect.
            for number in range(before, _RESTART_MESSAGES):
                transport.send(Envelope(ContractMessage(number, "after the restart")))
            deadline = time.monotonic() + self.restart_wait
            while time.monotonic() < deadline and not errors:
                with lock:
                    if set(received) >= set(range(_RESTART_MESSAGES)):
                        break
                time.sleep(_POLL_INTERVAL)
        finally:
            stop.set()
            thread.join()
        if errors:
            raise AssertionError(
                f"the consumer failed after the server restarted: {errors[0]!r}"
            ) from errors[0]
        missing = sorted(set(range(_RESTART_MESSAGES)) - set(received))
        assert not missing, (
            f"never received within {self.restart_wait} s of the restart: {missing} "
            f"(received: {sorted(received)})"
        )
