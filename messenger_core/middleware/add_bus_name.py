"""Stamp each envelope with the name of the bus it was dispatched on."""

from __future__ import annotations

from messenger_core.envelope import Envelope, new_envelope
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import BusNameStamp

__all__ = ["AddBusNameStampMiddleware"]


class AddBusNameStampMiddleware:
    """Adds a ``BusNameStamp`` unless the envelope already has one (a worker re-dispatching)."""

    # BareDispatchAware: the bus stamped a bare message as it wrapped it (see wrap_stamps).
    noop_for_bare_messages = True
    async_send_safe = True  # AsyncSendSafeMiddleware: adds a stamp, nothing more

    def __init__(self, bus_name: str) -> None:
        # A stamp is an immutable value: one per bus serves every message.
        self.stamp = BusNameStamp(bus_name=bus_name)
        # StampWrappingMiddleware: the bus adds it as it wraps a bare message (when this
        # middleware heads the chain); this middleware still stamps envelopes without it.
        self.wrap_stamps = (self.stamp,)

    @classmethod
    def from_context(cls, context: MiddlewareContext) -> AddBusNameStampMiddleware:
        """The factory named ``add_bus_name_stamp`` in configuration."""
        return cls(context.bus_name)

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The chain step (BindableMiddleware): stamp, then pass on."""
        stamp = self.stamp

        def add_bus_name(envelope: Envelope) -> Envelope:
            for each in envelope.stamps:
                if type(each) is BusNameStamp:
                    return next(envelope)
            return next(new_envelope(envelope.message, (*envelope.stamps, stamp)))

        return add_bus_name
