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
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from messenger_core.envelope import Envelope
from messenger_core.errors import BrokerUnreachableError, ConfigurationError, TransportError
from messenger_core.serializer import Serializer
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_core.transport import TransportCapabilities
from messenger_transport_sql._codec import decode_row, encode_body, encode_headers
from messenger_transport_sql._notify import NotifyListener
from messenger_transport_sql._statements import (
    FastSql,
    Sql,
    Statements,
    build_fast_sql,
    build_statements,
    sqlite_datetime,
    sqlite_ids,
)
from messenger_transport_sql.engine import ENGINE_MARK, SQLITE_BEGIN, database_identity
from messenger_transport_sql.options import SqlTransportOptions
from messenger_transport_sql.outbox import current_outbox_connection
from messenger_transport_sql.reconnect import ErrorKind, ReconnectPolicy, classify, describe_error
from messenger_transport_sql.schema import RESERVE_INDEX, build_table, postgresql_notify_ddl

__all__ = ["SqlTransport"]

logger = logging.getLogger("messenger.transport.sql")

T = TypeVar("T")

_RETRIES = 5
"""How often an operation is retried at once after a deadlock or a lock timeout."""
_OUTAGE_WAIT = 1.0
"""Seconds one ``get()``, ``ack()``, ``reject()`` or ``keepalive()`` keeps reconnecting during an
outage before it returns (nothing; the settlement deferred) so that the worker around it can
check whether it should stop. Other operations keep trying for ``reconnect_timeout``."""
_RELEASE_TOLERANCE = timedelta(seconds=1)
"""How far a stored ``delivered_at`` may be from the one we wrote (tables made by Doctrine keep
whole seconds: PostgreSQL and MySQL round, MariaDB truncates) and still be our reservation; at
most half the redelivery timeout, so that a reservation taken over by another consumer (at
least that timeout later) is never ours."""
_MIN_IDLE_CHECK = 0.05
"""Seconds: the shortest wait before an idle PostgreSQL consumer queries again."""
_MAX_ACK_DELAY = 30.0
"""Seconds an acknowledgement may stay pending, at most (and a quarter of redeliver_timeout)."""


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _same(value: datetime) -> datetime:
    return value


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
        self._engine = engine
        self._serializer = serializer
        self._options = options if options is not None else SqlTransportOptions()
        self._dispose_engine = dispose_engine
        self._backend = _backend_name(engine)
        url = engine.url.render_as_string(hide_password=True)
        self._description = description if description is not None else url
        self._identity = database_identity(engine.url)
        self._reconnect = ReconnectPolicy(self._description, self._options.reconnect_timeout)
        self._table = build_table(self._options.table_name, backend=self._backend)
        self._queue = self._options.queue_name
        self._redeliver = timedelta(seconds=self._options.redeliver_timeout)
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        # SQLite takes datetimes as text on the fast path (as SQLAlchemy stores them).
        self._driver_datetime: Callable[[datetime], Any] = (
            sqlite_datetime if self._backend == "sqlite" else _same
        )
        self._lock = threading.RLock()
        self._get_lock = threading.Lock()
        self._connection: sa.Connection | None = None
        self._statements: Statements | None = None
        self._fast = FastSql()
        self._cursor: Any = None
        """The DB-API cursor of the fast path, on ``_connection``."""
        self._single_statements = self._backend in ("postgresql", "sqlite")
        """Whether a single raw statement commits by itself (autocommit connections)."""
        self._prepare: bool | None = None
        """psycopg: False to plan the reserve statement on each execution (see _connect)."""
        self._outbox_statements_by_dialect: dict[type[sa.Dialect], Statements] = {}
        self._in_hand: dict[int, datetime] = {}
        """Rows this consumer received and did not settle yet, with the reservation time."""
        self._defer_acks = self._options.fetch_size > 1
        self._pending_acks: list[int] = []
        self._pending_since = 0.0
        self._max_ack_delay = min(_MAX_ACK_DELAY, self._options.redeliver_timeout / 4)
        self._table_checked = False
        self._closed = False
        self._use_notify = self._backend == "postgresql" and self._options.use_notify
        self._listen_failed = False
        self._listener = (
            NotifyListener(engine, self._options.table_name, self._queue)
            if self._use_notify
            else None
        )
        self._trigger_checked = False
        self._idle = False
        self._next_check = 0.0

    def __repr__(self) -> str:
        return f"SqlTransport({self._description!r}, queue={self._queue!r})"

    @property
    def waits_for_messages(self) -> bool:
        """True on PostgreSQL with ``use_notify`` and a ``get_notify_timeout``: an empty
        ``get()`` waits for a notification, so a worker need not sleep between empty rounds (a
        new message wakes it at once). False while LISTEN fails (``get()`` then polls)."""
        if self._listener is None or not self._options.get_notify_timeout:
            return False
        # Before the first get() the listener has not started yet: it will wait then.
        return self._listener.listening or not self._listen_failed

    @property
    def options(self) -> SqlTransportOptions:
        """The transport's options."""
        return self._options

    # -- sending ----------------------------------------------------------------------------
    def send(self, envelope: Envelope) -> Envelope:
        """Store ``envelope``; return it with a ``TransportMessageIdStamp`` of the new row.

        Inside an :func:`~messenger_transport_sql.outbox` block the row is inserted through the
        application's connection, in its transaction.
        """
        row = self._row(envelope, _utcnow())
        outbox = current_outbox_connection()
        if outbox is not None:
            statements = self._outbox_statements(outbox)
            result = self._outbox_execute(lambda: outbox.execute(statements.insert, row))
            row_id = _first_key(result)
        else:
            with self._lock:
                self._check_open()
                row_id = self._run(
                    "send",
                    lambda connection: self._insert(connection, row),
                    transaction=not self._single_statements,
                )
        return envelope.with_(TransportMessageIdStamp(id=str(row_id)))

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store all ``envelopes`` in one transaction (all or none), in one statement.

        Returns them with the ids of their rows; on MySQL (not MariaDB), which cannot return
        the ids a multi-row insert generated, without id stamps.
        """
        if not envelopes:
            return []
        now = _utcnow()
        rows = [self._row(envelope, now) for envelope in envelopes]
        outbox = current_outbox_connection()
        if outbox is not None:
            statements = self._outbox_statements(outbox)
            ids = self._outbox_execute(lambda: _insert_many_core(outbox, statements, rows))
        else:
            with self._lock:
                self._check_open()
                ids = self._run(
                    "send a batch",
                    lambda connection: self._insert_many(connection, rows),
                    transaction=self._backend != "postgresql",
                )
        if ids is None:
            return list(envelopes)
        return [
            envelope.with_(TransportMessageIdStamp(id=str(row_id)))
            for envelope, row_id in zip(envelopes, ids, strict=True)
        ]

    def _row(self, envelope: Envelope, now: datetime) -> dict[str, Any]:
        message = self._serializer.encode(envelope)
        body, headers = encode_body(message.body, message.headers)
        available_at = now
        delay = envelope.last(DelayStamp)
        if delay is not None and delay.delay_ms > 0:
            available_at = now + timedelta(milliseconds=delay.delay_ms)
        return {
            "body": body,
            "headers": encode_headers(headers),
            "queue_name": self._queue,
            "created_at": now,
            "available_at": available_at,
        }

    def _insert(self, connection: sa.Connection, row: dict[str, Any]) -> int:
        sql = self._fast.insert
        if sql is None:
            return _first_key(connection.execute(self._core.insert, row))
        dt = self._driver_datetime
        params = {
            **row,
            "created_at": dt(row["created_at"]),
            "available_at": dt(row["available_at"]),
        }
        cursor = self._raw(connection, sql, params)
        if self._backend == "postgresql":
            return int(cursor.fetchone()[0])
        return int(cursor.lastrowid)

    def _insert_many(
        self, connection: sa.Connection, rows: list[dict[str, Any]]
    ) -> list[int] | None:
        sql = self._fast.insert_many
        if sql is None:
            return _insert_many_core(connection, self._core, rows)
        if self._backend == "sqlite":
            dt = sqlite_datetime
            params = [
                sql.bind(
                    {
                        **row,
                        "created_at": dt(row["created_at"]),
                        "available_at": dt(row["available_at"]),
                    }
                )
                for row in rows
            ]
            cursor = self._raw(connection, sql, params, many=True)
            # We hold the write lock: the rows took consecutive ids, ending with the last one.
            last = int(cursor.execute("SELECT last_insert_rowid()").fetchall()[0][0])
            return list(range(last - len(rows) + 1, last + 1))
        columns = {
            "bodies": [row["body"] for row in rows],
            "headers_list": [row["headers"] for row in rows],
            "created_at_list": [row["created_at"] for row in rows],
            "available_at_list": [row["available_at"] for row in rows],
            "queue_name": self._queue,
        }
        cursor = self._raw(connection, sql, columns)
        # The rows took their ids from the sequence in array order: sorted ids match them.
        return sorted(int(row[0]) for row in cursor.fetchall())

    def _outbox_statements(self, connection: sa.Connection) -> Statements:
        identity = database_identity(connection.engine.url)
        if identity != self._identity:
            raise ConfigurationError(
                f"cannot send to {self!r} through the outbox connection to "
                f"{connection.engine.url.render_as_string(hide_password=True)}: they are "
                "different databases, so the message could not join the transaction"
            )
        with self._lock:
            self._check_open()
            if self._options.auto_setup and not self._table_checked:
                # The application's transaction must not fail on a missing table: create it
                # before the first insert.
                self._setup_if_missing(connection)
            dialect = connection.dialect
            statements = self._outbox_statements_by_dialect.get(type(dialect))
            if statements is None:
                statements = build_statements(
                    self._table, dialect, skip_locked=False, fetch_size=self._options.fetch_size
                )
                self._outbox_statements_by_dialect[type(dialect)] = statements
            return statements

    def _outbox_execute(self, insert: Callable[[], T]) -> T:
        try:
            return insert()
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(
                f"{self!r}: sending through the outbox connection failed: {_reason(error)}"
            ) from error

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
        with self._get_lock:
            try:
                if self._listener is not None:
                    return self._get_notified(self._listener)
                with self._lock:
                    return self._reserve(patience=self._get_patience())
            except TransportError:
                policy = self._reconnect
                if not policy.in_outage or self._closed:
                    raise
                if not policy.connected_once and policy.outage_duration >= policy.timeout:
                    raise self._unreachable("receive messages") from None
                return []

    def _get_patience(self) -> float:
        """Seconds one ``get()`` may spend reconnecting: a second at most, and at start-up no
        more than what is left of ``reconnect_timeout``."""
        policy = self._reconnect
        if policy.connected_once or not policy.in_outage:
            return _OUTAGE_WAIT
        return max(0.0, min(_OUTAGE_WAIT, policy.timeout - policy.outage_duration))

    def _reserve(self, *, patience: float | None = None) -> list[Envelope]:
        self._check_open()
        acks = self._pending_acks
        reserved: list[datetime] = []

        def work(connection: sa.Connection) -> Sequence[Any]:
            now = _utcnow()
            reserved[:] = [now]
            return self._reserve_rows(connection, now, acks)

        rows = self._run("receive", work, patience=patience)
        if acks:
            self._pending_acks = []
        if not rows:
            return []
        reserved_at = reserved[0]
        # RETURNING gives no order: restore the queue's (available_at, id) order. (As text:
        # SQLite may hold a foreign producer's number there, which no string sorts with.)
        ordered = sorted(rows, key=lambda row: (str(row[3]), row[0])) if len(rows) > 1 else rows
        envelopes = []
        for row_id, body, headers, _ in ordered:
            self._in_hand[row_id] = reserved_at
            envelopes.append(decode_row(row_id, body, headers, self._serializer))
        return envelopes

    def _reserve_rows(
        self, connection: sa.Connection, now: datetime, acks: list[int]
    ) -> Sequence[Any]:
        fast = self._fast
        if fast.reserve is not None:
            dt = self._driver_datetime
            params: dict[str, Any] = {
                "queue": self._queue,
                "now": dt(now),
                "redeliver_limit": dt(now - self._redeliver),
            }
            sql = fast.reserve
            if acks and fast.reserve_acking is not None:
                params["ids"] = acks
                sql = fast.reserve_acking
            elif acks:
                self._delete(connection, acks)
            cursor = self._raw(connection, sql, params, prepare=self._prepare)
            return self._fetch_all(cursor, sql)
        if acks:
            self._delete(connection, acks)
        statements = self._core
        params = {
            "queue": self._queue,
            "now": now,
            "redeliver_limit": now - self._redeliver,
        }
        if statements.reserve is not None:
            return connection.execute(statements.reserve, params).all()
        rows = connection.execute(statements.select_for_reserve, params).all()
        if rows:
            ids = [row[0] for row in rows]
            connection.execute(statements.mark_delivered, {"now": now, "ids": ids})
        return rows

    def _get_notified(self, listener: NotifyListener) -> list[Envelope]:
        """``get()`` on PostgreSQL: query only when there may be something, else wait."""
        with self._lock:
            self._check_open()
            listening = self._listen(listener)
        options = self._options
        # A consumer cannot renew its reservations (keepalive) while it waits here: wait no
        # more than a tenth of the redelivery timeout.
        wait = min(options.get_notify_timeout / 1000, options.redeliver_timeout / 10)
        deadline = time.monotonic() + wait
        query = (
            not self._idle
            or options.check_delayed_interval == 0
            or time.monotonic() >= self._next_check
            or listener.wait(0)
        )
        while True:
            if query:
                with self._lock:
                    envelopes = self._reserve(patience=self._get_patience())
                    if envelopes or not listening:
                        self._idle = False
                        return envelopes
                    self._idle = True
                    self._next_check = time.monotonic() + self._idle_check_delay()
            elif self._pending_acks:
                self.flush()
            now = time.monotonic()
            if now >= deadline:
                return []
            query = listener.wait(min(deadline, self._next_check) - now)
            query = query or time.monotonic() >= self._next_check
            if not query and time.monotonic() >= deadline:
                return []

    def _listen(self, listener: NotifyListener) -> bool:
        """Make sure the listener listens; false if it cannot (then ``get`` just polls)."""
        if listener.listening:
            return True
        try:
            self._check_trigger()
        except TransportError as error:
            if self._reconnect.in_outage:
                raise  # get() returns nothing until the database is back
            logger.warning("%r: cannot LISTEN for new messages, polling: %s", self, error)
            self._listen_failed = True
            return False
        try:
            listener.start()
        except sa.exc.DBAPIError as error:
            if classify(error, self._backend) is ErrorKind.OUTAGE:
                # The database went away between two statements: LISTEN again next time.
                logger.debug("%r: cannot LISTEN yet: %s", self, describe_error(error))
                return False
            logger.warning("%r: cannot LISTEN for new messages, polling: %s", self, error)
            self._listen_failed = True
            return False
        except sa.exc.SQLAlchemyError as error:
            logger.warning("%r: cannot LISTEN for new messages, polling: %s", self, error)
            self._listen_failed = True
            return False
        self._listen_failed = False
        self._idle = False  # notifications sent before LISTEN are lost: query first
        return True

    def _check_trigger(self) -> None:
        if self._trigger_checked:
            return
        query = sa.text(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'notify_trigger' "
            "AND tgrelid = to_regclass(:table)"
        )
        params = {"table": f'"{self._options.table_name}"'}
        exists = self._run(
            "check the notify trigger",
            lambda connection: connection.execute(query, params).first() is not None,
            patience=_OUTAGE_WAIT,
        )
        if not exists:
            if self._options.auto_setup:
                self._setup()
            else:
                logger.warning(
                    "%r: table %s has no notify trigger, so idle consumers only look for new "
                    "messages every check_delayed_interval ms; run setup (messenger "
                    "setup-transports) to create it",
                    self,
                    self._options.table_name,
                )
        self._trigger_checked = True

    def _idle_check_delay(self) -> float:
        """Seconds until an idle consumer must query even without a notification.

        The soonest of: ``check_delayed_interval``, the next delayed message's time, and the
        end of the oldest reservation (a redelivery).
        """
        interval = self._options.check_delayed_interval / 1000 or math.inf
        params = {"queue": self._queue}
        try:
            next_available, oldest_delivery = self._run(
                "look for delayed messages",
                lambda connection: connection.execute(self._core.next_due, params).one(),
                patience=_OUTAGE_WAIT,
            )
        except TransportError as error:
            if not self._reconnect.in_outage:  # (an outage has been reported already)
                logger.warning("%r: %s", self, error)
            return interval
        now = _utcnow()
        delays = [interval]
        if next_available is not None:
            delays.append((next_available - now).total_seconds())
        if oldest_delivery is not None:
            # (Not oldest_delivery + timeout: Symfony's MySQL transport marks acknowledged
            # rows with the year 9999, which has no successor.)
            delays.append((oldest_delivery - now).total_seconds() + self._options.redeliver_timeout)
        return max(_MIN_IDLE_CHECK, min(delays))

    # -- settling -----------------------------------------------------------------------------
    def ack(self, envelope: Envelope) -> None:
        """The message was handled: delete its row (deferred when ``fetch_size`` > 1).

        While the database is unreachable the deletion is deferred until it is back (the next
        ``get()``, ``flush()`` or ``close()`` writes it); should the process die first, the
        message comes back after ``redeliver_timeout``: at least once, never lost.
        """
        row_id = _row_id(envelope)
        with self._lock:
            self._check_open()
            if self._in_hand.pop(row_id, None) is None or not self._defer_acks:
                self._delete_now("acknowledge", row_id)
                return
            now = time.monotonic()
            if not self._pending_acks:
                self._pending_since = now
            self._pending_acks.append(row_id)
            too_many = len(self._pending_acks) > self._options.fetch_size
            if too_many or now - self._pending_since > self._max_ack_delay:
                self.flush()

    def reject(self, envelope: Envelope) -> None:
        """Give up on the message: delete its row at once (deferred like an ``ack()`` while
        the database is unreachable)."""
        row_id = _row_id(envelope)
        with self._lock:
            self._check_open()
            self._in_hand.pop(row_id, None)
            self._delete_now("reject", row_id)

    def _delete_now(self, action: str, row_id: int) -> None:
        """Delete a settled row; during an outage, defer it to when the database is back."""
        try:
            self._run(
                action,
                lambda connection: self._delete(connection, [row_id]),
                transaction=not self._single_statements,
                patience=_OUTAGE_WAIT,
            )
        except TransportError:
            if not self._reconnect.in_outage:
                raise
            if not self._pending_acks:
                self._pending_since = time.monotonic()
            self._pending_acks.append(row_id)
            logger.debug("%r: database unreachable, %s of row %d deferred", self, action, row_id)

    def flush(self) -> None:
        """Delete the rows of deferred acknowledgements now."""
        with self._lock:
            acks = self._pending_acks
            if not acks:
                return
            self._check_open()
            self._run(
                "acknowledge",
                lambda connection: self._delete(connection, acks),
                transaction=not self._single_statements,
                patience=_OUTAGE_WAIT if self._reconnect.in_outage else None,
            )
            self._pending_acks = self._pending_acks[len(acks) :]

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        """Renew the reservation of a message still being handled (and flush deferred acks).

        The reservation then lasts ``redeliver_timeout`` from now; ``seconds`` (when the caller
        will call again) needs no action here.
        """
        row_id = _row_id(envelope)
        with self._lock:
            self._check_open()
            acks = self._pending_acks
            now = _utcnow()

            def work(connection: sa.Connection) -> None:
                if acks:
                    self._delete(connection, acks)
                connection.execute(self._core.keepalive, {"row_id": row_id, "now": now})

            self._run("keep the message reserved", work, patience=_OUTAGE_WAIT)
            self._pending_acks = self._pending_acks[len(acks) :]
            if row_id in self._in_hand:
                self._in_hand[row_id] = now

    def _delete(self, connection: sa.Connection, ids: list[int]) -> None:
        sql = self._fast.delete
        if sql is None:
            connection.execute(self._core.delete, {"ids": ids})
        elif self._backend == "sqlite":
            self._raw(connection, sql, {"ids": sqlite_ids(ids)})
        else:
            self._raw(connection, sql, {"ids": ids})

    # -- inspecting --------------------------------------------------------------------------
    def message_count(self) -> int:
        """Messages waiting in the queue, delayed ones included, received ones not."""
        with self._lock:
            self._check_open()
            now = _utcnow()
            params = {"queue": self._queue, "redeliver_limit": now - self._redeliver}
            count = self._run(
                "count messages",
                lambda connection: connection.execute(self._core.count, params).scalar_one(),
                read=True,
            )
            return int(count)

    def all(self, limit: int | None = None) -> list[Envelope]:
        """Waiting messages (delayed ones included, received ones not), oldest first."""
        with self._lock:
            self._check_open()
            self.flush()
            now = _utcnow()
            params: dict[str, Any] = {
                "queue": self._queue,
                "redeliver_limit": now - self._redeliver,
            }
            if limit is not None:
                params["limit"] = max(0, limit)

            def work(connection: sa.Connection) -> Sequence[Any]:
                statements = self._core
                listing = statements.list_all if limit is None else statements.list_limited
                return connection.execute(listing, params).all()

            rows = self._run("list messages", work, read=True)
        return [decode_row(row[0], row[1], row[2], self._serializer) for row in rows]

    def find(self, id: str) -> Envelope | None:
        """The message with this id in this queue, or ``None``; finding does not reserve it."""
        try:
            row_id = int(id)
        except (TypeError, ValueError):
            return None
        with self._lock:
            self._check_open()
            self.flush()
            params = {"queue": self._queue, "row_id": row_id}
            row = self._run(
                "find a message",
                lambda connection: connection.execute(self._core.find, params).first(),
                read=True,
            )
        return None if row is None else decode_row(row[0], row[1], row[2], self._serializer)

    # -- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        """Create the table and its indexes if missing, and on PostgreSQL the notify trigger.

        Safe to call repeatedly and from several processes at once.
        """
        with self._lock:
            self._check_open()
            self._setup()

    def _setup(self) -> None:
        try:
            with self._engine.connect() as connection:
                if self._backend == "postgresql":
                    # Transactional DDL, and a transaction-scoped lock against concurrent setups.
                    connection.execution_options(isolation_level="READ COMMITTED")
                try:
                    with connection.begin():
                        self._setup_in(connection)
                finally:
                    if self._backend == "mysql":  # a session lock outlives the transaction
                        connection.exec_driver_sql("DO RELEASE_LOCK(%s)", (self._lock_name,))
                        connection.commit()
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(f"{self!r}: setup failed: {_reason(error)}") from error
        self._table_checked = True
        self._trigger_checked = self._trigger_checked or self._use_notify

    @property
    def _lock_name(self) -> str:
        return f"messenger_setup_{self._options.table_name}"[:64]

    def _setup_in(self, connection: sa.Connection) -> None:
        if self._backend == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": self._lock_name}
            )
        elif self._backend == "mysql":
            connection.exec_driver_sql("DO GET_LOCK(%s, 60)", (self._lock_name,))
        self._table.create(connection, checkfirst=True)
        if self._use_notify:
            ddl = postgresql_notify_ddl(self._options.table_name)
            info = connection.dialect.server_version_info or (0,)
            if info >= (14,):  # CREATE OR REPLACE TRIGGER: no moment without the trigger
                ddl = [ddl[0], ddl[2].replace("CREATE TRIGGER", "CREATE OR REPLACE TRIGGER")]
            for statement in ddl:
                connection.exec_driver_sql(statement)

    def _setup_if_missing(self, outbox: sa.Connection) -> None:
        try:
            if self._backend == "sqlite":
                # Through the application's connection, in its transaction: it may hold the
                # database's one write lock, which our own connection would wait for forever.
                self._table.create(outbox, checkfirst=True)
                return  # checked again next time: a rollback takes the table away
            with self._engine.connect() as connection:
                exists = sa.inspect(connection).has_table(self._options.table_name)
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(f"{self!r}: cannot create the table: {_reason(error)}") from error
        if not exists:
            self._setup()
        self._table_checked = True

    # -- closing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Delete deferred acknowledgements, release the messages received but not settled
        (other consumers get them at once) and close the connections. Idempotent."""
        if self._reconnect.in_outage:
            self._reconnect.close()  # cut short a get() waiting for the database in a thread
        with self._lock:
            if self._closed:
                return
            self._reconnect.close()
            try:
                self._settle_on_close()
            except TransportError as error:
                logger.warning(
                    "%r: closing without settling (they come back after redeliver_timeout): %s",
                    self,
                    error,
                )
            finally:
                self._closed = True
                if self._listener is not None:
                    self._listener.close()
                if self._connection is not None:
                    self._cursor = None
                    self._release_connection(self._connection)
                    self._connection = None
                if self._dispose_engine:
                    self._engine.dispose()

    def _settle_on_close(self) -> None:
        self.flush()
        if not self._in_hand:
            return
        tolerance = min(_RELEASE_TOLERANCE, self._redeliver / 2)
        by_time: dict[datetime, list[int]] = {}
        for row_id, reserved_at in self._in_hand.items():
            by_time.setdefault(reserved_at, []).append(row_id)

        def work(connection: sa.Connection) -> int:
            released = 0
            for reserved_at, ids in by_time.items():
                params = {
                    "ids": ids,
                    "low": reserved_at - tolerance,
                    "high": reserved_at + tolerance,
                }
                released += connection.execute(self._core.release, params).rowcount
            if released and self._backend == "postgresql":
                # No insert happened, so no trigger fired: wake the idle consumers ourselves.
                connection.execute(
                    sa.text("SELECT pg_notify(:channel, :queue)"),
                    {"channel": self._options.table_name, "queue": self._queue},
                )
            return released

        self._run("release received messages", work)
        self._in_hand.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"{self!r} is closed")

    # -- running statements ------------------------------------------------------------------
    @property
    def _core(self) -> Statements:
        statements = self._statements
        assert statements is not None, "statements are built on connecting"
        return statements

    def _connect(self) -> sa.Connection:
        connection = self._connection
        if connection is None or connection.invalidated:
            self._cursor = None
            if connection is not None:
                connection.close()
                self._connection = None
            connection = self._connection = self._engine.connect()
            if self._backend == "postgresql" and self._prepare is None:
                if not self._has_reserve_index(connection):
                    # Without it, a prepared statement's generic plan sorts the whole queue
                    # on every receive: plan each one for its parameters instead.
                    self._prepare = False
                    logger.info(
                        "%r: table %s has no index on (%s); receiving is faster with it "
                        "(tables created by this transport have it)",
                        self,
                        self._options.table_name,
                        ", ".join(RESERVE_INDEX),
                    )
                else:
                    self._prepare = True
            if self._backend == "postgresql":
                # A queue table's statistics are nearly always stale (it goes from empty to
                # thousands of rows in seconds): the planner then sorts the whole queue for
                # every receive instead of reading the index in order. Take sorting away from
                # it on this connection, which runs only our statements.
                connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    "SET enable_sort = off"
                )
        if self._statements is None:
            dialect = connection.dialect
            fetch_size = self._options.fetch_size
            self._statements = build_statements(
                self._table, dialect, skip_locked=_skip_locked(dialect), fetch_size=fetch_size
            )
            self._fast = build_fast_sql(
                self._table, self._statements, dialect, fetch_size=fetch_size
            )
        return connection

    def _raw(
        self,
        connection: sa.Connection,
        sql: Sql,
        params: Any,
        *,
        many: bool = False,
        prepare: bool | None = None,
    ) -> Any:
        """Run ``sql`` on the DB-API cursor of ``connection``; returns the cursor.

        Driver errors come out as SQLAlchemy's ``DBAPIError`` (telling a lost connection), as
        they would from ``connection.execute``.
        """
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if many:
                cursor.executemany(sql.text, params)
            elif prepare is not None:
                cursor.execute(sql.text, sql.bind(params), prepare=prepare)
            else:
                cursor.execute(sql.text, sql.bind(params))
        except self._dbapi_error as error:
            dialect: Any = self._engine.dialect
            raise sa.exc.DBAPIError.instance(
                sql.text,
                None,
                error,
                self._dbapi_error,
                hide_parameters=True,
                connection_invalidated=dialect.is_disconnect(error, cursor.connection, cursor),
                dialect=dialect,
            ) from error
        return cursor

    def _fetch_all(self, cursor: Any, sql: Sql) -> Sequence[Any]:
        """The rows of ``sql`` just run on ``cursor``; driver errors as :meth:`_raw` gives them.

        (SQLite runs ``UPDATE ... RETURNING`` while the rows are fetched: its errors surface
        here, and must be retried or reported like the statement's own.)
        """
        try:
            rows: Sequence[Any] = cursor.fetchall()
        except self._dbapi_error as error:
            dialect: Any = self._engine.dialect
            raise sa.exc.DBAPIError.instance(
                sql.text,
                None,
                error,
                self._dbapi_error,
                hide_parameters=True,
                connection_invalidated=dialect.is_disconnect(error, cursor.connection, cursor),
                dialect=dialect,
            ) from error
        return rows

    def _run(
        self,
        action: str,
        work: Callable[[sa.Connection], T],
        *,
        transaction: bool = True,
        read: bool = False,
        patience: float | None = None,
    ) -> T:
        """Run ``work`` in a transaction on our connection, retrying what is worth retrying.

        ``transaction=False`` skips SQLAlchemy's begin and commit, for ``work`` that runs one
        statement on the DB-API cursor of an autocommit connection (PostgreSQL, SQLite).
        ``read=True`` marks work that only reads: on SQLite it takes no write lock.

        Creates the table first when it is missing (with ``auto_setup``) and retries deadlocks
        and lock timeouts at once. When the database is unreachable (see
        :func:`~messenger_transport_sql.reconnect.classify`) it reconnects with backoff for
        ``patience`` seconds (default: ``reconnect_timeout``), then raises a
        :class:`TransportError` while :attr:`_reconnect` stays in its outage. Anything else
        becomes a :class:`TransportError` at once (the password masked, the statement's
        parameters hidden).
        """
        policy = self._reconnect
        deadline = time.monotonic() + (policy.timeout if patience is None else patience)
        attempts = 0
        set_up = False
        while True:
            if not policy.wait_for_attempt(deadline):
                raise self._unreachable(action)
            try:
                try:
                    connection = self._connect()
                    if not transaction:
                        result = work(connection)
                    elif read and self._backend == "sqlite":
                        connection.info[SQLITE_BEGIN] = "BEGIN"
                        try:
                            with connection.begin():
                                result = work(connection)
                        finally:
                            connection.info.pop(SQLITE_BEGIN, None)
                    else:
                        with connection.begin():
                            result = work(connection)
                except self._dbapi_error as error:
                    # Raised by the driver outside SQLAlchemy (statements on connecting).
                    raise self._wrap(error) from error
                self._table_checked = True
                policy.succeeded()
                return result
            except sa.exc.DBAPIError as error:
                kind = classify(error, self._backend)
                if kind is ErrorKind.OUTAGE or error.connection_invalidated:
                    self._drop_broken_connection(error)
                elif self._connection is not None and self._connection.invalidated:
                    self._discard_connection()
                if kind is ErrorKind.MISSING_TABLE and self._options.auto_setup and not set_up:
                    set_up = True
                    self._setup()
                    continue
                if kind is ErrorKind.OUTAGE:
                    policy.failed(action, error)
                    continue
                attempts += 1
                if kind is ErrorKind.RETRY and attempts <= _RETRIES:
                    time.sleep(0.01 * 2**attempts)
                    continue
                raise TransportError(f"{self!r}: cannot {action}: {_reason(error)}") from error
            except sa.exc.SQLAlchemyError as error:
                raise TransportError(f"{self!r}: cannot {action}: {_reason(error)}") from error

    def _wrap(self, error: Exception) -> sa.exc.DBAPIError:
        """A driver's ``error`` as SQLAlchemy's ``DBAPIError``, telling a lost connection."""
        dialect: Any = self._engine.dialect
        connection = self._connection
        dbapi_connection = None
        if connection is not None and not connection.invalidated:
            dbapi_connection = connection.connection.dbapi_connection
        wrapped = sa.exc.DBAPIError.instance(
            None,
            None,
            error,
            self._dbapi_error,
            hide_parameters=True,
            connection_invalidated=dialect.is_disconnect(error, dbapi_connection, None),
            dialect=dialect,
        )
        assert isinstance(wrapped, sa.exc.DBAPIError)  # (error is a DB-API error)
        return wrapped

    def _drop_broken_connection(self, error: sa.exc.DBAPIError) -> None:
        """After an outage error: forget the connection (and the engine's idle ones) unless
        it is merely a locked SQLite file, whose connection is fine."""
        if self._backend == "sqlite":
            text = str(error.orig).lower()
            if "locked" in text or "busy" in text or isinstance(self._engine.pool, StaticPool):
                return  # (a memory database lives in its one connection: keep it)
        self._discard_connection()
        if self._dispose_engine:
            # Our own engine: its idle connections are as dead as ours. (An application's
            # engine checks its connections on checkout, if it was made that way.)
            self._engine.dispose()

    def _unreachable(self, action: str) -> BrokerUnreachableError:
        policy = self._reconnect
        if self._backend == "sqlite":
            check = (
                "check that the database file (and its directory) exists and is readable and "
                "writable, and that no other connection keeps it locked"
            )
        else:
            check = (
                "check that the database server is running and reachable at the DSN's host "
                "and port, and that the DSN's user, password and database name are right"
            )
        return BrokerUnreachableError(
            f"{self!r}: cannot {action}: the database did not answer (tried for "
            f"{policy.outage_duration:.1f} s; last error: {policy.last_error}); {check}"
        )

    def _release_connection(self, connection: sa.Connection) -> None:
        if self._backend == "postgresql" and not self._dispose_engine:
            try:  # the engine is the application's: give its pool the connection as it was
                dbapi_connection: Any = connection.connection.dbapi_connection
                dbapi_connection.execute("RESET enable_sort")
            except (sa.exc.SQLAlchemyError, self._dbapi_error):
                connection.invalidate()
        connection.close()

    def _has_reserve_index(self, connection: sa.Connection) -> bool:
        """PostgreSQL: whether the table has the index :data:`RESERVE_INDEX` (or is missing)."""
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = %s",
            (self._options.table_name,),
        )
        definitions = [row[0] for row in cursor.fetchall()]
        columns = f"({', '.join(RESERVE_INDEX)})"
        return not definitions or any(columns in definition for definition in definitions)

    def _discard_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._cursor = None
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except sa.exc.SQLAlchemyError:  # it is gone either way
                pass


