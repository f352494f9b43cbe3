"""The receiving role: one ``get()`` is one round trip, a pipeline that

1. sends the settlements that could not be written (the connection was down);
2. moves due delayed messages into the stream (a Lua script: atomic, so two consumers racing
   for one due message can neither both move it nor lose it);
3. reads: first this consumer's own pending entries (left by an earlier run with the same
   consumer name, or by a reply lost to a dropped connection), then, at most every
   ``claim_interval``, entries other consumers have held longer than ``redeliver_timeout``
   (``XAUTOCLAIM``: their consumer is presumed dead), and new entries (``XREADGROUP >``,
   ``fetch_size`` at most, blocking briefly when there are none).

A consumer that was connected before rides out an outage by returning nothing after a short
slice and trying again on its next ``get()``; then it re-reads its own pending entries (a lost
reply may have delivered some). A consumer group or scripts lost with a restarted server are
recreated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

import redis
from redis.exceptions import NoScriptError, ReadOnlyError

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.serializer import Serializer
from messenger_transport_redis._wire import bulk, bulks, pack, pack_prefix
from messenger_transport_redis.connection import (
    CONSUMER_SLICE,
    RedisConnection,
    is_nogroup,
    logger,
    safe,
)
from messenger_transport_redis.entry import decode_entry, quarantine_entry
from messenger_transport_redis.reconnect import RETRYABLE, RedisUnreachableError
from messenger_transport_redis.scripts import HAND_BACK, MOVE_DUE, PRUNE_CONSUMERS
from messenger_transport_redis.settling import Settler

__all__ = ["RedisReceiver"]

_BLOCK_MS = 100
"""How long a ``get()`` waits on an empty stream for a new entry: short, so a worker with
several receivers still goes round them, and stop signals are seen quickly."""
_MOVE_LIMIT = 100
"""At most this many due delayed messages are moved per ``get()`` (the rest on the next)."""
_HAND_BACK_IDLE_MS = 10 * 365 * 86_400_000
"""The idle time handed-back entries get: longer than any sensible ``redeliver_timeout`` of
the group's other consumers, and shorter than the epoch time (Redis ignores a larger one)."""
_HAND_BACK_LIMIT = 100_000
"""At most this many entries are handed back on close (a consumer holds ``fetch_size``)."""


