"""Async handlers: every shape runs its body to completion, or fails so the message comes back.

A message must never count as handled while its handler's body has not run. Until the bus has
an async dispatch, async handlers run on a private event loop of the dispatching thread.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Coroutine, Generator, Iterator
from typing import Any

import attrs
import pytest

from messenger_core import (
    ConfigurationError,
    HandledStamp,
    HandlerFailedError,
    Messenger,
    handler,
)
from messenger_core.handlers import AsyncHandlerError
from messenger_core.transports.memory import MemoryTransport


@attrs.frozen
class GetPrice:
    sku: str


@attrs.frozen
class PlaceOrder:
    order_id: int


@pytest.fixture
def messenger() -> Messenger:
    return Messenger(autoload=False)


@pytest.fixture(autouse=True)
def no_coroutine_left_unawaited() -> Iterator[None]:
    """A coroutine created and dropped unawaited is a body that never ran: fail on its warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*was never awaited", category=RuntimeWarning)
        yield


def results(messenger: Messenger, message: object) -> list[Any]:
    return [s.result for s in messenger.bus.dispatch(message).all(HandledStamp)]


# -- each shape runs to completion ------------------------------------------------------------


def test_an_async_function_runs_to_completion_and_its_result_is_recorded(
    messenger: Messenger,
) -> None:
    ran: list[str] = []

    @messenger.handler
    async def price(message: GetPrice) -> int:
        await asyncio.sleep(0)
        ran.append(message.sku)
        return 42

    # The first dispatch takes the general path, the next ones the one-handler fast path.
    assert results(messenger, GetPrice("a")) == [42]
    assert results(messenger, GetPrice("b")) == [42]
    assert messenger.bus.query(GetPrice("c")) == 42
    assert ran == ["a", "b", "c"]
    assert [d.is_async for d in messenger.handlers] == [True]


def test_an_async_bound_method(messenger: Messenger) -> None:
    class Prices:
        def __init__(self) -> None:
            self.asked: list[str] = []

        async def price(self, message: GetPrice) -> str:
            await asyncio.sleep(0)
            self.asked.append(message.sku)
            return f"price of {message.sku}"

    prices = Prices()
    messenger.handler(prices.price)

    assert messenger.bus.query(GetPrice("x")) == "price of x"
    assert messenger.bus.query(GetPrice("y")) == "price of y"
    assert prices.asked == ["x", "y"]


def test_a_class_with_async_call_registered_as_class_or_instance(messenger: Messenger) -> None:
    calls: list[str] = []

    @messenger.handler
    class OnOrder:
        async def __call__(self, message: PlaceOrder) -> None:
            await asyncio.sleep(0)
            calls.append(f"class {message.order_id}")

    class Pricing:
        async def __call__(self, message: GetPrice) -> int:
            await asyncio.sleep(0)
            return len(message.sku)

    messenger.handler(Pricing())

    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(PlaceOrder(2))
    assert calls == ["class 1", "class 2"]
    assert messenger.bus.query(GetPrice("four")) == 4
    assert all(d.is_async for d in messenger.handlers)


def test_marked_async_methods_of_a_registered_instance(messenger: Messenger) -> None:
    class Shop:
        def __init__(self, currency: str) -> None:
            self.currency = currency

        @handler
        async def price(self, message: GetPrice) -> str:
            await asyncio.sleep(0)
            return f"3 {self.currency}"

    messenger.register_handlers(Shop("EUR"))

    assert messenger.bus.query(GetPrice("apple")) == "3 EUR"


def test_an_async_function_through_functools_partial(messenger: Messenger) -> None:
    async def price(factor: int, message: GetPrice) -> int:
        await asyncio.sleep(0)
        return factor * len(message.sku)

    messenger.handler(handles=GetPrice, name="price")(functools.partial(price, 10))

    assert messenger.bus.query(GetPrice("abc")) == 30


def test_a_sync_handler_returning_a_coroutine_or_an_awaitable_is_awaited(
    messenger: Messenger,
) -> None:
    ran: list[str] = []

    async def later(sku: str) -> str:
        await asyncio.sleep(0)
        ran.append(sku)
        return f"done {sku}"

    def handle_price(message: GetPrice) -> Coroutine[Any, Any, str]:
        return later(message.sku)

    class Ready:
        def __await__(self) -> Generator[Any, None, str]:
            ran.append("awaitable")
            return (yield from asyncio.sleep(0, result="ready").__await__())

    def handle_order(message: PlaceOrder) -> Awaitable[str]:
        return Ready()

    messenger.handler(handle_price)
    messenger.handler(handle_order)

    assert [d.is_async for d in messenger.handlers] == [False, False]
    assert messenger.bus.query(GetPrice("a")) == "done a"
    assert messenger.bus.query(GetPrice("b")) == "done b"  # the fast path awaits it too
    assert messenger.bus.query(PlaceOrder(1)) == "ready"
    assert ran == ["a", "b", "awaitable"]


def test_several_async_handlers_of_one_message_all_run(messenger: Messenger) -> None:
    ran: list[str] = []

    async def first(message: PlaceOrder) -> None:
        await asyncio.sleep(0)
        ran.append("first")

    def second(message: PlaceOrder) -> None:
        ran.append("second")

    async def third(message: PlaceOrder) -> str:
        await asyncio.sleep(0)
        ran.append("third")
        return "third"

    for each in (first, second, third):
        messenger.handler(name=each.__name__)(each)

    envelope = messenger.bus.dispatch(PlaceOrder(1))

    assert ran == ["first", "second", "third"]
    assert [(s.handler_name, s.result) for s in envelope.all(HandledStamp)] == [
        ("first", None),
        ("second", None),
        ("third", "third"),
    ]


