"""Sharing a table that Symfony's Doctrine transport created and writes to."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from messenger_transport_sql import SqlTransport
from messenger_transport_sql.schema import doctrine_index_name
from sql_test_support import Database, Order, order
from sqlalchemy.dialects import mysql, postgresql

from messenger_core.envelope import Envelope
from messenger_core.transport import UndecodableMessage

# What Doctrine DBAL creates for Symfony: whole-second datetimes, three single-column indexes.
_DATETIME = (
    sa.DateTime()
    .with_variant(postgresql.TIMESTAMP(precision=0), "postgresql")
    .with_variant(mysql.DATETIME(), "mysql", "mariadb")
)
_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _doctrine_table(database: Database) -> sa.Table:
    name = database.table_name
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("body", _TEXT, nullable=False),
        sa.Column("headers", _TEXT, nullable=False),
        sa.Column("queue_name", sa.String(190), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("available_at", _DATETIME, nullable=False),
        sa.Column("delivered_at", _DATETIME, nullable=True),
        sqlite_autoincrement=True,
    )
    for column in ("queue_name", "available_at", "delivered_at"):
        sa.Index(doctrine_index_name(name, column), table.c[column])
    engine = database.engine()
    table.create(engine)
    engine.dispose()
    return table


def _symfony_row(body: str, headers: str, **values: Any) -> dict[str, Any]:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(seconds=1)
    return {
        "body": body,
        "headers": headers,
        "queue_name": "default",
        "created_at": now,
        "available_at": now,
        **values,
    }


def _receive(transport: SqlTransport, count: int) -> list[Envelope]:
    received: list[Envelope] = []
    deadline = time.monotonic() + 5
    while len(received) < count and time.monotonic() < deadline:
        received.extend(transport.get())
    return received


def test_rows_written_by_symfony_are_received(database: Database) -> None:
    table = _doctrine_table(database)
    database.run(
        sa.insert(table).values(
            _symfony_row(
                '{"id":1,"text":"from PHP"}',
                # PHP's json_encode escapes slashes.
                '{"type":"tests.Order","Content-Type":"application\\/json"}',
            )
        )
    )
    database.run(sa.insert(table).values(_symfony_row("{}", "[]")))  # no headers at all
    transport = database.transport(fetch_size=10)
    received = _receive(transport, 2)
    assert received[0].message == Order(1, "from PHP")
    assert isinstance(received[1].message, UndecodableMessage)
    assert received[1].message.headers == {}
    for envelope in received:
        transport.ack(envelope)
    transport.close()
    assert database.run(sa.select(table)) == []


def test_the_transport_works_on_a_doctrine_table(database: Database) -> None:
    table = _doctrine_table(database)
    transport = database.transport(fetch_size=5)
    transport.send_batch([order(number) for number in range(3)])
    transport.send(order(3))
    received = _receive(transport, 4)
    assert [envelope.message.id for envelope in received] == [0, 1, 2, 3]
    transport.ack(received[0])
    transport.close()  # releases the three others despite the whole-second delivered_at
    other = database.transport(fetch_size=5)
    # (Polling: whole-second columns may round available_at up to half a second ahead.)
    assert [envelope.message.id for envelope in _receive(other, 3)] == [1, 2, 3]
    assert len(database.run(sa.select(table))) == 3


def test_rows_symfony_s_mysql_transport_acknowledged_are_ignored(database: Database) -> None:
    # Symfony's MySQL transport acknowledges by setting delivered_at far in the future, and
    # deletes such rows later.
    table = _doctrine_table(database)
    acknowledged = _symfony_row(
        '{"id":1}', '{"type":"tests.Order"}', delivered_at=datetime(9999, 12, 31, 23, 59, 59)
    )
    database.run(sa.insert(table).values(acknowledged))
    transport = database.transport()
    assert transport.message_count() == 0
    assert transport.all() == []
    assert transport.get() == []
