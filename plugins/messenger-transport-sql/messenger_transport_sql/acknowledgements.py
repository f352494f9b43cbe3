"""Settling received messages: acknowledge (deferred or not), reject, release on close.

Acknowledging or rejecting deletes the row. With ``fetch_size`` above 1 an ``ack()`` only
records the row id; the rows are deleted in one statement by the receiver's next reservation
(see :meth:`SqlAcknowledgements.pending`), by :meth:`SqlAcknowledgements.flush`, or by an
``ack()`` that finds more than ``fetch_size`` pending or the oldest pending for long. A crash
before the delete means a redelivery, never a loss. On close, rows received but not settled
are released so that other consumers get them at once.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.stamps import TransportMessageIdStamp
from messenger_transport_sql.connection import SqlConnection
from messenger_transport_sql.reconnect import OUTAGE_WAIT

__all__ = ["SqlAcknowledgements", "row_id_of"]

logger = logging.getLogger("messenger.transport.sql")

_RELEASE_TOLERANCE = timedelta(seconds=1)
"""How far a stored ``delivered_at`` may be from the one we wrote (tables made by Doctrine keep
whole seconds: PostgreSQL and MySQL round, MariaDB truncates) and still be our reservation; at
most half the redelivery timeout, so that a reservation taken over by another consumer (at
least that timeout later) is never ours."""
_MAX_ACK_DELAY = 30.0
"""Seconds an acknowledgement may stay pending, at most (and a quarter of redeliver_timeout)."""


class SqlAcknowledgements:
    """The rows one consumer holds, and the deletions it owes.

    Contract: every row reported by :meth:`received` is, by :meth:`release_all` at the latest,
    deleted (``ack``/``reject``), released, or left to come back after ``redeliver_timeout``
    (the database unreachable). Callers hold the connection's lock around :meth:`pending` and
    :meth:`written`.
    """

    def __init__(self, db: SqlConnection) -> None:
        self._db = db
        options = db.options
        self.in_hand: dict[int, datetime] = {}
        """Rows this consumer received and did not settle yet, with the reservation time."""
        self._defer = options.fetch_size > 1
        self._pending: list[int] = []
        self._pending_since = 0.0
        self._max_delay = min(_MAX_ACK_DELAY, options.redeliver_timeout / 4)
        self.in_transaction: set[int] = set()
        """Rows deleted in a handler's open transaction (``sql_transaction``): a keepalive
        leaves them alone (their row is locked by that transaction until it ends)."""
        self._settled: set[int] = set()
        """Rows deleted by a committed handler's transaction: their ``ack()`` does nothing."""
        self._delete_statement: sa.Delete | None = None

    @property
    def pending(self) -> list[int]:
        """Ids of rows acknowledged but not deleted yet; after deleting them in another
        statement, report it with :meth:`written`."""
        return self._pending

    def written(self, count: int) -> None:
        """The first ``count`` :attr:`pending` rows are deleted."""
        self._pending = self._pending[count:]

    def ack(self, envelope: Envelope) -> None:
        """The message was handled: delete its row (deferred when ``fetch_size`` > 1)."""
        row_id = row_id_of(envelope)
        db = self._db
        with db.lock:
            db.check_open()
            if self._settled and row_id in self._settled:
                self._settled.discard(row_id)  # deleted with the handler's writes already
                return
            if self.in_hand.pop(row_id, None) is None or not self._defer:
                self._delete_now("acknowledge", row_id)
                return
            now = time.monotonic()
            if not self._pending:
                self._pending_since = now
            self._pending.append(row_id)
            too_many = len(self._pending) > db.options.fetch_size
            if too_many or now - self._pending_since > self._max_delay:
                self.flush()

    def reject(self, envelope: Envelope) -> None:
        """Give up on the message: delete its row at once."""
        row_id = row_id_of(envelope)
        with self._db.lock:
            self._db.check_open()
            self.in_hand.pop(row_id, None)
            if self._settled and row_id in self._settled:
                self._settled.discard(row_id)
                return
            self._delete_now("reject", row_id)

    def delete_in(self, connection: sa.Connection, row_id: int) -> bool:
        """Delete the row ``row_id`` through ``connection``, in its open transaction, and
        leave it alone until :meth:`transaction_ended`; ``False`` if the row is gone.

        On PostgreSQL and MySQL the delete locks the row until that transaction ends, so no
        other consumer reserves it meanwhile; a row already gone was settled by someone else.
        """
        # Not under the connection's lock: on SQLite this transaction holds the write lock,
        # which a thread holding that lock may be waiting for. (A set's add is atomic.)
        self.in_transaction.add(row_id)
        deleted = connection.execute(self._delete_one(), {"row_id": row_id}).rowcount
        return bool(deleted)

    def transaction_ended(self, row_id: int, *, committed: bool) -> None:
        """The transaction of :meth:`delete_in` ended: committed, the row is settled and its
        ``ack()`` (or ``reject()``) does nothing; rolled back, the row is held as before."""
        with self._db.lock:
            self.in_transaction.discard(row_id)
            if committed and self.in_hand.pop(row_id, None) is not None:
                self._settled.add(row_id)

    def _delete_one(self) -> sa.Delete:
        statement = self._delete_statement
        if statement is None:
            table = self._db.table
            statement = self._delete_statement = sa.delete(table).where(
                table.c.id == sa.bindparam("row_id")
            )
        return statement

    def _delete_now(self, action: str, row_id: int) -> None:
        """Delete a settled row; during an outage, defer it to when the database is back."""
        db = self._db
        try:
            db.run(
                action,
                lambda connection: db.backend.delete(db, connection, [row_id]),
                transaction=not db.backend.autocommit,
                patience=OUTAGE_WAIT,
            )
        except TransportError:
            if not db.reconnect.in_outage:
                raise
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(row_id)
            logger.debug(
                "%s: database unreachable, %s of row %d deferred", db.label, action, row_id
            )

    def flush(self) -> None:
        """Delete the rows of deferred acknowledgements now."""
        if not self._pending:
            return  # (the usual case, checked again under the lock)
        db = self._db
        with db.lock:
            acks = self._pending
            if not acks:
                return
            db.check_open()
            db.run(
                "acknowledge",
                lambda connection: db.backend.delete(db, connection, acks),
                transaction=not db.backend.autocommit,
                patience=OUTAGE_WAIT if db.reconnect.in_outage else None,
            )
            self.written(len(acks))

    def release_all(self) -> None:
        """On close: flush, then hand the rows received but not settled back to the queue.

        Only rows still carrying our reservation are released: one that outlived
        ``redeliver_timeout`` may be another consumer's by now.
        """
        self.flush()
        if not self.in_hand:
            return
        db = self._db
        tolerance = min(_RELEASE_TOLERANCE, timedelta(seconds=db.options.redeliver_timeout) / 2)
        by_time: dict[datetime, list[int]] = {}
        for row_id, reserved_at in self.in_hand.items():
            by_time.setdefault(reserved_at, []).append(row_id)

        def work(connection: sa.Connection) -> int:
            released = 0
            for reserved_at, ids in by_time.items():
                params = {
                    "ids": ids,
                    "low": reserved_at - tolerance,
                    "high": reserved_at + tolerance,
                }
                released += connection.execute(db.statements.release, params).rowcount
            if released:
                db.backend.after_release(connection, db.options.queue_name)
            return released

        db.run("release received messages", work)
        self.in_hand.clear()


def row_id_of(envelope: Envelope) -> int:
    """The id of the row ``envelope`` was received from; a :class:`TransportError` if none."""
    stamp = envelope.last(TransportMessageIdStamp)
    if stamp is None:
        raise TransportError(
            f"cannot settle {envelope!r}: it has no TransportMessageIdStamp, so it was not "
            "received from a SQL transport"
        )
    try:
        return int(stamp.id)
    except ValueError:
        raise TransportError(
            f"cannot settle {envelope!r}: {stamp.id!r} is not the id of a SQL transport row"
        ) from None
