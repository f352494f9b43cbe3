"""Make a message retried from the failure transport look as if it came from its origin."""

from __future__ import annotations

from messenger_core.envelope import Envelope
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import ReceivedStamp, SentToFailureTransportStamp

__all__ = ["FailedMessageProcessingMiddleware"]


class FailedMessageProcessingMiddleware:
    """Re-stamps a message consumed from the failure transport with its original transport.

    Handlers restricted with ``from_transport`` then run as they did the first time.
    """

    noop_for_bare_messages = True  # BareDispatchAware: it only acts on received envelopes
    async_send_safe = True  # AsyncSendSafeMiddleware: received envelopes are never sent

    def __init__(self, context: MiddlewareContext | None = None) -> None:
        """Takes the factory context so it can be named in configuration; needs nothing from it."""

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The chain step."""

        def restore_origin(envelope: Envelope) -> Envelope:
            for each in envelope.stamps:
                if type(each) is SentToFailureTransportStamp:
                    break
            else:
                return next(envelope)
            failed = envelope.last(SentToFailureTransportStamp)
            # Only when consumed: sending a message *to* the failure transport must not mark it.
            if failed is not None and envelope.last(ReceivedStamp) is not None:
                origin = ReceivedStamp(transport_name=failed.original_receiver_name)
                return next(envelope.with_(origin))
            return next(envelope)

        return restore_origin
