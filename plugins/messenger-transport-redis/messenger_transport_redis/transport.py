"""The Redis transport: Redis Streams with a consumer group, in Symfony Messenger's layout.

Sending adds an entry to the stream (``XADD``), or a member to the delay queue (``ZADD`` on the
sorted set ``<stream>__queue``, scored with the due time in epoch milliseconds). An
acknowledgement (``XACK``, and ``XDEL``) is written at once on a connection of its own, its
reply read later. One ``get()`` is one round trip, a pipeline that:

1. sends the acknowledgements that could not be written (the connection was down);
2. moves due delayed messages into the stream (a Lua script: atomic, so two consumers racing
   for one due message can neither both move it nor lose it);
3. reads: first this consumer's own pending entries (left by an earlier run with the same
   consumer name, or by a reply lost to a dropped connection), then, at most every
   ``claim_interval``, entries other consumers have held longer than ``redeliver_timeout``
   (``XAUTOCLAIM``: their consumer is presumed dead), and new entries (``XREADGROUP >``,
   ``fetch_size`` at most, blocking briefly when there are none).

Connection errors go through the reconnect policy (:mod:`.reconnect`): retried with backoff and
jitter for ``reconnect_timeout`` seconds, reconnecting; a consumer that was connected before
returns nothing after a short slice instead, and tries again on its next ``get()`` until Redis
is back, then re-reads its own pending entries (a lost reply may have delivered some). A
consumer group or scripts lost with a restarted server are recreated.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar, cast

import redis
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from messenger_core.dsn import mask_dsn
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.serializer import Serializer
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_core.transport import TransportCapabilities
from messenger_transport_redis._wire import DirectConnection, bulk, bulks, pack, pack_prefix
from messenger_transport_redis.connection import RedisEndpoint
from messenger_transport_redis.entry import decode_entry, encode_entry, quarantine_entry
from messenger_transport_redis.options import RedisTransportOptions, default_consumer_name
from messenger_transport_redis.reconnect import (
    RETRYABLE,
    ReconnectPolicy,
    RedisUnreachableError,
)
from messenger_transport_redis.scripts import (
    HAND_BACK,
    KEEPALIVE,
    MOVE_DUE,
    PRUNE_CONSUMERS,
    RELEASE_CONSUMER,
    SCRIPTS,
    Script,
)

__all__ = ["RedisTransport"]

logger = logging.getLogger("messenger.transport.redis")

T = TypeVar("T")

_BLOCK_MS = 100
"""How long a ``get()`` waits on an empty stream for a new entry: short, so a worker with
several receivers still goes round them, and stop signals are seen quickly."""
_MOVE_LIMIT = 100
"""At most this many due delayed messages are moved per ``get()`` (the rest on the next)."""
_MAX_INFLIGHT = 1000
"""Acknowledgements written without reading their replies, at most (then they are read)."""
_PAGE = 100
"""Entries per ``XRANGE`` page when listing or counting."""
_HAND_BACK_IDLE_MS = 10 * 365 * 86_400_000
"""The idle time handed-back entries get: longer than any sensible ``redeliver_timeout`` of
the group's other consumers, and shorter than the epoch time (Redis ignores a larger one)."""
_HAND_BACK_LIMIT = 100_000
"""At most this many entries are handed back on close (a consumer holds ``fetch_size``)."""
_CONSUMER_SLICE = 0.5
"""Seconds a ``get()`` of a consumer that was connected before keeps reconnecting before it
returns nothing: short, so that the worker sees a stop request between attempts (the backoff
itself goes on across calls)."""
_SOCKET_ERRORS = RETRYABLE


def _pipeline(client: redis.Redis) -> Any:
    """A non-transactional pipeline (typed loosely: redis-py's pipeline methods are not)."""
    return client.pipeline(transaction=False)


def _call(client: redis.Redis, *command: Any) -> Any:
    """One command (typed loosely: redis-py's ``execute_command`` is not)."""
    return cast(Any, client).execute_command(*command)


def _stream_id(text: str | bytes) -> tuple[int, int]:
    milliseconds, _, sequence = (text.decode() if isinstance(text, bytes) else text).partition("-")
    return int(milliseconds), int(sequence or 0)


def _is_stream_id(text: str) -> bool:
    milliseconds, dash, sequence = text.partition("-")
    return bool(dash) and milliseconds.isdigit() and sequence.isdigit()


def _is_nogroup(error: object) -> bool:
    # In a script's error the code comes after the script's name.
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)


