"""Transactional handling: a handler's writes and its message's acknowledgement in one EXEC.

The ``redis_transaction`` middleware gives the handlers of a *received* message a MULTI/EXEC
pipeline (redis-py's ``pipeline(transaction=True)``), which they reach with
:func:`current_pipeline`::

    from messenger_transport_redis import current_pipeline

    @messenger.handler
    def on_order_placed(message: OrderPlaced) -> None:
        current_pipeline().hincrby("orders:placed", str(message.order_id), 1)

Commands on the pipeline are queued, not run: after the handlers returned, the middleware
queues the message's ``XACK`` (and ``XDEL`` with ``delete_after_ack``) when it came from a
Redis transport, and executes the pipeline: Redis applies the handlers' writes and the
acknowledgement together, or (the worker killed before) neither, and the message comes back to
be handled once. The worker's ``ack()`` afterwards sends nothing. The pipeline runs on the
receiving transport's Redis.

If a handler raises, the pipeline is discarded (nothing was sent) and the worker's retry or
failure path runs as without the middleware; the retry runs every handler again, those that
had succeeded too (their writes were discarded). Messages received from other transports get a
pipeline on the Redis of the transport named by the ``transport`` option (no acknowledgement
in it), and pass through without one when it is not set. Dispatched messages (not received)
always pass through.
"""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import Any

import redis
from redis.client import Pipeline

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, HandlerFailedError
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import HandledStamp, ReceivedStamp
from messenger_core.transport_options import reject_unknown_options
from messenger_transport_redis.atomic_settling import AtomicSettler
from messenger_transport_redis.connection import safe
from messenger_transport_redis.transport import RedisTransport

__all__ = ["NoPipelineError", "RedisTransactionMiddleware", "current_pipeline"]

logger = logging.getLogger("messenger.transport.redis")

OPTIONS = ("transport",)

_current: ContextVar[Pipeline | None] = ContextVar(
    "messenger_transport_redis_transaction", default=None
)


class NoPipelineError(LookupError):
    """:func:`current_pipeline` was called outside a transactional handling."""


def current_pipeline() -> Pipeline:
    """The MULTI/EXEC pipeline the ``redis_transaction`` middleware runs the current handler
    with; a :class:`NoPipelineError` outside one.

    Queue writes on it and never call ``execute()``, ``discard()`` or ``watch()``: the
    middleware executes it, with the message's acknowledgement. Its commands return nothing
    until then (their replies are not available to the handler).
    """
    pipeline = _current.get()
    if pipeline is None:
        raise NoPipelineError(
            "no pipeline: current_pipeline() works in a handler of a message received by a "
            "worker whose bus lists the 'redis_transaction' middleware (for messages from a "
            "non-Redis transport, with its 'transport' option set)"
        )
    return pipeline


class RedisTransactionMiddleware:
    """The ``redis_transaction`` middleware; see the module documentation.

    Option ``transport``: the name of a Redis transport whose Redis runs the transactions of
    messages received from other transports (default none: no pipeline for them).
    """

    noop_for_bare_messages = True
    """Only received messages are wrapped: a dispatch without stamps passes through."""

    def __init__(self, context: MiddlewareContext) -> None:
        options = dict(context.options)
        reject_unknown_options(options, OPTIONS, subject="the redis_transaction middleware")
        fallback = options.get("transport")
        if fallback is not None and (
            not isinstance(fallback, str) or fallback not in context.config.transports
        ):
            known = ", ".join(sorted(context.config.transports)) or "(none)"
            raise ConfigurationError(
                "option 'transport' must name a configured Redis transport, got "
                f"{fallback!r}; configured transports: {known}"
            )
        self._fallback: str | None = fallback
        self._transports = context.transports
        self._runners: dict[str, _PipelineRunner | None] = {}
        self._lock = threading.Lock()

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        """Handle a received ``envelope`` with a MULTI/EXEC pipeline; pass anything else on."""
        received = envelope.last(ReceivedStamp)
        if received is None or _current.get() is not None:
            return next(envelope)
        name = received.transport_name
        if name in self._runners:
            runner = self._runners[name]
        else:
            with self._lock:
                runner = self._runners.get(name) or self._runner_for(name)
                self._runners[name] = runner
        if runner is None:
            return next(envelope)
        return runner.handle(envelope, next)

    def _runner_for(self, name: str) -> _PipelineRunner | None:
        transport = self._transports(name)
        if isinstance(transport, RedisTransport):
            return _PipelineRunner(transport.atomic, settles=True)
        if self._fallback is None:
            return None
        fallback = self._transports(self._fallback)
        if not isinstance(fallback, RedisTransport):
            raise ConfigurationError(
                "the redis_transaction middleware's option 'transport' names "
                f"{self._fallback!r}, which is not a Redis transport "
                f"({type(fallback).__name__})"
            )
        return _PipelineRunner(fallback.atomic, settles=False)


class _PipelineRunner:
    """Runs handlers with a pipeline on one Redis, acknowledging in it if ``settles``."""

    def __init__(self, atomic: AtomicSettler, *, settles: bool) -> None:
        self._atomic = atomic
        self._settles = settles

    def handle(self, envelope: Envelope, next: Next) -> Envelope:
        atomic = self._atomic
        with atomic.pipeline() as pipeline:  # leaving resets it: a failure sent nothing
            token = _current.set(pipeline)
            try:
                result = next(envelope)
            except HandlerFailedError as error:
                # The handlers that succeeded lose their writes with the pipeline: the retry
                # must run them again, not skip them for their HandledStamp.
                error.envelope = error.envelope.without_all(HandledStamp)
                raise
            finally:
                _current.reset(token)
            if not self._settles:
                _log_failed_commands(pipeline.execute(raise_on_error=False))
                return result
            atomic.queue_ack(pipeline, envelope)
            try:
                replies = pipeline.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                # The EXEC may have been applied, its reply lost: the acknowledgement in it
                # tells. Applied, the message is handled; not applied, it is retried.
                if atomic.is_pending(envelope):
                    raise
                logger.warning("the transaction was applied, its reply lost: %s", safe(error))
                replies = []
        atomic.settled(envelope)
        _log_failed_commands(replies)
        return result


def _log_failed_commands(replies: list[Any]) -> None:
    """Commands that failed inside an applied EXEC (a wrong type...): Redis ran the others
    and the acknowledgement, and has no rollback; say which failed."""
    for reply in replies:
        if isinstance(reply, Exception):
            logger.error(
                "a command of a handler's transaction failed (the others were applied, the "
                "message acknowledged): %s",
                safe(reply),
            )
