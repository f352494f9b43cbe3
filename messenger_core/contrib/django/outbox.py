"""The SQL transport's outbox on a Django connection: messages committed with the data.

Inside ``with outbox():`` (itself inside ``transaction.atomic()``), a message routed to a SQL
transport whose table is in that Django database is inserted through Django's own connection,
in its transaction: it is committed with the data or rolled back with it, and a worker sees it
only after the commit. It needs ``messenger-transport-sql`` and works on SQLite and PostgreSQL.
Run ``manage.py messenger_setup_transports`` first: creating the table inside the
application's transaction is avoided that way.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Iterator
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from messenger_core.errors import ConfigurationError

__all__ = ["in_outbox", "outbox"]

_active: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "messenger_django_outbox", default=False
)


def in_outbox() -> bool:
    """Whether an :func:`outbox` block is active (messages then are not deferred to the
    commit: they join the transaction)."""
    return _active.get()


@contextlib.contextmanager
def outbox(using: str | None = None) -> Iterator[None]:
    """Send SQL transport messages through Django connection ``using`` (default: default)."""
    try:
        # A plugin of its own (and mypy sees the core alone): imported by name.
        sql_outbox = importlib.import_module("messenger_transport_sql").outbox
    except ImportError as error:
        raise ConfigurationError(
            "the outbox sends through the SQL transport: pip install messenger-transport-sql"
        ) from error
    alias = using or DEFAULT_DB_ALIAS
    connection = connections[alias]
    if not connection.in_atomic_block:
        raise ConfigurationError(
            "outbox() belongs inside transaction.atomic() (or a view with ATOMIC_REQUESTS): "
            "its messages are committed with that transaction"
        )
    connection.ensure_connection()
    engine = _engine(connection)
    token = _active.set(True)
    try:
        with engine.connect() as borrowed, sql_outbox(borrowed):
            yield
    finally:
        _active.reset(token)


def _engine(connection: Any) -> Any:
    """A SQLAlchemy engine whose only connection is Django's, in Django's transaction (kept on
    the Django connection while its database connection lasts: SQLAlchemy inspects a new
    connection once, with a few queries)."""
    raw = connection.connection
    kept = getattr(connection, _KEPT, None)
    if kept is not None and kept[0] is raw:
        return kept[1]
    engine = _new_engine(connection, raw)
    setattr(connection, _KEPT, (raw, engine))
    return engine


_KEPT = "_messenger_outbox_engine"


def _new_engine(connection: Any, raw: object) -> Any:
    import sqlalchemy as sa  # noqa: PLC0415 - installed with messenger-transport-sql

    engine = sa.create_engine(
        _url(connection, sa), creator=lambda: raw, poolclass=sa.pool.StaticPool
    )
    # Django owns the transaction: SQLAlchemy must neither commit it nor roll it back (it
    # rolls back when its connection is closed, and after inspecting a new connection).
    for method in ("do_commit", "do_rollback", "do_close"):
        setattr(engine.dialect, method, _leave_alone)
    engine.pool._reset_on_return = None
    return engine


def _leave_alone(_dbapi_connection: object) -> None:
    pass


def _url(connection: Any, sa: Any) -> Any:
    settings = connection.settings_dict
    name = str(settings["NAME"])
    if connection.vendor == "sqlite":
        if name == ":memory:" or name.startswith("file:"):
            raise ConfigurationError(
                f"database {connection.alias!r} is in memory: no transport can share it"
            )
        return sa.URL.create("sqlite", database=name)
    if connection.vendor == "postgresql":
        driver = "psycopg" if connection.Database.__name__ == "psycopg" else "psycopg2"
        return sa.URL.create(
            f"postgresql+{driver}",
            username=settings.get("USER") or None,
            host=settings.get("HOST") or None,
            port=int(settings["PORT"]) if settings.get("PORT") else None,
            database=name,
        )
    raise ConfigurationError(
        f"the outbox works on SQLite and PostgreSQL, not on {connection.vendor} "
        f"(database {connection.alias!r})"
    )
