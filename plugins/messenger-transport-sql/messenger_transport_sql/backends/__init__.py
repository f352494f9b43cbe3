"""What differs between SQLite, PostgreSQL and MySQL/MariaDB, behind one small interface.

A :class:`Backend` is the per-database strategy of one transport's
:class:`~messenger_transport_sql.connection.SqlConnection`: how its hot statements run (on the
DB-API cursor where that pays, see :mod:`messenger_transport_sql._statements`), which errors
mean what, how setup locks out concurrent setups, what a connection needs on checkout and
return. The other roles (sender, receiver, acknowledgements) never test a database's name:
they ask the backend. This base class is the plain SQLAlchemy Core behaviour (MySQL's);
:mod:`.sqlite` and :mod:`.postgresql` override what they do better.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from messenger_core.errors import ConfigurationError
from messenger_transport_sql._statements import (
    FastSql,
    Statements,
    build_fast_sql,
    build_statements,
)
from messenger_transport_sql.options import SqlTransportOptions
from messenger_transport_sql.reconnect import ErrorKind, classify

if TYPE_CHECKING:
    from messenger_transport_sql._notify import NotifyWait
    from messenger_transport_sql.async_sender import AsyncPostgreSqlSender
    from messenger_transport_sql.connection import SqlConnection
    from messenger_transport_sql.sender import SqlSender

__all__ = ["Backend", "backend_for", "insert_many_core"]

_SERVER_HINT = (
    "check that the database server is running and reachable at the DSN's host and port, and "
    "that the DSN's user, password and database name are right"
)

_SESSION_ID = "messenger_session_id"
"""The key of a connection's ``info`` caching its server session id."""
_MYSQL_UNKNOWN_THREAD = 1094  # KILL of a connection that is gone already

# backend name -> (module, class); imported on use so that a SQLite worker loads no other.
_BACKENDS = {
    "sqlite": ("messenger_transport_sql.backends.sqlite", "SqliteBackend"),
    "postgresql": ("messenger_transport_sql.backends.postgresql", "PostgreSqlBackend"),
    "mysql": ("messenger_transport_sql.backends.mysql", "MySqlBackend"),
}


def backend_for(engine: sa.Engine, options: SqlTransportOptions) -> Backend:
    """The backend serving ``engine``'s database; a :class:`ConfigurationError` for others."""
    name = engine.dialect.name
    name = "mysql" if name == "mariadb" else name
    if name not in _BACKENDS:
        raise ConfigurationError(
            f"the SQL transport supports SQLite, PostgreSQL and MySQL/MariaDB, not {name}"
        )
    module, cls = _BACKENDS[name]
    backend: Backend = getattr(importlib.import_module(module), cls)(options)
    return backend


