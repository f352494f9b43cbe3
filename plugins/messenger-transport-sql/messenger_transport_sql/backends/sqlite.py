"""SQLite: one file shared by processes, writers serialized by ``BEGIN IMMEDIATE``.

No row locks (and none needed: a writer holds the whole file), autocommit connections, the hot
statements on the DB-API cursor with datetimes as the text SQLAlchemy stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from messenger_transport_sql._statements import sqlite_datetime, sqlite_ids
from messenger_transport_sql.backends import Backend
from messenger_transport_sql.engine import SQLITE_BEGIN

if TYPE_CHECKING:
    from messenger_transport_sql.connection import SqlConnection

__all__ = ["SqliteBackend"]


class SqliteBackend(Backend):
    """SQLite through the standard library's sqlite3."""

    name: ClassVar[str] = "sqlite"
    autocommit: ClassVar[bool] = True
    creates_table_in_outbox: ClassVar[bool] = True
    session_query: ClassVar[str | None] = None  # in-process: no connection to lose
    unreachable_hint: ClassVar[str] = (
        "check that the database file (and its directory) exists and is readable and "
        "writable, and that no other connection keeps it locked"
    )

    def keeps_connection(self, error: sa.exc.DBAPIError, engine: sa.Engine) -> bool:
        # A locked file's connection is fine; a memory database lives in its one connection.
        text = str(error.orig).lower()
        return "locked" in text or "busy" in text or isinstance(engine.pool, StaticPool)

    def begin_read(self, connection: sa.Connection) -> AbstractContextManager[Any]:
        return _read_transaction(connection)

    def param_datetime(self, value: datetime) -> Any:
        return sqlite_datetime(value)

    def insert_many(
        self, db: SqlConnection, connection: sa.Connection, rows: list[dict[str, Any]]
    ) -> list[int] | None:
        sql = db.fast.insert_many
        assert sql is not None, "SQLite compiles the batch insert"
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
        cursor = db.raw(connection, sql, params, many=True)
        # We hold the write lock: the rows took consecutive ids, ending with the last one.
        last = int(cursor.execute("SELECT last_insert_rowid()").fetchall()[0][0])
        return list(range(last - len(rows) + 1, last + 1))

    def delete(self, db: SqlConnection, connection: sa.Connection, ids: list[int]) -> None:
        sql = db.fast.delete
        assert sql is not None, "SQLite compiles the delete"
        db.raw(connection, sql, {"ids": sqlite_ids(ids)})

    def reserve(
        self, db: SqlConnection, connection: sa.Connection, params: dict[str, Any], acks: list[int]
    ) -> Sequence[Any]:
        sql = db.fast.reserve
        if sql is None:  # a SQLite without UPDATE ... RETURNING
            return super().reserve(db, connection, params, acks)
        if acks:
            self.delete(db, connection, acks)
        dt = sqlite_datetime
        raw_params = {
            "queue": params["queue"],
            "now": dt(params["now"]),
            "redeliver_limit": dt(params["redeliver_limit"]),
        }
        return db.fetch_all(db.raw(connection, sql, raw_params), sql)


@contextmanager
def _read_transaction(connection: sa.Connection) -> Iterator[None]:
    # A plain BEGIN takes no write lock: a read never waits for a writer.
    connection.info[SQLITE_BEGIN] = "BEGIN"
    try:
        with connection.begin():
            yield
    finally:
        connection.info.pop(SQLITE_BEGIN, None)
