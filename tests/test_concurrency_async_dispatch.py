"""``await bus.dispatch_async(message)``: the dispatch of ``bus.dispatch``, off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import attrs
import pytest

from messenger_core import HandledStamp, HandlerFailedError, Messenger, Query, SentStamp
from messenger_core.bus import QueryError


@attrs.frozen
class Slow:
    seconds: float


@attrs.frozen
class Price(Query[int]):
    sku: str


@attrs.frozen
class Shipped:
    order_id: int


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@pytest.fixture
def messenger() -> Messenger:
    messenger = Messenger({"transports": {"async": "memory://"}}, autoload=False)
    messenger.route(Shipped, "async")
    return messenger


def test_a_blocking_handler_does_not_block_the_event_loop(messenger: Messenger) -> None:
    @messenger.handler
    def slow(message: Slow) -> None:
        time.sleep(message.seconds)

    async def main() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await messenger.bus.dispatch_async(Slow(0.3))
        done.set()
        await task
        return ticks

    # The loop went on ticking while the handler slept in a dispatch thread.
    assert asyncio.run(main()) >= 10


def test_results_errors_and_context_are_those_of_dispatch(messenger: Messenger) -> None:
    threads: list[str] = []

    @messenger.handler
    def price(message: Price) -> int:
        threads.append(threading.current_thread().name)
        return {"apple": 3}[message.sku] if REQUEST_ID.get() == "r-1" else -1

    async def main() -> None:
        REQUEST_ID.set("r-1")
        assert await messenger.bus.query_async(Price("apple")) == 3
        assert await messenger.bus.query_async(Price("apple"), returns=int) == 3
        envelope = await messenger.bus.dispatch_async(Price("apple"))
        assert envelope.last(HandledStamp) is not None
        with pytest.raises(HandlerFailedError):
            await messenger.bus.dispatch_async(Price("pear"))
        with pytest.raises(QueryError):
            await messenger.bus.query_async(Price("apple"), returns=str)

    asyncio.run(main())
    assert all(name.startswith("messenger-dispatch") for name in threads)


def test_a_routed_message_is_sent(messenger: Messenger) -> None:
    async def main() -> None:
        envelopes = await asyncio.gather(
            *(messenger.bus.dispatch_async(Shipped(n)) for n in range(50))
        )
        assert all(e.last(SentStamp) is not None for e in envelopes)

    asyncio.run(main())
    transport = messenger.get_transport("async")
    assert transport.message_count() == 50  # type: ignore[attr-defined]


def test_async_handlers_run_when_dispatched_from_async_code(messenger: Messenger) -> None:
    @messenger.handler
    async def price(message: Price) -> int:
        await asyncio.sleep(0)
        return 7

    async def main() -> int:
        return await messenger.bus.query_async(Price("x"))

    assert asyncio.run(main()) == 7
