"""DispatchAfterCurrentBusStamp: messages held back until the outermost dispatch succeeded."""

from __future__ import annotations

import threading

import attrs
import pytest

from messenger_core import (
    DelayedMessageHandlingError,
    DispatchAfterCurrentBusStamp,
    HandledStamp,
    HandlerFailedError,
    Messenger,
)

WAIT = 10  # seconds; only reached if the code under test deadlocks


@attrs.frozen
class PlaceOrder:
    order_id: int
    fail: bool = False


@attrs.frozen
class OrderPlaced:
    order_id: int
    fail: bool = False


@attrs.frozen
class SendInvoice:
    order_id: int


@pytest.fixture
def messenger() -> Messenger:
    return Messenger({"buses": {"event.bus": {"allow_no_handlers": True}}}, autoload=False)


def test_a_stamped_message_is_handled_only_after_the_outer_dispatch_returned(
    messenger: Messenger,
) -> None:
    log: list[str] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        envelope = messenger.bus.dispatch(
            OrderPlaced(message.order_id), DispatchAfterCurrentBusStamp()
        )
        # Queued, not handled: nothing ran yet.
        assert envelope.all(HandledStamp) == ()
        log.append("place")

    @messenger.handler
    def placed(message: OrderPlaced) -> None:
        log.append("placed")

    envelope = messenger.bus.dispatch(PlaceOrder(1))

    assert log == ["place", "placed"]
    assert len(envelope.all(HandledStamp)) == 1  # the outer envelope is the outer one's


def test_queued_messages_are_dropped_if_the_outer_dispatch_raises(messenger: Messenger) -> None:
    log: list[str] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        messenger.bus.dispatch(OrderPlaced(message.order_id), DispatchAfterCurrentBusStamp())
        if message.fail:
            raise RuntimeError("payment refused")

    @messenger.handler
    def placed(message: OrderPlaced) -> None:
        log.append(f"placed {message.order_id}")

    with pytest.raises(HandlerFailedError, match="payment refused"):
        messenger.bus.dispatch(PlaceOrder(1, fail=True))
    assert log == []

    # Nothing left over: the next dispatch handles only its own queued message.
    messenger.bus.dispatch(PlaceOrder(2))
    assert log == ["placed 2"]
    assert messenger.root_dispatch.queues == {}
    assert messenger.root_dispatch.running == set()


def test_nested_queued_messages_wait_for_the_outermost_dispatch_across_buses(
    messenger: Messenger,
) -> None:
    log: list[str] = []
    events = messenger.buses["event.bus"]

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        events.dispatch(OrderPlaced(message.order_id), DispatchAfterCurrentBusStamp())
        log.append("place")

    @messenger.handler(bus="event.bus")
    def placed(message: OrderPlaced) -> None:
        log.append("placed")
        messenger.bus.dispatch(SendInvoice(message.order_id), DispatchAfterCurrentBusStamp())
        log.append("placed done")

    @messenger.handler
    def invoice(message: SendInvoice) -> None:
        log.append("invoice")

    messenger.bus.dispatch(PlaceOrder(1))

    assert log == ["place", "placed", "placed done", "invoice"]


def test_an_unstamped_nested_dispatch_is_handled_at_once(messenger: Messenger) -> None:
    log: list[str] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        messenger.bus.dispatch(SendInvoice(message.order_id))
        log.append("place")

    messenger.handler(lambda m: log.append("invoice"), handles=SendInvoice)

    messenger.bus.dispatch(PlaceOrder(1))

    assert log == ["invoice", "place"]


def test_failures_of_queued_messages_are_collected_after_all_of_them_ran(
    messenger: Messenger,
) -> None:
    ran: list[int] = []

    @messenger.handler
    def place(message: PlaceOrder) -> str:
        for order_id, fail in ((1, True), (2, False), (3, True)):
            messenger.bus.dispatch(OrderPlaced(order_id, fail), DispatchAfterCurrentBusStamp())
        return "placed"

    @messenger.handler
    def placed(message: OrderPlaced) -> None:
        ran.append(message.order_id)
        if message.fail:
            raise ValueError(f"order {message.order_id}")

    with pytest.raises(DelayedMessageHandlingError) as caught:
        messenger.bus.dispatch(PlaceOrder(0))

    error = caught.value
    assert ran == [1, 2, 3]
    assert len(error.exceptions) == 2
    assert all(isinstance(e, HandlerFailedError) for e in error.exceptions)
    assert "order 1" in str(error)
    assert "and 1 more" in str(error)
    # The outer dispatch itself succeeded: its envelope is on the error.
    assert [s.result for s in error.envelope.all(HandledStamp)] == ["placed"]
    assert messenger.root_dispatch.queues == {}
    assert messenger.root_dispatch.running == set()


