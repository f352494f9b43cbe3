"""``dispatch_async``'s native path: when it sends on the event loop, and when a thread.

The transports here are in-memory ones given a ``send_async`` (the core's logic, not a broker's:
``plugins/messenger-transport-redis`` and ``-sql`` test it against real servers). Each records
the thread of every call, which tells the native path (the loop's thread, ``send_async``) from
the thread path (a ``messenger-dispatch`` thread, ``send``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from messenger_core import (
    DispatchAfterCurrentBusStamp,
    Envelope,
    HandledStamp,
    MessageBus,
    Messenger,
    SentStamp,
    TransportNamesStamp,
)
from messenger_core._bus_middleware import middleware_context
from messenger_core.errors import TransportError
from messenger_core.middleware import Next
from messenger_core.middleware.logging import LoggingMiddleware
from messenger_core.middleware.stack import build_stack
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import AsyncSender, Sender
from messenger_core.transports.memory import MemoryTransport


@attrs.frozen
class Shipped:
    order_id: int


@attrs.frozen
class Price:
    sku: str


class AsyncMemoryTransport(MemoryTransport):
    """A memory transport that also sends async, recording where each send ran."""

    sends_async = True

    def __init__(self, *args: Any, fail: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def send(self, envelope: Envelope) -> Envelope:
        self.calls.append(("send", threading.current_thread().name))
        if self.fail:
            raise TransportError("the store is full")
        return super().send(envelope)

    async def send_async(self, envelope: Envelope) -> Envelope:
        self.calls.append(("send_async", threading.current_thread().name))
        await asyncio.sleep(0)
        if self.fail:
            raise TransportError("the store is full")
        return super().send(envelope)


class Recording(MemoryTransport):
    """A memory transport without ``send_async``, recording where each send ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str]] = []

    def send(self, envelope: Envelope) -> Envelope:
        self.calls.append(("send", threading.current_thread().name))
        return super().send(envelope)


@pytest.fixture
def messenger() -> Iterator[Messenger]:
    messenger = Messenger(autoload=False)
    yield messenger
    messenger.close()


def _add(messenger: Messenger, name: str, transport: Any) -> Any:
    messenger.add_transport(name, transport)
    return transport


def _native(calls: list[tuple[str, str]]) -> bool:
    return calls == [("send_async", threading.main_thread().name)] * len(calls) and bool(calls)


def test_the_protocol_tells_async_senders() -> None:
    transport = AsyncMemoryTransport(Messenger(autoload=False).serializer())
    assert isinstance(transport, AsyncSender)
    assert isinstance(transport, Sender)
    assert not isinstance(Recording(Messenger(autoload=False).serializer()), AsyncSender)


def test_a_routed_message_is_sent_on_the_loop_as_dispatch_sends_it(
    messenger: Messenger,
) -> None:
    transport = _add(messenger, "async", AsyncMemoryTransport(messenger.serializer()))
    messenger.route(Shipped, "async")

    async def main() -> Envelope:
        return await messenger.bus.dispatch_async(Shipped(1))

    native = asyncio.run(main())
    assert _native(transport.calls)
    synchronous = messenger.bus.dispatch(Shipped(1))
    # The same stamps, in the same order; each its own row id.
    assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]
    assert native.without_all(TransportMessageIdStamp) == synchronous.without_all(
        TransportMessageIdStamp
    )
    assert native.last(TransportMessageIdStamp) is not None
    assert transport.message_count() == 2


def test_stamps_given_and_an_envelope_are_wrapped_as_dispatch_wraps_them(
    messenger: Messenger,
) -> None:
    transport = _add(messenger, "async", AsyncMemoryTransport(messenger.serializer()))
    messenger.route(Shipped, "async")
    stamp = DispatchAfterCurrentBusStamp()

    async def main() -> list[Envelope]:
        return [
            await messenger.bus.dispatch_async(Shipped(1), stamp),
            await messenger.bus.dispatch_async(Envelope(Shipped(2))),
        ]

    with_stamp, envelope = asyncio.run(main())
    assert _native(transport.calls)
    for native, synchronous in zip(
        (with_stamp, envelope),
        (messenger.bus.dispatch(Shipped(1), stamp), messenger.bus.dispatch(Envelope(Shipped(2)))),
        strict=True,
    ):
        assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]


def test_several_transports_are_sent_to_in_turn(messenger: Messenger) -> None:
    first = _add(messenger, "first", AsyncMemoryTransport(messenger.serializer()))
    second = _add(messenger, "second", AsyncMemoryTransport(messenger.serializer()))
    messenger.route(Shipped, "first")

    async def main() -> Envelope:
        return await messenger.bus.dispatch_async(
            Shipped(1), TransportNamesStamp(transport_names=("second", "first"))
        )

    native = asyncio.run(main())
    assert _native(first.calls)
    assert _native(second.calls)
    synchronous = messenger.bus.dispatch(
        Shipped(1), TransportNamesStamp(transport_names=("second", "first"))
    )
    assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]
    assert [s.sender_name for s in native.all(SentStamp)] == ["second", "first"]


def test_a_send_error_is_raised_as_dispatch_raises_it(messenger: Messenger) -> None:
    _add(messenger, "async", AsyncMemoryTransport(messenger.serializer(), fail=True))
    messenger.route(Shipped, "async")

    async def main() -> None:
        await messenger.bus.dispatch_async(Shipped(1))

    with pytest.raises(TransportError, match="the store is full") as native:
        asyncio.run(main())
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Shipped(1))
    assert str(native.value) == str(synchronous.value)


