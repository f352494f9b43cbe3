"""Async handlers called from synchronous code: run to completion on an event loop.

An ``async def`` handler (or a handler returning an awaitable) runs on an event loop of its
own, one per thread and kept between messages, so that clients an application caches
(connection pools, HTTP sessions) stay bound to one loop. The loop is never the thread's
current event loop: code of the application that uses one is untouched.

A worker consuming with ``--concurrency`` installs one shared loop (:func:`shared_loop`): then
every async handler, whichever thread dispatches its message, runs as a task on that loop, so
that many of them wait at once on one thread.

A time limit (a handler's ``timeout`` option, or a worker's ``--handler-timeout`` given as a
deadline with :func:`deadline`) cancels an async handler that overruns it and fails it with
:class:`HandlerTimeoutError`, which is retried like any other failure.

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
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from messenger_core.errors import MessengerError

__all__ = [
    "AsyncHandlerError",
    "HandlerTimeoutError",
    "async_call",
    "deadline",
    "is_async_callable",
    "run_to_completion",
    "shared_loop",
    "timed_call",
]


class AsyncHandlerError(MessengerError):
    """An async handler was called where its private event loop cannot run it."""


class HandlerTimeoutError(MessengerError):
    """A handler ran longer than its time limit (an async one was cancelled at the limit)."""


_SHARED: asyncio.AbstractEventLoop | None = None
"""The worker's loop that async handlers run on, if one is installed (:func:`shared_loop`)."""


@contextlib.contextmanager
def shared_loop(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Run every async handler on ``loop`` (running in another thread) while in the block."""
    global _SHARED  # noqa: PLW0603  (one worker per process owns it)
    previous, _SHARED = _SHARED, loop
    try:
        yield
    finally:
        _SHARED = previous


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Async handlers called in this thread within the block must end within ``seconds``."""
    previous = getattr(_LOCAL, "deadline", None)
    _LOCAL.deadline = None if seconds is None else time.monotonic() + seconds
    try:
        yield
    finally:
        _LOCAL.deadline = previous


def _time_left(timeout: float | None) -> float | None:
    """The seconds an async handler called now may run: its own limit or the deadline's."""
    until: float | None = getattr(_LOCAL, "deadline", None)
    left = None if until is None else max(until - time.monotonic(), 0.0)
    if timeout is None:
        return left
    return timeout if left is None else min(timeout, left)


async def _limited(awaitable: Awaitable[Any], seconds: float, name: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise HandlerTimeoutError(
            f"handler {name} ran over its time limit ({seconds:.3g}s left) and was cancelled"
        ) from None


def _run(coroutine: Coroutine[Any, Any, Any], name: str, timeout: float | None) -> Any:
    left = _time_left(timeout)
    if left is not None:
        coroutine = _limited(coroutine, left, name)
    loop = _SHARED
    if loop is not None:
        # A task on the worker's loop; this thread (one of the worker's) waits for it.
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
    return _runner().run(coroutine)


def timed_call(target: Callable[[Any], Any], name: str, timeout: float) -> Callable[[Any], Any]:
    """A synchronous handler with a time limit: a thread cannot be interrupted, so an overrun
    is found when it returns, and fails it (its work done; the retry runs it again)."""

    def call(message: Any) -> Any:
        started = time.monotonic()
        result = target(message)
        took = time.monotonic() - started
        if took > timeout:
            raise HandlerTimeoutError(
                f"handler {name} took {took:.3g}s, over its time limit of {timeout:g}s"
            )
        return result

    return call


def is_async_callable(target: Callable[..., Any]) -> bool:
    """Whether calling ``target`` returns a coroutine: an ``async def`` function or method
    (also through ``functools.partial``), or an instance whose ``__call__`` is ``async def``."""
    if inspect.iscoroutinefunction(target):
        return True
    if inspect.isroutine(target) or isinstance(target, functools.partial):
        return False
    return inspect.iscoroutinefunction(type(target).__call__)


def async_call(
    target: Callable[[Any], Any], name: str, timeout: float | None = None
) -> Callable[[Any], Any]:
    """A function running the async callable ``target`` to completion, within ``timeout``
    seconds if given (whether a handler is async is decided once, by
    :func:`messenger_core._fast_path.handler_call`)."""

    def call(message: Any) -> Any:
        _refuse_inside_a_running_loop(name)
        return _run(target(message), name, timeout)

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
    return _run(coroutine, name, None)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _refuse_inside_a_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise AsyncHandlerError(
        f"handler {name} is async and was called from code that runs an event loop, which "
        "it must not block; there use `await bus.dispatch_async(message)` (the dispatch in a "
        "thread, as `asyncio.to_thread(bus.dispatch, message)` does), or make the handler "
        "synchronous"
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
