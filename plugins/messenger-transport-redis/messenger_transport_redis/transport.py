"""The Redis transport: Redis Streams with a consumer group, in Symfony Messenger's layout.

:class:`RedisTransport` is a facade over the roles, each in its own module, the way Symfony
splits its Redis transport:

- :mod:`.connection` (:class:`~.connection.RedisConnection`): the client, the connections held
  for the hot paths, the Lua scripts, setup, and the reconnect policy (:mod:`.reconnect`) that
  every operation goes through;
- :mod:`.sender` (:class:`~.sender.RedisSender`): ``XADD`` to the stream, or ``ZADD`` to the
  delay queue ``<stream>__queue``; :mod:`.async_sender` the same through ``redis.asyncio``;
- :mod:`.receiver` (:class:`~.receiver.RedisReceiver`): one ``get()`` is one round trip that
  sends buffered settlements, moves due delayed messages and reads own pending, claimed and
  new entries; hands back what it fetched on close;
- :mod:`.settling` (:class:`~.settling.Settler`): acknowledgements written at once, replies
  read later; ``flush()``;
- :mod:`.listing` (:class:`~.listing.RedisListing`): counting, listing, finding;
- :mod:`.atomic_settling` (:class:`~.atomic_settling.AtomicSettler`): acknowledgements queued
  in a handler's MULTI/EXEC (the ``redis_transaction`` middleware).

The hot paths write commands packed once (:mod:`._wire`) on connections held by hand:
measured, redis-py's command layer costs more than the round trip to a local Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import redis
from redis.exceptions import ResponseError

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.serializer import Serializer
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportCapabilities
from messenger_transport_redis.async_sender import AsyncRedisSender
from messenger_transport_redis.atomic_settling import AtomicSettler
from messenger_transport_redis.connection import (
    CONSUMER_SLICE,
    RedisConnection,
    is_nogroup,
    logger,
)
from messenger_transport_redis.endpoint import RedisEndpoint
from messenger_transport_redis.listing import RedisListing
from messenger_transport_redis.options import RedisTransportOptions, default_consumer_name
from messenger_transport_redis.receiver import RedisReceiver
from messenger_transport_redis.scripts import KEEPALIVE, RELEASE_CONSUMER
from messenger_transport_redis.sender import RedisSender
from messenger_transport_redis.settling import Settler

__all__ = ["RedisTransport"]


class RedisTransport:
    """Messages in a Redis stream, consumed through a consumer group.

    Build it with :class:`~messenger_transport_redis.factory.RedisTransportFactory` from a DSN.
    One transport object is one consumer: call ``get()`` from one thread at a time; ``send``,
    ``ack``, ``reject`` and ``keepalive`` may come from other threads. Every envelope ``get()``
    returns must be acknowledged or rejected through this object.
    """

    capabilities: ClassVar[TransportCapabilities] = TransportCapabilities(
        delay=True,
        fifo=True,
        message_count=True,
        listing=True,
        keepalive=True,
        redelivery=True,
        concurrent_consumers=True,
        batch_send=True,
        setup=True,
    )

    def __init__(
        self,
        endpoint: RedisEndpoint,
        options: RedisTransportOptions,
        serializer: Serializer,
    ) -> None:
        self._endpoint = endpoint
        self._options = options
        self.serializer = serializer
        self.consumer = options.consumer or default_consumer_name()
        """This consumer's name in the group."""
        self._own_name = options.consumer is None  # a generated name leaves the group on close
        self._connection = connection = RedisConnection(endpoint, options, self.consumer)
        self._settler = Settler(connection)
        self._sender = RedisSender(connection, serializer)
        self._async_sender = AsyncRedisSender(connection, self._sender)
        self._receiver = RedisReceiver(connection, self._settler, serializer)
        self._listing = RedisListing(connection, self._settler, serializer)
        self.atomic = AtomicSettler(connection, self._settler, self._id_of)
        """Settling messages in handlers' MULTI/EXEC (the ``redis_transaction`` middleware)."""

    def __repr__(self) -> str:
        return (
            f"RedisTransport({self._endpoint.where!r}, stream={self._options.stream!r}, "
            f"group={self._options.group!r}, consumer={self.consumer!r})"
        )

    @property
    def options(self) -> RedisTransportOptions:
        """The validated options."""
        return self._options

    # -- sending ---------------------------------------------------------------------------
    def send(self, envelope: Envelope) -> Envelope:
        """Add the message to the stream (one ``XADD``), or to the delay queue if it carries a
        positive ``DelayStamp``. A stream entry's id comes back as ``TransportMessageIdStamp``.

        After a connection error the add is retried, so in rare cases (the first attempt
        reached Redis, its reply did not) a message is stored twice: at-least-once.
        """
        return self._sender.send(envelope)

    sends_async = True
    """AsyncSender: :meth:`send_async` sends through ``redis.asyncio`` (``dispatch_async``
    then needs no thread)."""

    async def send_async(self, envelope: Envelope) -> Envelope:
        """:meth:`send`, awaited on the running event loop through a ``redis.asyncio`` client
        of that loop's own: the same entry, id stamp, retries and errors."""
        return await self._async_sender.send(envelope)

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store all ``envelopes`` in one round trip (a pipeline of ``XADD`` / ``ZADD``).

        Not atomic: if the connection drops midway, the batch is sent again, and the messages
        that got through the first time are stored twice.
        """
        return self._sender.send_batch(envelopes)

    # -- receiving -------------------------------------------------------------------------
    def get(self) -> list[Envelope]:
        """Up to ``fetch_size`` messages (claimed ones may add as many again); may wait 0.1 s.

        Each envelope carries a ``TransportMessageIdStamp`` with its stream entry id. Raises
        :class:`TransportError` if Redis cannot be reached at start-up; once connected, an
        outage makes it return nothing (after ``reconnect_timeout``) until Redis is back.
        """
        return self._receiver.get()

    def release(self, envelope: Envelope) -> None:
        """Give back a received message without settling it: the next ``get()`` of this
        consumer delivers it again (before new messages), instead of another consumer after
        ``redeliver_timeout``. For a worker that could not store the outcome of a message
        (its failure transport was down) and wants to try it again later."""
        self._receiver.release(self._id_of(envelope))

    # -- settling --------------------------------------------------------------------------
    def ack(self, envelope: Envelope) -> None:
        """Acknowledge (``XACK``, and ``XDEL`` with ``delete_after_ack``).

        The commands are written to a connection of their own at once, without waiting for
        the reply (read later, by the next ``get()``): Redis applies them right away, and the
        consumer does not pay a round trip per message. If the connection is down they are
        kept and sent again with the next ``get()``; an acknowledgement lost to a crash only
        means the message is delivered again (at-least-once).
        """
        self._settler.settle(self._id_of(envelope), self._options.delete_after_ack)

    def reject(self, envelope: Envelope) -> None:
        """Remove the message without handling it (``XACK``, and ``XDEL`` with
        ``delete_after_reject``), sent at once like :meth:`ack`."""
        self._settler.settle(self._id_of(envelope), self._options.delete_after_reject)

    def flush(self) -> None:
        """Wait until every acknowledgement and rejection reached Redis (retrying for
        ``reconnect_timeout``; for half a second only while Redis is known to be away, so
        that a worker stopping during an outage stops at once: unsent acknowledgements only
        mean the messages are delivered again)."""
        connection = self._connection
        connection.check_open()
        if self._settler.idle:  # nothing to send: do not connect (a worker that never received)
            return
        budget = CONSUMER_SLICE if connection.reconnect.in_outage else None
        connection.with_retry_checked(
            self._settler.flush_with, "acknowledge messages", budget=budget
        )

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        """Reset the message's idle time (``XCLAIM … JUSTID`` to this consumer), so that no
        other consumer claims it for another ``redeliver_timeout``; ``seconds`` is not needed.

        Raises :class:`TransportError` if this consumer no longer holds the message (another
        consumer claimed it after ``redeliver_timeout``: its handler may run twice).
        """
        connection = self._connection
        connection.check_open()
        entry_id = self._id_of(envelope)
        keys = [connection.stream]
        args = [connection.group, connection.consumer_key, entry_id]

        def attempt(client: redis.Redis) -> Any:
            self._settler.flush_with(client)  # a settled message is not kept alive
            return connection.run_script(client, KEEPALIVE, keys, args)

        try:
            held = connection.with_retry(attempt, "keep a message reserved")
        except ResponseError as error:
            if not is_nogroup(error):
                raise connection.error("keep a message reserved", error) from error
            held = 0
        if not held:
            raise TransportError(
                f"message {entry_id.decode()} of stream {self._options.stream!r} is no longer "
                f"reserved by consumer {self.consumer!r}: it was settled, or another consumer "
                f"claimed it after redeliver_timeout ({self._options.redeliver_timeout:g} s)"
            )

    # -- counting, listing -----------------------------------------------------------------
    def message_count(self) -> int:
        """Messages not acknowledged yet: waiting in the stream, received but unsettled, and
        delayed (from ``XINFO GROUPS``: the group's pending count plus its lag, and the delay
        queue's size). With several groups on a stream, this group's view."""
        return self._listing.message_count()

    def all(self, limit: int | None = None) -> list[Envelope]:
        """Messages in the stream not acknowledged yet (waiting or received), oldest first.

        Delayed messages are listed once they are due and moved into the stream.
        """
        return self._listing.all(limit)

    def find(self, id: str) -> Envelope | None:
        """The unacknowledged message with stream entry id ``id``, or ``None``. Finding does
        not reserve it."""
        return self._listing.find(id)

    # -- setup, closing --------------------------------------------------------------------
    def setup(self) -> None:
        """Create the stream and the consumer group if missing (``XGROUP CREATE … MKSTREAM``;
        an existing group is kept). With ``delete_after_ack`` or ``delete_after_reject``, a
        second group on the stream is a :class:`ConfigurationError`: deleting an entry
        acknowledged by one group would take it away from the other."""
        connection = self._connection
        connection.check_open()
        connection.with_retry_checked(connection.setup_with, "set up the stream")

    def close(self) -> None:
        """Send the buffered acknowledgements, hand back the entries fetched and not settled
        (see :meth:`RedisReceiver.hand_back`), leave the group if this consumer holds nothing
        (only with a generated consumer name) and close the connections (the async clients'
        too). Idempotent.

        While Redis is away it tries only briefly and says what is left behind."""
        connection = self._connection
        if connection.closed:
            return
        client = connection.begin_close()
        self._async_sender.close()
        if client is None:
            return
        try:
            if not connection.ready:
                return
            # During an outage, a stopping worker must not wait reconnect_timeout per step.
            in_outage = connection.reconnect.in_outage
            self._flush_on_close(client, CONSUMER_SLICE if in_outage else None)
            if connection.reconnect.in_outage:
                self._warn_left_behind()
                return
            if self._receiver.received_once:
                self._receiver.hand_back(client)
            if self._own_name:
                self._leave_group(client)
        finally:
            client.close()

    def _flush_on_close(self, client: redis.Redis, budget: float | None) -> None:
        if self._settler.idle:
            return
        try:
            connection = self._connection
            what = "acknowledge messages"
            connection.with_retry(self._settler.flush_with, what, client=client, budget=budget)
        except TransportError as error:
            logger.warning(
                "%d acknowledgement(s) could not be sent (%s); those messages will be "
                "delivered again",
                self._settler.unsent,
                error,
            )

    def _warn_left_behind(self) -> None:
        outstanding = len(self._settler.outstanding)
        if outstanding:
            logger.warning(
                "Redis at %s is unreachable: %d fetched and unhandled message(s) stay "
                "with consumer %s until another consumer claims them after "
                "redeliver_timeout (%g s)",
                self._endpoint.where,
                outstanding,
                self.consumer,
                self._options.redeliver_timeout,
            )

    def _leave_group(self, client: redis.Redis) -> None:
        """Remove this consumer from the group if it holds nothing (a generated name is never
        used again: it would pile up in ``XINFO CONSUMERS``)."""
        connection = self._connection
        keys, args = [connection.stream], [connection.group, connection.consumer_key]
        try:
            connection.run_script(client, RELEASE_CONSUMER, keys, args)
        except redis.RedisError as error:
            logger.debug("could not remove consumer %s: %s", self.consumer, error)

    def _id_of(self, envelope: Envelope) -> bytes:
        stamp = envelope.last(TransportMessageIdStamp)
        if stamp is None:
            raise TransportError(
                "cannot settle a message that was not received from this transport "
                "(it has no TransportMessageIdStamp)"
            )
        return stamp.id.encode("ascii")
