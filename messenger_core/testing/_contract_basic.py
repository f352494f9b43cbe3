"""The transport contract's basic tests: capabilities, send/get/ack/reject, order, setup."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from messenger_core.envelope import Envelope
from messenger_core.stamps import (
    BusNameStamp,
    HandledStamp,
    RedeliveryStamp,
    TransportMessageIdStamp,
)
from messenger_core.testing._contract_support import (
    _FIFO_MESSAGES,
    ContractBase,
    ContractMessage,
    TransportPool,
    _assert_nothing,
    _contract_ids,
    _id_of,
    _receive,
    _receive_one,
    _require,
)
from messenger_core.transport import (
    BatchSender,
    KeepaliveReceiver,
    ListableReceiver,
    MessageCountAware,
    QueueReceiver,
    SetupableTransport,
    Transport,
    TransportCapabilities,
)


class BasicContract(ContractBase):
    """Declared capabilities, send, get, ack, reject, FIFO order and setup."""

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
