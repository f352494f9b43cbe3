"""Creating the messages table (and on PostgreSQL the notify trigger), safely and at most once.

Setup runs on a connection of its own, in one transaction, holding a lock that keeps the setups
of other processes out (the backend's; see :meth:`Backend.lock_setup`), and checks before it
creates: safe to run repeatedly and concurrently.

It also repairs a table that exists: Symfony's own setup (``messenger:setup-transports``)
drops every index it does not know, among them :data:`~.schema.RESERVE_INDEX`, which setup here
then creates again. Setup never drops nor alters anything, so that what Symfony's setup built
keeps working for Symfony.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from messenger_core.errors import TransportError
from messenger_transport_sql.reconnect import reason
from messenger_transport_sql.schema import RESERVE_INDEX

if TYPE_CHECKING:
    from messenger_transport_sql.connection import SqlConnection

__all__ = ["TableSetup"]


class TableSetup:
    """The setup of one transport's table.

    Contract: :meth:`create` leaves the table (and the trigger, where the backend has one)
    in place or raises :class:`TransportError`; it marks the connection's table as checked.
    """

    def __init__(self, db: SqlConnection) -> None:
        self._db = db
        self.trigger_ready = False
        """Whether the notify trigger is known to exist (setup created it, or it was seen)."""

    @property
    def _lock_name(self) -> str:
        return f"messenger_setup_{self._db.options.table_name}"[:64]

    def create(self, *, restore_index: bool = True) -> None:
        """Create the table, its indexes and the backend's extras, if missing.

        ``restore_index``: also give an existing table the index on
        :data:`~.schema.RESERVE_INDEX` if it has none (what an explicit setup does; a worker
        that only needs the trigger leaves a table's indexes to its owner).
        """
        db = self._db
        backend = db.backend
        try:
            with db.engine.connect() as connection:
                backend.prepare_setup(connection)
                try:
                    with connection.begin():
                        backend.lock_setup(connection, self._lock_name)
                        db.table.create(connection, checkfirst=True)
                        if restore_index:
                            self._create_reserve_index(connection)
                        backend.create_extras(connection)
                finally:
                    backend.unlock_setup(connection, self._lock_name)
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(f"{db.label}: setup failed: {reason(error)}") from error
        db.table_checked = True
        if restore_index:
            backend.reserve_index_ready()
        self.trigger_ready = self.trigger_ready or backend.creates_trigger

    def _create_reserve_index(self, connection: sa.Connection) -> None:
        """Create the index on :data:`RESERVE_INDEX` if the table has none on those columns
        (a table that Doctrine created, or whose index Symfony's setup dropped)."""
        existing = sa.inspect(connection).get_indexes(self._db.options.table_name)
        if any(tuple(index["column_names"]) == RESERVE_INDEX for index in existing):
            return
        for index in self._db.table.indexes:
            if tuple(column.name for column in index.columns) == RESERVE_INDEX:
                index.create(connection)

    def create_if_missing(self, outbox: sa.Connection) -> None:
        """Before the outbox's first insert: make sure the table exists (with ``auto_setup``),
        so that the application's transaction does not fail on a missing table."""
        db = self._db
        try:
            if db.backend.creates_table_in_outbox:
                # Through the application's connection, in its transaction: it may hold the
                # database's one write lock (SQLite), which our own connection would wait for
                # forever.
                db.table.create(outbox, checkfirst=True)
                return  # checked again next time: a rollback takes the table away
            with db.engine.connect() as connection:
                exists = sa.inspect(connection).has_table(db.options.table_name)
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(f"{db.label}: cannot create the table: {reason(error)}") from error
        if not exists:
            self.create()
        db.table_checked = True
