"""Send routed messages to their transports instead of handling them here."""

from __future__ import annotations

from collections.abc import Callable

from messenger_core.envelope import Envelope
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.routing import Router
from messenger_core.stamps import ReceivedStamp, SentStamp, TransportNamesStamp
from messenger_core.transport import Sender

__all__ = ["Deferral", "SendMessageMiddleware"]

Deferral = Callable[[Envelope, tuple[str, ...]], Envelope]
"""``send(envelope, transport_names)``: what the send step does with a routed envelope."""


class SendMessageMiddleware:
    """Hands the envelope to the transports its message is routed to, and stops there.

    A received message (it carries a ``ReceivedStamp``) is being consumed: it is passed on to
    be handled, never sent again. A ``TransportNamesStamp`` overrides the routing. A message
    with no route is passed on and handled synchronously.
    """

    @classmethod
    def from_context(cls, context: MiddlewareContext) -> SendMessageMiddleware:
        """The factory named ``send_message`` in configuration."""
        return cls(context.router, context.transports)

    def __init__(self, router: Router, senders: Callable[[str], Sender]) -> None:
        self.router = router
        self.senders = senders
        # Stamps are values: one SentStamp per transport name, built on first use.
        self._sent_stamps: dict[str, SentStamp] = {}

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The chain step."""
        transports_for = self.router.transports_for
        # The router empties this dict whenever a route is added.
        cache = self.router.cache

        def send(envelope: Envelope) -> Envelope:
            override = None
            for each in envelope.stamps:
                kind = type(each)
                if kind is ReceivedStamp:
                    return next(envelope)
                if kind is TransportNamesStamp:
                    override = each.transport_names  # type: ignore[attr-defined]
            names = override if override is not None else cache.get(type(envelope.message))
            if names is None:
                names = transports_for(type(envelope.message))
            if not names:
                return next(envelope)
            return self._send(envelope, names)

        return send

    def bind_deferring(self, next: Next, defer: Deferral) -> Next:
        """A chain step that routes as :meth:`bind`'s does (see :meth:`transport_names`) but
        calls ``defer(envelope, names)`` instead of sending (``dispatch_async`` sends
        afterwards, see :mod:`messenger_core.async_bus`). Not on the hot path of ``dispatch``,
        whose step stays as it was."""
        transport_names = self.transport_names

        def defer_send(envelope: Envelope) -> Envelope:
            names = transport_names(envelope)
            if not names:
                return next(envelope)
            return defer(envelope, names)

        return defer_send

    def transport_names(self, envelope: Envelope) -> tuple[str, ...] | None:
        """The transports the step sends ``envelope`` to: empty if it is not routed (it is
        handled here), ``None`` if it was received (handled, never sent again)."""
        override = None
        for each in envelope.stamps:
            kind = type(each)
            if kind is ReceivedStamp:
                return None
            if kind is TransportNamesStamp:
                override = each.transport_names  # type: ignore[attr-defined]
        if override is not None:
            return tuple(override)
        return self.router.transports_for(type(envelope.message))

    def sent_stamp(self, name: str) -> SentStamp:
        """The ``SentStamp`` the step puts on a message before sending it to ``name``."""
        stamp = self._sent_stamps.get(name)
        if stamp is None:
            stamp = self._sent_stamps.setdefault(name, SentStamp(sender_name=name))
        return stamp

    def _send(self, envelope: Envelope, names: tuple[str, ...]) -> Envelope:
        for name in names:
            stamp = self._sent_stamps.get(name)
            if stamp is None:
                stamp = self._sent_stamps.setdefault(name, SentStamp(sender_name=name))
            envelope = self.senders(name).send(envelope.with_(stamp))
        return envelope
