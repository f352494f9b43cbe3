"""Log every message a bus processes (the ``logging`` middleware)."""

from __future__ import annotations

import logging

from messenger_core._describe import describe_message
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError
from messenger_core.logging_json import message_fields
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import HandledStamp, ReceivedStamp, SentStamp

__all__ = ["LoggingMiddleware"]

logger = logging.getLogger("messenger.bus")


class LoggingMiddleware:
    """Logs, at DEBUG, each message dispatched and what became of it (handled, sent, failed).

    Option ``level`` (a logging level name) changes the level of the success lines.
    """

    def __init__(self, context: MiddlewareContext | None = None) -> None:
        self.bus_name = context.bus_name if context else "?"
        level = str(context.options.get("level", "DEBUG")) if context else "DEBUG"
        self.level = logging.getLevelName(level.upper())
        if not isinstance(self.level, int):
            raise ConfigurationError(f"logging middleware: unknown level {level!r}")

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        name = describe_message(envelope)  # with the transport's id of a received message
        origin = envelope.last(ReceivedStamp)
        source = f" from transport {origin.transport_name!r}" if origin else ""
        try:
            result = next(envelope)
        except Exception as error:
            logger.warning(
                "bus %s: %s%s failed: %s",
                self.bus_name,
                name,
                source,
                error,
                exc_info=False,
                extra=message_fields(envelope),
            )
            raise
        if logger.isEnabledFor(self.level):
            sent = [s.sender_name for s in result.all(SentStamp)]
            handled = [s.handler_name for s in result.all(HandledStamp)]
            outcome = f"sent to {', '.join(sent)}" if sent else f"handled by {', '.join(handled)}"
            logger.log(
                self.level,
                "bus %s: %s%s %s",
                self.bus_name,
                name,
                source,
                outcome,
                extra=message_fields(result),
            )
        return result
