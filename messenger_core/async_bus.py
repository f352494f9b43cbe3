"""Dispatching from async code: ``await messenger.bus.dispatch_async(message)``.

The middleware chain, most senders and synchronous handlers are blocking code, so an async
application (FastAPI, Starlette, aiohttp) must not call ``bus.dispatch`` on its event loop.
:meth:`MessageBus.dispatch_async <messenger_core.bus.MessageBus.dispatch_async>` takes one of
two paths, with the same result, errors and stamps as ``dispatch`` either way:

**The native path** (no thread): a message routed to transports that all have an async client
(:class:`~messenger_core.transport.AsyncSender` with ``sends_async``: Redis, PostgreSQL,
RabbitMQ) is sent with those clients, awaited on the caller's loop. The middleware chain stays
synchronous: it runs on the loop, in a copy of the bus's chains whose send step records what it
would send (the envelope and its transports) instead of sending, and its step after the send
(handling) is cut off. Once the chain returned, the envelope is sent to each transport in turn with
``await sender.send_async(...)``, exactly as the send step would have sent it (the same
``SentStamp`` first, each transport given what the previous one returned), and the last
envelope is returned. That is exact only when the chain cannot tell the difference, so the
native path is taken when every condition holds, checked before the chain runs:

- every middleware ahead of the send step says ``async_send_safe``
  (:class:`~messenger_core.middleware.AsyncSendSafeMiddleware`): it never blocks, does not
  change where the message goes, does nothing after the send that needs it done, and returns
  what the rest of the chain returned. The built-in middleware do (not ``logging``, which logs
  the send's outcome), and the dispatch-after-current-bus one only outside a dispatch of the
  same thread; a third-party middleware opts in with the attribute;
- the bus has exactly one built-in send step, and the message (with its stamps) is routed,
  by the router or a ``TransportNamesStamp``, to one or more transports that all send async;
  a message handled here (no route) or received (``ReceivedStamp``) is not.

Should the chain still not end in the deferred send (a contract broken), nothing was sent
yet: the dispatch then runs in a thread after all. The transports' objects are looked up on
the loop, which builds one on its first use (transport factories do not connect: transports
connect on first use).

Why this design rather than an async middleware chain: middleware are synchronous callables
(a contract third-party middleware rely on), and ``dispatch`` must not pay for async support.
The deferring chains are built once per bus (:class:`_NativePlan`, beside the bus's own, which
stay as they were), so a native dispatch costs one run of the synchronous chain on the loop
(microseconds, no I/O) plus the awaited sends; and the sends' errors are those of ``send``,
raised from ``send_async``, which no built-in middleware would have caught or changed.

A ``dispatch_async`` cancelled while it awaits may or may not have sent its message, on either
path (a dispatch thread carries on after its caller is cancelled; an async send stops where it
is).

**The thread path**: anything else, and every ``query_async``, runs the very same
``bus.dispatch`` in a thread of a small pool (:data:`DISPATCH_THREADS` threads, shared by every
bus of the process) and awaits it. Context variables of the caller (a request id for logging)
are seen by the middleware and handlers either way. Async handlers of a message dispatched so
run on that thread's private event loop (see :mod:`messenger_core._awaitables`), not on the
caller's: a client bound to the caller's loop cannot be used by them. A thread hop costs tens of
microseconds; ``bench/concurrency.py`` measures both paths against ``dispatch``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeGuard

from messenger_core import _fast_path
from messenger_core.envelope import Envelope, new_envelope
from messenger_core.middleware import AsyncSendSafeMiddleware, Middleware, Next
from messenger_core.middleware.send import SendMessageMiddleware
from messenger_core.transport import AsyncSender

if TYPE_CHECKING:
    from messenger_core.bus import MessageBus
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
    """``bus.dispatch(message, *stamps)``, awaited: natively when it can be, else in a
    dispatch thread (see the module documentation)."""
    plan = _plan_of(bus)
    if plan is not None:
        sent = await plan.dispatch(message, stamps)
        if sent is not None:
            return sent
    envelope: Envelope = await _in_thread(bus.dispatch, message, *stamps)
    return envelope


async def query_async(
    bus: MessageBus, message: Any, *stamps: Stamp, returns: type[Any] | None = None
) -> Any:
    """``bus.query(message, *stamps, returns=...)`` in a dispatch thread, awaited (a query is
    handled here, synchronously: never the native path)."""
    if returns is None:
        return await _in_thread(bus.query, message, *stamps)
    return await _in_thread(bus.query, message, *stamps, returns=returns)


# -- the native path ---------------------------------------------------------------------------


class _NotNativeError(Exception):
    """Raised in the deferring chain when the dispatch cannot be native after all."""


class _Deferred:
    """What one native dispatch's send step recorded: the envelope and where it goes."""

    __slots__ = ("envelope", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.envelope: Envelope | None = None


_DEFERRED: ContextVar[_Deferred | None] = ContextVar("messenger_deferred_send", default=None)


def _not_handled_here(envelope: Envelope) -> Envelope:
    # The deferring send step's next: a message it would pass on is handled synchronously.
    raise _NotNativeError


class _DeferringSend:
    """The send middleware in a native plan's chains: records instead of sending."""

    def __init__(self, send: SendMessageMiddleware) -> None:
        self._send = send

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The send step, deferring; what follows it is never run."""
        return self._send.bind_deferring(_not_handled_here, _defer)


def _defer(envelope: Envelope, names: tuple[str, ...]) -> Envelope:
    deferred = _DEFERRED.get()
    if deferred is None or deferred.envelope is not None or tuple(names) != deferred.names:
        raise _NotNativeError  # a middleware changed the routing, or sent twice: not exact
    deferred.envelope = envelope
    return envelope


class _NativePlan:
    """A bus's chains for the native path, and the checks before taking it (one per bus)."""

    def __init__(self, bus: MessageBus, send: SendMessageMiddleware, ahead: Sequence[Any]) -> None:
        # (No reference to the bus: the plans are kept in a dictionary weak on buses.)
        self._send = send
        self._ahead = tuple(ahead)
        # The bus's own chains (the same fast-path mechanisms, see messenger_core._fast_path)
        # with the send step deferring.
        middleware = [_DeferringSend(send) if each is send else each for each in bus.middleware]
        self._chain, self._bare_chain, self._wrap_stamps = _fast_path.bus_chains(middleware)

    async def dispatch(self, message: Any, stamps: tuple[Stamp, ...]) -> Envelope | None:
        """The dispatch, sent natively; ``None`` (nothing done) when it cannot be."""
        for each in self._ahead:
            if each.async_send_safe is not True:
                return None
        # As MessageBus.dispatch wraps the message.
        if type(message) is Envelope:
            chain, envelope = self._chain, message.with_(*stamps) if stamps else message
        elif stamps:
            chain, envelope = self._chain, new_envelope(message, stamps + self._wrap_stamps)
        else:
            chain, envelope = self._bare_chain, new_envelope(message, self._wrap_stamps)
        senders = self._senders(envelope)
        if senders is None:
            return None
        deferred = _Deferred(tuple(name for name, _ in senders))
        token = _DEFERRED.set(deferred)
        try:
            result = chain(envelope)
        except _NotNativeError:
            return None
        finally:
            _DEFERRED.reset(token)
        if deferred.envelope is None or result is not deferred.envelope:
            return None  # nothing was sent: the thread path does it all
        envelope = result
        sent_stamp = self._send.sent_stamp
        for name, sender in senders:
            envelope = await sender.send_async(envelope.with_(sent_stamp(name)))
        return envelope

    def _senders(self, envelope: Envelope) -> list[tuple[str, AsyncSender]] | None:
        """The transports ``envelope`` goes to, if it goes to some and all send async."""
        send = self._send
        names = send.transport_names(envelope)
        if not names:
            return None
        senders: list[tuple[str, AsyncSender]] = []
        for name in names:
            try:
                sender = send.senders(name)
            except Exception:  # the thread path raises it, as dispatch does
                return None
            if not _is_async_sender(sender) or sender.sends_async is not True:
                return None
            senders.append((name, sender))
        return senders


_async_sender_classes: weakref.WeakKeyDictionary[type[Any], bool] = weakref.WeakKeyDictionary()


def _is_async_sender(sender: Any) -> TypeGuard[AsyncSender]:
    """``isinstance(sender, AsyncSender)``, remembered per class: a protocol's ``isinstance``
    costs microseconds on each call, and a transport class either has the methods or not."""
    kind = type(sender)
    known = _async_sender_classes.get(kind)
    if known is None:
        known = _async_sender_classes[kind] = isinstance(sender, AsyncSender)
    return known


_plans: weakref.WeakKeyDictionary[MessageBus, _NativePlan | None] = weakref.WeakKeyDictionary()


def _plan_of(bus: MessageBus) -> _NativePlan | None:
    try:
        return _plans[bus]
    except KeyError:
        plan = _plans[bus] = _plan(bus)
        return plan


def _plan(bus: MessageBus) -> _NativePlan | None:
    """The bus's native plan, or ``None`` if no dispatch of it can be native."""
    middleware: tuple[Middleware, ...] = bus.middleware
    sends = [i for i, each in enumerate(middleware) if type(each) is SendMessageMiddleware]
    if len(sends) != 1:
        return None
    ahead = middleware[: sends[0]]
    if not all(isinstance(each, AsyncSendSafeMiddleware) for each in ahead):
        return None
    send = middleware[sends[0]]
    assert isinstance(send, SendMessageMiddleware)
    return _NativePlan(bus, send, ahead)
