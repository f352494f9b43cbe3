"""The dispatch fast path: every speed-up of ``bus.dispatch``, in one place.

A dispatch runs a chain of middleware and then the message's handlers. Written plainly, that
is one generic adapter call per middleware, a fresh envelope per stamp added, a handler lookup
walking the message class's MRO, and a new ``HandledStamp`` per handler. The mechanisms below
remove that work from the common case: a bare message dispatched, without stamps, to one
synchronous handler, about six times faster through the default stack than the general path
(``bench/bus_dispatch.py`` measures both in the same run). In the order a dispatch meets them:

1. **Chains linked once** (:func:`build_chain`): a middleware implementing
   :class:`~messenger_core.middleware.BindableMiddleware` returns its chain step from
   ``bind(next)``; the chain then calls the steps directly instead of an adapter calling
   ``middleware(envelope, next)``. Buys one Python call per middleware per dispatch.
2. **Stamps put on as the message is wrapped** (:func:`bus_chains`): the bus puts the
   ``wrap_stamps`` of :class:`~messenger_core.middleware.StampWrappingMiddleware` (the bus name)
   on a bare message when it builds its envelope, after any stamps given to ``dispatch``. Only
   for middleware heading the chain (the bus name's does in the default stack): one further
   in would show its stamps to, or put them before those of, the middleware ahead of it.
   Buys one envelope copy per dispatch.
3. **The bare-dispatch chain** (:func:`bus_chains`): a bare message without stamps runs a
   second chain without the middleware that say they do nothing to it
   (:class:`~messenger_core.middleware.BareDispatchAware`: adding the bus name, which the bus
   did; rejecting redelivered and restoring failed messages, which only concern received
   ones; no middleware adds a transport's stamps to a message being dispatched). Buys three
   of the default stack's six steps.
4. **Handler lookups cached per bus and class** (:class:`LookupCaches`): the MRO walk, the
   bus filter and the priority sort run once per class; a dispatch does a dictionary lookup.
5. **Registration generations** (:meth:`LookupCaches.remember`): the caches are emptied in
   place when a handler is registered, and a lookup that raced a registration is not cached.
   Buys the caches' correctness: a handler registered late is never missed.
6. **The sole handler, unrolled** (:func:`sole_handler_step`): for a class with exactly one
   handler (not restricted to a transport), a fresh dispatch calls it directly and builds the
   result envelope in one step, skipping the lookup and the loop over handlers, the
   already-handled and from-transport checks, and the list of stamps.
7. **The last step returns** (:func:`is_terminal`): the handle step, last in the chain, returns
   its envelope instead of calling the chain's identity end. Buys one call per dispatch.
8. **One ``HandledStamp`` for a ``None`` result** (:func:`handled_stamp_maker`): a stamp is an
   immutable value, so a handler returning ``None`` gets the same stamp every time. Buys an
   attrs object per handler per dispatch (most handlers return ``None``).
9. **Async decided at registration** (:func:`handler_call`): a synchronous handler is called
   as it is; only an ``async def`` one is wrapped to run on its private event loop. A result
   of ``None`` skips the awaitable test. Buys the async support's cost for sync handlers.

Other hot-path savings live with their concept: :func:`messenger_core.envelope.new_envelope`
(an envelope without the attrs ``__init__``), the router's per-class cache
(:class:`messenger_core.routing.Router`), and one stamp object per bus or transport name.

Every mechanism is exact: the same envelopes (message, stamps in order, handler results) and
the same errors as the general path. Chains and buses built inside :func:`general_path` use
none of mechanisms 1 to 8, which ``tests/test_fast_path.py`` uses to compare both over a
matrix of cases. A new speed-up belongs here, with its reason, and in that test.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from messenger_core._awaitables import (
    async_call,
    is_async_callable,
    run_to_completion,
    timed_call,
)
from messenger_core.envelope import Envelope, new_envelope
from messenger_core.errors import HandlerFailedError
from messenger_core.stamps import BusNameStamp, HandledStamp, Stamp

if TYPE_CHECKING:
    from messenger_core.handlers import HandlerDescriptor, HandlerRegistry
    from messenger_core.middleware import Middleware, Next

__all__ = [
    "LookupCaches",
    "StampMaker",
    "build_chain",
    "bus_chains",
    "general_path",
    "handled_stamp_maker",
    "handler_call",
    "handler_lookup",
    "is_terminal",
    "sole_handler_step",
]

_GENERAL: ContextVar[bool] = ContextVar("messenger_general_path", default=False)


@contextlib.contextmanager
def general_path() -> Iterator[None]:
    """Build (and run) chains, buses and handle steps without the speed-ups 1 to 8.

    For the equivalence test and for debugging: the decision is taken when a chain or step is
    built, so dispatch inside the block too (a middleware called as ``m(envelope, next)``
    builds its step on each call).
    """
    token = _GENERAL.set(True)
    try:
        yield
    finally:
        _GENERAL.reset(token)


# -- 1 and 7: the chain ----------------------------------------------------------------------


def _identity(envelope: Envelope) -> Envelope:
    return envelope


def is_terminal(next: Next) -> bool:
    """Whether ``next`` is the end of the chain (a middleware may return instead of calling it)."""
    return next is _identity


def _link(middleware: Middleware, next: Next) -> Next:
    def call(envelope: Envelope) -> Envelope:
        return middleware(envelope, next)

    return call


def build_chain(middleware: Sequence[Middleware], terminal: Next = _identity) -> Next:
    """Link ``middleware`` (outermost first) into one callable ending in ``terminal``."""
    # Imported here: messenger_core.middleware imports this module.
    from messenger_core.middleware import BindableMiddleware  # noqa: PLC0415

    general = _GENERAL.get()
    call = terminal
    for each in reversed(middleware):
        if not general and isinstance(each, BindableMiddleware):
            call = each.bind(call)
        else:
            call = _link(each, call)
    return call


# -- 2 and 3: what the bus runs ---------------------------------------------------------------


def bus_chains(middleware: Sequence[Middleware]) -> tuple[Next, Next, tuple[Stamp, ...]]:
    """A bus's chains: ``(chain, bare_chain, wrap_stamps)``.

    ``chain`` runs every middleware: for envelopes, and for messages dispatched with stamps
    (wrapped with the stamps, then ``wrap_stamps``). ``bare_chain`` runs for a bare message
    dispatched without stamps, wrapped with ``wrap_stamps`` alone.
    """
    from messenger_core.middleware import (  # noqa: PLC0415  (see build_chain)
        BareDispatchAware,
        StampWrappingMiddleware,
    )

    chain = build_chain(middleware)
    if _GENERAL.get():
        return chain, chain, ()
    # Only the middleware at the head of the chain may have their stamps put on early: for one
    # further in, the middleware ahead of it would see its stamps, or add theirs after them.
    wrap_stamps: tuple[Stamp, ...] = ()
    wrapped: set[int] = set()
    for each in middleware:
        if not isinstance(each, StampWrappingMiddleware):
            break
        wrap_stamps += each.wrap_stamps
        wrapped.add(id(each))
    # A middleware that only adds its wrap stamps does nothing to a bare message once the bus
    # added them; one whose stamps the bus did not add stays.
    acting = [
        each
        for each in middleware
        if not (isinstance(each, BareDispatchAware) and each.noop_for_bare_messages)
        or (isinstance(each, StampWrappingMiddleware) and id(each) not in wrapped)
    ]
    return chain, build_chain(acting), wrap_stamps


# -- 4 and 5: handler lookups -----------------------------------------------------------------


class LookupCaches:
    """Per-class results derived from the registered handlers, each computed once.

    Each cache is a dict keyed by message class, named by its user (a bus's handler lookup, a
    bus's sole handlers). :meth:`changed` empties them all *in place*, never replacing them, so
    a chain step may hold on to its dict for good.
    """

    def __init__(self) -> None:
        self._caches: dict[tuple[str, str], dict[type[Any], Any]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    @property
    def generation(self) -> int:
        """A number that changes whenever a handler is registered."""
        return self._generation

    def named(self, kind: str, name: str) -> dict[type[Any], Any]:
        """The cache ``kind`` of ``name`` (a bus), created empty on first use."""
        cache = self._caches.get((kind, name))
        if cache is None:
            cache = self._caches.setdefault((kind, name), {})
        return cache

    def changed(self) -> None:
        """A handler was registered (and is visible to lookups): forget every result."""
        with self._lock:
            self._generation += 1
            for cache in self._caches.values():
                cache.clear()

    def remember(self, cache: dict[Any, Any], key: Any, value: Any, generation: int) -> None:
        """Store ``value`` unless a handler was registered since ``generation`` (read before
        computing it): a lookup racing a registration must not cache what it computed."""
        with self._lock:
            if generation == self._generation:
                cache[key] = value


def handler_lookup(
    registry: HandlerRegistry, bus_name: str
) -> Callable[[type[Any]], tuple[HandlerDescriptor, ...]]:
    """``lookup(message_class)``: the handlers of a class on ``bus_name``, in running order."""
    if _GENERAL.get():
        return lambda message_class: registry.find(bus_name, message_class)
    cache = registry.cache_for(bus_name)
    for_class = registry.for_class

    def lookup(message_class: type[Any]) -> tuple[HandlerDescriptor, ...]:
        found = cache.get(message_class)
        return found if found is not None else for_class(bus_name, message_class)

    return lookup


# -- 6 and 8: running the handlers ------------------------------------------------------------

StampMaker = Callable[[str, Any], HandledStamp]
"""``stamp_for(handler_name, result)``: the ``HandledStamp`` recording a handler's result."""


def handled_stamp_maker(none_stamps: dict[str, HandledStamp]) -> StampMaker:
    """A ``stamp_for``; it keeps the stamp of each handler's ``None`` result in ``none_stamps``."""
    if _GENERAL.get():
        return _new_handled_stamp

    def stamp_for(name: str, result: Any) -> HandledStamp:
        if result is not None:
            return HandledStamp(handler_name=name, result=result)
        stamp = none_stamps.get(name)
        if stamp is None:
            stamp = none_stamps.setdefault(name, HandledStamp(handler_name=name, result=None))
        return stamp

    return stamp_for


def _new_handled_stamp(name: str, result: Any) -> HandledStamp:
    return HandledStamp(handler_name=name, result=result)


def sole_handler_step(
    registry: HandlerRegistry, bus_name: str, general: Next, next: Next, stamp_for: StampMaker
) -> Next:
    """The handle middleware's chain step: ``general`` (which looks the handlers up, runs them
    and calls ``next``), preceded by the common case unrolled: a fresh dispatch (the bus name
    its only stamp) of a message whose class has one handler that runs for every dispatch."""
    if _GENERAL.get():
        return general
    # Per class: (callable, name, its None stamp), or () when the class does not qualify.
    sole_handlers = registry.scratch_cache(f"sole handler on {bus_name}")
    last = is_terminal(next)

    def learn(message_class: type[Any]) -> None:
        generation = registry.generation
        handlers = registry.for_class(bus_name, message_class)
        sole: tuple[Any, ...] = ()
        if len(handlers) == 1 and handlers[0].options.from_transport is None:
            only = handlers[0]
            sole = (only.call, only.name, stamp_for(only.name, None))
        registry.remember(sole_handlers, message_class, sole, generation)

    def handle(envelope: Envelope) -> Envelope:
        message = envelope.message
        stamps = envelope.stamps
        sole = sole_handlers.get(type(message))
        if sole and len(stamps) == 1 and type(stamps[0]) is BusNameStamp:
            call, name, none_stamp = sole
            try:
                result = call(message)
            except Exception as error:
                raise HandlerFailedError(envelope, [(name, error)]) from error
            if result is None:  # the common case pays no more than this test
                stamp = none_stamp
            else:
                if isawaitable(result):
                    result = _awaited(envelope, name, result)
                stamp = none_stamp if result is None else stamp_for(name, result)
            envelope = new_envelope(message, (stamps[0], stamp))
            return envelope if last else next(envelope)
        if sole is None:
            learn(type(message))
        return general(envelope)

    return handle


def _awaited(envelope: Envelope, name: str, awaitable: Any) -> Any:
    """What a handler's awaitable gives, as a handler failure if it raises."""
    try:
        return run_to_completion(awaitable, name)
    except Exception as error:
        raise HandlerFailedError(envelope, [(name, error)]) from error


# -- 9: calling a handler ---------------------------------------------------------------------


def handler_call(
    target: Callable[[Any], Any], name: str, timeout: float | None = None
) -> Callable[[Any], Any]:
    """What the bus calls for a handler, decided once when it is registered: ``target`` itself
    if it is synchronous (timed if it has a ``timeout``), else a function running it to
    completion on its event loop."""
    if not is_async_callable(target):
        return target if timeout is None else timed_call(target, name, timeout)
    return async_call(target, name, timeout)
