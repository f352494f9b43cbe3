"""Settling in a handler's transaction: the acknowledgement queued in its MULTI/EXEC.

The ``redis_transaction`` middleware (:mod:`messenger_transport_redis.transaction`) gives the
handlers of a received message a transactional pipeline, queues the message's ``XACK`` (and
``XDEL`` with ``delete_after_ack``) in it and executes it: Redis applies the handlers' writes
and the acknowledgement together. The worker's ``ack()`` afterwards sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
from redis.client import Pipeline

from messenger_core.envelope import Envelope
from messenger_transport_redis.connection import RedisConnection, call
from messenger_transport_redis.settling import Settler

__all__ = ["AtomicSettler"]


class AtomicSettler:
    """One transport's side of transactional handling (see the module documentation)."""

    def __init__(
        self,
        connection: RedisConnection,
        settler: Settler,
        entry_id_of: Callable[[Envelope], bytes],
    ) -> None:
        self._connection = connection
        self._settler = settler
        self._id_of = entry_id_of

    def pipeline(self) -> Pipeline:
        """A new MULTI/EXEC pipeline (``pipeline(transaction=True)``) on the transport's
        Redis; connects first if needed."""
        connection = self._connection
        connection.check_open()
        client = connection.client
        if client is None or not connection.ready:
            client = connection.prepare()
        return client.pipeline(transaction=True)

    def queue_ack(self, pipeline: Pipeline, envelope: Envelope) -> None:
        """Queue the acknowledgement of ``envelope`` in ``pipeline``: ``XACK``, and ``XDEL``
        with ``delete_after_ack``."""
        settle = [(self._id_of(envelope), self._connection.options.delete_after_ack)]
        for command in self._settler.commands(settle):
            cast(Any, pipeline).execute_command(*command)

    def settled(self, envelope: Envelope) -> None:
        """The pipeline of :meth:`queue_ack` was executed: the message is settled, and the
        transport's ``ack()`` (or ``reject()``) of it sends nothing."""
        self._settler.settled_in_transaction(self._id_of(envelope))

    def is_pending(self, envelope: Envelope) -> bool:
        """Whether ``envelope``'s entry is still unacknowledged in the group (by any
        consumer): after a connection lost during ``EXEC``, whether it was not applied."""
        connection = self._connection
        entry_id = self._id_of(envelope)
        stream, group = connection.stream, connection.group

        def attempt(client: redis.Redis) -> Any:
            return call(client, "XPENDING", stream, group, entry_id, entry_id, 1)

        return bool(connection.with_retry_checked(attempt, "check an acknowledgement"))
