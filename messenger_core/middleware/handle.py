"""Call the handlers of a message and record their results."""

from __future__ import annotations

from inspect import isawaitable

from messenger_core import _fast_path
from messenger_core._awaitables import run_to_completion
from messenger_core.envelope import Envelope
from messenger_core.errors import HandlerFailedError, NoHandlerForMessageError
from messenger_core.handlers import HandlerDescriptor, HandlerRegistry
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import HandledByStamp, HandledStamp, ReceivedStamp, Stamp

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
        # Filled by the fast path: the HandledStamp of each handler's None result.
        self._none_stamps: dict[str, HandledStamp] = {}

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The chain step: look the handlers up, run them, pass the envelope on (with the
        common case unrolled by :func:`messenger_core._fast_path.sole_handler_step`)."""
        bus_name = self.bus_name
        lookup = _fast_path.handler_lookup(self.handlers, bus_name)
        stamp_for = _fast_path.handled_stamp_maker(self._none_stamps)
        run_all = self._run_all

        def handle(envelope: Envelope) -> Envelope:
            handlers = lookup(type(envelope.message))
            if not handlers:
                if self.allow_no_handlers:
                    return next(envelope)
                raise NoHandlerForMessageError(
                    f"no handler for message {type(envelope.message).__qualname__} on bus "
                    f"{bus_name!r}; register one with @messenger.handler, or route the message "
                    "to a transport"
                )
            return next(run_all(envelope, handlers, stamp_for))

        return _fast_path.sole_handler_step(self.handlers, bus_name, handle, next, stamp_for)

    def _run_all(
        self,
        envelope: Envelope,
        handlers: tuple[HandlerDescriptor, ...],
        stamp_for: _fast_path.StampMaker,
    ) -> Envelope:
        received: str | None = None
        done: set[str] = set()
        for each in envelope.stamps:
            kind = type(each)
            if kind is HandledStamp or kind is HandledByStamp:
                done.add(each.handler_name)  # type: ignore[attr-defined]
            elif kind is ReceivedStamp:
                received = each.transport_name  # type: ignore[attr-defined]
        message = envelope.message
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
            stamps.append(stamp_for(descriptor.name, result))
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
