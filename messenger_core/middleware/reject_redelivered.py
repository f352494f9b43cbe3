"""Refuse to handle a message its transport says it delivered before (and may have handled)."""

from __future__ import annotations

from messenger_core.envelope import Envelope
from messenger_core.errors import RejectRedeliveredMessageError
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import TransportRedeliveredStamp

__all__ = ["RejectRedeliveredMessageMiddleware"]


class RejectRedeliveredMessageMiddleware:
    """Raises :class:`RejectRedeliveredMessageError` for envelopes marked redelivered.

    Brokers such as RabbitMQ redeliver a message whose consumer lost its connection before
    acknowledging it; the handler may already have run. Transports that know this mark the
    envelope with ``TransportRedeliveredStamp``; the worker then rejects the message instead of
    handling it twice, and the retry logic sends a fresh copy.
    """

    noop_for_bare_messages = True  # BareDispatchAware: it only acts on received envelopes
    async_send_safe = True  # AsyncSendSafeMiddleware: received envelopes are never sent

    def __init__(self, context: MiddlewareContext | None = None) -> None:
        """Takes the factory context so it can be named in configuration; needs nothing from it."""

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The chain step."""

        def reject_redelivered(envelope: Envelope) -> Envelope:
            for each in envelope.stamps:
                if type(each) is TransportRedeliveredStamp:
                    raise RejectRedeliveredMessageError(
                        "the transport redelivered this message after a lost acknowledgement; "
                        "it is rejected so that its handlers do not run twice"
                    )
            return next(envelope)

        return reject_redelivered