def _backend_name(engine: sa.Engine) -> str:
    name = engine.dialect.name
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"the SQL transport supports SQLite, PostgreSQL and MySQL/MariaDB, not {name}"
        )
    return name


def _skip_locked(dialect: sa.Dialect) -> bool:
    """Whether the server has ``FOR UPDATE SKIP LOCKED`` (SQLite has no row locks at all)."""
    if dialect.name == "postgresql":
        return True
    if dialect.name == "sqlite":
        return False
    version = dialect.server_version_info or (0,)
    if getattr(dialect, "is_mariadb", False):
        return version >= (10, 6)
    return version >= (8, 0, 1)


def _row_id(envelope: Envelope) -> int:
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


def _first_key(result: sa.CursorResult[Any]) -> int:
    primary_key = result.inserted_primary_key
    assert primary_key is not None
    return int(primary_key[0])


def _insert_many_core(
    connection: sa.Connection, statements: Statements, rows: list[dict[str, Any]]
) -> list[int] | None:
    if statements.insert_returning is None:
        connection.execute(statements.insert, rows)
        return None
    result = connection.execute(statements.insert_returning, rows)
    ids = [int(row_id) for row_id in result.scalars()]
    if not statements.returning_in_order:
        ids.sort()  # one statement's ids grow in the order of its rows
    return ids


def _reason(error: sa.exc.SQLAlchemyError) -> str:
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {str(error.orig).strip()}"
    return f"{type(error).__name__}: {error}"
