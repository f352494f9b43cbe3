"""The message bus: wraps a message in an envelope and runs it through the middleware chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from messenger_core.envelope import Envelope, new_envelope
from messenger_core.errors import MessengerError
from messenger_core.middleware import Middleware, build_chain
from messenger_core.stamps import HandledStamp, Stamp

__all__ = ["DEFAULT_BUS", "MessageBus", "QueryError"]

DEFAULT_BUS = "messenger.bus.default"


class QueryError(MessengerError):
    """``bus.query`` needs exactly one handler to have handled the message."""


class MessageBus:
    """A named bus. Its middleware chain is linked once, here; ``dispatch`` only calls it."""

    def __init__(self, name: str, middleware: Sequence[Middleware]) -> None:
        self.name = name
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        self._chain = build_chain(self.middleware)
        # Steps that do nothing to a bare message without stamps (it cannot carry what
        # receiving adds, and it was wrapped with the wrap stamps) are left out of the chain
        # such dispatches run: the common case pays only for the steps that act.
        self._fresh_chain = build_chain(
            [m for m in self.middleware if not getattr(m, "noop_for_bare_messages", False)]
        )
        self._wrap_stamps: tuple[Stamp, ...] = tuple(
            stamp for each in self.middleware for stamp in getattr(each, "wrap_stamps", ())
        )

    def dispatch(self, message: Any, *stamps: Stamp) -> Envelope:
        """Dispatch a message (or an envelope) with extra ``stamps``; return the final envelope.

        Raises :class:`~messenger_core.errors.HandlerFailedError` if a handler failed, or
        :class:`~messenger_core.errors.NoHandlerForMessageError` if the message was neither
        routed to a transport nor handled.
        """
        if type(message) is Envelope:
            return self._chain(message.with_(*stamps) if stamps else message)
        if stamps:
            return self._chain(new_envelope(message, self._wrap_stamps + stamps))
        return self._fresh_chain(new_envelope(message, self._wrap_stamps))

    def query(self, message: Any, *stamps: Stamp) -> Any:
        """Dispatch ``message`` and return the result of the one handler that handled it.

        For queries ("what is the price of X?"): exactly one handler must handle the message
        synchronously, otherwise :class:`QueryError` says how many did.
        """
        envelope = self.dispatch(message, *stamps)
        handled = envelope.all(HandledStamp)
        if len(handled) != 1:
            kind = type(envelope.message).__qualname__
            names = ", ".join(h.handler_name for h in handled)
            detail = f" ({names})" if names else " (was it routed to a transport?)"
            raise QueryError(
                f"message {kind} was handled {len(handled)} times{detail}; "
                "query() needs exactly one handler"
            )
        return handled[0].result

    def __repr__(self) -> str:
        return f"MessageBus({self.name!r}, middleware={len(self.middleware)})"
