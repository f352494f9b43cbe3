"""Dispatching from async code: ``await messenger.bus.dispatch_async(message)``.

The middleware chain, the senders of the transports and synchronous handlers are blocking
code, so an async application (FastAPI, Starlette, aiohttp) must not call ``bus.dispatch`` on
its event loop. :meth:`MessageBus.dispatch_async <messenger_core.bus.MessageBus.dispatch_async>`
runs the very same dispatch in a thread of a small pool of its own (:data:`DISPATCH_THREADS`
threads, shared by every bus of the process) and awaits it: the loop keeps serving other
requests meanwhile, the result, errors and stamps are those of ``dispatch``, and context
variables of the caller (a request id for logging) are seen by the middleware and handlers.

Async handlers of a message dispatched so run on that thread's private event loop (see
:mod:`messenger_core._awaitables`), not on the caller's: a client bound to the caller's loop
cannot be used by them.

Why threads and not the brokers' async clients (``redis.asyncio``, psycopg's async
connection): the middleware chain, which every dispatch runs, is synchronous, and a send
happens in its middle; an async send would need an async chain. One thread hop per dispatch
costs tens of microseconds (``bench/concurrency.py`` measures it against ``dispatch``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from messenger_core.bus import MessageBus
    from messenger_core.envelope import Envelope
    from messenger_core.stamps import Stamp

__all__ = ["DISPATCH_THREADS", "dispatch_async", "query_async"]

DISPATCH_THREADS = 16
"""Threads dispatching for async callers at most (more callers wait for one of them)."""

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor  # noqa: PLW0603  (one pool per process, made on first use)
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    DISPATCH_THREADS, thread_name_prefix="messenger-dispatch"
                )
    return _executor


async def _in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, function, *args, **kwargs)
    return await loop.run_in_executor(_pool(), call)


async def dispatch_async(bus: MessageBus, message: Any, *stamps: Stamp) -> Envelope:
    """``bus.dispatch(message, *stamps)`` in a dispatch thread, awaited."""
    envelope: Envelope = await _in_thread(bus.dispatch, message, *stamps)
    return envelope


async def query_async(
    bus: MessageBus, message: Any, *stamps: Stamp, returns: type[Any] | None = None
) -> Any:
    """``bus.query(message, *stamps, returns=...)`` in a dispatch thread, awaited."""
    if returns is None:
        return await _in_thread(bus.query, message, *stamps)
    return await _in_thread(bus.query, message, *stamps, returns=returns)
