"""The ``messenger_messages`` table, laid out like Symfony Messenger's Doctrine transport.

Columns: ``id`` (64-bit auto-increment primary key; never reused, so a late acknowledgement
cannot delete a newer message), ``body`` (text; LONGTEXT on MySQL), ``headers`` (text: a JSON
object of the string headers), ``queue_name`` (VARCHAR 190), ``created_at``, ``available_at``
and ``delivered_at`` (nullable): naive UTC datetimes. Indexes on ``queue_name``,
``available_at`` and ``delivered_at`` carry the names Doctrine generates for them, so a
Symfony application's schema tool sees the table it expects; one more index, on
``(queue_name, available_at, id)`` (:data:`RESERVE_INDEX`), makes receiving fast.

Tables created here keep microseconds in their datetimes (Doctrine's keep whole seconds; this
transport works with both).
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import quoted_name

__all__ = [
    "utcnow",
    "RESERVE_INDEX",
    "build_table",
    "doctrine_index_name",
    "postgresql_notify_ddl",
    "postgresql_trigger_check",
    "table_options",
]

RESERVE_INDEX = ("queue_name", "available_at", "id")
"""Columns of the one index added to Symfony's layout: it hands the oldest rows of a queue over
in order, where Symfony's single-column indexes make the database sort all available rows on
every receive (PostgreSQL: 30,000 instead of 4,000 messages/s with 20,000 waiting)."""

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid


def utcnow() -> datetime:
    """Now, as the table's datetimes hold it (naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _is_mysql(dialect: sa.Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


class _LongText(sa.types.TypeDecorator[str]):
    """TEXT; LONGTEXT on MySQL, whose TEXT holds 64 KiB only.

    (Not ``with_variant(mysql.LONGTEXT())``: that would import the MySQL dialect into every
    SQLite and PostgreSQL worker.)
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if _is_mysql(dialect):
            from sqlalchemy.dialects import mysql  # noqa: PLC0415  (lazy, see above)

            return dialect.type_descriptor(mysql.LONGTEXT())
        # Not through type_descriptor(): PostgreSQL's dialect adapts Text to its String type,
        # which creates VARCHAR columns, and Symfony's setup then alters them to TEXT.
        return sa.Text()


class _DateTime(sa.types.TypeDecorator[Any]):
    """DATETIME; with microseconds (``DATETIME(6)``) on MySQL, which keeps seconds otherwise."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if _is_mysql(dialect):
            from sqlalchemy.dialects import mysql  # noqa: PLC0415  (lazy, see above)

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())


_LONGTEXT = _LongText()
_DATETIME = _DateTime()


def doctrine_index_name(table_name: str, *columns: str) -> str:
    """The name Doctrine DBAL gives an index on ``columns`` of ``table_name``.

    Doctrine concatenates the hexadecimal CRC32 of the table and column names after ``IDX_``.
    """
    digest = "".join(format(zlib.crc32(name.encode()), "x") for name in (table_name, *columns))
    return f"IDX_{digest}".upper()[:30]


def table_options(backend: str | None, *, autoincrement: bool = False) -> dict[str, Any]:
    """The dialect-specific ``sa.Table`` options for ``backend`` (``None``: every backend's).

    SQLAlchemy imports the dialect of each option it is given: a transport passes its backend,
    so that a SQLite worker does not load the MySQL dialect for a table it will never create
    there.
    """
    options: dict[str, Any] = {}
    if autoincrement and backend in (None, "sqlite"):
        options["sqlite_autoincrement"] = True
    if backend in (None, "mysql"):
        options.update(
            mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci"
        )
    return options


def build_table(
    table_name: str, metadata: sa.MetaData | None = None, *, backend: str | None = None
) -> sa.Table:
    """The messages table named ``table_name`` (a new ``MetaData`` unless one is given).

    ``backend`` (``sqlite``, ``postgresql`` or ``mysql``) keeps only that database's table
    options; by default the table carries them all, for any database.
    """
    table = sa.Table(
        table_name,
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("body", _LONGTEXT, nullable=False),
        sa.Column("headers", _LONGTEXT, nullable=False),
        sa.Column("queue_name", sa.String(190), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("available_at", _DATETIME, nullable=False),
        sa.Column("delivered_at", _DATETIME, nullable=True),
        **table_options(backend, autoincrement=True),
    )
    for columns in (("queue_name",), ("available_at",), ("delivered_at",), RESERVE_INDEX):
        # Unquoted, as Doctrine writes them: PostgreSQL folds them to lower case.
        name = quoted_name(doctrine_index_name(table_name, *columns), quote=False)
        sa.Index(name, *(table.c[column] for column in columns))
    return table


def postgresql_notify_ddl(table_name: str) -> list[str]:
    """Statements creating the trigger that notifies listeners of every inserted row.

    Same channel (the table name), payload (the queue name), function and trigger names as
    Symfony's PostgreSQL transport, so workers of both wake up for each other's messages, and
    a table has one such trigger whichever side set it up. (Symfony's fires on updates too,
    see :func:`postgresql_trigger_check`.) ``table_name`` is a validated identifier.
    """
    function = f'"notify_{table_name}"'
    return [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS TRIGGER AS $$ "
        f"BEGIN PERFORM pg_notify('{table_name}', NEW.queue_name::text); RETURN NEW; END; "
        "$$ LANGUAGE plpgsql",
        f'DROP TRIGGER IF EXISTS notify_trigger ON "{table_name}"',
        f'CREATE TRIGGER notify_trigger AFTER INSERT ON "{table_name}" '
        f"FOR EACH ROW EXECUTE PROCEDURE {function}()",
    ]


def postgresql_trigger_check(table_name: str) -> tuple[sa.TextClause, dict[str, str]]:
    """A query (and its parameters) returning a row when ``table_name`` has a notify trigger
    that does the job: ``notify_trigger``, enabled, run after each inserted row, calling
    ``notify_<table>``.

    Both :func:`postgresql_notify_ddl`'s trigger and Symfony's (which runs ``AFTER INSERT OR
    UPDATE``) pass, so that neither side's setup replaces the other's.
    """
    # tgtype's bits: row-level 1, BEFORE 2, INSERT 4, INSTEAD OF 64.
    query = sa.text(
        "SELECT 1 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgrelid = to_regclass(:table) AND t.tgname = 'notify_trigger' "
        "AND t.tgenabled <> 'D' AND t.tgtype & 71 = 5 AND p.proname = :function"
    )
    return query, {"table": f'"{table_name}"', "function": f"notify_{table_name}"}
