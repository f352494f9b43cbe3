"""What becomes of a message whose handling failed, and how the worker waits out an outage.

The worker hands every failed message to its :class:`FailurePolicy`, which settles it step by
step, top to bottom in :meth:`FailurePolicy.settle` (Symfony's retry listener, then its
failure-transport listener):

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
   unsettled, so it comes back (at once from a
   :class:`~messenger_core.transport.ReleasingReceiver`), and only its receiver pauses for a
   :class:`Backoff` interval; the worker keeps serving its other transports and stops at once
   on SIGTERM.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import attrs

from messenger_core._describe import describe_message
from messenger_core.config import RetryStrategyConfig
from messenger_core.envelope import Envelope
from messenger_core.errors import (
    ConfigurationError,
    MessageDecodingError,
    RecoverableMessageError,
    TransportError,
)
from messenger_core.logging_json import message_fields
from messenger_core.retry import (
    RetryStrategy,
    find_error,
    is_unrecoverable,
    retry_count_of,
    retry_strategy_from_config,
)
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
from messenger_core.transport import Receiver, ReleasingReceiver, UndecodableMessage

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.worker import Worker

__all__ = [
    "HISTORY",
    "Backoff",
    "FailurePolicy",
    "failure_copy",
    "failure_transport_for",
    "is_encoding_error",
    "quarantined_copy",
    "retry_copy",
    "should_retry",
    "strategy_for",
]

logger = logging.getLogger("messenger.worker")

HISTORY = 3
"""Retries keep this many ``RedeliveryStamp`` / ``ErrorDetailsStamp`` of the past attempts:
header sizes are limited on most brokers."""

_DEFAULT_RETRY = RetryStrategyConfig()


class FailurePolicy:
    """Settles the messages of one worker whose handling failed (steps 1 to 5 above).

    Each consumed transport's retry strategy is loaded when the policy is made: one that
    cannot be loaded is a configuration error at the worker's start, not at the first failure
    (where it would stop the worker with the message still reserved).
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.messenger = worker.messenger
        self._strategies = {
            name: strategy_for(self.messenger, name) for name in worker.transport_names
        }

    def settle(
        self,
        received: Envelope,
        transport_name: str,
        receiver: Receiver,
        error: BaseException,
        failed: Envelope,
    ) -> None:
        """Retry the message, or park it; then reject the original; or leave it for later.

        ``received`` is the envelope as ``receiver`` gave it (what is rejected or left);
        ``failed`` is the one whose handling raised ``error`` (with the stamps of the handlers
        that succeeded, which a retry skips).
        """
        worker = self.worker
        worker.stats.failed += 1
        # 1. Retry or park?
        retry = should_retry(self._strategies[transport_name], failed, error)
        self.messenger.hooks.message_failed(failed, transport_name, error, retry)
        retried: Envelope | None = None
        try:
            try:
                if retry:
                    retried = self._send_retry(received, transport_name, failed, error)  # 2.
                else:
                    self._park(transport_name, failed, error)  # 3.
            except Exception as storing_error:
                if not is_encoding_error(storing_error):
                    raise
                # 4. It cannot be written (retrying cannot change that): park its raw form.
                self._park(transport_name, failed, error, encoding_error=storing_error)
        except Exception as storing_error:
            # 5. The store is down. Leave the original unsettled: it comes back later; never
            # drop it. Only this receiver waits; the others are still served.
            worker.pause_receiver(
                transport_name,
                f"{describe_message(received)} from {transport_name} failed ({error}) and could "
                f"not be {'re-sent for retry' if retry else 'stored in the failure transport'}; "
                "it stays unsettled and comes back later",
                storing_error,
            )
            # A receiver that can take the message back (Redis: its consumer's pending list)
            # delivers it again once storing works, instead of after its redeliver_timeout.
            if isinstance(receiver, ReleasingReceiver):
                receiver.release(received)
            return
        worker.backoff.reset(transport_name)
        receiver.reject(received)
        if retried is not None:
            # Announced once settled: a plugin's error is not taken for a failed store.
            self.messenger.hooks.message_retried(retried, transport_name, retry_count_of(retried))

    def _send_retry(
        self, received: Envelope, transport_name: str, failed: Envelope, error: BaseException
    ) -> Envelope:
        """Step 2: send the retry copy to the message's own transport; return the copy."""
        copy = retry_copy(self._strategies[transport_name], failed, error)
        self.messenger.get_transport(transport_name).send(copy)
        self.worker.stats.retried += 1
        logger.warning(
            "%s from %s failed, retry %d: %s",
            describe_message(received),
            transport_name,
            retry_count_of(copy),
            error,
            extra=message_fields(received, transport_name),
        )
        return copy

    def _park(
        self,
        transport_name: str,
        envelope: Envelope,
        error: BaseException,
        *,
        encoding_error: BaseException | None = None,
    ) -> None:
        """Step 3 (and 4 with ``encoding_error``): store the failure copy, or give up on it."""
        failure_name = failure_transport_for(self.messenger, transport_name)
        stats = self.worker.stats
        if failure_name is None:
            stats.rejected += 1
            logger.error(
                "%s from %s failed for good and no failure transport is configured; "
                "it is rejected: %s",
                describe_message(envelope),
                transport_name,
                error,
                extra=message_fields(envelope, transport_name),
            )
            return
        if encoding_error is None:
            copy = failure_copy(envelope, transport_name, error)
        else:
            copy = quarantined_copy(envelope, transport_name, error, encoding_error)
        self.messenger.get_transport(failure_name).send(copy)
        stats.parked += 1
        logger.error(
            "%s from %s failed for good and was stored in failure transport %s%s: %s",
            describe_message(envelope),
            transport_name,
            failure_name,
            ""
            if encoding_error is None
            else f" in its raw form, since it cannot be encoded again ({encoding_error})",
            error,
            extra=message_fields(envelope, transport_name),
        )


def strategy_for(messenger: Messenger, transport_name: str) -> RetryStrategy:
    """The retry strategy configured for ``transport_name`` (the default one if none is)."""
    config = messenger.config.transports.get(transport_name)
    return retry_strategy_from_config(config.retry_strategy if config else _DEFAULT_RETRY)


def failure_transport_for(messenger: Messenger, transport_name: str) -> str | None:
    """The failure transport of ``transport_name`` (its own, else the global one)."""
    config = messenger.config
    own = config.transports.get(transport_name)
    return (own.failure_transport if own else None) or config.failure_transport


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
