"""The settling role: acknowledgements and rejections written at once, replies read later.

An acknowledgement (``XACK``, and ``XDEL`` when the entry is to be deleted) is written on a
connection of its own without waiting for the reply: Redis applies it right away and the
consumer pays no round trip per message. The replies are read by the next ``get()`` (or after
:data:`MAX_INFLIGHT` of them, or by :meth:`Settler.flush_with`). If that connection is down,
settlements are buffered and go out with the next ``get()``; one lost to a crash only means
the message is delivered again (at-least-once), and settling twice is harmless.

The settler also keeps the ledger of entries handed out and not settled yet, so that the
receiver never hands out an entry twice, and ``close()`` knows what it leaves behind.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from redis.exceptions import ReadOnlyError

from messenger_transport_redis._wire import DirectConnection, bulk, pack_prefix
from messenger_transport_redis.connection import RedisConnection, is_nogroup, logger, pipeline
from messenger_transport_redis.reconnect import RETRYABLE

__all__ = ["MAX_INFLIGHT", "Settlement", "Settler"]

MAX_INFLIGHT = 1000
"""Acknowledgements written without reading their replies, at most (then they are read)."""

Settlement = tuple[bytes, bool]
"""A settlement to send: (entry id, delete the entry too)."""


class Settler:
    """Writes settlements at once, reads their replies later, buffers them while Redis is away.

    Thread-safe: ``settle`` may come from the worker's handler threads while ``get()`` runs;
    :attr:`lock` guards the buffers and the ledger (never held across a round trip that waits
    for Redis, only across writes and reads of replies already on their way).
    """

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self.lock = threading.Lock()
        self._buffered: list[Settlement] = []  # to send with the next get()
        self._inflight: deque[Settlement] = deque()  # written, reply not read yet
        self._broken = False  # the settling connection failed: buffer until Redis answers
        self.outstanding: set[bytes] = set()
        """Entries handed out by the receiver and not settled (nor released) yet."""
        self._committed: set[bytes] = set()
        """Entries settled in a handler's MULTI/EXEC (``redis_transaction``): their ``ack()``
        or ``reject()`` sends nothing."""
        # Commands packed once; the entry id is appended per message.
        self._xack = pack_prefix(4, "XACK", connection.stream, connection.group)
        self._xdel = pack_prefix(3, "XDEL", connection.stream)

    @property
    def idle(self) -> bool:
        """Whether nothing is buffered or waiting for its reply."""
        with self.lock:
            return not self._buffered and not self._inflight

    @property
    def unsent(self) -> int:
        """How many settlements are buffered (not written)."""
        return len(self._buffered)

    def settle(self, entry_id: bytes, delete: bool) -> None:
        """Settle the entry (``XACK``, and ``XDEL`` if ``delete``): written at once if possible,
        else buffered for the next ``get()``. Raises :class:`TransportError` once closed."""
        self._connection.check_open()
        committed = self._committed
        if committed and entry_id in committed:
            committed.discard(entry_id)  # acknowledged with the handler's writes already
            return
        packet = self._xack + bulk(entry_id)
        if delete:
            packet += self._xdel + bulk(entry_id)
        with self.lock:
            self.outstanding.discard(entry_id)
            direct = self._writable()
            if direct is None:
                self._buffered.append((entry_id, delete))
                return
            try:
                # A connection idle for a while is PINGed first, unless replies are unread.
                direct.write(packet, check_health=not self._inflight)
            except RETRYABLE as error:
                self._failed(error)
                self._buffered.append((entry_id, delete))
                return
            self._inflight.append((entry_id, delete))
            if len(self._inflight) >= MAX_INFLIGHT:
                self._drain()

    def _writable(self) -> DirectConnection | None:
        """The connection settlements are written to (with :attr:`lock` held), or ``None``
        before the first use and while Redis is not reachable: they are buffered then."""
        connection = self._connection
        if self._broken or not connection.ready or connection.closed:
            return None
        return connection.settling

    def answered(self) -> None:
        """Redis answered a round trip: write settlements again, read the replies so far."""
        with self.lock:
            self._broken = False
            self._drain()

    def _drain(self) -> None:
        """Read the replies to the settlements written so far (with :attr:`lock` held)."""
        direct = self._connection.settling
        if direct is None:
            return
        inflight = self._inflight
        try:
            while inflight:
                for _ in range(2 if inflight[0][1] else 1):
                    reply = direct.read()
                    if isinstance(reply, ReadOnlyError):  # a failover: send it to the master
                        raise reply
                    self.check_results([reply])
                inflight.popleft()
        except RETRYABLE as error:
            self._failed(error)

    def _failed(self, error: BaseException) -> None:
        """The settling connection failed (:attr:`lock` held): whatever was written and not
        confirmed is sent again by the next ``get()`` (acknowledging twice is harmless)."""
        logger.debug("acknowledgements will be sent again: %s", error)
        self._broken = True
        if self._connection.settling is not None:
            self._connection.settling.disconnect()
        self._buffered.extend(self._inflight)
        self._inflight.clear()

    def flush_with(self, client: redis.Redis) -> None:
        """Read the pending replies, then send what is buffered and wait for the replies; before
        reads that must see every settlement (counting, listing) and on ``flush()``."""
        with self.lock:
            self._drain()
        settle = self.take()
        if not settle:
            return
        pipe = pipeline(client)
        for command in self.commands(settle):
            pipe.execute_command(*command)
        try:
            results = pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, ReadOnlyError):
                    raise result
        except RETRYABLE:
            self.restore(settle)
            raise
        self.check_results(results)

    def take(self) -> list[Settlement]:
        """The buffered settlements, for the caller to send (:meth:`restore` if it fails)."""
        with self.lock:
            settle, self._buffered = self._buffered, []
        return settle

    def restore(self, settle: list[Settlement]) -> None:
        """Put back settlements taken by :meth:`take` that could not be sent, first in line."""
        if settle:
            with self.lock:
                self._buffered[:0] = settle

    def commands(self, settle: Sequence[Settlement]) -> list[tuple[Any, ...]]:
        """The commands that send ``settle``: an ``XACK`` and, if needed, an ``XDEL``."""
        if not settle:
            return []
        stream = self._connection.stream
        commands: list[tuple[Any, ...]] = [
            ("XACK", stream, self._connection.group, *(entry_id for entry_id, _ in settle))
        ]
        deleted = [entry_id for entry_id, delete in settle if delete]
        if deleted:
            commands.append(("XDEL", stream, *deleted))
        return commands

    def check_results(self, results: Iterable[Any]) -> None:
        """Log the error replies to settling commands (nothing else can be done about them)."""
        for result in results:
            # NOGROUP: the group (and its pending list) is gone, there is nothing to settle.
            if isinstance(result, Exception) and not is_nogroup(result):
                stream = self._connection.options.stream
                logger.warning("settling messages on %s failed: %s", stream, result)

    # -- the ledger of handed-out entries ----------------------------------------------------
    def held(self) -> set[bytes]:
        """Entries this transport must not hand out again: handed out, or being settled."""
        with self.lock:
            return self.outstanding.union(
                (entry_id for entry_id, _ in self._buffered),
                (entry_id for entry_id, _ in self._inflight),
            )

    def handed_out(self, entry_ids: Iterable[bytes]) -> None:
        """Record entries the receiver hands out."""
        with self.lock:
            self.outstanding.update(entry_ids)

    def settled_in_transaction(self, entry_id: bytes) -> None:
        """The entry was acknowledged in a handler's MULTI/EXEC: it is no longer handed out,
        and its ``ack()`` (or ``reject()``) sends nothing."""
        with self.lock:
            self.outstanding.discard(entry_id)
            self._committed.add(entry_id)

    def forget(self, entry_id: bytes) -> None:
        """The receiver takes the entry back unsettled (``release``)."""
        with self.lock:
            self.outstanding.discard(entry_id)

    def gone(self, entry_ids: Iterable[bytes]) -> None:
        """Entries no longer in the stream: acknowledged with the next ``get()``, not deleted."""
        with self.lock:
            self._buffered.extend((entry_id, False) for entry_id in entry_ids)
