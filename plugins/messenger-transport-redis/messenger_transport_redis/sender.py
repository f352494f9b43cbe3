"""The sending role: messages into the stream, or into the delay queue.

A message goes into the stream (``XADD``, trimmed with ``stream_max_entries``), or, with a
positive ``DelayStamp``, into the delay queue (``ZADD`` on the sorted set ``<stream>__queue``,
scored with its due time in epoch milliseconds; the receiver moves it into the stream when it
is due). The commands are packed once and written on a connection held for sending: one system
call and one round trip per call, batch or not.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ReadOnlyError

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_transport_redis._wire import bulk, pack, pack_prefix
from messenger_transport_redis.connection import RedisConnection, pipeline
from messenger_transport_redis.entry import encode_entry
from messenger_transport_redis.reconnect import RETRYABLE

__all__ = ["RedisSender"]


class RedisSender:
    """Sends envelopes to one stream (or its delay queue).

    Contract: a stream entry's id comes back as ``TransportMessageIdStamp`` (a delayed message
    gets none: it has no entry yet). After a connection error the commands are sent again
    through the reconnect policy, so a message whose first attempt reached Redis and whose reply
    did not is stored twice (at-least-once). Error replies raise
    :class:`~messenger_core.errors.TransportError`. Thread-safe: a thread finding the held
    connection busy sends through redis-py's pool instead.
    """

    def __init__(self, connection: RedisConnection, serializer: Serializer) -> None:
        self._connection = connection
        self._serializer = serializer
        options = connection.options
        trim: tuple[Any, ...] = (
            ("MAXLEN", "~", options.stream_max_entries) if options.stream_max_entries else ()
        )
        self._xadd: tuple[Any, ...] = ("XADD", connection.stream, *trim, "*", b"message")
        # Packed once; the entry is appended per message.
        self._xadd_packet = pack_prefix(len(self._xadd) + 1, *self._xadd)

    def send(self, envelope: Envelope) -> Envelope:
        """Store one message (one ``XADD`` or ``ZADD``); the envelope with its entry id."""
        message = self._serializer.encode(envelope)
        delay = envelope.last(DelayStamp)
        if delay is not None and delay.delay_ms > 0:
            command = self._delayed_add(encode_entry(message, secrets.token_hex(8)), delay)
            self._exchange([command], pack(*command))
            return envelope
        entry = encode_entry(message)
        (entry_id,) = self._exchange([(*self._xadd, entry)], self._xadd_packet + bulk(entry))
        return envelope.with_(TransportMessageIdStamp(id=entry_id.decode("ascii")))

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store all ``envelopes`` in one round trip (not atomic: see the class contract)."""
        if not envelopes:
            return []
        commands = [self.command(envelope) for envelope in envelopes]

        xadd, packet = self._xadd, self._xadd_packet
        packed = b"".join(
            packet + bulk(command[-1]) if command[: len(xadd)] == xadd else pack(*command)
            for command in commands
        )
        results = self._exchange(commands, packed)
        return [
            envelope.with_(TransportMessageIdStamp(id=result.decode("ascii")))
            if command[0] == "XADD"
            else envelope
            for envelope, command, result in zip(envelopes, commands, results, strict=True)
        ]

    def command(self, envelope: Envelope) -> tuple[Any, ...]:
        """The command storing ``envelope``: ``XADD`` to the stream, or ``ZADD`` to the delay
        queue for a positive ``DelayStamp`` (what :meth:`send` writes; the async sender too)."""
        message = self._serializer.encode(envelope)
        delay = envelope.last(DelayStamp)
        if delay is not None and delay.delay_ms > 0:
            # A random suffix: two equal delayed messages must be two members of the set.
            return self._delayed_add(encode_entry(message, secrets.token_hex(8)), delay)
        return (*self._xadd, encode_entry(message))

    def _delayed_add(self, entry: bytes, delay: DelayStamp) -> tuple[Any, ...]:
        due = time.time_ns() // 1_000_000 + delay.delay_ms
        return ("ZADD", self._connection.queue, "NX", due, entry)

    def _exchange(self, commands: Sequence[tuple[Any, ...]], packed: bytes) -> list[Any]:
        """Run ``commands`` (also given ``packed``) in one round trip; their replies.

        The hot path writes them on the held sending connection; when another thread is using
        it, or after a connection error, they go through a redis-py pipeline, with retries.
        """
        connection = self._connection
        direct = connection.sending
        if direct is None or connection.client is None or not connection.ready:
            connection.prepare()
            direct = connection.sending
            assert direct is not None
        if direct.lock.acquire(blocking=False):
            try:
                replies = direct.roundtrip(packed, len(commands))
            except RETRYABLE:
                pass  # the connection is closed: retried below
            else:
                errors = [reply for reply in replies if isinstance(reply, Exception)]
                if not errors:
                    return replies
                if not isinstance(errors[0], ReadOnlyError):
                    raise connection.error("send messages", errors[0]) from errors[0]
                direct.disconnect()  # a failover made this server a replica: reconnect
            finally:
                direct.lock.release()

        def attempt(client: redis.Redis) -> list[Any]:
            pipe = pipeline(client)
            for command in commands:
                pipe.execute_command(*command)
            results: list[Any] = pipe.execute(raise_on_error=True)
            return results

        return connection.with_retry_checked(attempt, "send messages")
