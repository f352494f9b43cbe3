"""Async clients kept per event loop, for transports that send without blocking.

A ``redis.asyncio`` client or a psycopg ``AsyncConnection`` belongs to the event loop it was
connected on: used from another loop it fails. An application may run several loops in one
process (``asyncio.run`` once per test, a loop per thread), so a transport implementing
:class:`~messenger_core.transport.AsyncSender` keeps one client per running loop in a
:class:`PerEventLoop`, which opens it on first use there and closes it when that loop shuts
down (``asyncio.run`` does so on its way out) or when the transport is closed, whichever comes
first.

How a loop's shutdown is noticed: when it opens a client, :class:`PerEventLoop` starts an
async generator that waits at its ``yield``. A loop closes the async generators still
suspended when it shuts down (``loop.shutdown_asyncgens()``, which ``asyncio.run`` calls), and
that generator's ``finally`` closes the client, on its own loop, before the loop closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["PerEventLoop"]

T = TypeVar("T")


class _Entry(Generic[T]):
    """One loop's client: the task opening it, and the generator closing it at shutdown."""

    __slots__ = ("closer", "made")

    made: asyncio.Task[T]

    def __init__(self) -> None:
        self.closer: AsyncGenerator[None, None] | None = None


class PerEventLoop(Generic[T]):
    """One client per running event loop: opened by ``open()`` on first use in a loop, closed
    with ``close_client(client)`` on that loop when it shuts down or :meth:`close` is called.

    Thread-safe: loops in several threads each get their own client.
    """

    def __init__(
        self, open: Callable[[], Awaitable[T]], close_client: Callable[[T], Awaitable[None]]
    ) -> None:
        self._open = open
        self._close_client = close_client
        self._entries: dict[asyncio.AbstractEventLoop, _Entry[T]] = {}
        self._lock = threading.Lock()

    async def get(self) -> T:
        """The running loop's client, opened now if it has none (concurrent callers of one
        loop share one opening). An error opening it is raised, and the next call tries
        again."""
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None:
            with self._lock:
                entry = self._entries.get(loop)
                if entry is None:
                    entry = _Entry()
                    entry.made = loop.create_task(self._start(loop, entry))
                    self._entries[loop] = entry
        try:
            if entry.made.done():
                return entry.made.result()  # the common case: no await, no suspension
            return await asyncio.shield(entry.made)
        except BaseException:
            if entry.made.done():
                self._forget(loop, entry)
            raise

    def discard(self, client: T) -> None:
        """Forget the running loop's ``client`` (it broke) and close it in the background: the
        next :meth:`get` opens a new one."""
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None or not entry.made.done() or entry.made.exception() is not None:
            return
        if entry.made.result() is client:
            self._forget(loop, entry)
            closer = entry.closer
            if closer is not None:
                _close_soon(loop, closer)

    def close(self) -> None:
        """Close every loop's client: at once on the calling thread's running loop and on loops
        running in other threads (scheduled, not awaited); a loop not running closes its own
        when it shuts down or runs again. Later :meth:`get` calls open new ones (the caller
        refuses them once closed)."""
        with self._lock:
            entries, self._entries = self._entries, {}
        for loop, entry in entries.items():
            closer = entry.closer
            if closer is None or loop.is_closed():
                continue
            _close_soon(loop, closer)

    async def _start(self, loop: asyncio.AbstractEventLoop, entry: _Entry[T]) -> T:
        client = await self._open()
        closer = self._closer(loop, entry, client)
        await anext(closer)  # runs to its yield; the loop now closes it at shutdown
        entry.closer = closer
        if self._entries.get(loop) is not entry:  # close() ran meanwhile
            _close_soon(loop, closer)
        return client

    async def _closer(
        self, loop: asyncio.AbstractEventLoop, entry: _Entry[T], client: T
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._forget(loop, entry)
            await self._close_client(client)

    def _forget(self, loop: asyncio.AbstractEventLoop, entry: _Entry[T]) -> None:
        with self._lock:
            if self._entries.get(loop) is entry:
                del self._entries[loop]


def _close_soon(loop: asyncio.AbstractEventLoop, closer: AsyncGenerator[None, None]) -> None:
    """Run ``closer``'s ``finally`` on ``loop`` (from any thread), without waiting for it."""
    # RuntimeError: the loop closed meanwhile (its shutdown ran the closer already).
    with contextlib.suppress(RuntimeError):
        asyncio.run_coroutine_threadsafe(_aclose(closer), loop)


async def _aclose(closer: AsyncGenerator[None, None]) -> None:
    await closer.aclose()  # (a coroutine, which run_coroutine_threadsafe needs)
