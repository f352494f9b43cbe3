"""PostgreSQL: autocommit connections, the hot statements on psycopg's cursor, LISTEN/NOTIFY.

What makes PostgreSQL fast here: acknowledgements deleted in the very statement that reserves
the next batch, batches inserted from arrays in one statement, and a planner kept from sorting
the queue (see :meth:`PostgreSqlBackend.on_connect`). Idle consumers wait for the notify
trigger's notifications (:class:`~messenger_transport_sql._notify.NotifyWait`) instead of
polling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from messenger_transport_sql._notify import NotifyWait
from messenger_transport_sql.backends import Backend
from messenger_transport_sql.schema import (
    RESERVE_INDEX,
    postgresql_notify_ddl,
    postgresql_trigger_check,
)

if TYPE_CHECKING:
    from messenger_transport_sql.async_sender import AsyncPostgreSqlSender
    from messenger_transport_sql.connection import SqlConnection
    from messenger_transport_sql.sender import SqlSender

__all__ = ["PostgreSqlBackend"]

logger = logging.getLogger("messenger.transport.sql")


class PostgreSqlBackend(Backend):
    """PostgreSQL through psycopg 3."""

    name: ClassVar[str] = "postgresql"
    autocommit: ClassVar[bool] = True
    batch_in_transaction: ClassVar[bool] = False  # (one INSERT ... SELECT FROM unnest)

    session_query: ClassVar[str | None] = "SELECT pg_backend_pid()"

    _prepare: bool | None = None
    """False to plan the reserve statement on each execution (see :meth:`on_connect`)."""

    def skip_locked(self, dialect: sa.Dialect) -> bool:
        return True

    def on_connect(self, connection: sa.Connection, db: SqlConnection) -> None:
        if self._prepare is None:
            self._prepare = self._has_reserve_index(connection)
            if not self._prepare:
                # Without it, a prepared statement's generic plan sorts the whole queue on
                # every receive: plan each one for its parameters instead.
                logger.info(
                    "%s: table %s has no index on (%s); receiving is faster with it "
                    "(tables created by this transport have it)",
                    db.label,
                    self.options.table_name,
                    ", ".join(RESERVE_INDEX),
                )
        # A queue table's statistics are nearly always stale (it goes from empty to thousands
        # of rows in seconds): the planner then sorts the whole queue for every receive instead
        # of reading the index in order. Take sorting away from it on this connection, which
        # runs only our statements.
        connection.connection.dbapi_connection.execute("SET enable_sort = off")  # type: ignore[union-attr]

    def _has_reserve_index(self, connection: sa.Connection) -> bool:
        """Whether the table has the index :data:`RESERVE_INDEX` (or is missing)."""
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = %s",
            (self.options.table_name,),
        )
        definitions = [row[0] for row in cursor.fetchall()]
        columns = f"({', '.join(RESERVE_INDEX)})"
        return not definitions or any(columns in definition for definition in definitions)

    def before_release(self, connection: sa.Connection, dbapi_error: type[Exception]) -> None:
        try:
            dbapi_connection: Any = connection.connection.dbapi_connection
            dbapi_connection.execute("RESET enable_sort")
        except (sa.exc.SQLAlchemyError, dbapi_error):
            connection.invalidate()

    def end_session(self, connection: sa.Connection, session_id: int) -> None:
        # False (with a server WARNING) for a backend that is gone already: fine.
        connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": session_id})

    def limit_lock_wait(self, connection: sa.Connection, seconds: int) -> None:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(seconds)}s'")

    def notify_wait(self, db: SqlConnection) -> NotifyWait | None:
        if not self.options.use_notify:
            return None
        return NotifyWait(db)

    def async_sender(self, db: SqlConnection, sender: SqlSender) -> AsyncPostgreSqlSender:
        # psycopg's AsyncConnection (imported with the module: it loads psycopg lazily).
        from messenger_transport_sql.async_sender import (  # noqa: PLC0415
            AsyncPostgreSqlSender,
        )

        return AsyncPostgreSqlSender(db, sender)

    # -- the hot statements -----------------------------------------------------------------
    def inserted_id(self, cursor: Any) -> int:
        return int(cursor.fetchone()[0])

    def insert_many(
        self, db: SqlConnection, connection: sa.Connection, rows: list[dict[str, Any]]
    ) -> list[int] | None:
        sql = db.fast.insert_many
        assert sql is not None, "PostgreSQL compiles the batch insert"
        columns = {
            "bodies": [row["body"] for row in rows],
            "headers_list": [row["headers"] for row in rows],
            "created_at_list": [row["created_at"] for row in rows],
            "available_at_list": [row["available_at"] for row in rows],
            "queue_name": rows[0]["queue_name"],
        }
        cursor = db.raw(connection, sql, columns)
        # The rows took their ids from the sequence in array order: sorted ids match them.
        return sorted(int(row[0]) for row in cursor.fetchall())

    def delete(self, db: SqlConnection, connection: sa.Connection, ids: list[int]) -> None:
        sql = db.fast.delete
        assert sql is not None, "PostgreSQL compiles the delete"
        db.raw(connection, sql, {"ids": ids})

    def reserve(
        self, db: SqlConnection, connection: sa.Connection, params: dict[str, Any], acks: list[int]
    ) -> Sequence[Any]:
        fast = db.fast
        sql = fast.reserve_acking if acks else fast.reserve
        assert sql is not None, "PostgreSQL compiles both reserve statements"
        if acks:
            # One round trip: delete the acknowledged rows and reserve the next ones.
            params = {**params, "ids": acks}
        cursor = db.raw(connection, sql, params, prepare=self._prepare)
        return db.fetch_all(cursor, sql)

    def after_release(self, connection: sa.Connection, queue: str) -> None:
        # No insert happened, so no trigger fired: wake the idle consumers ourselves.
        connection.execute(
            sa.text("SELECT pg_notify(:channel, :queue)"),
            {"channel": self.options.table_name, "queue": queue},
        )

    # -- setup ---------------------------------------------------------------------------------
    def prepare_setup(self, connection: sa.Connection) -> None:
        # Transactional DDL, and a transaction-scoped lock against concurrent setups.
        connection.execution_options(isolation_level="READ COMMITTED")

    def lock_setup(self, connection: sa.Connection, name: str) -> None:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})

    def create_extras(self, connection: sa.Connection) -> None:
        if not self.options.use_notify:
            return
        query, params = postgresql_trigger_check(self.options.table_name)
        if connection.execute(query, params).first() is not None:
            # Ours, or Symfony's (which fires on updates too): either wakes both sides'
            # workers. Replacing Symfony's would change what its setup made.
            return
        ddl = postgresql_notify_ddl(self.options.table_name)
        info = connection.dialect.server_version_info or (0,)
        if info >= (14,):  # (the DDL is transactional: never a moment without a trigger)
            ddl = [ddl[0], ddl[2].replace("CREATE TRIGGER", "CREATE OR REPLACE TRIGGER")]
        for statement in ddl:
            connection.exec_driver_sql(statement)

    def reserve_index_ready(self) -> None:
        self._prepare = True

    @property
    def creates_trigger(self) -> bool:
        return self.options.use_notify
