"""Sending: one row per message, on the transport's connection or through the outbox.

Inside an :func:`~messenger_transport_sql.outbox.outbox` block rows are inserted through the
application's connection, in its transaction (and with SQLAlchemy Core: that connection may
use another driver); otherwise on the transport's own connection, committed at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.serializer import Serializer
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_transport_sql._codec import encode_body, encode_headers
from messenger_transport_sql._statements import Statements, build_statements
from messenger_transport_sql.backends import insert_many_core
from messenger_transport_sql.connection import SqlConnection
from messenger_transport_sql.engine import database_identity
from messenger_transport_sql.outbox import current_outbox_connection
from messenger_transport_sql.reconnect import reason
from messenger_transport_sql.schema import utcnow

__all__ = ["SqlSender"]

T = TypeVar("T")


class SqlSender:
    """Stores envelopes as rows of one queue.

    Contract: a sent envelope comes back with the ``TransportMessageIdStamp`` of its row
    (except from a MySQL batch, see :meth:`send_batch`); once ``send`` returns outside an
    outbox the row is committed, inside one it commits or rolls back with the application's
    transaction.
    """

    def __init__(self, db: SqlConnection, serializer: Serializer) -> None:
        self._db = db
        self._serializer = serializer
        self._queue = db.options.queue_name
        self._identity = database_identity(db.engine.url)
        self._outbox_statements_by_dialect: dict[type[sa.Dialect], Statements] = {}

    def send(self, envelope: Envelope) -> Envelope:
        """Store ``envelope``; return it with a ``TransportMessageIdStamp`` of the new row."""
        row = self.row(envelope, utcnow())
        db = self._db
        outbox = current_outbox_connection()
        if outbox is not None:
            statements = self._outbox_statements(outbox)
            result = self._outbox_execute(lambda: outbox.execute(statements.insert, row))
            primary_key = result.inserted_primary_key
            assert primary_key is not None
            row_id = int(primary_key[0])
        else:
            with db.lock:
                db.check_open()
                row_id = db.run(
                    "send",
                    lambda connection: db.backend.insert(db, connection, row),
                    transaction=not db.backend.autocommit,
                )
        return envelope.with_(TransportMessageIdStamp(id=str(row_id)))

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store all ``envelopes`` in one transaction (all or none), in one statement; ids as
        far as the database returns them (MySQL, not MariaDB, does not)."""
        if not envelopes:
            return []
        now = utcnow()
        rows = [self.row(envelope, now) for envelope in envelopes]
        db = self._db
        outbox = current_outbox_connection()
        if outbox is not None:
            statements = self._outbox_statements(outbox)
            ids = self._outbox_execute(lambda: insert_many_core(outbox, statements, rows))
        else:
            with db.lock:
                db.check_open()
                ids = db.run(
                    "send a batch",
                    lambda connection: db.backend.insert_many(db, connection, rows),
                    transaction=db.backend.batch_in_transaction,
                )
        if ids is None:
            return list(envelopes)
        return [
            envelope.with_(TransportMessageIdStamp(id=str(row_id)))
            for envelope, row_id in zip(envelopes, ids, strict=True)
        ]

    def row(self, envelope: Envelope, now: datetime) -> dict[str, Any]:
        """The row storing ``envelope`` (sent at ``now``), as :meth:`send` inserts it."""
        message = self._serializer.encode(envelope)
        body, headers = encode_body(message.body, message.headers)
        # Whole seconds: Symfony's Doctrine transport compares with its clock truncated to the
        # second, and a whole-second column (a table Doctrine created) may round up. A Symfony
        # worker woken by the notify trigger would not see a message due at .3 s yet, and would
        # then sleep check_delayed_interval (a minute) before looking again. (The ids keep the
        # messages of one second in order.)
        available_at = now.replace(microsecond=0)
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

    def _outbox_statements(self, connection: sa.Connection) -> Statements:
        db = self._db
        if database_identity(connection.engine.url) != self._identity:
            raise ConfigurationError(
                f"cannot send to {db.label} through the outbox connection to "
                f"{connection.engine.url.render_as_string(hide_password=True)}: they are "
                "different databases, so the message could not join the transaction"
            )
        with db.lock:
            db.check_open()
            if db.options.auto_setup and not db.table_checked:
                # The application's transaction must not fail on a missing table: create it
                # before the first insert.
                db.setup.create_if_missing(connection)
            dialect = connection.dialect
            statements = self._outbox_statements_by_dialect.get(type(dialect))
            if statements is None:
                # No row locks: the outbox only inserts.
                statements = build_statements(
                    db.table, dialect, skip_locked=False, fetch_size=db.options.fetch_size
                )
                self._outbox_statements_by_dialect[type(dialect)] = statements
            return statements

    def _outbox_execute(self, insert: Callable[[], T]) -> T:
        try:
            return insert()
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(
                f"{self._db.label}: sending through the outbox connection failed: {reason(error)}"
            ) from error
