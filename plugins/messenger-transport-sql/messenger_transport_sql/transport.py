"""The SQL transport: a queue in a ``messenger_messages`` table, like Symfony's Doctrine one.

Receiving reserves rows: in one transaction it picks up to ``fetch_size`` of the oldest
available rows of the queue (``available_at <= now`` and not reserved, or reserved longer than
``redeliver_timeout`` ago), locking them with ``FOR UPDATE SKIP LOCKED`` where the database has
it (PostgreSQL, MySQL 8, MariaDB 10.6; SQLite serializes writers instead), and sets their
``delivered_at``. Acknowledging or rejecting deletes the row. A consumer that dies leaves its
rows reserved; they come back after ``redeliver_timeout``. :meth:`SqlTransport.close` releases
the rows a consumer received but did not settle, so they come back at once.

With ``fetch_size`` above 1, acknowledgements are deferred: ``ack()`` records the row id, and
the rows are deleted in one statement within the next ``get()``'s transaction (on PostgreSQL in
the very statement that reserves the next batch), or by :meth:`SqlTransport.keepalive`,
:meth:`SqlTransport.flush` or :meth:`SqlTransport.close`, or by an ``ack()`` that finds more
than ``fetch_size`` pending or the oldest pending for long. A crash before the delete means a
redelivery, never a loss. With a ``fetch_size`` of 1 (the default is 10), ``ack()`` deletes at
once.

When the database goes away (see :mod:`messenger_transport_sql.reconnect`) the transport
reconnects with backoff: ``get()`` returns nothing until it is back, ``ack()`` and ``reject()``
defer their delete to then (a crash meanwhile means a redelivery after ``redeliver_timeout``:
at least once), and other operations fail after ``reconnect_timeout``.

:class:`SqlTransport` is a facade over its roles, one module each (as Symfony splits its
Doctrine transport): :class:`~messenger_transport_sql.sender.SqlSender` (send, batch,
outbox; :class:`~messenger_transport_sql.async_sender.AsyncPostgreSqlSender` for
``send_async`` on PostgreSQL),
:class:`~messenger_transport_sql.receiver.SqlReceiver` (reserve, keepalive, listing),
:class:`~messenger_transport_sql.acknowledgements.SqlAcknowledgements` (ack, reject, deferred
deletes, release on close), and :class:`~messenger_transport_sql.connection.SqlConnection` (the
database connection, its reconnect policy and its per-database
:class:`~messenger_transport_sql.backends.Backend`; PostgreSQL's LISTEN/NOTIFY in
:mod:`messenger_transport_sql._notify`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import sqlalchemy as sa

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.serializer import Serializer
from messenger_core.transport import TransportCapabilities
from messenger_transport_sql.acknowledgements import SqlAcknowledgements, row_id_of
from messenger_transport_sql.backends import backend_for
from messenger_transport_sql.connection import SqlConnection
from messenger_transport_sql.engine import ENGINE_MARK, transaction_engine
from messenger_transport_sql.lost_commit import CommitOutcome, LostCommitCheck, commit_lost
from messenger_transport_sql.options import SqlTransportOptions
from messenger_transport_sql.outbox import current_outbox_connection
from messenger_transport_sql.receiver import SqlReceiver
from messenger_transport_sql.sender import SqlSender

if TYPE_CHECKING:  # PostgreSQL only: a SQLite worker never loads it
    from messenger_transport_sql._notify import NotifyListener

__all__ = ["SqlTransport"]

logger = logging.getLogger("messenger.transport.sql")


class SqlTransport:
    """A transport over one queue of a messages table; see the module documentation.

    Build it with :class:`~messenger_transport_sql.factory.SqlTransportFactory` from a DSN, or
    directly from a SQLAlchemy engine configured as
    :func:`~messenger_transport_sql.engine.create_engine` does. One object holds one database
    connection (two on PostgreSQL while waiting for notifications) and is one consumer; it is
    thread-safe, but consumers in several threads should each have their own.
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
        engine: sa.Engine,
        serializer: Serializer,
        options: SqlTransportOptions | None = None,
        *,
        description: str | None = None,
        dispose_engine: bool = False,
    ) -> None:
        """A transport on ``engine``, which :func:`~messenger_transport_sql.engine.create_engine`
        built; ``dispose_engine`` makes :meth:`close` dispose of it."""
        if not engine.get_execution_options().get(ENGINE_MARK):
            raise ConfigurationError(
                "SqlTransport needs an engine built by messenger_transport_sql.engine."
                "create_engine (autocommit on PostgreSQL, immediate transactions on SQLite), "
                f"not {engine.url.render_as_string(hide_password=True)!r} as configured"
            )
        self._options = options if options is not None else SqlTransportOptions()
        backend = backend_for(engine, self._options)
        url = engine.url.render_as_string(hide_password=True)
        description = description if description is not None else url
        self._db = SqlConnection(
            engine,
            backend,
            self._options,
            label=f"SqlTransport({description!r}, queue={self._options.queue_name!r})",
            description=description,
            dispose_engine=dispose_engine,
        )
        self._acks = SqlAcknowledgements(self._db)
        self._sender = SqlSender(self._db, serializer)
        # With an engine of ours only: see messenger_transport_sql.async_sender.
        self._async_sender = (
            backend.async_sender(self._db, self._sender) if dispose_engine else None
        )
        self._receiver = SqlReceiver(self._db, serializer, self._acks)
        self._transaction_engine: sa.Engine | None = None
        self._lost_commits: LostCommitCheck | None = None

    def __repr__(self) -> str:
        return self._db.label

    @property
    def waits_for_messages(self) -> bool:
        """True on PostgreSQL with ``use_notify`` and a ``get_notify_timeout``: an empty
        ``get()`` waits for a notification, so a worker need not sleep between empty rounds (a
        new message wakes it at once). False while LISTEN fails (``get()`` then polls)."""
        return self._receiver.waits_for_messages

    @property
    def options(self) -> SqlTransportOptions:
        """The transport's options."""
        return self._options

    @property
    def _listener(self) -> NotifyListener | None:
        """The PostgreSQL notification listener, if any (for tests that watch it)."""
        return self._receiver.listener

    # -- sending ----------------------------------------------------------------------------
    def send(self, envelope: Envelope) -> Envelope:
        """Store ``envelope``; return it with a ``TransportMessageIdStamp`` of the new row.

        Inside an :func:`~messenger_transport_sql.outbox` block the row is inserted through the
        application's connection, in its transaction.
        """
        return self._sender.send(envelope)

    @property
    def sends_async(self) -> bool:
        """AsyncSender: whether :meth:`send_async` sends through psycopg's async connection
        (on PostgreSQL, with the engine made from the DSN, outside an outbox block); when
        false, ``dispatch_async`` sends in a thread."""
        return self._async_sender is not None and current_outbox_connection() is None

    async def send_async(self, envelope: Envelope) -> Envelope:
        """:meth:`send`, awaited on the running event loop: on PostgreSQL the same INSERT (and
        notification) through an async connection of that loop's own, else :meth:`send` in a
        thread (where :attr:`sends_async` is false)."""
        if not self.sends_async:
            return await asyncio.to_thread(self.send, envelope)
        assert self._async_sender is not None
        return await self._async_sender.send(envelope)

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store all ``envelopes`` in one transaction (all or none), in one statement.

        Returns them with the ids of their rows; on MySQL (not MariaDB), which cannot return
        the ids a multi-row insert generated, without id stamps.
        """
        return self._sender.send_batch(envelopes)

    # -- receiving --------------------------------------------------------------------------
    def get(self) -> list[Envelope]:
        """Reserve and return up to ``fetch_size`` of the oldest available messages.

        On PostgreSQL with ``use_notify`` an empty queue makes this wait up to
        ``get_notify_timeout`` ms for a notification of a new message.

        While the database is unreachable this returns nothing after about a second of
        reconnecting (with backoff; one warning per outage), so that a worker stays responsive
        to SIGTERM and carries on once the database is back. Only a database that never
        answered this transport for ``reconnect_timeout`` seconds raises
        :class:`TransportError` (a worker starting against a wrong or stopped server).
        """
        return self._receiver.get()

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        """Renew the reservation of a message still being handled (and flush deferred acks).

        The reservation then lasts ``redeliver_timeout`` from now; ``seconds`` (when the caller
        will call again) needs no action here.
        """
        self._receiver.keepalive(envelope)

    # -- settling -----------------------------------------------------------------------------
    def ack(self, envelope: Envelope) -> None:
        """The message was handled: delete its row (deferred when ``fetch_size`` > 1).

        While the database is unreachable the deletion is deferred until it is back (the next
        ``get()``, ``flush()`` or ``close()`` writes it); should the process die first, the
        message comes back after ``redeliver_timeout``: at least once, never lost.
        """
        self._acks.ack(envelope)

    def reject(self, envelope: Envelope) -> None:
        """Give up on the message: delete its row at once (deferred like an ``ack()`` while
        the database is unreachable)."""
        self._acks.reject(envelope)

    def flush(self) -> None:
        """Delete the rows of deferred acknowledgements now."""
        self._acks.flush()

    # -- settling in a handler's transaction (the sql_transaction middleware) ----------------
    def transaction_engine(self) -> sa.Engine:
        """An engine for handlers' transactions on this transport's database (see
        :func:`~messenger_transport_sql.engine.transaction_engine`), made on the first call
        and disposed of by :meth:`close`."""
        with self._db.lock:
            if self._transaction_engine is None:
                self._transaction_engine = transaction_engine(self._db.engine)
            return self._transaction_engine

    def delete_in(self, connection: sa.Connection, envelope: Envelope) -> bool:
        """Acknowledge ``envelope`` inside the caller's transaction: delete its row through
        ``connection`` (on this transport's database), without committing.

        Returns ``False`` if the row is gone (settled by another consumer, or removed). Until
        :meth:`transaction_ended` is called, :meth:`keepalive` leaves the row alone. This is
        what the ``sql_transaction`` middleware does; see
        :mod:`messenger_transport_sql.transaction`.
        """
        return self._acks.delete_in(connection, row_id_of(envelope))

    def transaction_ended(self, envelope: Envelope, *, committed: bool) -> None:
        """The transaction of :meth:`delete_in` committed (the message is settled: its
        ``ack()`` or ``reject()`` does nothing) or rolled back (it is held as before)."""
        self._acks.transaction_ended(row_id_of(envelope), committed=committed)

    def session_of(self, connection: sa.Connection) -> int | None:
        """The server's id of the session of ``connection`` (a connection of
        :meth:`transaction_engine`), learnt before its ``COMMIT`` for :meth:`commit_outcome`;
        ``None`` on SQLite."""
        return self._db.backend.session_id(connection)

    def commit_lost(self, error: BaseException) -> bool:
        """Whether ``error``, raised by the ``COMMIT`` of a :meth:`delete_in` transaction,
        leaves its outcome unknown (the connection was lost; never on SQLite)."""
        return commit_lost(error, self._db.backend)

    def commit_outcome(self, envelope: Envelope, session_id: int | None) -> CommitOutcome:
        """Whether the transaction that deleted ``envelope``'s row in session ``session_id``
        (see :meth:`session_of`), whose ``COMMIT`` was lost, was applied; definitive unless
        unknown (see :mod:`messenger_transport_sql.lost_commit`)."""
        with self._db.lock:
            check = self._lost_commits
            if check is None:
                check = self._lost_commits = LostCommitCheck(
                    self.transaction_engine(), self._db.backend, self._db.table, self._db.label
                )
        return check.outcome(row_id_of(envelope), session_id)

    # -- inspecting --------------------------------------------------------------------------
    def message_count(self) -> int:
        """Messages waiting in the queue, delayed ones included, received ones not."""
        return self._receiver.message_count()

    def all(self, limit: int | None = None) -> list[Envelope]:
        """Waiting messages (delayed ones included, received ones not), oldest first."""
        return self._receiver.all(limit)

    def find(self, id: str) -> Envelope | None:
        """The message with this id in this queue, or ``None``; finding does not reserve it."""
        return self._receiver.find(id)

    # -- setup and closing -------------------------------------------------------------------
    def setup(self) -> None:
        """Create the table and its indexes if missing, and on PostgreSQL the notify trigger.

        On a table that exists, create the receiving index if it lacks one (Symfony's
        ``messenger:setup-transports`` drops it) and keep a notify trigger that works
        (Symfony's too). Safe to call repeatedly and from several processes at once.
        """
        with self._db.lock:
            self._db.check_open()
            self._db.setup.create()

    def close(self) -> None:
        """Delete deferred acknowledgements, release the messages received but not settled
        (other consumers get them at once) and close the connections. Idempotent."""
        db = self._db
        if db.reconnect.in_outage:
            db.reconnect.close()  # cut short a get() waiting for the database in a thread
        with db.lock:
            if db.closed:
                return
            db.reconnect.close()  # from now on, no operation waits for the database
            try:
                self._acks.release_all()
            except TransportError as error:
                logger.warning(
                    "%r: closing without settling (they come back after redeliver_timeout): %s",
                    self,
                    error,
                )
            finally:
                db.closed = True  # first: a get() waiting in another thread then gives up
                self._receiver.close()
                db.close()
                if self._transaction_engine not in (None, db.engine):
                    self._transaction_engine.dispose()
                if self._async_sender is not None:
                    self._async_sender.close()
