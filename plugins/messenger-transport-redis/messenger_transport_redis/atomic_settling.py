"""Settling in a handler's transaction: the acknowledgement queued in its MULTI/EXEC.

The ``redis_transaction`` middleware (:mod:`messenger_transport_redis.transaction`) gives the
handlers of a received message a transactional pipeline, queues the message's ``XACK`` (and
``XDEL`` with ``delete_after_ack``) in it and executes it: Redis applies the handlers' writes
and the acknowledgement together. The worker's ``ack()`` afterwards sends nothing.

When the connection is lost while the ``EXEC`` is under way, its reply is lost but the
``EXEC`` may have been applied, or may still be (held up in the network, or in a Redis busy
with something else when the read timed out). :meth:`AtomicSettler.was_applied` settles the
doubt for good: it ends the connection the ``EXEC`` was sent on, server side (``CLIENT KILL
ID``), so that an ``EXEC`` still on its way is never applied, then asks whether the entry is
still pending (``XPENDING``) on the same new connection, answered after the kill.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
from redis.client import Pipeline
from redis.exceptions import ResponseError

from messenger_core.envelope import Envelope
from messenger_transport_redis._wire import names_its_command
from messenger_transport_redis.connection import RedisConnection, call, logger, pipeline, safe
from messenger_transport_redis.settling import Settler

__all__ = ["AtomicSettler"]

_CLIENT_ID = "_messenger_client_id"
"""The attribute of a redis-py connection caching its server-side id: (socket, id)."""


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
        consumer)."""
        connection = self._connection
        entry_id = self._id_of(envelope)
        stream, group = connection.stream, connection.group

        def attempt(client: redis.Redis) -> Any:
            return call(client, "XPENDING", stream, group, entry_id, entry_id, 1)

        return bool(connection.with_retry_checked(attempt, "check an acknowledgement"))

    def bind(self, pipeline: Pipeline) -> int | None:
        """Give ``pipeline`` the connection its ``EXEC`` will go on (redis-py's ``reset()``
        gives it back to the pool) and return that connection's id on the server, for
        :meth:`was_applied` (``None`` if Redis does not tell it). Nothing of the transaction
        is sent yet."""
        pool: Any = pipeline.connection_pool
        connection = pool.get_connection("MULTI") if names_its_command() else pool.get_connection()
        pipeline.connection = connection
        return _client_id(connection)

    def was_applied(self, envelope: Envelope, sent_on: int | None) -> bool:
        """Whether the ``EXEC`` with ``envelope``'s acknowledgement, sent on the connection
        of server id ``sent_on`` and lost with it, was applied; definitive: once this returns,
        that ``EXEC`` is never applied later (see the module documentation), unless Redis
        refused to tell the id or to end that connection (an ACL): then logged."""
        connection = self._connection
        entry_id = self._id_of(envelope)
        stream, group = connection.stream, connection.group

        def attempt(client: redis.Redis) -> Any:
            # One round trip, in this order: the XPENDING is answered after the kill.
            pipe = pipeline(client)
            if sent_on is not None:
                pipe.execute_command("CLIENT", "KILL", "ID", sent_on)
            pipe.execute_command("XPENDING", stream, group, entry_id, entry_id, 1)
            return pipe.execute(raise_on_error=False)

        *killed, pending = connection.with_retry_checked(attempt, "check an acknowledgement")
        if isinstance(pending, Exception):
            raise connection.error("check an acknowledgement", pending)
        # A count (1 killed, 0 gone already: it applies nothing more either), or refused.
        refused = killed[0] if killed else "Redis did not tell the connection's CLIENT ID"
        if isinstance(refused, (Exception, str)):
            # An EXEC still on its way could be applied after this answer.
            logger.warning(
                "could not end the connection of a transaction whose reply was lost (%s): an "
                "EXEC still on its way to Redis could be applied after the message was retried",
                safe(refused) if isinstance(refused, Exception) else refused,
            )
        return not pending


def _client_id(connection: Any) -> int | None:
    """``connection``'s id on the server (``CLIENT ID``), asked once per socket; ``None``
    if Redis refuses the command (an ACL)."""
    connection.connect()  # no-op when connected
    cached = getattr(connection, _CLIENT_ID, None)
    sock = connection._sock  # a new socket after a reconnection is a new client on the server
    if cached is not None and cached[0] is sock:
        return cast(int | None, cached[1])
    connection.send_command("CLIENT", "ID")
    try:
        client_id: int | None = int(connection.read_response())
    except ResponseError:
        client_id = None
    setattr(connection, _CLIENT_ID, (sock, client_id))
    return client_id
