"""Sending from an event loop: the sender's commands through ``redis.asyncio``.

``await bus.dispatch_async(message)`` sends through here, without a dispatch thread (see
:mod:`messenger_core.async_bus`). The command is the sync sender's
(:meth:`~messenger_transport_redis.sender.RedisSender.command`: the same serializer, the same
``XADD`` entry or delayed ``ZADD`` member). Each running event loop has a ``redis.asyncio``
client of its own (:class:`~messenger_core.async_clients.PerEventLoop`, closed with the loop or
the transport), configured as the sync client is.

As on the sync side, redis-py's command layer costs more than the round trip to a local Redis,
so the commands are packed by hand (:mod:`._wire`) and written on one connection of the
client's pool held for sending (:class:`_HeldConnection`). Sends that arrive while it waits
for a reply are queued and written together once it is free, in one packet (one round trip
for the lot, as a batch is): many concurrent ``dispatch_async`` calls then cost a few round
trips instead of a connection each. Entries keep the order in which the sends reached the
connection. After a connection
error the commands are sent again through the same reconnect policy as the sync sender's
(:meth:`~messenger_transport_redis.reconnect.ReconnectPolicy.run_async`), so outages, error
replies and a closed transport raise what the sync sender raises (a message whose reply was
lost may be stored twice: at-least-once, as there).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from redis.exceptions import ReadOnlyError, ResponseError

from messenger_core.async_clients import PerEventLoop
from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp
from messenger_transport_redis._wire import _NAMES_ITS_COMMAND, pack
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
        self._held: PerEventLoop[_HeldConnection] = PerEventLoop(self._open, _close)
        self._set_up = False

    async def send(self, envelope: Envelope) -> Envelope:
        """Store one message (one ``XADD`` or ``ZADD``); the envelope with its entry id."""
        connection = self._connection
        connection.check_open()
        command = self._sender.command(envelope)
        held = await self._held.get()
        if not self._set_up:
            await held.once(self._setup)
        reply = await held.exchange(pack(*command))
        if isinstance(reply, ResponseError):
            raise connection.error("send messages", reply) from reply
        if command[0] != "XADD":
            return envelope
        entry_id = reply.decode("ascii") if isinstance(reply, bytes) else str(reply)
        return envelope.with_(TransportMessageIdStamp(id=entry_id))

    def close(self) -> None:
        """Close the clients of every event loop (see :meth:`PerEventLoop.close`)."""
        self._held.close()

    async def _open(self) -> _HeldConnection:
        connection = self._connection
        return _HeldConnection(connection, connection.endpoint.async_client(connection.options))

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
            pipe.execute_command("XINFO", "GROUPS", stream)
            created, groups = await pipe.execute(raise_on_error=False)
            connection.check_setup(created, groups)

        async def drop_connections() -> None:
            await client.connection_pool.disconnect(inuse_connections=False)

        try:
            await connection.reconnect.run_async(setup, "connect", on_error=drop_connections)
        except ResponseError as error:
            raise connection.error("connect", error) from error
        self._set_up = True


class _HeldConnection:
    """One event loop's client and the connection of its pool held for sending.

    :meth:`exchange` writes a packed command and returns its reply; calls arriving while the
    connection waits for a reply are written together when it is free (see the module
    documentation). Only used from its loop, so it needs no lock.
    """

    def __init__(self, connection: RedisConnection, client: redis.asyncio.Redis) -> None:
        self._owner = connection
        self.client = client
        self._pool: Any = client.connection_pool
        self._held: Any = None
        self._busy = False
        self._queued: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._setting_up: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None  # (a task is kept alive by a reference)

    async def once(self, setup: Callable[[redis.asyncio.Redis], Coroutine[Any, Any, None]]) -> None:
        """``setup(client)``, run once for the callers arriving meanwhile (again after a
        failure, which each of them raises)."""
        task = self._setting_up
        if task is None or (task.done() and task.exception() is not None):
            task = self._setting_up = asyncio.get_running_loop().create_task(setup(self.client))
        await asyncio.shield(task)

    async def exchange(self, packet: bytes) -> Any:
        """Write ``packet`` (one command) and return its reply (an error reply as the
        :class:`ResponseError`), retried through the reconnect policy."""
        if self._busy:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queued.append((packet, future))
            return await future
        self._busy = True
        try:
            return (await self._roundtrip(packet, 1))[0]
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Done with the connection: write what queued meanwhile (in a task of its own, so
        that no caller's cancellation stops it), or let the next caller have it."""
        if self._queued:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        else:
            self._busy = False

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                replies = await self._roundtrip(b"".join(p for p, _ in batch), len(batch))
            except Exception as error:  # each caller raises it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            except BaseException:  # cancelled (its loop is shutting down): so are they
                for _, future in batch + self._queued:
                    future.cancel()
                self._queued, self._busy = [], False
                raise
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():  # (its caller was cancelled)
                    future.set_result(reply)
        self._busy = False

    async def _roundtrip(self, packet: bytes, count: int) -> list[Any]:
        """Write ``packet`` (``count`` commands) and read their replies, through the sync
        sender's reconnect policy (the same retries, budget and errors)."""

        async def attempt() -> list[Any]:
            held = self._held
            if held is None:
                pool = self._pool
                held = self._held = await (
                    pool.get_connection("XADD") if _NAMES_ITS_COMMAND else pool.get_connection()
                )
            try:
                await held.send_packed_command(packet)
                replies = [await _read(held) for _ in range(count)]
            except BaseException:  # a reply left unread (cancelled) must not meet the next
                await self.disconnect()
                raise
            if any(isinstance(reply, ReadOnlyError) for reply in replies):
                # A failover made this server a replica: reconnect and send again.
                await self.disconnect()
                raise next(r for r in replies if isinstance(r, ReadOnlyError))
            return replies

        return await self._owner.reconnect.run_async(
            attempt, "send messages", on_error=self.disconnect
        )

    async def disconnect(self) -> None:
        """Close the held connection (and the pool's idle ones); the next use reconnects."""
        held, self._held = self._held, None
        if held is not None:
            await held.disconnect()
            released = self._pool.release(held)
            if inspect.isawaitable(released):  # (a coroutine, in some versions)
                await released
        await self._pool.disconnect(inuse_connections=False)


async def _read(connection: Any) -> Any:
    try:
        return await connection.read_response()
    except ResponseError as error:
        return error


async def _close(held: _HeldConnection) -> None:
    await held.disconnect()
    # aclose() from redis-py 5.0.1 on; close(), its older name, warns there.
    close: Any = getattr(held.client, "aclose", None) or held.client.close
    await close()
