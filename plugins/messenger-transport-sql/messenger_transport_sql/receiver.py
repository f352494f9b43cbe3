"""Receiving: reserving rows, renewing reservations, and reading the queue without reserving.

Receiving reserves rows: in one transaction it picks up to ``fetch_size`` of the oldest
available rows of the queue (``available_at <= now`` and not reserved, or reserved longer than
``redeliver_timeout`` ago), locking them with ``FOR UPDATE SKIP LOCKED`` where the database has
it, and sets their ``delivered_at``. The same transaction deletes the rows of deferred
acknowledgements. A consumer that dies leaves its rows reserved; they come back after
``redeliver_timeout``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.serializer import Serializer
from messenger_transport_sql._codec import decode_row
from messenger_transport_sql.acknowledgements import SqlAcknowledgements, row_id_of
from messenger_transport_sql.connection import SqlConnection
from messenger_transport_sql.reconnect import OUTAGE_WAIT
from messenger_transport_sql.schema import utcnow

if TYPE_CHECKING:  # PostgreSQL only: a SQLite worker never loads it
    from messenger_transport_sql._notify import NotifyListener

__all__ = ["SqlReceiver"]


class SqlReceiver:
    """Reserves messages for one consumer and reads the queue for inspection.

    Contract: every envelope :meth:`get` returns carries its row's
    ``TransportMessageIdStamp`` and is recorded with the acknowledgements as in hand, in the
    queue's order (``available_at``, then id); rows that do not decode come back as envelopes
    the worker parks (see :func:`~messenger_transport_sql._codec.decode_row`).
    """

    def __init__(
        self, db: SqlConnection, serializer: Serializer, acks: SqlAcknowledgements
    ) -> None:
        self._db = db
        self._serializer = serializer
        self._acks = acks
        self._queue = db.options.queue_name
        self._redeliver = timedelta(seconds=db.options.redeliver_timeout)
        self._get_lock = threading.Lock()
        self._notify = db.backend.notify_wait(db)

    @property
    def listener(self) -> NotifyListener | None:
        """The PostgreSQL listener, when ``use_notify`` is on."""
        return None if self._notify is None else self._notify.listener

    @property
    def waits_for_messages(self) -> bool:
        """Whether an empty :meth:`get` waits for a new message (see the transport's)."""
        return self._notify is not None and self._notify.waits

    def get(self) -> list[Envelope]:
        """Reserve and return up to ``fetch_size`` of the oldest available messages; nothing
        while the database is unreachable (see :meth:`SqlTransport.get`)."""
        with self._get_lock:
            try:
                if self._notify is not None:
                    return self._notify.get(self._reserve_now, self._acks.flush)
                with self._db.lock:
                    return self._reserve_now()
            except TransportError:
                policy = self._db.reconnect
                if not policy.in_outage or self._db.closed:
                    raise
                if not policy.connected_once and policy.outage_duration >= policy.timeout:
                    raise self._db.unreachable("receive messages") from None
                return []

    def _reserve_now(self) -> list[Envelope]:
        return self._reserve(patience=self._get_patience())

    def _get_patience(self) -> float:
        """Seconds one ``get()`` may spend reconnecting: a second at most, and at start-up no
        more than what is left of ``reconnect_timeout``."""
        policy = self._db.reconnect
        if policy.connected_once or not policy.in_outage:
            return OUTAGE_WAIT
        return max(0.0, min(OUTAGE_WAIT, policy.timeout - policy.outage_duration))

    def _reserve(self, *, patience: float | None = None) -> list[Envelope]:
        db = self._db
        db.check_open()
        acks = self._acks.pending
        reserved: list[datetime] = []

        def work(connection: sa.Connection) -> Sequence[Any]:
            now = utcnow()
            reserved[:] = [now]
            params = {"queue": self._queue, "now": now, "redeliver_limit": now - self._redeliver}
            return db.backend.reserve(db, connection, params, acks)

        rows = db.run("receive", work, patience=patience)
        if acks:
            self._acks.written(len(acks))
        if not rows:
            return []
        reserved_at = reserved[0]
        # RETURNING gives no order: restore the queue's (available_at, id) order. (As text:
        # SQLite may hold a foreign producer's number there, which no string sorts with.)
        ordered = sorted(rows, key=lambda row: (str(row[3]), row[0])) if len(rows) > 1 else rows
        in_hand = self._acks.in_hand
        serializer = self._serializer
        envelopes = []
        for row_id, body, headers, _ in ordered:
            in_hand[row_id] = reserved_at
            envelopes.append(decode_row(row_id, body, headers, serializer))
        return envelopes

    def keepalive(self, envelope: Envelope) -> None:
        """Renew the reservation of a message still being handled (and flush deferred acks)."""
        row_id = row_id_of(envelope)
        db = self._db
        with db.lock:
            db.check_open()
            acks = self._acks.pending
            now = utcnow()

            # A row deleted in a handler's open transaction is locked by it (and nobody else's
            # to take): renewing it would wait for that transaction.
            renew = row_id not in self._acks.in_transaction

            def work(connection: sa.Connection) -> None:
                if acks:
                    db.backend.delete(db, connection, acks)
                if renew:
                    connection.execute(db.statements.keepalive, {"row_id": row_id, "now": now})

            if not acks and not renew:
                return
            db.run("keep the message reserved", work, patience=OUTAGE_WAIT)
            self._acks.written(len(acks))
            if row_id in self._acks.in_hand:
                self._acks.in_hand[row_id] = now

    # -- inspecting --------------------------------------------------------------------------
    def message_count(self) -> int:
        """Messages waiting in the queue, delayed ones included, received ones not."""
        db = self._db
        with db.lock:
            db.check_open()
            params = {"queue": self._queue, "redeliver_limit": utcnow() - self._redeliver}
            count = db.run(
                "count messages",
                lambda connection: connection.execute(db.statements.count, params).scalar_one(),
                read=True,
            )
            return int(count)

    def all(self, limit: int | None = None) -> list[Envelope]:
        """Waiting messages (delayed ones included, received ones not), oldest first."""
        db = self._db
        with db.lock:
            db.check_open()
            self._acks.flush()
            params: dict[str, Any] = {
                "queue": self._queue,
                "redeliver_limit": utcnow() - self._redeliver,
            }
            if limit is not None:
                params["limit"] = max(0, limit)

            def work(connection: sa.Connection) -> Sequence[Any]:
                statements = db.statements
                listing = statements.list_all if limit is None else statements.list_limited
                return connection.execute(listing, params).all()

            rows = db.run("list messages", work, read=True)
        return [decode_row(row[0], row[1], row[2], self._serializer) for row in rows]

    def find(self, id: str) -> Envelope | None:
        """The message with this id in this queue, or ``None``; finding does not reserve it."""
        try:
            row_id = int(id)
        except (TypeError, ValueError):
            return None
        db = self._db
        with db.lock:
            db.check_open()
            self._acks.flush()
            params = {"queue": self._queue, "row_id": row_id}
            row = db.run(
                "find a message",
                lambda connection: connection.execute(db.statements.find, params).first(),
                read=True,
            )
        return None if row is None else decode_row(row[0], row[1], row[2], self._serializer)

    def close(self) -> None:
        """Stop listening for notifications (the connection's lock held)."""
        if self._notify is not None:
            self._notify.close()
