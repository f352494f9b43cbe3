"""The transport contract's tests of consumers that die or run in parallel, batch send,
undecodable entries and keepalive.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from messenger_core.envelope import Envelope
from messenger_core.testing._contract_support import (
    _BATCH_SIZE,
    _CONCURRENT_CONSUMERS,
    _CONCURRENT_MESSAGES,
    _POLL_INTERVAL,
    _QUIET_PERIOD,
    POISON_BODY,
    ContractBase,
    ContractMessage,
    PoisonMessage,
    TransportPool,
    _assert_nothing,
    _contract_ids,
    _id_of,
    _message,
    _receive,
    _require,
)
from messenger_core.transport import (
    BatchSender,
    KeepaliveReceiver,
    MessageCountAware,
    Transport,
    UndecodableMessage,
)


class RedeliveryContract(ContractBase):
    """Redelivery after a dead consumer, concurrent consumers, batches, poison and keepalive."""

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
