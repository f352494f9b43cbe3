"""A handler transaction's ``COMMIT`` lost with its connection, settled for good.

The ``sql_transaction`` middleware's transaction deletes the message's row, runs the handlers
and commits (see :mod:`messenger_transport_sql.transaction`). When the connection is lost
during the ``COMMIT`` (PostgreSQL, MySQL/MariaDB), its reply is lost but the server may have
committed; or may still, should the ``COMMIT`` be held up on its way.
:meth:`LostCommitCheck.outcome` settles the doubt from another connection:

1. it ends the old session (``pg_terminate_backend``; ``KILL CONNECTION``), whose id was
   learnt before the ``COMMIT``: a transaction still open there is rolled back, and a
   ``COMMIT`` still on its way finds no session to run in;
2. it reads the message's row with ``SELECT ... FOR UPDATE``. The old transaction's delete
   holds that row's lock until the transaction is over, so the read waits for its end (at
   most :data:`LOCK_WAIT` seconds) and then tells: the row gone, the transaction was applied;
   the row there, it was not, and never will be.

An end of session the server refuses (permissions) is logged: the row check still tells once
the old transaction is over, which the server sees when it notices the lost client. If the
check cannot be made (the database unreachable, or the old transaction still open after
:data:`LOCK_WAIT`), the outcome is :attr:`CommitOutcome.UNKNOWN`.

SQLite runs in the worker's process: its ``COMMIT`` succeeds or fails, it is never lost.
"""

from __future__ import annotations

import enum
import logging

import sqlalchemy as sa

from messenger_transport_sql.backends import Backend
from messenger_transport_sql.reconnect import ErrorKind, describe_error

__all__ = ["LOCK_WAIT", "CommitOutcome", "LostCommitCheck", "commit_lost"]

logger = logging.getLogger("messenger.transport.sql")

LOCK_WAIT = 10
"""Seconds the check waits for the old transaction to end (it ends at once when its session
could be ended)."""


class CommitOutcome(enum.Enum):
    """What became of a transaction whose ``COMMIT`` was lost with its connection."""

    APPLIED = "applied"
    """Committed: the handlers' writes and the acknowledgement exist."""
    NOT_APPLIED = "not applied"
    """Rolled back, for good: neither exists, and no late ``COMMIT`` can change that."""
    UNKNOWN = "unknown"
    """The check could not be made: the row will tell (it comes back if not applied)."""


def commit_lost(error: BaseException, backend: Backend) -> bool:
    """Whether ``error``, raised by a ``COMMIT``, leaves its outcome unknown: the connection
    to a database server was lost (never on SQLite)."""
    if backend.session_query is None or not isinstance(error, sa.exc.DBAPIError):
        return False
    return error.connection_invalidated or backend.classify(error) is ErrorKind.OUTAGE


class LostCommitCheck:
    """Settles lost ``COMMIT``\\ s of handler transactions on one messages table (see the
    module documentation)."""

    def __init__(self, engine: sa.Engine, backend: Backend, table: sa.Table, label: str) -> None:
        self._engine = engine
        self._backend = backend
        self._label = label
        self._select = (
            sa.select(table.c.id).where(table.c.id == sa.bindparam("row_id")).with_for_update()
        )

    def outcome(self, row_id: int, session_id: int | None) -> CommitOutcome:
        """What became of the transaction that deleted row ``row_id`` in session
        ``session_id`` and whose ``COMMIT`` was lost; definitive unless ``UNKNOWN``."""
        try:
            with self._engine.connect() as connection:
                try:
                    if session_id is not None:
                        self._end_session(connection, session_id)
                    with connection.begin():
                        self._backend.limit_lock_wait(connection, LOCK_WAIT)
                        found = connection.execute(self._select, {"row_id": row_id}).first()
                finally:
                    connection.invalidate()  # its session settings go with it
        except sa.exc.SQLAlchemyError as error:
            logger.warning(
                "%s: could not tell whether a handler transaction whose COMMIT was lost was "
                "applied: %s",
                self._label,
                describe_error(error),
            )
            return CommitOutcome.UNKNOWN
        return CommitOutcome.APPLIED if found is None else CommitOutcome.NOT_APPLIED

    def _end_session(self, connection: sa.Connection, session_id: int) -> None:
        """End the old session, unless the server refuses (then logged)."""
        backend = self._backend
        try:
            with connection.begin():
                # A PostgreSQL pid may be reused: ours, the old backend is gone already.
                if backend.session_id(connection) != session_id:
                    backend.end_session(connection, session_id)
        except sa.exc.DBAPIError as error:
            if commit_lost(error, backend):
                raise  # this connection is lost too: nothing can be told
            logger.warning(
                "%s: could not end the session of a transaction whose COMMIT was lost (%s); "
                "waiting up to %d s for it to end by itself",
                self._label,
                describe_error(error),
                LOCK_WAIT,
            )
