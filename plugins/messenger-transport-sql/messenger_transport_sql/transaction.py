"""Transactional handling: a handler's writes and its message's acknowledgement commit together.

The ``sql_transaction`` middleware runs the handlers of a *received* message inside a database
transaction, which handlers reach with :func:`current_connection`::

    from messenger_transport_sql import current_connection

    @messenger.handler
    def on_order_placed(message: OrderPlaced) -> None:
        current_connection().execute(orders.insert().values(id=message.order_id))

When the message came from a SQL transport, the transaction runs on that transport's database
and deletes the message's row first: the handler's writes and the acknowledgement commit
together or not at all. A worker killed mid-handler (even with ``kill -9``) leaves neither:
the message comes back and is handled once. The worker's ``ack()`` afterwards does nothing.
The delete also locks the row until the transaction ends (PostgreSQL, MySQL/MariaDB; SQLite
locks the whole database), so no other consumer takes the message meanwhile, and a row found
already gone (another consumer settled it) skips the handlers: their writes are never made
twice.

If a handler raises, the transaction is rolled back and the worker's retry or failure path
runs as without the middleware; the retry runs every handler again, those that had succeeded
too (their writes were rolled back). Messages the handlers dispatch to a SQL transport on the same
database are inserted in the transaction too (the :func:`~messenger_transport_sql.outbox`
is entered; option ``outbox = false`` turns that off).

If the connection to PostgreSQL or MySQL/MariaDB is lost during the ``COMMIT``, the doubt is
settled by :mod:`messenger_transport_sql.lost_commit` (the old session ended, the message's row
read under its lock): applied, the message counts as handled; not applied, it is retried (a
``RecoverableMessageError``: whatever the retry strategy allows, never parked for an outage);
not known (the database unreachable), it is neither acknowledged nor retried, and its row tells
(it comes back after ``redeliver_timeout`` if the transaction was not applied).

Messages received from other transports get a transaction on the database of the SQL
transport named by the ``transport`` option, and pass through without one when it is not set.
Dispatched messages (not received) always pass through: code that dispatches owns its own
transaction (and :func:`~messenger_transport_sql.outbox` makes its sends part of it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa

from messenger_core.envelope import Envelope
from messenger_core.errors import HandlerFailedError, RecoverableMessageError
from messenger_core.middleware import Next
from messenger_core.middleware.received_transaction import ReceivedMessageTransaction, rolled_back
from messenger_core.transport_options import parse_bool
from messenger_transport_sql.lost_commit import CommitOutcome
from messenger_transport_sql.outbox import outbox
from messenger_transport_sql.reconnect import describe_error
from messenger_transport_sql.transport import SqlTransport

__all__ = ["NoTransactionError", "SqlTransactionMiddleware", "current_connection"]

logger = logging.getLogger("messenger.transport.sql")

OPTIONS = ("transport", "outbox")

_current: ContextVar[sa.Connection | None] = ContextVar(
    "messenger_transport_sql_transaction", default=None
)


class NoTransactionError(LookupError):
    """:func:`current_connection` was called outside a transactional handling."""


def current_connection() -> sa.Connection:
    """The connection of the transaction the ``sql_transaction`` middleware runs the current
    handler in; a :class:`NoTransactionError` outside one.

    Write through it (Core statements, or ``Session(bind=current_connection())``) and never
    commit or roll back: the middleware does, together with the message's acknowledgement.
    """
    connection = _current.get()
    if connection is None:
        raise NoTransactionError(
            "no transaction: current_connection() works in a handler of a message received "
            "by a worker whose bus lists the 'sql_transaction' middleware (for messages from a "
            "non-SQL transport, with its 'transport' option set)"
        )
    return connection


class SqlTransactionMiddleware(ReceivedMessageTransaction[SqlTransport]):
    """The ``sql_transaction`` middleware; see the module documentation.

    Options: ``transport`` (the name of a SQL transport whose database runs the transactions
    of messages received from non-SQL transports; default none: no transaction for them) and
    ``outbox`` (default true: handlers' sends to SQL transports on the transaction's database
    join it).
    """

    name = "sql_transaction"
    store = "SQL"
    transport_class = SqlTransport
    options = OPTIONS

    def configure(self, options: Mapping[str, Any]) -> None:
        """The ``outbox`` option."""
        self._outbox = parse_bool("outbox", options.get("outbox", True))

    def active(self) -> bool:
        """Whether a transaction of this middleware is open in this context."""
        return _current.get() is not None

    def runner(self, transport: SqlTransport, *, settles: bool) -> _TransactionRunner:
        """Transactions on ``transport``'s database."""
        engine = transport.transaction_engine()
        return _TransactionRunner(engine, transport if settles else None, self._outbox)


class _TransactionRunner:
    """Runs handlers in a transaction on one database, settling the message there if its
    transport is given."""

    def __init__(self, engine: sa.Engine, transport: SqlTransport | None, outbox: bool) -> None:
        self._engine = engine
        self._transport = transport
        self._outbox = outbox

    def handle(self, envelope: Envelope, next: Next) -> Envelope:
        transport = self._transport
        committed = False
        # Leaving the block closes the connection, which rolls back what was not committed.
        with self._engine.connect() as connection:
            transaction = connection.begin()
            try:
                if transport is not None and not transport.delete_in(connection, envelope):
                    logger.warning(
                        "%r: a %s was settled by another consumer meanwhile: its handlers "
                        "are not run again",
                        transport,
                        type(envelope.message).__qualname__,
                    )
                    return envelope
                # Learnt before the COMMIT: should it be lost, this session is ended.
                session = transport.session_of(connection) if transport is not None else None
                result = self._run(connection, envelope, next)
                try:
                    transaction.commit()
                except sa.exc.DBAPIError as error:
                    if transport is None or not transport.commit_lost(error):
                        raise
                    _settle_lost_commit(transport, envelope, session, error)
                committed = True
            finally:
                if transport is not None:
                    transport.transaction_ended(envelope, committed=committed)
        return result

    def _run(self, connection: sa.Connection, envelope: Envelope, next: Next) -> Envelope:
        token = _current.set(connection)
        try:
            with outbox(connection) if self._outbox else contextlib.nullcontext():
                return next(envelope)
        except HandlerFailedError as error:
            rolled_back(error)
            raise
        finally:
            _current.reset(token)


def _settle_lost_commit(
    transport: SqlTransport, envelope: Envelope, session: int | None, error: sa.exc.DBAPIError
) -> None:
    """The connection was lost during the COMMIT: return if the transaction was applied (the
    message is handled) or its outcome cannot be told (the row decides), raise a
    :class:`RecoverableMessageError` if it was not (the message is retried)."""
    outcome = transport.commit_outcome(envelope, session)
    if outcome is CommitOutcome.NOT_APPLIED:
        # The handlers did their part: retried whatever its retry strategy allows, never
        # parked or rejected for an outage.
        raise RecoverableMessageError(
            "the message's transaction was not applied, the connection to the database was "
            f"lost during its COMMIT: {describe_error(error)}"
        ) from error
    if outcome is CommitOutcome.APPLIED:
        logger.warning(
            "%r: a handler transaction was applied, the reply to its COMMIT lost: %s",
            transport,
            describe_error(error),
        )
        return
    # Neither acknowledged nor retried: a retry copy could be handled on top of an applied
    # transaction. The row tells: gone if it was applied, back after redeliver_timeout if not.
    logger.warning(
        "%r: the connection was lost during a handler transaction's COMMIT and its outcome "
        "cannot be told now (%s): if it was not applied, the message comes back after "
        "redeliver_timeout",
        transport,
        describe_error(error),
    )