class Backend:
    """One database's ways, for one transport (its options fixed).

    Contract: every method either does its database's version of the step or nothing; the
    statement methods (:meth:`insert`, :meth:`insert_many`, :meth:`delete`, :meth:`reserve`)
    run inside :meth:`SqlConnection.run` and let driver errors through for it to sort.
    """

    name: ClassVar[str]
    """``sqlite``, ``postgresql`` or ``mysql``, as :func:`~.reconnect.classify` and
    :func:`~.schema.build_table` know them."""
    autocommit: ClassVar[bool] = False
    """Whether a single raw statement commits by itself (no transaction needed around it)."""
    batch_in_transaction: ClassVar[bool] = True
    """Whether a batch insert needs a transaction around it (it is more than one statement)."""
    creates_table_in_outbox: ClassVar[bool] = False
    """Whether the outbox creates a missing table through the application's connection."""
    unreachable_hint: ClassVar[str] = _SERVER_HINT
    """What to check when the database does not answer, for the error saying so."""
    session_query: ClassVar[str | None] = "SELECT CONNECTION_ID()"
    """The query telling the server's id of a connection's session, which another connection
    can end (see :mod:`~messenger_transport_sql.lost_commit`); ``None`` for an in-process
    database (SQLite), whose ``COMMIT`` is never lost with a connection."""

    def __init__(self, options: SqlTransportOptions) -> None:
        self.options = options

    # -- connections and errors -----------------------------------------------------------
    def classify(self, error: sa.exc.DBAPIError) -> ErrorKind:
        """What ``error`` calls for (see :func:`~messenger_transport_sql.reconnect.classify`)."""
        return classify(error, self.name)

    def skip_locked(self, dialect: sa.Dialect) -> bool:
        """Whether the server has ``FOR UPDATE SKIP LOCKED``."""
        return False

    def build_statements(self, table: sa.Table, dialect: sa.Dialect) -> tuple[Statements, FastSql]:
        """The Core statements and the fast-path ones, for the connected ``dialect``."""
        fetch_size = self.options.fetch_size
        statements = build_statements(
            table, dialect, skip_locked=self.skip_locked(dialect), fetch_size=fetch_size
        )
        return statements, build_fast_sql(table, statements, dialect, fetch_size=fetch_size)

    def on_connect(self, connection: sa.Connection, db: SqlConnection) -> None:
        """Prepare a connection just checked out for the transport's statements."""

    def before_release(self, connection: sa.Connection, dbapi_error: type[Exception]) -> None:
        """Undo :meth:`on_connect` before the connection goes back to an application's pool."""

    def keeps_connection(self, error: sa.exc.DBAPIError, engine: sa.Engine) -> bool:
        """Whether the connection is still good after this outage ``error``."""
        return False

    def begin_read(self, connection: sa.Connection) -> AbstractContextManager[Any]:
        """A transaction for work that only reads."""
        return connection.begin()

    def notify_wait(self, db: SqlConnection) -> NotifyWait | None:
        """What waits for new messages between empty receives, if the database can tell."""
        return None

    def async_sender(self, db: SqlConnection, sender: SqlSender) -> AsyncPostgreSqlSender | None:
        """What sends without blocking an event loop (``send_async``), if the database has an
        async driver the transport uses; ``None``: ``dispatch_async`` sends in a thread."""
        return None

    # -- a COMMIT lost with its connection (see messenger_transport_sql.lost_commit) -------
    def session_id(self, connection: sa.Connection) -> int | None:
        """The server's id of ``connection``'s session (:attr:`session_query`), asked once
        per DB-API connection; ``None`` for SQLite."""
        query = self.session_query
        if query is None:
            return None
        info = connection.info  # lives as long as the DB-API connection
        session_id = info.get(_SESSION_ID)
        if session_id is None:
            session_id = info[_SESSION_ID] = int(connection.exec_driver_sql(query).scalar_one())
        return int(session_id)

    def end_session(self, connection: sa.Connection, session_id: int) -> None:
        """End the server session ``session_id`` (another connection's): its open transaction
        is rolled back, and nothing it is sent later runs. A session already gone is fine."""
        try:
            connection.exec_driver_sql(f"KILL CONNECTION {int(session_id)}")
        except sa.exc.DBAPIError as error:
            args = getattr(error.orig, "args", ())
            if not args or args[0] != _MYSQL_UNKNOWN_THREAD:
                raise

    def limit_lock_wait(self, connection: sa.Connection, seconds: int) -> None:
        """Make ``connection``'s row-lock waits fail after ``seconds`` (the connection is
        discarded after use: a session setting is fine)."""
        connection.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {int(seconds)}")

    # -- the hot statements -----------------------------------------------------------------
    def param_datetime(self, value: datetime) -> Any:
        """A datetime as the driver takes it on the DB-API cursor."""
        return value

    def insert(self, db: SqlConnection, connection: sa.Connection, row: dict[str, Any]) -> int:
        """Insert one row (see the sender); the new id."""
        sql = db.fast.insert
        assert sql is not None, "every backend compiles the one-row insert"
        dt = self.param_datetime
        params = {
            **row,
            "created_at": dt(row["created_at"]),
            "available_at": dt(row["available_at"]),
        }
        return self.inserted_id(db.raw(connection, sql, params))

    def inserted_id(self, cursor: Any) -> int:
        """The id of the row the one-row insert just added."""
        return int(cursor.lastrowid)

    def insert_many(
        self, db: SqlConnection, connection: sa.Connection, rows: list[dict[str, Any]]
    ) -> list[int] | None:
        """Insert ``rows`` in one statement; their ids in row order, or None if unknown."""
        return insert_many_core(connection, db.statements, rows)

    def delete(self, db: SqlConnection, connection: sa.Connection, ids: list[int]) -> None:
        """Delete the rows ``ids`` (settled messages)."""
        connection.execute(db.statements.delete, {"ids": ids})

    def reserve(
        self, db: SqlConnection, connection: sa.Connection, params: dict[str, Any], acks: list[int]
    ) -> Sequence[Any]:
        """Delete ``acks``, then reserve and return up to ``fetch_size`` rows.

        ``params``: ``queue``, ``now``, ``redeliver_limit`` (datetimes as Python's). Rows are
        ``(id, body, headers, available_at)``, in no particular order.
        """
        if acks:
            self.delete(db, connection, acks)
        statements = db.statements
        if statements.reserve is not None:
            return connection.execute(statements.reserve, params).all()
        rows = connection.execute(statements.select_for_reserve, params).all()
        if rows:
            ids = [row[0] for row in rows]
            connection.execute(statements.mark_delivered, {"now": params["now"], "ids": ids})
        return rows

    def after_release(self, connection: sa.Connection, queue: str) -> None:
        """Rows of ``queue`` were released on close (other consumers may take them)."""

    # -- setup ---------------------------------------------------------------------------------
    def prepare_setup(self, connection: sa.Connection) -> None:
        """Set up the connection setup runs on, before its transaction begins."""

    def lock_setup(self, connection: sa.Connection, name: str) -> None:
        """Inside setup's transaction: keep concurrent setups (other processes) out."""

    def unlock_setup(self, connection: sa.Connection, name: str) -> None:
        """After setup's transaction: free what :meth:`lock_setup` took beyond it."""

    def create_extras(self, connection: sa.Connection) -> None:
        """Inside setup's transaction, after the table: what else the database needs."""

    def reserve_index_ready(self) -> None:
        """Setup committed: the table has the index on :data:`~.schema.RESERVE_INDEX`."""

    @property
    def creates_trigger(self) -> bool:
        """Whether :meth:`create_extras` creates the notify trigger."""
        return False


def insert_many_core(
    connection: sa.Connection, statements: Statements, rows: list[dict[str, Any]]
) -> list[int] | None:
    """Insert ``rows`` through SQLAlchemy Core; their ids where the dialect returns them."""
    if statements.insert_returning is None:
        connection.execute(statements.insert, rows)
        return None
    result = connection.execute(statements.insert_returning, rows)
    ids = [int(row_id) for row_id in result.scalars()]
    if not statements.returning_in_order:
        ids.sort()  # one statement's ids grow in the order of its rows
    return ids
