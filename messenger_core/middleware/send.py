"""Send routed messages to their transports instead of handling them here."""

from __future__ import annotations

from collections.abc import Callable

from messenger_core.envelope import Envelope
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.routing import Router
from messenger_core.stamps import ReceivedStamp, SentStamp, TransportNamesStamp
from messenger_core.transport import Sender

__all__ = ["SendMessageMiddleware"]


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

    def _send(self, envelope: Envelope, names: tuple[str, ...]) -> Envelope:
        for name in names:
            stamp = self._sent_stamps.get(name)
            if stamp is None:
                stamp = self._sent_stamps.setdefault(name, SentStamp(sender_name=name))
            envelope = self.senders(name).send(envelope.with_(stamp))
        return envelope
