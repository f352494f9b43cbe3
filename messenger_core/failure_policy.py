"""What becomes of a message whose handling failed, and how the worker waits out an outage.

Read top to bottom, the worker's policy for one failed message is:

1. **Retry or park?** :func:`should_retry`: a message that could not be decoded, or that every
   failing handler called unrecoverable, is parked at once; a ``RecoverableMessageError`` is
   always retried; otherwise the transport's retry strategy decides.
2. **Retry**: a copy (:func:`retry_copy`) with a ``DelayStamp``, a ``RedeliveryStamp`` and the
   error's details is sent to the message's own transport; then the original is rejected.
3. **Park**: a copy (:func:`failure_copy`) is sent to the failure transport; then the original
   is rejected. Without a failure transport the original is rejected and logged.
4. **The copy cannot be encoded** (:func:`is_encoding_error`: the serializer refused it, say a
   string with a lone surrogate): retrying cannot help, so its raw form is parked instead
   (:func:`quarantined_copy`, an ``UndecodableMessage`` with the reason), never retried forever.
5. **The store is down** (sending the copy raised anything else): the original is left
   unsettled, so it comes back, and only its receiver pauses for a :class:`Backoff` interval;
   the worker keeps serving its other transports and stops at once on SIGTERM.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from datetime import UTC, datetime

import attrs

from messenger_core.envelope import Envelope
from messenger_core.errors import (
    ConfigurationError,
    MessageDecodingError,
    RecoverableMessageError,
    TransportError,
)
from messenger_core.retry import RetryStrategy, find_error, is_unrecoverable, retry_count_of
from messenger_core.stamps import (
    DelayStamp,
    ErrorDetailsStamp,
    HandledByStamp,
    HandledStamp,
    NonSendableStamp,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    Stamp,
)
from messenger_core.transport import UndecodableMessage

__all__ = [
    "HISTORY",
    "Backoff",
    "failure_copy",
    "is_encoding_error",
    "quarantined_copy",
    "retry_copy",
    "should_retry",
]

HISTORY = 3
"""Retries keep this many ``RedeliveryStamp`` / ``ErrorDetailsStamp`` of the past attempts:
header sizes are limited on most brokers."""


def should_retry(strategy: RetryStrategy, envelope: Envelope, error: BaseException) -> bool:
    """Whether ``envelope``, whose handling failed with ``error``, is sent again (step 1)."""
    if isinstance(error, MessageDecodingError) or is_unrecoverable(error):
        return False
    if find_error(error, RecoverableMessageError) is not None:
        return True
    return strategy.is_retryable(envelope, error)


def retry_copy(strategy: RetryStrategy, envelope: Envelope, error: BaseException) -> Envelope:
    """The copy re-sent for a retry: delayed, counted, with the error and the handlers that
    already succeeded (a retry skips them)."""
    delay = strategy.waiting_time_ms(envelope, error)
    handled = tuple(HandledByStamp(handler_name=s.handler_name) for s in envelope.all(HandledStamp))
    return with_history(
        sendable(envelope).without_all(DelayStamp),
        DelayStamp(delay_ms=delay),
        RedeliveryStamp(retry_count=retry_count_of(envelope) + 1, redelivered_at=_now()),
        ErrorDetailsStamp.from_exception(error),
        *handled,
    )


def failure_copy(envelope: Envelope, transport_name: str, error: BaseException) -> Envelope:
    """The copy stored in the failure transport: where it came from and why it failed."""
    copy = sendable(envelope).without_all(DelayStamp)
    if copy.last(SentToFailureTransportStamp) is None:
        copy = copy.with_(SentToFailureTransportStamp(original_receiver_name=transport_name))
    return with_history(copy, ErrorDetailsStamp.from_exception(error))


def quarantined_copy(
    envelope: Envelope, transport_name: str, error: BaseException, encoding_error: BaseException
) -> Envelope:
    """What is parked when the failure copy of ``envelope`` cannot be encoded (step 4).

    A message received as an ``UndecodableMessage`` keeps its raw body and headers; any other
    message becomes an ``UndecodableMessage`` holding its ``repr`` (as UTF-8) and the reason,
    since it has no encodable form. Only the stamps that say where it came from and why it
    failed are kept: another stamp may be what could not be encoded.
    """
    message = envelope.message
    reason = f"cannot be encoded again ({type(encoding_error).__name__}: {encoding_error})"
    if isinstance(message, UndecodableMessage):
        raw = UndecodableMessage(
            message.body, _encodable_headers(message.headers), _encodable(message.reason)
        )
    else:
        name = f"{type(message).__module__}.{type(message).__qualname__}"
        raw = UndecodableMessage(
            _encodable(repr(message)).encode(),
            {"type": _encodable(name), "Content-Type": "text/plain; charset=utf-8"},
            _encodable(f"cannot decode message: the message {reason}"),
        )
    origin = envelope.last(SentToFailureTransportStamp)
    return Envelope(
        raw,
        [
            origin or SentToFailureTransportStamp(original_receiver_name=transport_name),
            _encodable_details(ErrorDetailsStamp.from_exception(error)),
        ],
    )


def _encodable_details(details: ErrorDetailsStamp) -> ErrorDetailsStamp:
    # The handler's error message may quote the very text that could not be encoded.
    return attrs.evolve(
        details,
        exception_class=_encodable(details.exception_class),
        message=_encodable(details.message),
        code=_encodable(details.code) if isinstance(details.code, str) else details.code,
        traceback=_encodable(details.traceback) if details.traceback is not None else None,
    )


def is_encoding_error(error: BaseException) -> bool:
    """Whether ``error``, raised while sending a copy, says the copy cannot be encoded.

    Serializers raise ``TypeError``/``ValueError`` (``UnicodeEncodeError`` is one) for values
    they cannot write, ``ConfigurationError`` for a class they cannot handle, and a
    ``RecursionError`` for absurd nesting. Anything else (``OSError``, a ``TransportError``, a
    driver's own error) is taken for an outage of the store: waiting may help.
    """
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        if isinstance(current, OSError | TransportError):
            return False
        if isinstance(current, TypeError | ValueError | RecursionError | ConfigurationError):
            return True
        current = current.__cause__
        seen += 1
    return False


class Backoff:
    """Growing, capped waits with jitter, counted separately per key (one per receiver).

    The n-th consecutive wait for a key is ``initial * 2 ** (n - 1)`` capped at ``maximum``,
    spread by up to ``jitter`` (a fraction) either way so that workers do not retry in step.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, jitter: float = 0.2) -> None:
        if not 0 < initial <= maximum:
            raise ConfigurationError("a backoff needs 0 < initial <= maximum")
        if not 0 <= jitter < 1:
            raise ConfigurationError("a backoff's jitter is a fraction from 0 to below 1")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._attempts: dict[Hashable, int] = {}

    def next_delay(self, key: Hashable) -> float:
        """The wait before the next attempt for ``key`` (each call counts one more failure)."""
        attempts = self._attempts.get(key, 0)
        self._attempts[key] = attempts + 1
        delay = min(self.maximum, self.initial * 2.0 ** min(attempts, 30))
        return delay * (1 + self.jitter * random.uniform(-1.0, 1.0))

    def reset(self, key: Hashable) -> None:
        """``key`` works again: its next wait starts from ``initial``."""
        self._attempts.pop(key, None)

    def failures(self, key: Hashable) -> int:
        """Consecutive failures counted for ``key``."""
        return self._attempts.get(key, 0)


def sendable(envelope: Envelope) -> Envelope:
    """``envelope`` without the stamps that describe this process only."""
    return envelope.without_stamps_of(NonSendableStamp)


def with_history(envelope: Envelope, *stamps: Stamp) -> Envelope:
    """Add ``stamps``, keeping only the newest ``HISTORY`` redelivery and error stamps."""
    envelope = envelope.with_(*stamps)
    for kind in (RedeliveryStamp, ErrorDetailsStamp):
        kept = envelope.all(kind)
        if len(kept) > HISTORY:
            drop = set(map(id, kept[:-HISTORY]))
            envelope = Envelope(envelope.message, [s for s in envelope.stamps if id(s) not in drop])
    return envelope


def _encodable(text: str) -> str:
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodable_headers(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else ()
    return {_encodable(str(key)): _encodable(str(value)) for key, value in items}


def _now() -> datetime:
    return datetime.now(UTC)