# -- the thread path ---------------------------------------------------------------------------


def _on_dispatch_thread(calls: list[tuple[str, str]]) -> bool:
    return bool(calls) and all(
        kind == "send" and thread.startswith("messenger-dispatch") for kind, thread in calls
    )


def test_a_transport_without_async_sender_is_sent_to_in_a_thread(messenger: Messenger) -> None:
    transport = _add(messenger, "plain", Recording(messenger.serializer()))
    messenger.route(Shipped, "plain")
    asyncio.run(messenger.bus.dispatch_async(Shipped(1)))
    assert _on_dispatch_thread(transport.calls)


def test_one_transport_without_async_sender_takes_the_whole_send_to_a_thread(
    messenger: Messenger,
) -> None:
    fast = _add(messenger, "fast", AsyncMemoryTransport(messenger.serializer()))
    plain = _add(messenger, "plain", Recording(messenger.serializer()))
    messenger.route(Shipped, "fast", "plain")
    asyncio.run(messenger.bus.dispatch_async(Shipped(1)))
    assert _on_dispatch_thread(fast.calls)
    assert _on_dispatch_thread(plain.calls)


def test_a_message_handled_here_is_handled_in_a_thread(messenger: Messenger) -> None:
    threads: list[str] = []

    @messenger.handler
    def price(message: Price) -> int:
        threads.append(threading.current_thread().name)
        return 3

    envelope = asyncio.run(messenger.bus.dispatch_async(Price("apple")))
    assert envelope.last(HandledStamp) is not None
    assert asyncio.run(messenger.bus.query_async(Price("apple"))) == 3
    assert len(threads) == 2
    assert all(t.startswith("messenger-dispatch") for t in threads)


def _bus_with(messenger: Messenger, *user: Any) -> MessageBus:
    """The default bus's stack with ``user`` middleware in its place."""
    name = messenger.config.default_bus
    return MessageBus(name, build_stack(middleware_context(messenger, name), list(user)))


def _unknown(envelope: Envelope, next: Next) -> Envelope:
    return next(envelope)


class OptedIn:
    """A third-party middleware that says it is safe for the native path."""

    async_send_safe = True

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        self.threads.append(threading.current_thread().name)
        return next(envelope)


class BreaksItsWord(OptedIn):
    """Says it is safe, yet sends the message elsewhere."""

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        self.threads.append(threading.current_thread().name)
        return next(envelope.with_(TransportNamesStamp(transport_names=("other",))))


def test_a_middleware_that_did_not_opt_in_takes_the_dispatch_to_a_thread(
    messenger: Messenger,
) -> None:
    transport = _add(messenger, "async", AsyncMemoryTransport(messenger.serializer()))
    messenger.route(Shipped, "async")
    bus = _bus_with(messenger, _unknown)
    asyncio.run(bus.dispatch_async(Shipped(1)))
    assert _on_dispatch_thread(transport.calls)


def test_the_logging_middleware_takes_the_dispatch_to_a_thread(messenger: Messenger) -> None:
    transport = _add(messenger, "async", AsyncMemoryTransport(messenger.serializer()))
    messenger.route(Shipped, "async")
    bus = _bus_with(messenger, LoggingMiddleware())
    asyncio.run(bus.dispatch_async(Shipped(1)))
    assert _on_dispatch_thread(transport.calls)


def test_a_middleware_that_opted_in_runs_on_the_loop(messenger: Messenger) -> None:
    transport = _add(messenger, "async", AsyncMemoryTransport(messenger.serializer()))
    messenger.route(Shipped, "async")
    middleware = OptedIn()
    bus = _bus_with(messenger, middleware)
    asyncio.run(bus.dispatch_async(Shipped(1)))
    assert _native(transport.calls)
    assert middleware.threads == [threading.main_thread().name]


def test_a_middleware_breaking_its_word_still_gets_the_dispatch_of_dispatch(
    messenger: Messenger,
) -> None:
    transport = _add(messenger, "async", AsyncMemoryTransport(messenger.serializer()))
    other = _add(messenger, "other", Recording(messenger.serializer()))
    messenger.route(Shipped, "async")
    bus = _bus_with(messenger, BreaksItsWord())
    envelope = asyncio.run(bus.dispatch_async(Shipped(1)))
    # Nothing was sent on the loop: the thread path sent it once, where dispatch sends it.
    assert transport.calls == []
    assert _on_dispatch_thread(other.calls)
    assert len(other.calls) == 1
    assert [s.sender_name for s in envelope.all(SentStamp)] == ["other"]


def test_inside_a_dispatch_of_the_same_thread_a_delayed_dispatch_goes_to_a_thread(
    messenger: Messenger,
) -> None:
    # An async handler (run on its dispatch's thread) awaiting dispatch_async with
    # DispatchAfterCurrentBusStamp: a dispatch thread, outside any dispatch, sends it at once.
    transport = _add(messenger, "async", AsyncMemoryTransport(messenger.serializer()))
    messenger.route(Shipped, "async")
    counts: list[int] = []

    @messenger.handler
    async def price(message: Price) -> None:
        await messenger.bus.dispatch_async(Shipped(1), DispatchAfterCurrentBusStamp())
        counts.append(transport.message_count())

    messenger.bus.dispatch(Price("apple"))
    assert counts == [1]
    assert _on_dispatch_thread(transport.calls)
