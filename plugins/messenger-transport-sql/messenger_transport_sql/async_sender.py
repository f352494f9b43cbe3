"""Sending from an event loop on PostgreSQL: the sender's INSERT through psycopg's async
connection.

``await bus.dispatch_async(message)`` sends through here, without a dispatch thread (see
:mod:`messenger_core.async_bus`). The row is the sync sender's
(:meth:`~messenger_transport_sql.sender.SqlSender.row`: the same serializer and columns), and
the statement is the one-row ``INSERT … RETURNING id`` the sync sender runs on its cursor,
compiled the same way; the notify trigger fires on it as on the sync insert, so idle consumers
(ours and Symfony's) wake up alike. It runs in autocommit on a psycopg ``AsyncConnection`` of
the running event loop (:class:`~messenger_core.async_clients.PerEventLoop`: one per loop,
closed with the loop or the transport) with the engine's connection parameters. Errors are
sorted as the sync connection sorts them (the backend's ``classify``): an outage is retried
with the transport's reconnect policy, a missing table is created (``auto_setup``, in a
thread: it is done once), a deadlock retried, anything else raised as the same
:class:`~messenger_core.errors.TransportError`.

Only for a transport that made its engine from a DSN: an application's engine may set its
connections up in ways this connection would not copy (a ``search_path`` on connect). SQLite
and MySQL have no async sender: ``dispatch_async`` runs their sends in a thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from messenger_core.async_clients import PerEventLoop
from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.stamps import TransportMessageIdStamp
from messenger_transport_sql._statements import Sql
from messenger_transport_sql.connection import SqlConnection
from messenger_transport_sql.engine import CONNECT_TIMEOUT
from messenger_transport_sql.reconnect import ErrorKind, FailedAttempts, NextStep, reason
from messenger_transport_sql.schema import utcnow
from messenger_transport_sql.sender import SqlSender

if TYPE_CHECKING:
    import psycopg

__all__ = ["AsyncPostgreSqlSender"]


class AsyncPostgreSqlSender:
    """Sends envelopes as :class:`SqlSender` does outside an outbox, awaited on the running
    event loop (PostgreSQL only).

    Contract: :meth:`send` inserts the row ``SqlSender.send`` inserts, committed when it
    returns, and returns the envelope with the row's ``TransportMessageIdStamp``.
    """

    def __init__(self, db: SqlConnection, sender: SqlSender) -> None:
        self._db = db
        self._sender = sender
        self._connections: PerEventLoop[psycopg.AsyncConnection[Any]] = PerEventLoop(
            self._open, _close
        )
        self._insert: Sql | None = None

    async def send(self, envelope: Envelope) -> Envelope:
        """Store ``envelope``; return it with a ``TransportMessageIdStamp`` of the new row."""
        db = self._db
        db.check_open()
        row = self._sender.row(envelope, utcnow())
        dt = db.backend.param_datetime
        params = {
            **row,
            "created_at": dt(row["created_at"]),
            "available_at": dt(row["available_at"]),
        }
        sql = self._statement()
        row_id = await self._run("send", sql, sql.bind(params))
        return envelope.with_(TransportMessageIdStamp(id=str(row_id)))

    def close(self) -> None:
        """Close the connections of every event loop (see :meth:`PerEventLoop.close`)."""
        self._connections.close()

    def _statement(self) -> Sql:
        """The sync sender's one-row insert, compiled for the engine's dialect once."""
        sql = self._insert
        if sql is None:
            db = self._db
            _, fast = db.backend.build_statements(db.table, db.engine.dialect)
            sql = self._insert = fast.insert
            assert sql is not None, "PostgreSQL compiles the one-row insert"
        return sql

    async def _run(self, action: str, sql: Sql, params: Any) -> int:
        """Run the insert, as :meth:`SqlConnection.run` runs work: retried through outages
        (for ``reconnect_timeout``) and deadlocks, the table created when missing."""
        db = self._db
        policy = db.reconnect
        deadline = time.monotonic() + policy.timeout
        failed = FailedAttempts(auto_setup=db.options.auto_setup)
        dbapi_error: type[Exception] = db.engine.dialect.loaded_dbapi.Error
        while True:
            if not await policy.wait_for_attempt_async(deadline):
                raise db.unreachable(action)
            connection: Any = None
            try:
                connection = await self._connections.get()
                cursor = await connection.execute(sql.text, params)
                fetched = await cursor.fetchone()
                assert fetched is not None  # (INSERT … RETURNING gives one row)
                db.table_checked = True
                policy.succeeded()
                return int(fetched[0])
            except dbapi_error as raw:
                error = self._wrap(sql, raw, connection)
                kind = db.backend.classify(error)
                if connection is not None and (
                    kind is ErrorKind.OUTAGE or error.connection_invalidated or connection.closed
                ):
                    self._connections.discard(connection)
                step, pause = failed.after(kind)
                if step is NextStep.CREATE_TABLE:
                    await asyncio.to_thread(self._create_table)
                    continue
                if step is NextStep.WAIT_OUT:
                    policy.failed(action, error)
                    continue
                if step is NextStep.BACK_OFF:
                    await asyncio.sleep(pause)
                    continue
                raise TransportError(f"{db.label}: cannot {action}: {reason(error)}") from raw

    def _create_table(self) -> None:
        db = self._db
        with db.lock:
            db.check_open()
            db.setup.create()

    def _wrap(self, sql: Sql, error: Exception, connection: Any) -> sa.exc.DBAPIError:
        """The driver's ``error`` as SQLAlchemy's ``DBAPIError`` (what the backend sorts),
        telling a lost connection as the sync side does."""
        dialect: Any = self._db.engine.dialect
        lost = connection is None or connection.closed or dialect.is_disconnect(error, None, None)
        wrapped = sa.exc.DBAPIError.instance(
            sql.text,
            None,
            error,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=bool(lost) and connection is not None,
            dialect=dialect,
        )
        assert isinstance(wrapped, sa.exc.DBAPIError)  # (error is a DB-API error)
        return wrapped

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        import psycopg  # noqa: PLC0415  (PostgreSQL only: a SQLite worker never loads it)

        engine = self._db.engine
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return await psycopg.AsyncConnection.connect(*args, autocommit=True, **kwargs)


async def _close(connection: psycopg.AsyncConnection[Any]) -> None:
    await connection.close()
