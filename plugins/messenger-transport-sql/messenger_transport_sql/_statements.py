"""The transport's statements, built once per transport with SQLAlchemy Core.

Every statement is a Core construct. On PostgreSQL and SQLite the hot ones (send, send a batch,
reserve, delete) are also compiled once to SQL text and run straight on the DB-API cursor: the
database round trip is then nearly all an operation costs (SQLAlchemy's per-execution work is
as long as a local PostgreSQL insert). MySQL and the outbox (the application's connection,
possibly another driver) run the Core constructs through SQLAlchemy.

Parameters used throughout: ``queue``, ``now``, ``redeliver_limit`` (now minus the redelivery
timeout), ``ids`` (a list of row ids), ``row_id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
import sqlalchemy as sa

__all__ = ["FastSql", "Sql", "Statements", "build_fast_sql", "build_statements"]

_ROW_COLUMNS = ("body", "headers", "queue_name", "created_at", "available_at")


@attrs.frozen
class Statements:
    """Core statements for every operation, usable on any connection to the database."""

    insert: sa.Insert
    insert_returning: sa.Insert | None
    """Multi-row insert returning the new ids, where the dialect can."""
    returning_in_order: bool
    """Whether ``insert_returning`` returns the ids in the order of the rows."""
    reserve: sa.Update | None
    """Reserve and return rows in one statement (UPDATE ... RETURNING), where possible."""
    select_for_reserve: sa.Select[Any]
    """Otherwise: select (and lock) the rows to reserve, ..."""
    mark_delivered: sa.Update
    """... then mark them delivered."""
    delete: sa.Delete
    keepalive: sa.Update
    release: sa.Update
    count: sa.Select[Any]
    list_all: sa.Select[Any]
    list_limited: sa.Select[Any]
    find: sa.Select[Any]
    next_due: sa.Select[Any]


def build_statements(
    table: sa.Table, dialect: sa.Dialect, *, skip_locked: bool, fetch_size: int
) -> Statements:
    """The Core statements on ``table`` for ``dialect``, reserving ``fetch_size`` rows."""
    c = table.c
    queue = sa.bindparam("queue", type_=c.queue_name.type)
    now = sa.bindparam("now", type_=c.delivered_at.type)
    not_reserved = sa.or_(
        c.delivered_at.is_(None),
        c.delivered_at < sa.bindparam("redeliver_limit", type_=c.delivered_at.type),
    )
    waiting = sa.and_(c.queue_name == queue, not_reserved)
    fifo = (c.available_at, c.id)
    by_ids = _by_ids(table, dialect)
    columns = _reserved_columns(table, dialect)
    limit = _literal_limit(fetch_size)

    pick = sa.select(c.id).where(waiting, c.available_at <= now).order_by(*fifo).limit(limit)
    select_for_reserve = (
        sa.select(*columns).where(waiting, c.available_at <= now).order_by(*fifo).limit(limit)
    )
    reserve: sa.Update | None = None
    if dialect.name == "postgresql":
        picked = pick.with_for_update(skip_locked=True).cte("picked")
        reserve = (
            sa.update(table).where(c.id == picked.c.id).values(delivered_at=now).returning(*columns)
        )
    elif dialect.name == "sqlite" and dialect.update_returning:
        # BEGIN IMMEDIATE already serializes writers: no row locks needed.
        reserve = (
            sa.update(table)
            .where(c.id.in_(pick.scalar_subquery()))
            .values(delivered_at=now)
            .returning(*columns)
        )
    elif dialect.name != "sqlite":
        select_for_reserve = select_for_reserve.with_for_update(skip_locked=skip_locked)

    insert = sa.insert(table)
    insert_returning = None
    in_order = bool(dialect.insert_executemany_returning_sort_by_parameter_order)
    if dialect.insert_executemany_returning:
        insert_returning = insert.returning(c.id, sort_by_parameter_order=in_order)
    row_id = sa.bindparam("row_id", type_=c.id.type)
    content = _content_columns(table, dialect)
    listing = sa.select(*content).where(waiting).order_by(*fifo)
    return Statements(
        insert=insert,
        insert_returning=insert_returning,
        returning_in_order=in_order,
        reserve=reserve,
        select_for_reserve=select_for_reserve,
        mark_delivered=sa.update(table).where(by_ids).values(delivered_at=now),
        delete=sa.delete(table).where(by_ids),
        keepalive=sa.update(table).where(c.id == row_id).values(delivered_at=now),
        release=sa.update(table)
        .where(
            by_ids,
            c.delivered_at >= sa.bindparam("low", type_=c.delivered_at.type),
            c.delivered_at <= sa.bindparam("high", type_=c.delivered_at.type),
        )
        .values(delivered_at=None),
        count=sa.select(sa.func.count()).select_from(table).where(waiting),
        list_all=listing,
        list_limited=listing.limit(sa.bindparam("limit")),
        find=sa.select(*content).where(c.id == row_id, c.queue_name == queue),
        next_due=sa.select(
            sa.func.min(sa.case((c.delivered_at.is_(None), c.available_at))),
            sa.func.min(c.delivered_at),
        ).where(c.queue_name == queue),
    )


def _literal_limit(fetch_size: int) -> sa.ColumnElement[Any]:
    # Written into the SQL, not bound: a prepared statement's generic plan, not knowing the
    # limit, would join the picked rows by scanning the whole table (PostgreSQL).
    return sa.literal_column(str(int(fetch_size)))


def _content_columns(table: sa.Table, dialect: sa.Dialect) -> tuple[sa.ColumnElement[Any], ...]:
    """``id``, ``body`` and ``headers`` as received rows are decoded from.

    SQLite's TEXT holds whatever bytes were written (a foreign producer, a corrupted file): read
    as text, one row of invalid UTF-8 would make the driver fail the whole fetch, before any row
    can be told apart. Read as BLOBs, bad bytes reach the row decoder, which parks that row.
    """
    c = table.c
    if dialect.name == "sqlite":
        return (c.id, sa.cast(c.body, sa.LargeBinary()), sa.cast(c.headers, sa.LargeBinary()))
    return (c.id, c.body, c.headers)


def _reserved_columns(table: sa.Table, dialect: sa.Dialect) -> tuple[sa.ColumnElement[Any], ...]:
    # available_at only serves to sort the returned rows: skip parsing it into a datetime.
    available_at = sa.type_coerce(table.c.available_at, sa.String())
    return (*_content_columns(table, dialect), available_at)


def _by_ids(table: sa.Table, dialect: sa.Dialect) -> sa.ColumnElement[bool]:
    if dialect.name == "postgresql":
        # One array parameter: the same SQL text (and prepared statement) for any count.
        return table.c.id == sa.any_(_ids_array())
    return table.c.id.in_(sa.bindparam("ids", expanding=True))


def _ids_array() -> sa.BindParameter[Any]:
    # PostgreSQL's dialect is imported only where it serves: not in SQLite or MySQL workers.
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415  (lazy, see above)

    return sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger()))


# -- the DB-API fast path ----------------------------------------------------------------------
@attrs.frozen
class Sql:
    """One statement compiled to the driver's SQL text, with how to pass its parameters."""

    text: str
    positions: tuple[str, ...] | None
    """Parameter names in placeholder order (positional paramstyles), or None (named)."""
    defaults: Mapping[str, Any]

    @classmethod
    def compile(
        cls, statement: sa.ClauseElement, dialect: sa.Dialect, column_keys: list[str] | None = None
    ) -> Sql:
        """Compile ``statement`` for ``dialect`` (an INSERT for the ``column_keys``)."""
        compiled: Any = statement.compile(dialect=dialect, column_keys=column_keys)
        positions = tuple(compiled.positiontup) if dialect.positional else None
        defaults = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.value is not None
        }
        return cls(str(compiled), positions, defaults)

    def bind(self, params: Mapping[str, Any]) -> Any:
        """The parameters as the driver takes them for this statement.

        Datetimes must already be in the driver's form (see :func:`sqlite_datetime`).
        """
        if self.positions is None:
            return params
        defaults = self.defaults
        return tuple(params[name] if name in params else defaults[name] for name in self.positions)


