"""Stamps: immutable pieces of metadata carried by an :class:`~messenger_core.envelope.Envelope`.

A stamp is a frozen, keyword-only attrs class. Stamps that only make sense inside one process
(handler results, the receiving transport's bookkeeping) derive from :class:`NonSendableStamp`
and are dropped by serializers. Every other stamp travels with the message as a header, so its
fields must be values the serializer can express (strings, numbers, datetimes, lists...).

Stamps are values: build the ones that do not change per message (a bus name, a transport
name) once and reuse them.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import attrs

__all__ = [
    "BusNameStamp",
    "ConsumedByWorkerStamp",
    "DelayStamp",
    "DispatchAfterCurrentBusStamp",
    "ErrorDetailsStamp",
    "HandledByStamp",
    "HandledStamp",
    "NonSendableStamp",
    "ReceivedStamp",
    "RedeliveryStamp",
    "SentStamp",
    "SentToFailureTransportStamp",
    "Stamp",
    "TransportMessageIdStamp",
    "TransportNamesStamp",
    "TransportRedeliveredStamp",
    "UnknownStampsStamp",
    "BUILTIN_STAMPS",
]


@attrs.frozen(kw_only=True)
class Stamp:
    """Base class of all stamps. Subclasses are declared with ``@attrs.frozen(kw_only=True)``."""


@attrs.frozen(kw_only=True)
class NonSendableStamp(Stamp):
    """A stamp that never leaves the process: serializers skip it."""


@attrs.frozen(kw_only=True)
class BusNameStamp(Stamp):
    """The bus the message was dispatched on; a worker dispatches it on the same bus."""

    bus_name: str


@attrs.frozen(kw_only=True)
class DelayStamp(Stamp):
    """Deliver the message no earlier than ``delay_ms`` milliseconds after it was sent."""

    delay_ms: int

    @classmethod
    def seconds(cls, seconds: float) -> DelayStamp:
        """A delay given in seconds."""
        return cls(delay_ms=round(seconds * 1000))


@attrs.frozen(kw_only=True)
class HandledStamp(NonSendableStamp):
    """One handler handled the message and returned ``result``."""

    handler_name: str
    result: Any = None


@attrs.frozen(kw_only=True)
class ReceivedStamp(NonSendableStamp):
    """The message came from a transport (it is being consumed, not dispatched)."""

    transport_name: str


@attrs.frozen(kw_only=True)
class SentStamp(NonSendableStamp):
    """The message was handed to a sender instead of being handled here."""

    sender_name: str


@attrs.frozen(kw_only=True)
class TransportMessageIdStamp(NonSendableStamp):
    """The id the transport gave the message (a row id, a stream entry id...)."""

    id: str


@attrs.frozen(kw_only=True)
class RedeliveryStamp(Stamp):
    """The message is being retried for the ``retry_count``-th time."""

    retry_count: int
    redelivered_at: datetime | None = None


@attrs.frozen(kw_only=True)
class ErrorDetailsStamp(Stamp):
    """Why handling failed: the exception class, its message and a (size-capped) traceback."""

    exception_class: str
    message: str
    code: int | str | None = None
    traceback: str | None = None
    failed_at: datetime | None = None

    MAX_MESSAGE: ClassVar[int] = 2_000
    MAX_TRACEBACK: ClassVar[int] = 8_000
    """Brokers limit header sizes (RabbitMQ, Redis entries...): keep the stamp small."""

    @classmethod
    def from_exception(cls, error: BaseException) -> ErrorDetailsStamp:
        """The details of ``error``; for a handler failure, of the first handler's exception
        (the handler's own message, as Symfony keeps it)."""
        cause = error
        wrapped = getattr(error, "wrapped_exceptions", ())
        if wrapped:
            cause = wrapped[0]
        text = "".join(traceback.format_exception(cause))
        if len(text) > cls.MAX_TRACEBACK:
            # Keep the end: the innermost frames and the error itself say the most.
            text = "...(truncated)\n" + text[-cls.MAX_TRACEBACK :]
        message = str(cause)
        if len(message) > cls.MAX_MESSAGE:
            message = message[: cls.MAX_MESSAGE] + "...(truncated)"
        kind = type(cause)
        code = getattr(cause, "code", None)
        return cls(
            exception_class=f"{kind.__module__}.{kind.__qualname__}",
            message=message,
            code=code if isinstance(code, (int, str)) else None,
            traceback=text,
            failed_at=datetime.now(UTC),
        )


@attrs.frozen(kw_only=True)
class HandledByStamp(Stamp):
    """A handler already handled this message in an earlier attempt: a retry skips it.

    ``HandledStamp`` holds the handler's return value and never leaves the process; this is
    what travels with a retried message instead.
    """

    handler_name: str


@attrs.frozen(kw_only=True)
class SentToFailureTransportStamp(Stamp):
    """The message was parked in the failure transport; it came from ``original_receiver_name``."""

    original_receiver_name: str


@attrs.frozen(kw_only=True)
class TransportNamesStamp(Stamp):
    """Send this message to these transports, overriding the configured routing."""

    transport_names: tuple[str, ...] = attrs.field(converter=tuple)


@attrs.frozen(kw_only=True)
class DispatchAfterCurrentBusStamp(NonSendableStamp):
    """Handle this message only once the dispatch that is running now has finished successfully."""


@attrs.frozen(kw_only=True)
class ConsumedByWorkerStamp(NonSendableStamp):
    """The message is being handled by a worker (not by a synchronous dispatch)."""


@attrs.frozen(kw_only=True)
class TransportRedeliveredStamp(NonSendableStamp):
    """The broker says it delivered this message before without an acknowledgement."""


@attrs.frozen(kw_only=True)
class UnknownStampsStamp(Stamp):
    """Stamp headers a serializer did not recognise, kept verbatim so they survive a round trip.

    ``headers`` maps each original header name to its original value; serializers write them
    back unchanged instead of encoding this stamp itself.
    """

    headers: Mapping[str, str] = attrs.field(factory=dict)


BUILTIN_STAMPS: tuple[type[Stamp], ...] = (
    BusNameStamp,
    DelayStamp,
    HandledStamp,
    HandledByStamp,
    ReceivedStamp,
    SentStamp,
    TransportMessageIdStamp,
    RedeliveryStamp,
    ErrorDetailsStamp,
    SentToFailureTransportStamp,
    TransportNamesStamp,
    DispatchAfterCurrentBusStamp,
    ConsumedByWorkerStamp,
    TransportRedeliveredStamp,
    UnknownStampsStamp,
)
"""The core's stamps, registered in every ``MessageTypeRegistry``."""
