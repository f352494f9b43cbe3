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

If the connection is lost during the ``EXEC`` (or its reply times out), the doubt is settled
by :meth:`~messenger_transport_redis.atomic_settling.AtomicSettler.was_applied`: applied, the
message counts as handled; not applied, it is retried (a ``RecoverableMessageError``: whatever
the retry strategy allows, never parked for an outage).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import redis
from redis.client import Pipeline

from messenger_core.envelope import Envelope
from messenger_core.errors import HandlerFailedError, RecoverableMessageError
from messenger_core.middleware import Next
from messenger_core.middleware.received_transaction import ReceivedMessageTransaction, rolled_back
from messenger_transport_redis.atomic_settling import AtomicSettler
from messenger_transport_redis.connection import safe
from messenger_transport_redis.reconnect import RETRYABLE
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


class RedisTransactionMiddleware(ReceivedMessageTransaction[RedisTransport]):
    """The ``redis_transaction`` middleware; see the module documentation.

    Option ``transport``: the name of a Redis transport whose Redis runs the transactions of
    messages received from other transports (default none: no pipeline for them).
    """

    name = "redis_transaction"
    store = "Redis"
    transport_class = RedisTransport
    options = OPTIONS

    def active(self) -> bool:
        """Whether a pipeline of this middleware is open in this context."""
        return _current.get() is not None

    def runner(self, transport: RedisTransport, *, settles: bool) -> _PipelineRunner:
        """Pipelines on ``transport``'s Redis."""
        return _PipelineRunner(transport.atomic, settles=settles)


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
                rolled_back(error)
                raise
            finally:
                _current.reset(token)
            if not self._settles:
                _log_failed_commands(pipeline.execute(raise_on_error=False))
                return result
            atomic.queue_ack(pipeline, envelope)
            try:
                sent_on = atomic.bind(pipeline)
            except RETRYABLE as error:  # nothing of the transaction was sent
                raise _not_applied(error) from error
            try:
                replies = pipeline.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                # The EXEC may have been applied (or may still be: a timeout), its reply
                # lost: fenced off, the acknowledgement in it tells. Applied, the message is
                # handled; not applied, it is retried.
                if not atomic.was_applied(envelope, sent_on):
                    raise _not_applied(error) from error
                logger.warning("the transaction was applied, its reply lost: %s", safe(error))
                replies = []
        atomic.settled(envelope)
        _log_failed_commands(replies)
        return result


def _not_applied(error: BaseException) -> RecoverableMessageError:
    """The error for a transaction Redis did not apply because the connection was lost: the
    handlers did their part, so the message is retried whatever its retry strategy allows
    (never parked or rejected for an outage)."""
    return RecoverableMessageError(
        f"the message's transaction was not applied, the connection to Redis was lost: "
        f"{safe(error)}"
    )


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
