"""One transport's database connection: statements run with retries and reconnection.

:class:`SqlConnection` is the only role of the transport that touches SQLAlchemy connections.
It keeps one connection checked out of the engine (the consumer's), builds the statements on
first connecting, and runs the other roles' work through :meth:`SqlConnection.run`: in a
transaction, retrying deadlocks at once, creating a missing table (``auto_setup``), and
reconnecting through an outage with the :class:`~messenger_transport_sql.reconnect.ReconnectPolicy`
it owns. What differs between databases is asked of its
:class:`~messenger_transport_sql.backends.Backend`, never tested by name here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from messenger_core.errors import BrokerUnreachableError, TransportError
from messenger_transport_sql._statements import FastSql, Sql, Statements
from messenger_transport_sql.backends import Backend
from messenger_transport_sql.options import SqlTransportOptions
from messenger_transport_sql.reconnect import (
    ErrorKind,
    FailedAttempts,
    NextStep,
    ReconnectPolicy,
    reason,
)
from messenger_transport_sql.schema import build_table
from messenger_transport_sql.table_setup import TableSetup

__all__ = ["SqlConnection"]

T = TypeVar("T")


class SqlConnection:
    """The database side of one transport: one connection, its statements, its outages.

    Contract: :meth:`run` either returns what the work returned, committed, or raises a
    :class:`TransportError` (a :class:`BrokerUnreachableError` once the database stayed away
    longer than the patience given); :attr:`reconnect` then tells an outage from a failure.
    Callers hold :attr:`lock` around everything that uses the connection (it is re-entrant);
    ``label`` (the transport's repr) starts every error message.
    """

    def __init__(
        self,
        engine: sa.Engine,
        backend: Backend,
        options: SqlTransportOptions,
        *,
        label: str,
        description: str,
        dispose_engine: bool,
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.options = options
        self.label = label
        self.dispose_engine = dispose_engine
        """Whether the engine is ours (made from a DSN): disposed of on close, and after an
        outage (its idle connections are as dead as ours)."""
        self.reconnect = ReconnectPolicy(description, options.reconnect_timeout)
        self.table = build_table(options.table_name, backend=backend.name)
        self.lock = threading.RLock()
        self.table_checked = False
        """Whether the table is known to exist (a statement on it succeeded, or setup ran)."""
        self.closed = False
        self.setup = TableSetup(self)
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._connection: sa.Connection | None = None
        self._cursor: Any = None
        """The DB-API cursor of the fast path, on ``_connection``."""
        self._statements: Statements | None = None
        self._fast = FastSql()

    def __repr__(self) -> str:
        return self.label

    @property
    def statements(self) -> Statements:
        """The Core statements (built on first connecting)."""
        statements = self._statements
        assert statements is not None, "statements are built on connecting"
        return statements

    @property
    def fast(self) -> FastSql:
        """The statements compiled for the DB-API cursor (empty before connecting)."""
        return self._fast

    def check_open(self) -> None:
        """Raise :class:`TransportError` if the transport was closed."""
        if self.closed:
            raise TransportError(f"{self.label} is closed")

    # -- running work ---------------------------------------------------------------------------
    def run(
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
        statement on the DB-API cursor of an autocommit connection (see
        :attr:`Backend.autocommit`). ``read=True`` marks work that only reads (see
        :meth:`Backend.begin_read`).

        Creates the table first when it is missing (with ``auto_setup``) and retries deadlocks
        and lock timeouts at once. When the database is unreachable (see
        :func:`~messenger_transport_sql.reconnect.classify`) it reconnects with backoff for
        ``patience`` seconds (default: ``reconnect_timeout``), then raises a
        :class:`TransportError` while :attr:`reconnect` stays in its outage. Anything else
        becomes a :class:`TransportError` at once (the password masked, the statement's
        parameters hidden).
        """
        policy = self.reconnect
        deadline = time.monotonic() + (policy.timeout if patience is None else patience)
        failed = FailedAttempts(auto_setup=self.options.auto_setup)
        while True:
            if not policy.wait_for_attempt(deadline):
                raise self.unreachable(action)
            try:
                try:
                    connection = self._connect()
                    if not transaction:
                        result = work(connection)
                    elif read:
                        with self.backend.begin_read(connection):
                            result = work(connection)
                    else:
                        with connection.begin():
                            result = work(connection)
                except self._dbapi_error as error:
                    # Raised by the driver outside SQLAlchemy (statements on connecting).
                    raise self._wrap(error) from error
                self.table_checked = True
                policy.succeeded()
                return result
            except sa.exc.DBAPIError as error:
                kind = self.backend.classify(error)
                if kind is ErrorKind.OUTAGE or error.connection_invalidated:
                    self._drop_broken_connection(error)
                elif self._connection is not None and self._connection.invalidated:
                    self._discard_connection()
                step, pause = failed.after(kind)
                if step is NextStep.CREATE_TABLE:
                    self.setup.create()
                    continue
                if step is NextStep.WAIT_OUT:
                    policy.failed(action, error)
                    continue
                if step is NextStep.BACK_OFF:
                    time.sleep(pause)
                    continue
                raise TransportError(f"{self.label}: cannot {action}: {reason(error)}") from error
            except sa.exc.SQLAlchemyError as error:
                raise TransportError(f"{self.label}: cannot {action}: {reason(error)}") from error

    def raw(
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
        they would from ``connection.execute``: :meth:`run` handles both alike.
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
            raise self._statement_error(sql, cursor, error) from error
        return cursor

    def fetch_all(self, cursor: Any, sql: Sql) -> Sequence[Any]:
        """The rows of ``sql`` just run on ``cursor``; driver errors as :meth:`raw` gives them.

        (SQLite runs ``UPDATE ... RETURNING`` while the rows are fetched: its errors surface
        here, and must be retried or reported like the statement's own.)
        """
        try:
            rows: Sequence[Any] = cursor.fetchall()
        except self._dbapi_error as error:
            raise self._statement_error(sql, cursor, error) from error
        return rows

    def unreachable(self, action: str) -> BrokerUnreachableError:
        """The one error saying the database stayed away while trying to ``action``."""
        policy = self.reconnect
        return BrokerUnreachableError(
            f"{self.label}: cannot {action}: the database did not answer (tried for "
            f"{policy.outage_duration:.1f} s; last error: {policy.last_error}); "
            f"{self.backend.unreachable_hint}"
        )

    # -- the connection -------------------------------------------------------------------------
    def _connect(self) -> sa.Connection:
        connection = self._connection
        if connection is None or connection.invalidated:
            self._cursor = None
            if connection is not None:
                connection.close()
                self._connection = None
            connection = self._connection = self.engine.connect()
            self.backend.on_connect(connection, self)
        if self._statements is None:
            self._statements, self._fast = self.backend.build_statements(
                self.table, connection.dialect
            )
        return connection

    def _statement_error(self, sql: Sql, cursor: Any, error: Exception) -> sa.exc.DBAPIError:
        dialect: Any = self.engine.dialect
        wrapped = sa.exc.DBAPIError.instance(
            sql.text,
            None,
            error,
            self._dbapi_error,
            hide_parameters=True,
            connection_invalidated=dialect.is_disconnect(error, cursor.connection, cursor),
            dialect=dialect,
        )
        assert isinstance(wrapped, sa.exc.DBAPIError)  # (error is a DB-API error)
        return wrapped

    def _wrap(self, error: Exception) -> sa.exc.DBAPIError:
        """A driver's ``error`` as SQLAlchemy's ``DBAPIError``, telling a lost connection."""
        dialect: Any = self.engine.dialect
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
        the backend says it is still fine (a locked SQLite file)."""
        if self.backend.keeps_connection(error, self.engine):
            return
        self._discard_connection()
        if self.dispose_engine:
            # Our own engine: its idle connections are as dead as ours. (An application's
            # engine checks its connections on checkout, if it was made that way.)
            self.engine.dispose()

    def _discard_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._cursor = None
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except sa.exc.SQLAlchemyError:  # it is gone either way
                pass

    def close(self) -> None:
        """Mark the transport closed and give the connection back (the engine too, if ours)."""
        self.closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            self._cursor = None
            if not self.dispose_engine:
                # The engine is the application's: give its pool the connection as it was.
                self.backend.before_release(connection, self._dbapi_error)
            connection.close()
        if self.dispose_engine:
            self.engine.dispose()
