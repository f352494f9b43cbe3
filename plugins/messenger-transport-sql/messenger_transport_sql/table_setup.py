"""Creating the messages table (and on PostgreSQL the notify trigger), safely and at most once.

Setup runs on a connection of its own, in one transaction, holding a lock that keeps the setups
of other processes out (the backend's; see :meth:`Backend.lock_setup`), and checks before it
creates: safe to run repeatedly and concurrently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from messenger_core.errors import TransportError
from messenger_transport_sql.reconnect import reason

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

    def create(self) -> None:
        """Create the table, its indexes and the backend's extras, if missing."""
        db = self._db
        backend = db.backend
        try:
            with db.engine.connect() as connection:
                backend.prepare_setup(connection)
                try:
                    with connection.begin():
                        backend.lock_setup(connection, self._lock_name)
                        db.table.create(connection, checkfirst=True)
                        backend.create_extras(connection)
                finally:
                    backend.unlock_setup(connection, self._lock_name)
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(f"{db.label}: setup failed: {reason(error)}") from error
        db.table_checked = True
        self.trigger_ready = self.trigger_ready or backend.creates_trigger

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