# -- failures ---------------------------------------------------------------------------------


def test_an_error_inside_an_async_body_is_a_handler_failure(messenger: Messenger) -> None:
    @messenger.handler
    async def broken(message: PlaceOrder) -> None:
        await asyncio.sleep(0)
        raise ValueError(f"no stock for order {message.order_id}")

    for attempt in (1, 2):  # the general path, then the fast path
        with pytest.raises(HandlerFailedError) as caught:
            messenger.bus.dispatch(PlaceOrder(attempt))
        [error] = caught.value.wrapped_exceptions
        assert isinstance(error, ValueError)
        assert str(error) == f"no stock for order {attempt}"
        assert caught.value.envelope.all(HandledStamp) == ()


def test_a_worker_retries_a_message_whose_async_handler_failed_then_acknowledges_it() -> None:
    messenger = Messenger(
        {
            "failure_transport": "failed",
            "transports": {
                "async": {"dsn": "memory://", "retry_strategy": {"delay": 0, "jitter": 0}},
                "failed": "memory://",
            },
        },
        autoload=False,
    )
    messenger.route(PlaceOrder, "async")
    attempts: list[int] = []

    @messenger.handler
    async def flaky(message: PlaceOrder) -> None:
        await asyncio.sleep(0)
        attempts.append(message.order_id)
        if len(attempts) == 1:
            raise ConnectionError("the stock service is down")

    messenger.bus.dispatch(PlaceOrder(7))
    stats = messenger.worker(["async"]).run(
        limit=2, sleep=0.001, time_limit=30, handle_signals=False
    )

    assert attempts == [7, 7]
    assert (stats.handled, stats.retried, stats.parked) == (1, 1, 0)
    for name in ("async", "failed"):
        transport = messenger.get_transport(name)
        assert isinstance(transport, MemoryTransport)
        assert transport.message_count() == 0


def test_inside_a_running_event_loop_the_handler_fails_instead_of_blocking_it(
    messenger: Messenger,
) -> None:
    ran: list[str] = []

    @messenger.handler
    async def price(message: GetPrice) -> int:
        ran.append("async body")
        return 1

    @messenger.handler
    def order(message: PlaceOrder) -> Coroutine[Any, Any, None]:
        async def body() -> None:
            ran.append("returned coroutine")

        return body()

    async def from_async_code(message: object) -> HandlerFailedError:
        with pytest.raises(HandlerFailedError) as caught:
            messenger.bus.dispatch(message)
        return caught.value

    for message in (GetPrice("a"), PlaceOrder(1)):
        failure = asyncio.run(from_async_code(message))
        [error] = failure.wrapped_exceptions
        assert isinstance(error, AsyncHandlerError)
        assert "asyncio.to_thread(bus.dispatch" in str(error)
        assert "make the handler synchronous" in str(error)
    assert ran == []
    # The advice works: in a thread of its own the dispatch runs the handlers.
    assert asyncio.run(asyncio.to_thread(messenger.bus.query, GetPrice("a"))) == 1
    assert ran == ["async body"]


# -- the private loop -------------------------------------------------------------------------


def test_the_private_loop_is_kept_per_thread_and_is_not_the_threads_event_loop(
    messenger: Messenger,
) -> None:
    @messenger.handler
    async def loop_of(message: GetPrice) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    first = messenger.bus.query(GetPrice("a"))
    second = messenger.bus.query(GetPrice("b"))
    in_thread: list[object] = []

    def in_a_thread() -> None:
        in_thread.append(messenger.bus.query(GetPrice("c")))
        try:
            asyncio.get_event_loop()  # none was set for this thread: an error here
        except RuntimeError as error:
            in_thread.append(error)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()

    assert first is second  # clients bound to the loop survive between messages
    loop, error = in_thread
    assert loop is not first
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert loop.is_closed()  # closed when its thread ended
    assert not first.is_closed()
    assert isinstance(error, RuntimeError)


# -- registration -----------------------------------------------------------------------------


def test_generator_handlers_are_refused_at_registration(messenger: Messenger) -> None:
    def sync_generator(message: PlaceOrder) -> Iterator[None]:
        yield

    async def async_generator(message: PlaceOrder) -> AsyncIterator[None]:
        yield

    class GeneratorCall:
        def __call__(self, message: PlaceOrder) -> Iterator[None]:
            yield

    with pytest.raises(ConfigurationError, match=r"is a generator function .*without yield"):
        messenger.handler(sync_generator)
    with pytest.raises(ConfigurationError, match="is an async generator function"):
        messenger.handler(async_generator)
    with pytest.raises(ConfigurationError, match="is a generator function"):
        messenger.handler(GeneratorCall())
    assert len(messenger.handlers) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_async_handlers_on_a_loop_of_its_own(messenger: Messenger) -> None:
    @messenger.handler
    async def loop_id(message: GetPrice) -> int:
        await asyncio.sleep(0)
        return id(asyncio.get_running_loop())

    in_parent = messenger.bus.query(GetPrice("a"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave at once without running the parent's atexit
        try:
            in_child = messenger.bus.query(GetPrice("b"))
            os.write(write, b"new" if in_child != in_parent else b"same")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as answer:
        assert answer.read() == b"new"
    assert status == 0
    assert messenger.bus.query(GetPrice("c")) == in_parent  # the parent's loop is untouched