def sqlite_datetime(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (text that sorts chronologically)."""
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"


def sqlite_ids(ids: list[int]) -> str:
    """Row ids as the one parameter of the SQLite ``IN (SELECT value FROM json_each(?))``."""
    return json.dumps(ids)


@attrs.frozen
class FastSql:
    """The hot statements compiled for the DB-API cursor, where the dialect has them."""

    insert: Sql | None = None
    """One row; PostgreSQL returns the id, the others give it as ``lastrowid``."""
    insert_many: Sql | None = None
    """PostgreSQL: all rows from arrays in one statement, returning the ids in row order.
    SQLite: the one-row insert, for ``executemany``."""
    reserve: Sql | None = None
    reserve_acking: Sql | None = None
    """PostgreSQL: delete ``ids`` (acknowledged) and reserve, in one statement."""
    delete: Sql | None = None


def build_fast_sql(
    table: sa.Table, statements: Statements, dialect: sa.Dialect, *, fetch_size: int
) -> FastSql:
    """The fast-path statements for ``dialect`` (the others run through SQLAlchemy)."""
    c = table.c
    columns = list(_ROW_COLUMNS)
    if dialect.name == "sqlite":
        ids = sa.func.json_each(sa.bindparam("ids"))
        ids_json: sa.Select[Any] = sa.select(sa.column("value")).select_from(ids)
        return FastSql(
            insert=Sql.compile(statements.insert, dialect, columns),
            insert_many=Sql.compile(statements.insert, dialect, columns),
            reserve=(
                Sql.compile(statements.reserve, dialect) if statements.reserve is not None else None
            ),
            delete=Sql.compile(
                sa.delete(table).where(c.id.in_(ids_json.scalar_subquery())), dialect
            ),
        )
    if dialect.name != "postgresql":
        return FastSql(insert=Sql.compile(statements.insert, dialect, columns))
    assert statements.reserve is not None
    now = sa.bindparam("now", type_=c.delivered_at.type)
    ids_array = _ids_array()
    acked = sa.delete(table).where(c.id == sa.any_(ids_array)).cte("acked")
    # Rows deleted by this statement must not also be picked (one statement cannot both lock
    # and delete a row); only an expired reservation of our own could be.
    pick = (
        sa.select(c.id)
        .where(
            c.queue_name == sa.bindparam("queue", type_=c.queue_name.type),
            sa.or_(
                c.delivered_at.is_(None),
                c.delivered_at < sa.bindparam("redeliver_limit", type_=c.delivered_at.type),
            ),
            c.available_at <= now,
            c.id != sa.all_(ids_array),
        )
        .order_by(c.available_at, c.id)
        .limit(_literal_limit(fetch_size))
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    reserve_acking = (
        sa.update(table)
        .where(c.id == pick.c.id)
        .values(delivered_at=now)
        .returning(*_reserved_columns(table, dialect))
        .add_cte(acked)
    )
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415  (lazy, see above)

    text_array = postgresql.ARRAY(sa.Text())
    time_array = postgresql.ARRAY(sa.DateTime())
    arrays = ("bodies", "headers_list", "created_at_list", "available_at_list")
    rows = sa.func.unnest(
        *(
            sa.bindparam(name, type_=text_array if i < 2 else time_array)
            for i, name in enumerate(arrays)
        )
    ).table_valued("body", "headers", "created_at", "available_at", with_ordinality="position")
    rows = rows.render_derived()  # AS anon(body, headers, ...): unnest's columns have no names
    # Rows are inserted (and take their ids from the sequence) in array order.
    ordered_rows = sa.select(
        rows.c.body,
        rows.c.headers,
        sa.bindparam("queue_name", type_=c.queue_name.type),
        rows.c.created_at,
        rows.c.available_at,
    ).order_by(rows.c.position)
    insert_many = Sql.compile(
        sa.insert(table).from_select(columns, ordered_rows).returning(c.id), dialect
    )
    # psycopg writes text arrays 15 times faster in binary (%b) than as escaped text (%s).
    text = insert_many.text
    for name in arrays:
        text = text.replace(f"%({name})s", f"%({name})b")
    return FastSql(
        insert=Sql.compile(statements.insert.returning(c.id), dialect, columns),
        insert_many=attrs.evolve(insert_many, text=text),
        reserve=Sql.compile(statements.reserve, dialect),
        reserve_acking=Sql.compile(reserve_acking, dialect),
        delete=Sql.compile(statements.delete, dialect),
    )
