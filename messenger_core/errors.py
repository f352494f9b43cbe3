"""Every exception the core raises, in one place, so that users can catch them by kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from messenger_core.envelope import Envelope

__all__ = [
    "BrokerUnreachableError",
    "ConfigurationError",
    "DelayedMessageHandlingError",
    "HandlerFailedError",
    "MessageDecodingError",
    "MessengerError",
    "NoHandlerForMessageError",
    "RecoverableMessageError",
    "RejectRedeliveredMessageError",
    "TransportError",
    "UnrecoverableMessageError",
]


class MessengerError(Exception):
    """Base class of the errors raised by messenger."""


class ConfigurationError(MessengerError):
    """The configuration, a DSN or the installed plugins do not make sense.

    The message says what is wrong and, where it can, what to do about it.
    """


class TransportError(MessengerError):
    """A transport could not do what it was asked (broker down, connection lost...)."""


class BrokerUnreachableError(TransportError):
    """A transport never reached its broker within its reconnect budget.

    Its message says what was tried, for how long, and what to check. A receiver raises it from
    ``get()`` only when it never reached its broker (a start-up error: the broker is not there,
    or the DSN is wrong), and a worker stops on it; an outage after the receiver worked is
    waited out (``get()`` returns nothing meanwhile).
    """


class MessageDecodingError(MessengerError):
    """A transport message could not be turned back into an envelope."""

    def __init__(self, reason: str, *, type_name: str | None = None, field: str | None = None):
        self.reason = reason
        self.type_name = type_name
        self.field = field
        parts = []
        if type_name is not None:
            parts.append(f"message type {type_name!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        where = f" ({', '.join(parts)})" if parts else ""
        super().__init__(f"cannot decode message{where}: {reason}")

    @classmethod
    def from_message(cls, message: str) -> MessageDecodingError:
        """The error again from its complete message (as an ``UndecodableMessage`` keeps it)."""
        error = cls(message)
        error.args = (message,)
        return error

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NoHandlerForMessageError(MessengerError):
    """A message was dispatched for handling but no handler is registered for its type."""


class HandlerFailedError(MessengerError):
    """One or more handlers raised. ``exceptions`` holds each handler's exception.

    The envelope carries a ``HandledStamp`` for every handler that did succeed, so that a
    retry skips them.
    """

    def __init__(self, envelope: Envelope, exceptions: Sequence[tuple[str, BaseException]]):
        self.envelope = envelope
        self.exceptions: tuple[tuple[str, BaseException], ...] = tuple(exceptions)
        first_handler, first = self.exceptions[0]
        more = f" (and {len(self.exceptions) - 1} more)" if len(self.exceptions) > 1 else ""
        super().__init__(
            f"handling {type(envelope.message).__name__} failed in {first_handler}: "
            f"{type(first).__name__}: {first}{more}"
        )

    @property
    def wrapped_exceptions(self) -> tuple[BaseException, ...]:
        """The exceptions the handlers raised, in handler order."""
        return tuple(exception for _, exception in self.exceptions)


class UnrecoverableMessageError(MessengerError):
    """Raise from a handler: retrying cannot help; the message goes to the failure transport."""


class RecoverableMessageError(MessengerError):
    """Raise from a handler: always retry, after ``retry_delay_ms`` if given."""

    def __init__(self, *args: Any, retry_delay_ms: int | None = None):
        super().__init__(*args)
        self.retry_delay_ms = retry_delay_ms


class RejectRedeliveredMessageError(MessengerError):
    """The transport redelivered a message that may already have been handled; it is rejected."""


class DelayedMessageHandlingError(MessengerError):
    """Messages dispatched with ``DispatchAfterCurrentBusStamp`` failed after the outer dispatch.

    The outer dispatch succeeded (its envelope is ``envelope``); ``exceptions`` are the
    failures of the messages that were queued behind it, which all still ran.
    """

    def __init__(self, envelope: Envelope, exceptions: Sequence[BaseException]):
        self.envelope = envelope
        self.exceptions: tuple[BaseException, ...] = tuple(exceptions)
        first = self.exceptions[0]
        more = f" (and {len(self.exceptions) - 1} more)" if len(self.exceptions) > 1 else ""
        super().__init__(
            "a message dispatched after the current bus failed: "
            f"{type(first).__name__}: {first}{more}"
        )
