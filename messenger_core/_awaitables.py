"""Async handlers called from synchronous code: run to completion on a private event loop.

Until the bus has an async dispatch, an ``async def`` handler (or a handler returning an
awaitable) runs on an event loop of its own, one per thread and kept between messages, so that
clients an application caches (connection pools, HTTP sessions) stay bound to one loop. The loop
is never the thread's current event loop: code of the application that uses one is untouched.

A dispatch from code that already runs an event loop cannot block that loop: the handler fails
with :class:`AsyncHandlerError`, so that a received message is retried or parked, never
acknowledged with its handler body not run.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from messenger_core.errors import MessengerError

__all__ = ["AsyncHandlerError", "async_call", "is_async_callable", "run_to_completion"]


class AsyncHandlerError(MessengerError):
    """An async handler was called where its private event loop cannot run it."""


def is_async_callable(target: Callable[..., Any]) -> bool:
    """Whether calling ``target`` returns a coroutine: an ``async def`` function or method
    (also through ``functools.partial``), or an instance whose ``__call__`` is ``async def``."""
    if inspect.iscoroutinefunction(target):
        return True
    if inspect.isroutine(target) or isinstance(target, functools.partial):
        return False
    return inspect.iscoroutinefunction(type(target).__call__)


def async_call(target: Callable[[Any], Any], name: str) -> Callable[[Any], Any]:
    """A function running the async callable ``target`` to completion (whether a handler is
    async is decided once, by :func:`messenger_core._fast_path.handler_call`)."""

    def call(message: Any) -> Any:
        _refuse_inside_a_running_loop(name)
        return _runner().run(target(message))

    return call


def run_to_completion(awaitable: Awaitable[Any], name: str) -> Any:
    """Await what a synchronous handler returned, on this thread's private event loop."""
    coroutine: Coroutine[Any, Any, Any] = (
        awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
    )
    try:
        _refuse_inside_a_running_loop(name)
    except AsyncHandlerError:
        coroutine.close()  # never started: close it rather than warn "never awaited"
        raise
    return _runner().run(coroutine)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _refuse_inside_a_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise AsyncHandlerError(
        f"handler {name} is async and was called from code that runs an event loop, which "
        "it must not block; dispatch from synchronous code (a worker, or "
        "`await asyncio.to_thread(bus.dispatch, message)`) until the bus has an async "
        "dispatch, or make the handler synchronous"
    )


class _Loop:
    """One thread's private runner; closed when its thread ends or the process exits.

    A forked child (a pre-forking process manager) gets a new one: an event loop must not be
    shared across a fork, and the child leaves the parent's alone.
    """

    def __init__(self) -> None:
        # A loop factory keeps the loop private: the thread's current event loop is not set.
        self.runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self.thread = threading.current_thread()
        self.pid = os.getpid()
        _LOOPS.add(self)

    def close(self) -> None:
        if self.pid != os.getpid():
            return
        # A no-op once closed; closing at exit or from __del__ must never raise.
        with contextlib.suppress(Exception):
            self.runner.close()

    def __del__(self) -> None:
        self.close()


_LOOPS: weakref.WeakSet[_Loop] = weakref.WeakSet()
_LOCAL = threading.local()


def _runner() -> asyncio.Runner:
    loop: _Loop | None = getattr(_LOCAL, "loop", None)
    if loop is None or loop.pid != os.getpid():
        loop = _LOCAL.loop = _Loop()
    return loop.runner


@atexit.register
def _close_loops() -> None:
    current = threading.current_thread()
    for loop in list(_LOOPS):
        # A loop of a thread still running may be in use: leave it to that thread.
        if loop.thread is current or not loop.thread.is_alive():
            loop.close()
