"""The memory transport passes the transport contract suite, with and without serialization."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import pytest

from messenger_core.envelope import Envelope
from messenger_core.errors import MessageDecodingError
from messenger_core.serializer import Serializer
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_core.testing import TransportContract, TransportPool, make_contract_serializer
from messenger_core.transports.memory import MemoryQueue, MemoryTransport


class TestMemoryTransportSerializing(TransportContract):
    redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 0.3}
    redelivery_wait = 3.0
    receive_timeout = 2.0

    @pytest.fixture
    def make_transport(self, contract_serializer: Serializer) -> Callable[..., MemoryTransport]:
        queue = MemoryQueue()

        def make(**options: Any) -> MemoryTransport:
            return MemoryTransport(contract_serializer, queue=queue, serialize=True, **options)

        return make


class TestMemoryTransportStoringObjects(TransportContract):
    redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 0.3}
    redelivery_wait = 3.0
    receive_timeout = 2.0
    serializes_messages = False

    @pytest.fixture
    def make_transport(self, contract_serializer: Serializer) -> Callable[..., MemoryTransport]:
        queue = MemoryQueue()

        def make(**options: Any) -> MemoryTransport:
            return MemoryTransport(contract_serializer, queue=queue, serialize=False, **options)

        return make


# -- the suite catches broken transports ---------------------------------------------------------
# Each transport below breaks one promise; the contract test named with it must fail.


class _AckKeepsMessage(MemoryTransport):
    def ack(self, envelope: Envelope) -> None:
        pass


class _RejectReleases(MemoryTransport):
    def reject(self, envelope: Envelope) -> None:
        super().reject(envelope)
        self.send(envelope.without_all(TransportMessageIdStamp))


class _KeepsNonSendableStamps(MemoryTransport):
    def _store_form(self, envelope: Envelope) -> Any:
        return envelope


class _IgnoresDelays(MemoryTransport):
    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        return super().send_batch([e.without_all(DelayStamp) for e in envelopes])


class _DoesNotReserve(MemoryTransport):
    def get(self) -> list[Envelope]:
        return self.all(limit=1)


class _KeepaliveDoesNothing(MemoryTransport):
    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        pass


class _NeverRedelivers(MemoryTransport):
    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.redeliver_timeout = float("inf")


class _RaisesOnPoison(MemoryTransport):
    def _envelope_of(self, id: str, payload: Any) -> Envelope:
        envelope = self.serializer.decode(payload)
        return envelope.with_(TransportMessageIdStamp(id=id))


class _DropsLastOfBatch(MemoryTransport):
    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        return super().send_batch(envelopes[:-1])


class _HidesItsMessageCount(MemoryTransport):
    capabilities = attrs.evolve(MemoryTransport.capabilities, message_count=False)


class _NewestFirstQueue(MemoryQueue):
    def _reserve(self, receiver: object, redeliver_timeout: float) -> Any:
        with self._lock:
            free = [e for e in self._entries.values() if e.reserved_by is None]
            if not free:
                return None
            entry = free[-1]
            entry.reserved_by, entry.reserved_at = receiver, time.monotonic()
            self._reserved[entry.id] = entry
            return entry


class _QuickContract(TransportContract):
    redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 0.2}
    redelivery_wait = 1.5
    receive_timeout = 0.5


def _run_contract_test(
    name: str, transport_class: type[MemoryTransport], queue_class: type[MemoryQueue]
) -> None:
    serializer = make_contract_serializer()
    queue = queue_class()

    def make(**options: Any) -> MemoryTransport:
        return transport_class(serializer, queue=queue, serialize=True, **options)

    pool = TransportPool(make)
    try:
        test = getattr(_QuickContract(), name)
        fixtures = {
            "transport": pool.new(),
            "contract_transports": pool,
            "restart_service": lambda downtime: None,  # nothing to restart in memory
        }
        test(**{each: fixtures[each] for each in inspect.signature(test).parameters})
    finally:
        pool.close_all()


@pytest.mark.parametrize(
    ("test_name", "transport_class", "queue_class", "error"),
    [
        ("test_ack_removes_the_message_for_good", _AckKeepsMessage, MemoryQueue, AssertionError),
        ("test_redelivery_after_a_consumer_died", _AckKeepsMessage, MemoryQueue, AssertionError),
        ("test_reject_removes_the_message_for_good", _RejectReleases, MemoryQueue, AssertionError),
        (
            "test_send_then_get_returns_the_message_with_its_sendable_stamps",
            _KeepsNonSendableStamps,
            MemoryQueue,
            AssertionError,
        ),
        (
            "test_delay_holds_a_message_back_without_blocking_others",
            _IgnoresDelays,
            MemoryQueue,
            AssertionError,
        ),
        (
            "test_a_received_message_is_not_handed_to_another_consumer",
            _DoesNotReserve,
            MemoryQueue,
            AssertionError,
        ),
        (
            "test_concurrent_consumers_receive_every_message_exactly_once",
            _DoesNotReserve,
            MemoryQueue,
            AssertionError,
        ),
        (
            "test_concurrent_consumers_receive_every_message_exactly_once",
            _DropsLastOfBatch,
            MemoryQueue,
            AssertionError,
        ),
        ("test_send_batch_sends_every_message", _DropsLastOfBatch, MemoryQueue, AssertionError),
        (
            "test_keepalive_keeps_a_message_reserved",
            _KeepaliveDoesNothing,
            MemoryQueue,
            AssertionError,
        ),
        ("test_redelivery_after_a_consumer_died", _NeverRedelivers, MemoryQueue, AssertionError),
        (
            "test_poison_message_is_received_as_undecodable_and_does_not_block",
            _RaisesOnPoison,
            MemoryQueue,
            MessageDecodingError,
        ),
        (
            "test_declares_capabilities_and_implements_them",
            _HidesItsMessageCount,
            MemoryQueue,
            AssertionError,
        ),
        (
            "test_fifo_messages_come_out_in_the_order_they_were_sent",
            MemoryTransport,
            _NewestFirstQueue,
            AssertionError,
        ),
    ],
)
def test_the_suite_fails_a_transport_that_breaks_its_promise(
    test_name: str,
    transport_class: type[MemoryTransport],
    queue_class: type[MemoryQueue],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        _run_contract_test(test_name, transport_class, queue_class)


def test_the_suite_passes_the_unbroken_transport_through_the_same_runner() -> None:
    # The runner above would also "catch" a transport if it were itself broken; this shows
    # it does not.
    for name in dir(_QuickContract):
        if name.startswith("test_"):
            _run_contract_test(name, MemoryTransport, MemoryQueue)
