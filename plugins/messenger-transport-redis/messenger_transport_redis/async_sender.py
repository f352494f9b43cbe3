"""Sending from an event loop: the sender's commands through ``redis.asyncio``.

``await bus.dispatch_async(message)`` sends through here, without a dispatch thread (see
:mod:`messenger_core.async_bus`). The command is the sync sender's
(:meth:`~messenger_transport_redis.sender.RedisSender.command`: the same serializer, the same
``XADD`` entry or delayed ``ZADD`` member); it goes through a ``redis.asyncio`` client of the
running event loop (:class:`~messenger_core.async_clients.PerEventLoop`: one per loop, closed
with the loop or the transport), configured as the sync client is, and through the same
reconnect policy (:meth:`~messenger_transport_redis.reconnect.ReconnectPolicy.run_async`), so
outages, error replies and a closed transport raise what the sync sender raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from messenger_core.async_clients import PerEventLoop
from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp
from messenger_transport_redis.connection import RedisConnection
from messenger_transport_redis.sender import RedisSender

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["AsyncRedisSender"]


class AsyncRedisSender:
    """Sends envelopes as :class:`RedisSender` does, awaited on the running event loop.

    Contract: :meth:`send` stores what ``RedisSender.send`` stores and returns what it returns
    (a stream entry's id as ``TransportMessageIdStamp``; none for a delayed message). With
    ``auto_setup``, the first send of a transport whose sync side never connected creates the
    stream and the group, as the sync side's first use does.
    """

    def __init__(self, connection: RedisConnection, sender: RedisSender) -> None:
        self._connection = connection
        self._sender = sender
        self._clients: PerEventLoop[redis.asyncio.Redis] = PerEventLoop(self._open, _close)
        self._set_up = False

    async def send(self, envelope: Envelope) -> Envelope:
        """Store one message (one ``XADD`` or ``ZADD``); the envelope with its entry id."""
        connection = self._connection
        connection.check_open()
        command = self._sender.command(envelope)
        client = await self._clients.get()
        if not self._set_up:
            await self._setup(client)
        untyped: Any = client  # (redis-py's execute_command is not annotated)
        reply = await self._run(client, lambda: untyped.execute_command(*command), "send messages")
        if command[0] != "XADD":
            return envelope
        entry_id = reply.decode("ascii") if isinstance(reply, bytes) else str(reply)
        return envelope.with_(TransportMessageIdStamp(id=entry_id))

    def close(self) -> None:
        """Close the clients of every event loop (see :meth:`PerEventLoop.close`)."""
        self._clients.close()

    async def _open(self) -> redis.asyncio.Redis:
        return self._connection.endpoint.async_client(self._connection.options)

    async def _setup(self, client: redis.asyncio.Redis) -> None:
        """What the sync side's first use does for sending (``prepare``): with
        ``auto_setup``, create the stream and the group (one ``XGROUP CREATE … MKSTREAM``)
        and refuse deleting options with several groups; skipped once either side did."""
        connection = self._connection
        if connection.ready or not connection.options.auto_setup:
            self._set_up = True
            return

        async def setup() -> None:
            pipe: Any = client.pipeline(transaction=False)
            stream, group = connection.stream, connection.group
            pipe.execute_command("XGROUP", "CREATE", stream, group, "0", "MKSTREAM")
            pipe.execute_command("XINFO", "GROUPS", connection.stream)
            created, groups = await pipe.execute(raise_on_error=False)
            connection.check_setup(created, groups)

        await self._run(client, setup, "connect")
        self._set_up = True

    async def _run(self, client: redis.asyncio.Redis, operation: Any, what: str) -> Any:
        """``operation()`` through the reconnect policy; error replies as TransportError."""
        connection = self._connection

        async def drop_connections() -> None:
            # The pool's idle connections may be as dead as the one that failed.
            await client.connection_pool.disconnect(inuse_connections=False)

        try:
            return await connection.reconnect.run_async(operation, what, on_error=drop_connections)
        except ResponseError as error:
            raise connection.error(what, error) from error


async def _close(client: redis.asyncio.Redis) -> None:
    # aclose() from redis-py 5.0.1 on; close(), its older name, warns there.
    close: Any = getattr(client, "aclose", None) or client.close
    await close()
