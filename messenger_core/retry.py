"""Retry strategies: whether a failed message is retried, and after how long."""

from __future__ import annotations

import importlib
import random
from typing import Any, Protocol, runtime_checkable

import attrs

from messenger_core.config import RetryStrategyConfig
from messenger_core.envelope import Envelope
from messenger_core.errors import (
    ConfigurationError,
    HandlerFailedError,
    RecoverableMessageError,
    UnrecoverableMessageError,
)
from messenger_core.stamps import RedeliveryStamp

__all__ = [
    "MultiplierRetryStrategy",
    "RetryStrategy",
    "find_error",
    "is_unrecoverable",
    "retry_count_of",
    "retry_strategy_from_config",
]


@runtime_checkable
class RetryStrategy(Protocol):
    """Decides about retrying a message whose handling failed with ``error``."""

    def is_retryable(self, envelope: Envelope, error: BaseException) -> bool:
        """Whether to send the message again."""
        ...

    def waiting_time_ms(self, envelope: Envelope, error: BaseException) -> int:
        """How long to wait before the retry, in milliseconds."""
        ...


def retry_count_of(envelope: Envelope) -> int:
    """How many times the message was retried so far."""
    stamp = envelope.last(RedeliveryStamp)
    return stamp.retry_count if stamp else 0


@attrs.frozen(kw_only=True)
class MultiplierRetryStrategy:
    """Retry up to ``max_retries`` times, waiting ``delay_ms * multiplier ** retries``.

    ``max_delay_ms`` caps the wait (0: no cap); ``jitter`` (0..1) spreads each wait by up to
    that fraction either way, so that failed messages do not all come back at once.
    """

    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    delay_ms: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_delay_ms: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )

    def is_retryable(self, envelope: Envelope, error: BaseException) -> bool:
        """Retry while fewer than ``max_retries`` retries happened."""
        return retry_count_of(envelope) < self.max_retries

    def waiting_time_ms(self, envelope: Envelope, error: BaseException) -> int:
        """The delay before the next retry (a ``RecoverableMessageError`` may set its own)."""
        recoverable = find_error(error, RecoverableMessageError)
        if recoverable is not None and recoverable.retry_delay_ms is not None:
            return int(recoverable.retry_delay_ms)
        delay = self.delay_ms * self.multiplier ** retry_count_of(envelope)
        if self.max_delay_ms and delay > self.max_delay_ms:
            delay = self.max_delay_ms
        if self.jitter:
            delay += delay * self.jitter * random.uniform(-1.0, 1.0)
        return max(0, round(delay))


def find_error(error: BaseException, kind: type[Any]) -> Any:
    """``error``, or the first of a ``HandlerFailedError``'s exceptions, that is a ``kind``."""
    if isinstance(error, kind):
        return error
    if isinstance(error, HandlerFailedError):
        for each in error.wrapped_exceptions:
            if isinstance(each, kind):
                return each
    return None


def is_unrecoverable(error: BaseException) -> bool:
    """Whether retrying cannot help: every failing handler said so."""
    if isinstance(error, UnrecoverableMessageError):
        return True
    if isinstance(error, HandlerFailedError):
        return all(isinstance(e, UnrecoverableMessageError) for e in error.wrapped_exceptions)
    return False


def retry_strategy_from_config(config: RetryStrategyConfig) -> RetryStrategy:
    """The strategy a transport's ``retry_strategy`` table describes."""
    if config.service is None:
        return MultiplierRetryStrategy(
            max_retries=config.max_retries,
            delay_ms=config.delay,
            multiplier=config.multiplier,
            max_delay_ms=config.max_delay,
            jitter=config.jitter,
        )
    module_name, _, attribute = config.service.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(
            f"retry_strategy.service {config.service!r} cannot be loaded: {error}"
        ) from None
    strategy = target() if isinstance(target, type) else target
    if not isinstance(strategy, RetryStrategy):
        raise ConfigurationError(
            f"retry_strategy.service {config.service!r} is not a retry strategy "
            "(it needs is_retryable(envelope, error) and waiting_time_ms(envelope, error))"
        )
    return strategy