def _is_no_such_key(error: object) -> bool:
    return isinstance(error, ResponseError) and "no such key" in str(error).lower()


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
        self._own_name = options.consumer is None
        self._where = endpoint.where
        self._client: redis.Redis | None = None
        self._ready = False
        self._received_once = False  # a get() succeeded: later errors are logged, not raised
        self._closed = False
        self._reconnect = ReconnectPolicy(endpoint.where, options.reconnect_timeout, logger=logger)
        self._lock = threading.Lock()
        # Settlements to send with the next get(): (entry id, delete it too), and the entries
        # handed out and not settled (never handed out twice by this object).
        self._settle: list[tuple[bytes, bool]] = []
        self._inflight: deque[tuple[bytes, bool]] = deque()  # written, reply not read yet
        self._sender: DirectConnection | None = None  # sends go there
        self._reader: DirectConnection | None = None  # get() goes there
        self._settler: DirectConnection | None = None  # settlements are written there
        self._settler_broken = False
        self._outstanding: set[bytes] = set()
        self._pending_cursor: bytes | None = b"0"
        self._claim_cursor = b"0-0"
        self._next_claim = 0.0

        stream, group = options.stream.encode(), options.group.encode()
        consumer = self.consumer.encode()
        self._stream, self._group, self._consumer_key = stream, group, consumer
        self._queue = options.queue.encode()
        trim: tuple[Any, ...] = (
            ("MAXLEN", "~", options.stream_max_entries) if options.stream_max_entries else ()
        )
        self._xadd: tuple[Any, ...] = ("XADD", stream, *trim, "*", b"message")
        # Commands packed once; the entry id or payload is appended per message.
        self._xadd_packet = pack_prefix(len(self._xadd) + 1, *self._xadd)
        self._xack = pack_prefix(4, "XACK", stream, group)
        self._xdel = pack_prefix(3, "XDEL", stream)
        read = ("XREADGROUP", "GROUP", group, consumer, "COUNT", options.fetch_size)
        self._read_blocking_packet = pack(*read, "BLOCK", _BLOCK_MS, "STREAMS", stream, ">")
        self._read_new_packet = pack(*read, "STREAMS", stream, ">")
        self._read_from_packet = pack_prefix(len(read) + 3, *read, "STREAMS", stream)
        move_limit = max(_MOVE_LIMIT, options.fetch_size)
        self._move_due_packet = (
            pack_prefix(8, "EVALSHA", MOVE_DUE.sha, 2, self._queue, stream),
            bulks(move_limit, options.stream_max_entries),
        )
        self._min_idle_ms = max(1, round(options.redeliver_timeout * 1000))

    def __repr__(self) -> str:
        return (
            f"RedisTransport({self._where!r}, stream={self._options.stream!r}, "
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
        message = self.serializer.encode(envelope)
        delay = envelope.last(DelayStamp)
        if delay is not None and delay.delay_ms > 0:
            command = self._delayed_add(encode_entry(message, secrets.token_hex(8)), delay)
            self._exchange([command], pack(*command))
            return envelope
        entry = encode_entry(message)
        (entry_id,) = self._exchange([(*self._xadd, entry)], self._xadd_packet + bulk(entry))
        return envelope.with_(TransportMessageIdStamp(id=entry_id.decode("ascii")))

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store all ``envelopes`` in one round trip (a pipeline of ``XADD`` / ``ZADD``).

        Not atomic: if the connection drops midway, the batch is sent again, and the messages
        that got through the first time are stored twice.
        """
        if not envelopes:
            return []
        commands: list[tuple[Any, ...]] = []
        for envelope in envelopes:
            message = self.serializer.encode(envelope)
            delay = envelope.last(DelayStamp)
            if delay is not None and delay.delay_ms > 0:
                entry = encode_entry(message, secrets.token_hex(8))
                commands.append(self._delayed_add(entry, delay))
            else:
                commands.append((*self._xadd, encode_entry(message)))

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

    def _delayed_add(self, entry: bytes, delay: DelayStamp) -> tuple[Any, ...]:
        due = time.time_ns() // 1_000_000 + delay.delay_ms
        return ("ZADD", self._queue, "NX", due, entry)

    # -- receiving -------------------------------------------------------------------------
    def get(self) -> list[Envelope]:
        """Up to ``fetch_size`` messages (claimed ones may add as many again); may wait 0.1 s.

        Each envelope carries a ``TransportMessageIdStamp`` with its stream entry id. Raises
        :class:`TransportError` if Redis cannot be reached at start-up; once connected, an
        outage makes it return nothing (after ``reconnect_timeout``) until Redis is back.
        """
        self._check_open()
        if not self._received_once:  # start-up: a clear error (after reconnect_timeout)
            envelopes = self._with_retry_checked(self._get_once, "receive messages")
            self._received_once = True
            return envelopes
        budget = min(self._options.reconnect_timeout, _CONSUMER_SLICE)
        try:
            return self._with_retry_checked(self._get_once, "receive messages", budget=budget)
        except RedisUnreachableError:
            return []  # the outage was logged once; the next get() tries again
        except Exception as error:
            # No one entry's fault (those come out as UndecodableMessage): Redis refuses
            # (full memory, the key holds another type) or a reply could not be read. Stopping
            # would stop every restarted worker the same way: back off and try again.
            self._reconnect.refused("receive messages", error)
            return []

    def _get_once(self, client: redis.Redis) -> list[Envelope]:
        reader = self._reader
        assert reader is not None
        settle = self._take_settlements()
        first = True
        while True:
            settling = self._settlement_commands(settle) if first else []
            packets = [pack(*command) for command in settling]
            now_ms = b"%d" % (time.time_ns() // 1_000_000)
            packets.append(self._move_due_packet[0] + bulk(now_ms) + self._move_due_packet[1])
            pending = self._pending_cursor
            claiming = pending is None and time.monotonic() >= self._next_claim
            packets += self._read_commands(pending, claiming)
            try:
                results = reader.roundtrip(b"".join(packets), len(packets))
            except _SOCKET_ERRORS:
                if first:
                    self._restore_settlements(settle)
                self._pending_cursor = b"0"  # a read may have been served, its reply lost
                raise
            first = False
            failover = next((r for r in results if isinstance(r, ReadOnlyError)), None)
            if failover is not None:  # a Sentinel failover made this server a replica
                reader.disconnect()
                self._restore_settlements(settle)
                self._pending_cursor = b"0"
                raise failover
            with self._lock:
                self._settler_broken = False  # Redis answers: write acknowledgements again
                self._drain()
            settled = len(settling)
            self._check_settlement_results(results[:settled])
            moved = results[settled]
            if isinstance(moved, Exception):
                self._script_failed(client, moved)
            reads = results[settled + 1 :]
            if pending is not None:
                envelopes = self._own_pending(reads[-1], pending, client)
                if envelopes is None:
                    continue  # a page of entries already handed out: read on
                if not envelopes and self._pending_cursor is None:
                    continue  # nothing of our own left: read new entries now
                return envelopes
            envelopes = []
            if claiming:
                envelopes = self._claimed(reads[-2], client)
            envelopes += self._new_entries(reads[-1], client)
            return envelopes

    def _read_commands(self, pending: bytes | None, claiming: bool) -> list[bytes]:
        """The reading part of a ``get()``: own pending entries from ``pending`` on, or
        abandoned entries (when ``claiming``) and new ones."""
        if pending is not None:
            return [self._read_from_packet + bulk(pending)]
        if not claiming:
            return [self._read_blocking_packet]
        packets = []
        if self._claim_cursor == b"0-0":  # a new round: forget dead consumers too
            packets.append(pack(
                "EVALSHA", PRUNE_CONSUMERS.sha, 1, self._stream,
                self._group, self._consumer_key, self._min_idle_ms,
            ))  # fmt: skip
        packets.append(pack(
            "XAUTOCLAIM", self._stream, self._group, self._consumer_key,
            self._min_idle_ms, self._claim_cursor, "COUNT", self._options.fetch_size,
        ))  # fmt: skip
        packets.append(self._read_new_packet)  # no waiting: claimed entries may be ready
        return packets

    def _own_pending(self, reply: Any, cursor: bytes, client: redis.Redis) -> list[Envelope] | None:
        """Entries from this consumer's pending list; ``None`` if a whole page was skipped."""
        if isinstance(reply, Exception):
            self._read_failed(client, reply)
            return []
        entries = reply[0][1] if reply else []
        if len(entries) < self._options.fetch_size:
            self._pending_cursor = None
        else:
            self._pending_cursor = entries[-1][0]
        envelopes = self._envelopes(entries, skip_held=True)
        if entries and not envelopes and self._pending_cursor is not None:
            return None
        return envelopes

    def _claimed(self, reply: Any, client: redis.Redis) -> list[Envelope]:
        if isinstance(reply, Exception):
            self._read_failed(client, reply)
            return []
        cursor, entries = reply[0], reply[1]
        if cursor == b"0-0":
            self._claim_cursor = b"0-0"
            self._next_claim = time.monotonic() + self._options.claim_interval / 1000
        else:  # more of the pending list to look at: go on with the next get()
            self._claim_cursor = cursor
        envelopes = self._envelopes(entries, skip_held=True)
        if envelopes:
            logger.info(
                "claimed %d message(s) from %s that another consumer held longer than %g s",
                len(envelopes),
                self._options.stream,
                self._options.redeliver_timeout,
            )
        return envelopes

    def _new_entries(self, reply: Any, client: redis.Redis) -> list[Envelope]:
        if isinstance(reply, Exception):
            self._read_failed(client, reply)
            return []
        if not reply:
            return []
        return self._envelopes(reply[0][1], skip_held=False)

    def _envelopes(self, entries: Iterable[Any], *, skip_held: bool) -> list[Envelope]:
        envelopes: list[Envelope] = []
        gone: list[bytes] = []
        held: set[bytes] = set()
        if skip_held:
            with self._lock:
                held = self._outstanding.union(
                    (entry_id for entry_id, _ in self._settle),
                    (entry_id for entry_id, _ in self._inflight),
                )
        serializer = self.serializer
        handed_out: list[bytes] = []
        for entry in entries:
            if entry is None:  # Redis 6.2 XAUTOCLAIM: an entry deleted while pending
                continue
            entry_id, fields = entry
            if entry_id in held:
                continue
            if not fields:  # trimmed or deleted while pending: nothing left to handle
                gone.append(entry_id)
                continue
            text_id = entry_id.decode("ascii", "replace")
            try:
                envelope = decode_entry(text_id, fields, serializer)
            except Exception as error:
                envelope = quarantine_entry(text_id, fields, error)
            envelopes.append(envelope)
            handed_out.append(entry_id)
        if handed_out:
            with self._lock:
                self._outstanding.update(handed_out)
        if gone:
            logger.warning(
                "%d pending entr%s of %s no longer exist (trimmed or deleted); acknowledged",
                len(gone),
                "y" if len(gone) == 1 else "ies",
                self._options.stream,
            )
            with self._lock:
                self._settle.extend((entry_id, False) for entry_id in gone)
        return envelopes

    def _read_failed(self, client: redis.Redis, error: Exception) -> None:
        if not _is_nogroup(error):
            self._pending_cursor = b"0"
            raise self._error("receive messages", error) from error
        if not self._options.auto_setup:
            raise TransportError(
                f"the consumer group {self._options.group!r} of stream "
                f"{self._options.stream!r} does not exist at {self._where}; set the transport "
                "up (messenger setup-transports) or enable auto_setup"
            ) from error
        logger.warning(
            "the consumer group %r of stream %r is gone (Redis restarted without its data?); "
            "creating it again",
            self._options.group,
            self._options.stream,
        )
        self._setup_with(client)

    # -- settling --------------------------------------------------------------------------
    def ack(self, envelope: Envelope) -> None:
        """Acknowledge (``XACK``, and ``XDEL`` with ``delete_after_ack``).

        The commands are written to a connection of their own at once, without waiting for
        the reply (read later, by the next ``get()``): Redis applies them right away, and the
        consumer does not pay a round trip per message. If the connection is down they are
        kept and sent again with the next ``get()``; an acknowledgement lost to a crash only
        means the message is delivered again (at-least-once).
        """
        self._settle_now(self._id_of(envelope), self._options.delete_after_ack)

    def reject(self, envelope: Envelope) -> None:
        """Remove the message without handling it (``XACK``, and ``XDEL`` with
        ``delete_after_reject``), sent at once like :meth:`ack`."""
        self._settle_now(self._id_of(envelope), self._options.delete_after_reject)

    def release(self, envelope: Envelope) -> None:
        """Give back a received message without settling it: the next ``get()`` of this
        consumer delivers it again (before new messages), instead of another consumer after
        ``redeliver_timeout``. For a worker that could not store the outcome of a message
        (its failure transport was down) and wants to try it again later."""
        entry_id = self._id_of(envelope)
        with self._lock:
            self._outstanding.discard(entry_id)
        self._pending_cursor = b"0"  # re-read this consumer's pending entries from the start

    def flush(self) -> None:
        """Wait until every acknowledgement and rejection reached Redis (retrying for
        ``reconnect_timeout``; for half a second only while Redis is known to be away, so
        that a worker stopping during an outage stops at once: unsent acknowledgements only
        mean the messages are delivered again)."""
        self._check_open()
        with self._lock:
            nothing = not self._settle and not self._inflight
        if nothing:  # nothing to send: do not connect (a worker that never received)
            return
        # During an outage (a worker stopping then), try briefly: the messages come back.
        budget = _CONSUMER_SLICE if self._reconnect.in_outage else None
        self._with_retry_checked(self._flush_with, "acknowledge messages", budget=budget)

    def _settle_now(self, entry_id: bytes, delete: bool) -> None:
        self._check_open()
        packet = self._xack + bulk(entry_id)
        if delete:
            packet += self._xdel + bulk(entry_id)
        with self._lock:
            self._outstanding.discard(entry_id)
            connection = self._settling_connection()
            if connection is None:
                self._settle.append((entry_id, delete))
                return
            try:
                # A connection idle for a while is PINGed first, unless replies are unread.
                connection.write(packet, check_health=not self._inflight)
            except _SOCKET_ERRORS as error:
                self._settling_failed(error)
                self._settle.append((entry_id, delete))
                return
            self._inflight.append((entry_id, delete))
            if len(self._inflight) >= _MAX_INFLIGHT:
                self._drain()

    def _settling_connection(self) -> DirectConnection | None:
        """The connection acknowledgements are written to (with ``_lock`` held), or ``None``
        before the first use and while Redis is not reachable: they are buffered for the
        next ``get()`` then."""
        if self._settler_broken or not self._ready or self._closed:
            return None
        return self._settler

    def _drain(self) -> None:
        """Read the replies to the acknowledgements written so far (with ``_lock`` held)."""
        connection = self._settler
        if connection is None:
            return
        inflight = self._inflight
        try:
            while inflight:
                for _ in range(2 if inflight[0][1] else 1):
                    reply = connection.read()
                    if isinstance(reply, ReadOnlyError):  # a failover: send it to the master
                        raise reply
                    self._check_settlement_results([reply])
                inflight.popleft()
        except _SOCKET_ERRORS as error:
            self._settling_failed(error)

    def _settling_failed(self, error: BaseException) -> None:
        """The acknowledgement connection failed (``_lock`` held): whatever was written and not
        confirmed is sent again by the next ``get()`` (acknowledging twice is harmless)."""
        logger.debug("acknowledgements will be sent again: %s", error)
        self._settler_broken = True
        if self._settler is not None:
            self._settler.disconnect()
        self._settle.extend(self._inflight)
        self._inflight.clear()

    def _flush_with(self, client: redis.Redis) -> None:
        """Read the pending replies, then send what is buffered; before reads that must see
        every settlement (counting, listing)."""
        with self._lock:
            self._drain()
        settle = self._take_settlements()
        if not settle:
            return
        pipe = _pipeline(client)
        for command in self._settlement_commands(settle):
            pipe.execute_command(*command)
        try:
            results = pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, ReadOnlyError):
                    raise result
        except _SOCKET_ERRORS:
            self._restore_settlements(settle)
            raise
        self._check_settlement_results(results)

    def _take_settlements(self) -> list[tuple[bytes, bool]]:
        with self._lock:
            settle, self._settle = self._settle, []
        return settle

    def _restore_settlements(self, settle: list[tuple[bytes, bool]]) -> None:
        if settle:
            with self._lock:
                self._settle[:0] = settle

    def _settlement_commands(self, settle: list[tuple[bytes, bool]]) -> list[tuple[Any, ...]]:
        """The commands that send ``settle``: an ``XACK`` and, if needed, an ``XDEL``."""
        if not settle:
            return []
        commands: list[tuple[Any, ...]] = [
            ("XACK", self._stream, self._group, *(entry_id for entry_id, _ in settle))
        ]
        deleted = [entry_id for entry_id, delete in settle if delete]
        if deleted:
            commands.append(("XDEL", self._stream, *deleted))
        return commands

    def _check_settlement_results(self, results: Sequence[Any]) -> None:
        for result in results:
            # NOGROUP: the group (and its pending list) is gone, there is nothing to settle.
            if isinstance(result, Exception) and not _is_nogroup(result):
                logger.warning("settling messages on %s failed: %s", self._options.stream, result)

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        """Reset the message's idle time (``XCLAIM … JUSTID`` to this consumer), so that no
        other consumer claims it for another ``redeliver_timeout``; ``seconds`` is not needed.

        Raises :class:`TransportError` if this consumer no longer holds the message (another
        consumer claimed it after ``redeliver_timeout``: its handler may run twice).
        """
        self._check_open()
        entry_id = self._id_of(envelope)

        def attempt(client: redis.Redis) -> Any:
            self._flush_with(client)
            return self._run_script(
                client, KEEPALIVE, [self._stream], [self._group, self._consumer_key, entry_id]
            )

        try:
            held = self._with_retry(attempt, "keep a message reserved")
        except ResponseError as error:
            if not _is_nogroup(error):
                raise self._error("keep a message reserved", error) from error
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
        self._check_open()

        def attempt(client: redis.Redis) -> int:
            self._flush_with(client)
            pipe = _pipeline(client)
            pipe.execute_command("XINFO", "GROUPS", self._stream)
            pipe.execute_command("ZCARD", self._queue)
            pipe.execute_command("XLEN", self._stream)
            groups, delayed, length = pipe.execute(raise_on_error=False)
            for each in (delayed, length):
                if isinstance(each, Exception):
                    raise each
            if isinstance(groups, Exception):
                if _is_no_such_key(groups):
                    return int(delayed)
                raise groups
            group = self._group_info(groups)
            if group is None:  # the group, once created, starts at the first entry
                return int(length) + int(delayed)
            lag = group.get("lag")
            if lag is None:  # Redis < 7, or entries deleted after the last delivered one
                lag = self._count_after(client, group["last-delivered-id"])
            return int(group["pending"]) + int(lag) + int(delayed)

        return self._with_retry_checked(attempt, "count messages")

    def _group_info(self, groups: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
        """This group's fields in an ``XINFO GROUPS`` reply, or ``None``."""
        for flat in groups:
            group = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat) - 1, 2)}
            if group.get("name") == self._group:
                return group
        return None

    def _count_after(self, client: redis.Redis, last_id: bytes) -> int:
        total, start = 0, b"(" + last_id
        while True:
            page = _call(client, "XRANGE", self._stream, start, "+", "COUNT", 1000)
            total += len(page)
            if len(page) < 1000:
                return total
            start = b"(" + page[-1][0]

    def all(self, limit: int | None = None) -> list[Envelope]:
        """Messages in the stream not acknowledged yet (waiting or received), oldest first.

        Delayed messages are listed once they are due and moved into the stream.
        """
        self._check_open()

        def attempt(client: redis.Redis) -> list[Envelope]:
            self._flush_with(client)
            last = self._last_delivered(client)
            listed: list[Envelope] = []
            start: bytes = b"-"
            while limit is None or len(listed) < limit:
                count = _PAGE if limit is None else min(_PAGE, limit - len(listed))
                page = _call(client, "XRANGE", self._stream, start, "+", "COUNT", count)
                for entry_id, fields in self._unsettled(client, page, last):
                    listed.append(decode_entry(entry_id.decode("ascii"), fields, self.serializer))
                if len(page) < count:
                    break
                start = b"(" + page[-1][0]
            return listed

        return self._with_retry_checked(attempt, "list messages")

    def find(self, id: str) -> Envelope | None:
        """The unacknowledged message with stream entry id ``id``, or ``None``. Finding does
        not reserve it."""
        self._check_open()
        if not isinstance(id, str) or not _is_stream_id(id):
            return None
        entry_key = id.encode("ascii")

        def attempt(client: redis.Redis) -> Envelope | None:
            self._flush_with(client)
            page = _call(client, "XRANGE", self._stream, entry_key, entry_key)
            found = self._unsettled(client, page, self._last_delivered(client))
            if not found or not found[0][1]:
                return None
            return decode_entry(id, found[0][1], self.serializer)

        return self._with_retry_checked(attempt, "find a message")

    def _last_delivered(self, client: redis.Redis) -> tuple[int, int] | None:
        """The group's last delivered id, or ``None`` if the group (or stream) does not exist."""
        try:
            groups = _call(client, "XINFO", "GROUPS", self._stream)
        except ResponseError as error:
            if _is_no_such_key(error):
                return None
            raise
        group = self._group_info(groups)
        return None if group is None else _stream_id(group["last-delivered-id"])

    def _unsettled(
        self, client: redis.Redis, page: Sequence[Any], last: tuple[int, int] | None
    ) -> list[Any]:
        """The entries of ``page`` not settled yet: not delivered to the group, or pending.

        With ``delete_after_ack`` and ``delete_after_reject`` (the defaults) settled entries
        are gone anyway; without, they stay in the stream and must be told apart.
        """
        if last is None:
            return list(page)
        delivered = [entry[0] for entry in page if _stream_id(entry[0]) <= last]
        if not delivered:
            return list(page)
        pending: set[bytes] = set()
        start: bytes = delivered[0]
        while True:
            rows = _call(client, "XPENDING", self._stream, self._group, start, delivered[-1], _PAGE)
            pending.update(row[0] for row in rows)
            if len(rows) < _PAGE:
                break
            start = b"(" + rows[-1][0]
        return [entry for entry in page if _stream_id(entry[0]) > last or entry[0] in pending]

    # -- setup, closing --------------------------------------------------------------------
    def setup(self) -> None:
        """Create the stream and the consumer group if missing (``XGROUP CREATE … MKSTREAM``;
        an existing group is kept). With ``delete_after_ack`` or ``delete_after_reject``, a
        second group on the stream is a :class:`ConfigurationError`: deleting an entry
        acknowledged by one group would take it away from the other."""
        self._check_open()
        self._with_retry_checked(self._setup_with, "set up the stream")

    def _setup_with(self, client: redis.Redis) -> None:
        pipe = _pipeline(client)
        pipe.execute_command("XGROUP", "CREATE", self._stream, self._group, "0", "MKSTREAM")
        pipe.execute_command("XINFO", "GROUPS", self._stream)
        created, groups = pipe.execute(raise_on_error=False)
        if isinstance(created, Exception) and not str(created).startswith("BUSYGROUP"):
            raise created
        if isinstance(groups, Exception):
            raise groups
        deleting = self._options.delete_after_ack or self._options.delete_after_reject
        if deleting and len(groups) > 1:
            names = ", ".join(repr(g[1].decode("utf-8", "replace")) for g in groups)
            raise ConfigurationError(
                f"stream {self._options.stream!r} has several consumer groups ({names}): "
                "delete_after_ack and delete_after_reject would delete entries before every "
                "group consumed them; set both to false for this transport"
            )

    def close(self) -> None:
        """Send the buffered acknowledgements, hand back the entries fetched and not settled
        (see :meth:`_hand_back`), leave the group if this consumer holds nothing (only with a
        generated consumer name) and close the connections. Idempotent.

        While Redis is away it tries only briefly and says what is left behind."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if not self._ready:
                return
            # During an outage, a stopping worker must not wait reconnect_timeout per step.
            budget = _CONSUMER_SLICE if self._reconnect.in_outage else None
            if self._settle or self._inflight:
                try:
                    self._with_retry(
                        self._flush_with, "acknowledge messages", client=client, budget=budget
                    )
                except TransportError as error:
                    logger.warning(
                        "%d acknowledgement(s) could not be sent (%s); those messages will be "
                        "delivered again",
                        len(self._settle),
                        error,
                    )
            if self._reconnect.in_outage:
                if self._outstanding:
                    logger.warning(
                        "Redis at %s is unreachable: %d fetched and unhandled message(s) stay "
                        "with consumer %s until another consumer claims them after "
                        "redeliver_timeout (%g s)",
                        self._where,
                        len(self._outstanding),
                        self.consumer,
                        self._options.redeliver_timeout,
                    )
                return
            if self._received_once:
                self._hand_back(client)
            if self._own_name:
                try:
                    self._run_script(
                        client, RELEASE_CONSUMER, [self._stream], [self._group, self._consumer_key]
                    )
                except redis.RedisError as error:
                    logger.debug("could not remove consumer %s: %s", self.consumer, error)
        finally:
            client.close()

    def _hand_back(self, client: redis.Redis) -> None:
        """Hand this consumer's unsettled entries (fetched, not handled) back to the group:
        they get an idle time beyond ``redeliver_timeout``, so the next consumer's claim takes
        them at once. A stopping worker holding a fetched batch delays nothing this way."""
        try:
            count = self._reconnect.run(
                lambda: self._run_script(
                    client,
                    HAND_BACK,
                    [self._stream],
                    [self._group, self._consumer_key, _HAND_BACK_IDLE_MS, _HAND_BACK_LIMIT],
                ),
                "hand back unhandled messages",
                budget=min(self._options.reconnect_timeout, _CONSUMER_SLICE),
            )
        except (redis.RedisError, TransportError) as error:
            logger.warning(
                "could not hand back the unhandled messages of consumer %s (%s); another "
                "consumer takes them after redeliver_timeout (%g s)",
                self.consumer,
                _safe(error),
                self._options.redeliver_timeout,
            )
            return
        if count:
            logger.info(
                "handed back %d fetched and unhandled message(s) of %s: other consumers take "
                "them at once",
                count,
                self._options.stream,
            )

    # -- plumbing --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"the Redis transport for {self._where} is closed")

    def _id_of(self, envelope: Envelope) -> bytes:
        stamp = envelope.last(TransportMessageIdStamp)
        if stamp is None:
            raise TransportError(
                "cannot settle a message that was not received from this transport "
                "(it has no TransportMessageIdStamp)"
            )
        return stamp.id.encode("ascii")

    def _exchange(self, commands: Sequence[tuple[Any, ...]], packed: bytes) -> list[Any]:
        """Run ``commands`` (also given ``packed``) in one round trip; their replies.

        The hot path writes them on this transport's sending connection; when another thread
        is using it, or after a connection error, they go through a redis-py pipeline, with
        retries (so a batch that partly reached Redis is sent again: at-least-once).
        """
        client = self._client
        sender = self._sender
        if client is None or sender is None or not self._ready:
            client = self._prepare()
            sender = self._sender
            assert sender is not None
        if sender.lock.acquire(blocking=False):
            try:
                replies = sender.roundtrip(packed, len(commands))
            except _SOCKET_ERRORS:
                pass  # the connection is closed: retried below
            else:
                errors = [reply for reply in replies if isinstance(reply, Exception)]
                if not errors:
                    return replies
                if not isinstance(errors[0], ReadOnlyError):
                    raise self._error("send messages", errors[0]) from errors[0]
                sender.disconnect()  # a failover made this server a replica: reconnect
            finally:
                sender.lock.release()

        def attempt(client: redis.Redis) -> list[Any]:
            pipe = _pipeline(client)
            for command in commands:
                pipe.execute_command(*command)
            results: list[Any] = pipe.execute(raise_on_error=True)
            return results

        return self._with_retry_checked(attempt, "send messages")

    def _prepare(self) -> redis.Redis:
        """Connect, load the scripts and (with ``auto_setup``) set up; retried."""
        self._check_open()
        client = self._client
        if client is None:
            client = self._client = self._endpoint.client(self._options)

        def attempt(client: redis.Redis) -> None:
            self._load_scripts(client)
            if self._options.auto_setup:
                self._setup_with(client)

        self._with_retry_checked(attempt, "connect", client=client)
        if self._sender is None:
            self._sender, self._settler = DirectConnection(client), DirectConnection(client)
            self._reader = DirectConnection(client)
        self._ready = True
        return client

    def _load_scripts(self, client: redis.Redis) -> None:
        pipe = _pipeline(client)
        for script in SCRIPTS:
            pipe.execute_command("SCRIPT", "LOAD", script.source)
        pipe.execute()

    def _run_script(
        self, client: redis.Redis, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        try:
            return _call(client, "EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self._load_scripts(client)
            return _call(client, "EVALSHA", script.sha, len(keys), *keys, *args)

    def _script_failed(self, client: redis.Redis, error: Exception) -> None:
        if isinstance(error, NoScriptError):  # the server restarted: load them again
            self._load_scripts(client)
            return
        self._pending_cursor = b"0"  # entries read in the same round trip come back next time
        raise self._error("move due delayed messages", error) from error

    def _with_retry_checked(
        self,
        operation: Callable[[redis.Redis], T],
        what: str,
        *,
        client: redis.Redis | None = None,
        budget: float | None = None,
    ) -> T:
        """:meth:`_with_retry`, turning Redis's error replies into :class:`TransportError`."""
        try:
            return self._with_retry(operation, what, client=client, budget=budget)
        except ResponseError as error:
            raise self._error(what, error) from error

    def _with_retry(
        self,
        operation: Callable[[redis.Redis], T],
        what: str,
        *,
        client: redis.Redis | None = None,
        budget: float | None = None,
    ) -> T:
        """Run ``operation`` with a client through the reconnect policy: after a connection
        error it waits (backing off), reconnects and runs it again, for ``budget`` seconds
        (default ``reconnect_timeout``); then :class:`RedisUnreachableError`."""
        if client is None:
            client = self._client
            if client is None or not self._ready:
                client = self._prepare()
        pool = client.connection_pool

        def drop_connections() -> None:
            pool.disconnect(inuse_connections=False)

        bound = client
        return self._reconnect.run(
            lambda: operation(bound), what, budget=budget, on_error=drop_connections
        )

    def _error(self, what: str, error: Exception) -> TransportError:
        return TransportError(
            f"Redis at {self._where} could not {what} (stream {self._options.stream!r}): "
            f"{_safe(error)}"
        )


def _safe(error: BaseException) -> str:
    return mask_dsn(str(error))