class RedisReceiver:
    """Receives envelopes as one consumer of the group.

    Contract: ``get()`` is called from one thread at a time; each envelope carries a
    ``TransportMessageIdStamp`` with its entry id and is recorded with the settler as handed
    out (never handed out twice by this receiver); an entry that cannot be decoded comes out as
    an ``UndecodableMessage`` envelope. The first ``get()`` raises
    :class:`~messenger_core.errors.TransportError` if Redis cannot be reached within
    ``reconnect_timeout``; later ones return nothing during an outage.
    """

    def __init__(
        self, connection: RedisConnection, settler: Settler, serializer: Serializer
    ) -> None:
        self._connection = connection
        self._settler = settler
        self._serializer = serializer
        self._options = options = connection.options
        self.received_once = False
        """A ``get()`` succeeded: later errors are logged, not raised."""
        # Where the next read of this consumer's own pending entries starts (None: done).
        self._pending_cursor: bytes | None = b"0"
        self._claim_cursor = b"0-0"
        self._next_claim = 0.0
        self._min_idle_ms = max(1, round(options.redeliver_timeout * 1000))

        stream, group = connection.stream, connection.group
        read = ("XREADGROUP", "GROUP", group, connection.consumer_key, "COUNT", options.fetch_size)
        # Commands packed once; a cursor or the current time is appended per get().
        self._read_blocking_packet = pack(*read, "BLOCK", _BLOCK_MS, "STREAMS", stream, ">")
        self._read_new_packet = pack(*read, "STREAMS", stream, ">")
        self._read_from_packet = pack_prefix(len(read) + 3, *read, "STREAMS", stream)
        move_limit = max(_MOVE_LIMIT, options.fetch_size)
        self._move_due_packet = (
            pack_prefix(8, "EVALSHA", MOVE_DUE.sha, 2, connection.queue, stream),
            bulks(move_limit, options.stream_max_entries),
        )

    def get(self) -> list[Envelope]:
        """Up to ``fetch_size`` envelopes (claimed ones may add as many again); may wait 0.1 s."""
        connection = self._connection
        connection.check_open()
        if not self.received_once:  # start-up: a clear error (after reconnect_timeout)
            envelopes = connection.with_retry_checked(self._get_once, "receive messages")
            self.received_once = True
            return envelopes
        budget = min(self._options.reconnect_timeout, CONSUMER_SLICE)
        try:
            return connection.with_retry_checked(self._get_once, "receive messages", budget=budget)
        except RedisUnreachableError:
            return []  # the outage was logged once; the next get() tries again
        except Exception as error:
            # No one entry's fault (those come out as UndecodableMessage): Redis refuses
            # (full memory, the key holds another type) or a reply could not be read. Stopping
            # would stop every restarted worker the same way: back off and try again.
            connection.reconnect.refused("receive messages", error)
            return []

    def release(self, entry_id: bytes) -> None:
        """Take a handed-out entry back unsettled: the next ``get()`` delivers it again."""
        self._settler.forget(entry_id)
        self._pending_cursor = b"0"  # re-read this consumer's pending entries from the start

    def _get_once(self, client: redis.Redis) -> list[Envelope]:
        """One attempt of ``get()``; reads on while its own pending pages hold nothing new."""
        reader = self._connection.reading
        assert reader is not None
        settler = self._settler
        settle = settler.take()
        first = True
        while True:
            settling = settler.commands(settle) if first else []
            packets = [pack(*command) for command in settling]
            now_ms = b"%d" % (time.time_ns() // 1_000_000)
            packets.append(self._move_due_packet[0] + bulk(now_ms) + self._move_due_packet[1])
            pending = self._pending_cursor
            claiming = pending is None and time.monotonic() >= self._next_claim
            packets += self._read_commands(pending, claiming)
            # Settlements written earlier on the settling connection may reach Redis after
            # these reads: entries being settled now stay out of what they return.
            held = settler.held() if claiming or pending is not None else frozenset()
            try:
                results = reader.roundtrip(b"".join(packets), len(packets))
            except RETRYABLE:
                if first:
                    settler.restore(settle)
                self._pending_cursor = b"0"  # a read may have been served, its reply lost
                raise
            first = False
            failover = next((r for r in results if isinstance(r, ReadOnlyError)), None)
            if failover is not None:  # a Sentinel failover made this server a replica
                reader.disconnect()
                settler.restore(settle)
                self._pending_cursor = b"0"
                raise failover
            settler.answered()
            settled = len(settling)
            settler.check_results(results[:settled])
            moved = results[settled]
            if isinstance(moved, Exception):
                self._script_failed(client, moved)
            reads = results[settled + 1 :]
            if pending is not None:
                envelopes = self._own_pending(reads[-1], pending, client, held)
                if envelopes is None:
                    continue  # a page of entries already handed out: read on
                if not envelopes and self._pending_cursor is None:
                    continue  # nothing of our own left: read new entries now
                return envelopes
            envelopes = []
            if claiming:
                envelopes = self._claimed(reads[-2], client, held)
            envelopes += self._new_entries(reads[-1], client)
            return envelopes

    def _read_commands(self, pending: bytes | None, claiming: bool) -> list[bytes]:
        """The reading part of a ``get()``: own pending entries from ``pending`` on, or
        abandoned entries (when ``claiming``) and new ones."""
        if pending is not None:
            return [self._read_from_packet + bulk(pending)]
        if not claiming:
            return [self._read_blocking_packet]
        connection = self._connection
        stream, group, consumer = connection.stream, connection.group, connection.consumer_key
        packets = []
        if self._claim_cursor == b"0-0":  # a new round: forget dead consumers too
            packets.append(pack(
                "EVALSHA", PRUNE_CONSUMERS.sha, 1, stream, group, consumer, self._min_idle_ms,
            ))  # fmt: skip
        packets.append(pack(
            "XAUTOCLAIM", stream, group, consumer,
            self._min_idle_ms, self._claim_cursor, "COUNT", self._options.fetch_size,
        ))  # fmt: skip
        packets.append(self._read_new_packet)  # no waiting: claimed entries may be ready
        return packets

    def _own_pending(
        self, reply: Any, cursor: bytes, client: redis.Redis, held: AbstractSet[bytes]
    ) -> list[Envelope] | None:
        """Entries from this consumer's pending list, but ``held`` ones; ``None`` if a whole
        page was skipped."""
        if isinstance(reply, Exception):
            self._read_failed(client, reply)
            return []
        entries = reply[0][1] if reply else []
        if len(entries) < self._options.fetch_size:
            self._pending_cursor = None
        else:
            self._pending_cursor = entries[-1][0]
        envelopes = self._envelopes(entries, skip_held=True, held_before=held)
        if entries and not envelopes and self._pending_cursor is not None:
            return None
        return envelopes

    def _claimed(self, reply: Any, client: redis.Redis, held: AbstractSet[bytes]) -> list[Envelope]:
        """Entries claimed from other consumers (or this one), but ``held`` ones."""
        if isinstance(reply, Exception):
            self._read_failed(client, reply)
            return []
        cursor, entries = reply[0], reply[1]
        if cursor == b"0-0":
            self._claim_cursor = b"0-0"
            self._next_claim = time.monotonic() + self._options.claim_interval / 1000
        else:  # more of the pending list to look at: go on with the next get()
            self._claim_cursor = cursor
        envelopes = self._envelopes(entries, skip_held=True, held_before=held)
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

    def _envelopes(
        self,
        entries: Iterable[Any],
        *,
        skip_held: bool,
        held_before: AbstractSet[bytes] = frozenset(),
    ) -> list[Envelope]:
        """Decode ``entries``; with ``skip_held``, leave out those handed out already or being
        settled, now or when the read was sent (``held_before``): pending and claimed entries
        may be; new ones cannot."""
        envelopes: list[Envelope] = []
        gone: list[bytes] = []
        held = self._settler.held() | held_before if skip_held else set()
        serializer = self._serializer
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
            self._settler.handed_out(handed_out)
        if gone:
            logger.warning(
                "%d pending entr%s of %s no longer exist (trimmed or deleted); acknowledged",
                len(gone),
                "y" if len(gone) == 1 else "ies",
                self._options.stream,
            )
            self._settler.gone(gone)
        return envelopes

    def _read_failed(self, client: redis.Redis, error: Exception) -> None:
        connection = self._connection
        if not is_nogroup(error):
            self._pending_cursor = b"0"
            raise connection.error("receive messages", error) from error
        if not self._options.auto_setup:
            raise TransportError(
                f"the consumer group {self._options.group!r} of stream "
                f"{self._options.stream!r} does not exist at {connection.where}; set the "
                "transport up (messenger setup-transports) or enable auto_setup"
            ) from error
        logger.warning(
            "the consumer group %r of stream %r is gone (Redis restarted without its data?); "
            "creating it again",
            self._options.group,
            self._options.stream,
        )
        connection.setup_with(client)

    def _script_failed(self, client: redis.Redis, error: Exception) -> None:
        if isinstance(error, NoScriptError):  # the server restarted: load them again
            self._connection.load_scripts(client)
            return
        self._pending_cursor = b"0"  # entries read in the same round trip come back next time
        raise self._connection.error("move due delayed messages", error) from error

    def hand_back(self, client: redis.Redis) -> None:
        """Hand this consumer's unsettled entries (fetched, not handled) back to the group, on
        close: they get an idle time beyond ``redeliver_timeout``, so the next consumer's claim
        takes them at once. A stopping worker holding a fetched batch delays nothing this way.
        Failing only logs: the entries then wait for ``redeliver_timeout``."""
        connection = self._connection
        keys = [connection.stream]
        args = [connection.group, connection.consumer_key, _HAND_BACK_IDLE_MS, _HAND_BACK_LIMIT]
        try:
            count = connection.reconnect.run(
                lambda: connection.run_script(client, HAND_BACK, keys, args),
                "hand back unhandled messages",
                budget=min(self._options.reconnect_timeout, CONSUMER_SLICE),
            )
        except (redis.RedisError, TransportError) as error:
            logger.warning(
                "could not hand back the unhandled messages of consumer %s (%s); another "
                "consumer takes them after redeliver_timeout (%g s)",
                connection.consumer,
                safe(error),
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
