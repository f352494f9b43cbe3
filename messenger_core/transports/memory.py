"""The in-memory transport (``memory://``, ``in-memory://``): a queue in this process.

It is meant for tests and for development: nothing survives the process, but everything else
behaves like a real transport (delays, reservations, redelivery of abandoned messages, several
consumers). Tests can look at what went through it: :attr:`MemoryTransport.sent`,
:attr:`~MemoryTransport.acknowledged`, :attr:`~MemoryTransport.rejected`. These records keep the
latest ``history_size`` envelopes each (10,000 by default), so that a long-running process
using ``memory://`` does not grow without bound; the messages still in the queue are never
dropped.

Options (DSN query or configuration):

``serialize`` (bool, default ``false``)
    Encode every envelope with the transport's serializer when it is sent and decode it when it
    is received, so that a test fails on messages that would not survive a real transport.
    Without it envelopes are stored as they are, minus their
    :class:`~messenger_core.stamps.NonSendableStamp` stamps (as a serializer would drop them).
``redeliver_timeout`` (seconds, default ``3600``)
    A message received but neither acknowledged nor rejected for that long is delivered again
    (its consumer is presumed dead).
``history_size`` (integer, default ``10000``)
    How many envelopes each of the records ``sent``, ``acknowledged`` and ``rejected`` keeps
    (the oldest are forgotten first); ``0`` keeps no records at all.

Every :meth:`MemoryTransportFactory.create` call makes a new, empty queue. To model several
consumers of one queue, build :class:`MemoryTransport` objects over one :class:`MemoryQueue`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.serializer import Serializer, decode_or_quarantine
from messenger_core.stamps import DelayStamp, NonSendableStamp, TransportMessageIdStamp
from messenger_core.transport import TransportCapabilities, TransportMessage
from messenger_core.transport_options import (
    parse_bool,
    parse_int,
    parse_seconds,
    reject_unknown_options,
)

__all__ = ["MemoryQueue", "MemoryTransport", "MemoryTransportFactory"]

DEFAULT_REDELIVER_TIMEOUT = 3600.0
"""Seconds after which a received, unfinished message is delivered again."""

DEFAULT_HISTORY_SIZE = 10_000
"""Envelopes each test record (sent, acknowledged, rejected) keeps, newest last."""

_SCHEMES = ("memory", "in-memory")
_OPTIONS = ("serialize", "redeliver_timeout", "history_size")

# What the queue keeps of a message: the envelope itself, or its encoded form.
_Payload = Envelope | TransportMessage


@attrs.define(eq=False)
class _Entry:
    """A message in the queue (neither acknowledged nor rejected yet)."""

    id: str
    seq: int
    payload: _Payload
    available_at: float
    # The receiver holding the message, and since when (monotonic). A reservation may be
    # dated in the future by a keepalive that asked for more than the receiver's timeout.
    reserved_by: object | None = None
    reserved_at: float = 0.0


class MemoryQueue:
    """The storage that one or more :class:`MemoryTransport` objects (consumers) share.

    Thread-safe. Messages are ordered by the time they become available, then by the order
    they were sent. The queue also records the latest ``history_size`` envelopes sent,
    acknowledged and rejected, for tests to inspect (``0``: no records).
    """

    def __init__(self, history_size: int = DEFAULT_HISTORY_SIZE) -> None:
        if history_size < 0:
            raise ConfigurationError(f"history_size must be 0 or more, got {history_size!r}")
        self.history_size = history_size
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._entries: dict[str, _Entry] = {}  # insertion order is send order
        # Unreserved entries as (available_at, seq, id); acked or rejected ones are skipped
        # lazily when they reach the top.
        self._ready: list[tuple[float, int, str]] = []
        self._reserved: dict[str, _Entry] = {}
        self._sent: deque[tuple[str, _Payload]] = deque(maxlen=history_size)
        self._acknowledged: deque[Envelope] = deque(maxlen=history_size)
        self._rejected: deque[Envelope] = deque(maxlen=history_size)

    # -- used by MemoryTransport ---------------------------------------------------------------
    def _put(self, items: Sequence[tuple[_Payload, float]]) -> list[str]:
        """Store ``(payload, delay seconds)`` pairs; return their new ids."""
        ids = []
        with self._lock:
            now = time.monotonic()
            for payload, delay in items:
                seq = next(self._ids)
                entry = _Entry(id=str(seq), seq=seq, payload=payload, available_at=now + delay)
                self._entries[entry.id] = entry
                heapq.heappush(self._ready, (entry.available_at, seq, entry.id))
                self._sent.append((entry.id, payload))
                ids.append(entry.id)
        return ids

    def _reserve(self, receiver: object, redeliver_timeout: float) -> _Entry | None:
        """Reserve the oldest available message for ``receiver``, or return ``None``.

        A reservation older than ``redeliver_timeout`` (judged by the receiver asking, as a
        database transport would) counts as abandoned: its message is available again.
        """
        with self._lock:
            now = time.monotonic()
            ready = self._ready
            while ready and ready[0][2] not in self._entries:
                heapq.heappop(ready)
            best: _Entry | None = None
            if ready and ready[0][0] <= now:
                best = self._entries[ready[0][2]]
            expired_before = now - redeliver_timeout
            # Reservations are kept oldest first (keepalive moves one to the end), so the
            # expired ones are a prefix: stop at the first that is still held.
            for entry in self._reserved.values():
                if entry.reserved_at > expired_before:
                    break
                if best is None or (entry.available_at, entry.seq) < (best.available_at, best.seq):
                    best = entry
            if best is None:
                return None
            if best.reserved_by is None:
                heapq.heappop(ready)
            else:
                del self._reserved[best.id]
            best.reserved_by = receiver
            best.reserved_at = now
            self._reserved[best.id] = best
            return best

    def _remove(self, id: str, envelope: Envelope, *, acknowledged: bool) -> None:
        with self._lock:
            entry = self._entries.pop(id, None)
            if entry is not None:
                self._reserved.pop(id, None)
            (self._acknowledged if acknowledged else self._rejected).append(envelope)

    def _keepalive(self, id: str, receiver: object, extra: float) -> None:
        with self._lock:
            entry = self._entries.get(id)
            if entry is None or entry.reserved_by is not receiver:
                raise TransportError(
                    f"message {id} is not reserved by this receiver any more (it was "
                    "acknowledged, rejected, or redelivered to another consumer)"
                )
            entry.reserved_at = time.monotonic() + extra
            # Keep the reservations ordered by time: this one is now the newest.
            del self._reserved[id]
            self._reserved[id] = entry

    # -- inspection ----------------------------------------------------------------------------
    def payloads(self, limit: int | None = None) -> list[tuple[str, _Payload]]:
        """Ids and stored forms of the messages in the queue, oldest first."""
        with self._lock:
            entries = list(itertools.islice(self._entries.values(), limit))
        return [(entry.id, entry.payload) for entry in entries]

    def payload(self, id: str) -> _Payload | None:
        """The stored form of message ``id``, if it is in the queue."""
        with self._lock:
            entry = self._entries.get(id)
        return None if entry is None else entry.payload

    def sent_payloads(self) -> list[tuple[str, _Payload]]:
        """Ids and stored forms of the messages sent since the last reset, in order (the
        latest ``history_size``)."""
        with self._lock:
            return list(self._sent)

    @property
    def acknowledged(self) -> list[Envelope]:
        """Envelopes acknowledged since the last reset, in order (the latest ``history_size``)."""
        with self._lock:
            return list(self._acknowledged)

    @property
    def rejected(self) -> list[Envelope]:
        """Envelopes rejected since the last reset, in order (the latest ``history_size``)."""
        with self._lock:
            return list(self._rejected)

    def counts(self) -> tuple[int, int]:
        """``(messages in the queue, of which reserved)``."""
        with self._lock:
            return len(self._entries), len(self._reserved)

    def reset(self) -> None:
        """Forget every message and every record (ids keep counting up)."""
        with self._lock:
            self._entries.clear()
            self._ready.clear()
            self._reserved.clear()
            self._sent.clear()
            self._acknowledged.clear()
            self._rejected.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class MemoryTransport:
    """A transport over a :class:`MemoryQueue` (a new one unless ``queue`` is given, keeping
    ``history_size`` records).

    Each object is one consumer: the messages it receives are reserved for it until it
    acknowledges or rejects them, or until ``redeliver_timeout`` seconds pass. Closing it
    without acknowledging models a consumer that died: its messages come back after that
    timeout.
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
        serializer: Serializer,
        queue: MemoryQueue | None = None,
        serialize: bool = False,
        redeliver_timeout: float = DEFAULT_REDELIVER_TIMEOUT,
        history_size: int = DEFAULT_HISTORY_SIZE,
    ) -> None:
        if not redeliver_timeout > 0:
            raise ConfigurationError(
                f"redeliver_timeout must be a positive number of seconds, got {redeliver_timeout!r}"
            )
        self.serializer = serializer
        self.queue = queue if queue is not None else MemoryQueue(history_size)
        self.serialize = serialize
        self.redeliver_timeout = float(redeliver_timeout)
        # Identifies this consumer's reservations; the transport object itself would do, but
        # a plain token keeps the queue from holding transports alive.
        self._token = object()

    # -- Sender / BatchSender ------------------------------------------------------------------
    def send(self, envelope: Envelope) -> Envelope:
        """Queue ``envelope``; return it with a :class:`TransportMessageIdStamp`."""
        return self.send_batch([envelope])[0]

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Queue all ``envelopes`` (all or none: encoding happens before anything is stored)."""
        items = [(self._store_form(envelope), _delay_of(envelope)) for envelope in envelopes]
        ids = self.queue._put(items)
        return [
            envelope.with_(TransportMessageIdStamp(id=id))
            for envelope, id in zip(envelopes, ids, strict=True)
        ]

    # -- Receiver ------------------------------------------------------------------------------
    def get(self) -> list[Envelope]:
        """The oldest available message, reserved for this consumer (or nothing)."""
        entry = self.queue._reserve(self._token, self.redeliver_timeout)
        if entry is None:
            return []
        return [self._envelope_of(entry.id, entry.payload)]

    def ack(self, envelope: Envelope) -> None:
        """Remove the message for good: it was handled."""
        self.queue._remove(_id_of(envelope), envelope, acknowledged=True)

    def reject(self, envelope: Envelope) -> None:
        """Remove the message for good without handling it."""
        self.queue._remove(_id_of(envelope), envelope, acknowledged=False)

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        """Renew this consumer's reservation, for at least ``seconds`` if given.

        Raises :class:`TransportError` if the message is no longer reserved by this consumer.
        """
        extra = 0.0 if seconds is None else max(0.0, seconds - self.redeliver_timeout)
        self.queue._keepalive(_id_of(envelope), self._token, extra)

    # -- optional capabilities -----------------------------------------------------------------
    def setup(self) -> None:
        """Nothing to create."""

    def message_count(self) -> int:
        """Messages neither acknowledged nor rejected: waiting, delayed and reserved ones."""
        return len(self.queue)

    def all(self, limit: int | None = None) -> list[Envelope]:
        """The messages :meth:`message_count` counts, oldest first, with their ids."""
        return [self._envelope_of(id, payload) for id, payload in self.queue.payloads(limit)]

    def find(self, id: str) -> Envelope | None:
        """The message with this id if it is still in the queue; it is not reserved."""
        payload = self.queue.payload(str(id))
        return None if payload is None else self._envelope_of(str(id), payload)

    def close(self) -> None:
        """Nothing to release. Messages this consumer still holds come back after the timeout."""

    # -- inspection for tests ------------------------------------------------------------------
    @property
    def sent(self) -> list[Envelope]:
        """The envelopes sent to the queue since the last reset (the latest ``history_size``),
        in order, as they were stored.

        That is, as a receiver gets it: with its :class:`TransportMessageIdStamp`, without
        non-sendable stamps and, with ``serialize``, decoded from its encoded form.
        """
        return [self._envelope_of(id, payload) for id, payload in self.queue.sent_payloads()]

    @property
    def acknowledged(self) -> list[Envelope]:
        """The envelopes acknowledged on the queue since the last reset, in order (the latest
        ``history_size``)."""
        return self.queue.acknowledged

    @property
    def rejected(self) -> list[Envelope]:
        """The envelopes rejected on the queue since the last reset, in order (the latest
        ``history_size``)."""
        return self.queue.rejected

    def reset(self) -> None:
        """Empty the queue and forget what was sent, acknowledged and rejected."""
        self.queue.reset()

    def __repr__(self) -> str:
        total, reserved = self.queue.counts()
        return (
            f"MemoryTransport(waiting={total - reserved}, reserved={reserved}, "
            f"sent={len(self.queue.sent_payloads())}, acknowledged={len(self.acknowledged)}, "
            f"rejected={len(self.rejected)}, serialize={self.serialize})"
        )

    # -- helpers -------------------------------------------------------------------------------
    def _store_form(self, envelope: Envelope) -> _Payload:
        if self.serialize:
            return self.serializer.encode(envelope)
        return envelope.without_stamps_of(NonSendableStamp)

    def _envelope_of(self, id: str, payload: _Payload) -> Envelope:
        if isinstance(payload, TransportMessage):
            envelope = decode_or_quarantine(self.serializer, attrs.evolve(payload, id=id))
        else:
            envelope = payload
        return envelope.with_(TransportMessageIdStamp(id=id))


class MemoryTransportFactory:
    """Builds :class:`MemoryTransport` objects for ``memory://`` and ``in-memory://`` DSNs.

    Each transport gets its own new queue.
    """

    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> MemoryTransport:
        """A transport for ``dsn`` with ``options`` (see the module documentation)."""
        if dsn.scheme not in _SCHEMES:
            raise ConfigurationError(
                f"the memory transport serves {' and '.join(s + '://' for s in _SCHEMES)} "
                f"DSNs, not {dsn}"
            )
        merged = dsn.with_options(options)
        reject_unknown_options(merged, _OPTIONS, transport="memory", dsn=dsn)
        return MemoryTransport(
            serializer,
            serialize=parse_bool("serialize", merged.get("serialize", False)),
            redeliver_timeout=parse_seconds(
                "redeliver_timeout", merged.get("redeliver_timeout", DEFAULT_REDELIVER_TIMEOUT)
            ),
            history_size=parse_int(
                "history_size", merged.get("history_size", DEFAULT_HISTORY_SIZE), minimum=0
            ),
        )


def _delay_of(envelope: Envelope) -> float:
    stamp = envelope.last(DelayStamp)
    return max(0, stamp.delay_ms) / 1000 if stamp is not None else 0.0


def _id_of(envelope: Envelope) -> str:
    stamp = envelope.last(TransportMessageIdStamp)
    if stamp is None:
        raise TransportError(
            "the envelope has no TransportMessageIdStamp: pass the envelope that get() "
            "(or send()) returned"
        )
    return stamp.id
