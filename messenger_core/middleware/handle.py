"""Call the handlers of a message and record their results."""

from __future__ import annotations

from inspect import isawaitable
from typing import Any

from messenger_core._awaitables import run_to_completion
from messenger_core.envelope import Envelope, new_envelope
from messenger_core.errors import HandlerFailedError, NoHandlerForMessageError
from messenger_core.handlers import HandlerDescriptor, HandlerRegistry
from messenger_core.middleware import MiddlewareContext, Next, is_terminal
from messenger_core.stamps import BusNameStamp, HandledByStamp, HandledStamp, ReceivedStamp, Stamp

__all__ = ["HandleMessageMiddleware"]


class HandleMessageMiddleware:
    """Runs every handler of the message, in priority order, then passes the envelope on.

    Each success adds a ``HandledStamp``. A failing handler does not stop the others; the
    failures are raised together in a :class:`HandlerFailedError` whose envelope carries the
    successes' stamps. A handler already recorded on the envelope (a retry) is skipped.

    An ``async def`` handler runs to completion before its ``HandledStamp`` is added, and so
    does an awaitable a synchronous handler returns: no message counts as handled while its
    handler's body has not run.
    """

    @classmethod
    def from_context(cls, context: MiddlewareContext) -> HandleMessageMiddleware:
        """The factory named ``handle_message`` in configuration."""
        bus = context.config.bus(context.bus_name)
        return cls(context.bus_name, context.handlers, bus.allow_no_handlers)

    def __init__(self, bus_name: str, handlers: HandlerRegistry, allow_no_handlers: bool = False):
        self.bus_name = bus_name
        self.handlers = handlers
        self.allow_no_handlers = allow_no_handlers
        # A handler returning None gets the same HandledStamp every time: build it once.
        self._none_stamps: dict[str, HandledStamp] = {}

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The chain step."""
        bus_name = self.bus_name
        for_class = self.handlers.for_class
        # The registry empties this dict whenever a handler is added.
        cache = self.handlers.cache_for(bus_name)
        none_stamps = self._none_stamps
        run_all = self._run_all
        last = is_terminal(next)

        # Classes whose one handler runs on every dispatch: (callable, name, its None stamp).
        sole_handlers = self.handlers.scratch_cache(f"sole handler on {bus_name}")
        registry = self.handlers

        def handle(envelope: Envelope) -> Envelope:
            message = envelope.message
            stamps = envelope.stamps
            sole = sole_handlers.get(type(message))
            if sole is not None and len(stamps) == 1 and type(stamps[0]) is BusNameStamp:
                # The common case, unrolled: a fresh dispatch to one handler.
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
                    stamp = (
                        none_stamp
                        if result is None
                        else HandledStamp(handler_name=name, result=result)
                    )
                envelope = new_envelope(message, (stamps[0], stamp))
                return envelope if last else next(envelope)
            generation = registry.generation
            handlers = cache.get(type(message))
            if handlers is None:
                handlers = for_class(bus_name, type(message))
            if not handlers:
                if self.allow_no_handlers:
                    return next(envelope)
                raise NoHandlerForMessageError(
                    f"no handler for message {type(envelope.message).__qualname__} on bus "
                    f"{bus_name!r}; register one with @messenger.handler, or route the message "
                    "to a transport"
                )
            if len(handlers) == 1 and handlers[0].options.from_transport is None:
                only = handlers[0]
                none_stamp = none_stamps.get(only.name) or _handled(only, None, none_stamps)
                sole = (only.call, only.name, none_stamp)
                registry.remember(sole_handlers, type(message), sole, generation)
            return next(run_all(envelope, handlers))

        return handle

    def _run_all(self, envelope: Envelope, handlers: tuple[HandlerDescriptor, ...]) -> Envelope:
        received: str | None = None
        done: set[str] = set()
        for each in envelope.stamps:
            kind = type(each)
            if kind is HandledStamp or kind is HandledByStamp:
                done.add(each.handler_name)  # type: ignore[attr-defined]
            elif kind is ReceivedStamp:
                received = each.transport_name  # type: ignore[attr-defined]
        message = envelope.message
        none_stamps = self._none_stamps
        stamps: list[Stamp] = []
        failures: list[tuple[str, BaseException]] = []
        accepted = False
        for descriptor in handlers:
            wanted = descriptor.options.from_transport
            if wanted is not None and received is not None and wanted != received:
                continue
            accepted = True
            if descriptor.name in done:
                continue
            try:
                result = descriptor.call(message)
                if result is not None and isawaitable(result):
                    result = run_to_completion(result, descriptor.name)
            except Exception as error:
                failures.append((descriptor.name, error))
                continue
            stamp = none_stamps.get(descriptor.name) if result is None else None
            stamps.append(stamp or _handled(descriptor, result, none_stamps))
        if not accepted and not self.allow_no_handlers:
            # Every handler is for another transport: as with no handler at all, say so rather
            # than acknowledge a message nothing handled.
            raise NoHandlerForMessageError(
                f"no handler for message {type(message).__qualname__} on bus "
                f"{self.bus_name!r} accepts messages received from transport {received!r}"
            )
        if stamps:
            envelope = envelope.with_(*stamps)
        if failures:
            raise HandlerFailedError(envelope, failures) from failures[0][1]
        return envelope


def _awaited(envelope: Envelope, name: str, awaitable: Any) -> Any:
    """What a handler's awaitable (a coroutine of an ``async def`` one) gives, as a handler
    failure if it raises."""
    try:
        return run_to_completion(awaitable, name)
    except Exception as error:
        raise HandlerFailedError(envelope, [(name, error)]) from error


def _handled(
    descriptor: HandlerDescriptor, result: Any, cache: dict[str, HandledStamp]
) -> HandledStamp:
    stamp = HandledStamp(handler_name=descriptor.name, result=result)
    if result is None:
        cache[descriptor.name] = stamp
    return stamp