def test_the_outermost_dispatch_with_the_stamp_is_handled_at_once(messenger: Messenger) -> None:
    messenger.handler(lambda m: "handled", handles=OrderPlaced)

    envelope = messenger.bus.dispatch(OrderPlaced(1), DispatchAfterCurrentBusStamp())

    assert [s.result for s in envelope.all(HandledStamp)] == ["handled"]
    assert envelope.all(DispatchAfterCurrentBusStamp) == ()


def test_each_thread_has_its_own_queue(messenger: Messenger) -> None:
    log: list[str] = []
    lock = threading.Lock()
    queued_in_first = threading.Event()
    second_done = threading.Event()
    errors: list[BaseException] = []

    def record(entry: str) -> None:
        with lock:
            log.append(entry)

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        messenger.bus.dispatch(OrderPlaced(message.order_id), DispatchAfterCurrentBusStamp())
        queued_in_first.set()
        # While this dispatch is still running, the other thread dispatches its own messages.
        assert second_done.wait(WAIT)
        record("first outer done")

    @messenger.handler
    def placed(message: OrderPlaced) -> None:
        record(f"placed {message.order_id} in {threading.current_thread().name}")

    def first() -> None:
        try:
            messenger.bus.dispatch(PlaceOrder(1))
        except BaseException as error:
            errors.append(error)

    def second() -> None:
        try:
            assert queued_in_first.wait(WAIT)
            # Not inside any dispatch in this thread: handled at once, not queued behind the
            # first thread's dispatch.
            envelope = messenger.bus.dispatch(OrderPlaced(2), DispatchAfterCurrentBusStamp())
            assert len(envelope.all(HandledStamp)) == 1
        except BaseException as error:
            errors.append(error)
        finally:
            second_done.set()

    threads = [
        threading.Thread(target=first, name="first"),
        threading.Thread(target=second, name="second"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert errors == []
    assert log == ["placed 2 in second", "first outer done", "placed 1 in first"]
    assert messenger.root_dispatch.queues == {}
    assert messenger.root_dispatch.running == set()


def test_a_thread_queueing_inside_its_dispatch_does_not_flush_another_threads_queue(
    messenger: Messenger,
) -> None:
    log: list[str] = []
    lock = threading.Lock()
    both_queued = threading.Barrier(2, timeout=WAIT)
    errors: list[BaseException] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        messenger.bus.dispatch(OrderPlaced(message.order_id), DispatchAfterCurrentBusStamp())
        both_queued.wait()
        if message.fail:
            raise RuntimeError("refused")

    @messenger.handler
    def placed(message: OrderPlaced) -> None:
        with lock:
            log.append(f"placed {message.order_id} in {threading.current_thread().name}")

    def run(order_id: int, fail: bool) -> None:
        try:
            messenger.bus.dispatch(PlaceOrder(order_id, fail))
        except HandlerFailedError:
            pass
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(1, True), name="failing"),
        threading.Thread(target=run, args=(2, False), name="succeeding"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert errors == []
    # The failing thread's queued message is dropped; the other thread's survives and is
    # handled in its own thread.
    assert log == ["placed 2 in succeeding"]
    assert messenger.root_dispatch.queues == {}


def test_an_interrupt_while_draining_leaves_nothing_queued_for_the_next_dispatch(
    messenger: Messenger,
) -> None:
    handled: list[int] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        for number in (1, 2):
            messenger.bus.dispatch(OrderPlaced(number), DispatchAfterCurrentBusStamp())

    @messenger.handler
    def placed(message: OrderPlaced) -> None:
        if message.order_id == 1:
            raise KeyboardInterrupt  # e.g. Ctrl-C while the queued messages run
        handled.append(message.order_id)

    with pytest.raises(KeyboardInterrupt):
        messenger.bus.dispatch(PlaceOrder(1))

    # The interrupted dispatch's leftovers must not run as part of an unrelated one.
    messenger.handler(lambda message: None, handles=SendInvoice)
    messenger.bus.dispatch(SendInvoice(1))
    assert handled == []
    assert messenger.root_dispatch.queues == {}
    assert not messenger.root_dispatch.is_running()
