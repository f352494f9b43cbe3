"""From a transport DSN to a SQLAlchemy engine set up the way the transport needs it.

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
  (pysqlite): WAL journal, a generous busy timeout and ``BEGIN IMMEDIATE`` transactions, so
  that several processes can share one file without "database is locked" errors.
- ``postgresql://`` (alias ``postgres://``; psycopg 3): autocommit, so that each single-statement
  operation is one round trip.
- ``mysql://`` (alias ``mariadb://``; PyMySQL): utf8mb4, READ COMMITTED.

:func:`transaction_engine` gives the engine of handlers' transactions (``sql_transaction``).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_transport_sql.options import SqlTransportOptions

__all__ = [
    "BACKENDS",
    "CONNECT_TIMEOUT",
    "ENGINE_MARK",
    "SQLITE_BEGIN",
    "SQLITE_BUSY_TIMEOUT",
    "backend_of",
    "create_engine",
    "database_identity",
    "sqlalchemy_url",
    "transaction_engine",
]

BACKENDS: Mapping[str, str] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
"""DSN scheme -> database backend."""

_DRIVERS: Mapping[str, tuple[str, str, str]] = {
    # backend: (DSN variant = SQLAlchemy driver, importable module, pip extra)
    "sqlite": ("pysqlite", "sqlite3", ""),
    "postgresql": ("psycopg", "psycopg", "postgresql"),
    "mysql": ("pymysql", "pymysql", "mysql"),
}
_DEFAULT_PORTS: Mapping[str, int] = {"postgresql": 5432, "mysql": 3306}

ENGINE_MARK = "messenger_transport_sql"
"""Execution option set on the engines :func:`create_engine` builds (the transport needs them)."""

SQLITE_BEGIN = "messenger_sqlite_begin"
"""Key of a connection's ``info`` holding the statement that begins its SQLite transactions."""

CONNECT_TIMEOUT = 5
"""Seconds a PostgreSQL or MySQL connection attempt may take, unless the DSN's
``connect_timeout`` says otherwise."""

TRANSACTION_POOL_SIZE = 4
"""Idle connections an engine of :func:`transaction_engine` keeps (one per handler thread;
more are opened when needed and closed after use)."""

SQLITE_BUSY_TIMEOUT = 60.0
"""Seconds a SQLite connection waits for another connection's write lock before giving up."""


def backend_of(dsn: Dsn) -> str:
    """The backend (``sqlite``, ``postgresql``, ``mysql``) serving ``dsn``'s scheme."""
    backend = BACKENDS.get(dsn.scheme)
    if backend is None:
        raise ConfigurationError(
            f"the SQL transport does not serve {dsn.scheme!r} DSNs; "
            f"use one of {', '.join(sorted(BACKENDS))}"
        )
    driver = _DRIVERS[backend][0]
    if dsn.variant not in (None, driver):
        raise ConfigurationError(
            f"DSN {dsn}: the SQL transport talks to {backend} through {driver} only, "
            f"not {dsn.variant!r}; write {dsn.scheme}://... or {dsn.scheme}+{driver}://..."
        )
    return backend


def _require_driver(backend: str) -> None:
    _, module, extra = _DRIVERS[backend]
    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"the {backend} transport needs the {module} driver, which is not installed: "
            f"pip install 'messenger-transport-sql[{extra}]'"
        )


def _sqlite_database(dsn: Dsn) -> str:
    if dsn.hosts or dsn.user or dsn.password:
        raise ConfigurationError(
            f"DSN {dsn}: a SQLite DSN names a file, not a server: write "
            "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:"
        )
    # Like SQLAlchemy: what follows the third slash is the path, so a fourth makes it absolute.
    path = dsn.path[1:] if dsn.path.startswith("/") else dsn.path
    return path or ":memory:"


def sqlalchemy_url(dsn: Dsn, options: SqlTransportOptions) -> sa.URL:
    """The SQLAlchemy URL for ``dsn`` (its ``repr`` and ``str`` mask the password)."""
    backend = backend_of(dsn)
    driver = _DRIVERS[backend][0]
    if backend == "sqlite":
        return sa.URL.create(f"sqlite+{driver}", database=_sqlite_database(dsn))
    if not dsn.hosts:
        raise ConfigurationError(f"DSN {dsn}: the {backend} transport needs a host")
    query: dict[str, str | list[str]] = dict(options.driver_options)
    host: str | None = dsn.hosts[0].host
    port = dsn.hosts[0].port
    if len(dsn.hosts) > 1:
        if backend != "postgresql":
            raise ConfigurationError(f"DSN {dsn}: the {backend} transport connects to one host")
        default_port = _DEFAULT_PORTS[backend]
        query["host"] = [f"{each.host}:{each.port or default_port}" for each in dsn.hosts]
        host = port = None
    if backend == "mysql":
        query.setdefault("charset", "utf8mb4")
    database = dsn.path.lstrip("/") or None
    if database is None:
        raise ConfigurationError(f"DSN {dsn}: name the database, as in {dsn.scheme}://host/dbname")
    return sa.URL.create(
        f"{backend}+{driver}",
        username=dsn.user,
        password=dsn.password,
        host=host,
        port=port,
        database=database,
        query=query,
    )


def create_engine(dsn: Dsn, options: SqlTransportOptions) -> sa.Engine:
    """A SQLAlchemy engine for ``dsn``, configured for the transport (see the module doc).

    Several :class:`~messenger_transport_sql.SqlTransport` objects (queues) may share it.
    """
    backend = backend_of(dsn)
    _require_driver(backend)
    url = sqlalchemy_url(dsn, options)
    if backend == "sqlite":
        return _sqlite_engine(url, create_directory=options.auto_setup)
    common: dict[str, Any] = {
        "hide_parameters": True,
        "pool_size": 2,
        "max_overflow": 4,
        # A pooled connection may have died with a restarted server: test it on checkout
        # (the transport keeps its connection checked out, so this costs nearly nothing).
        "pool_pre_ping": True,
        "execution_options": {ENGINE_MARK: True},
    }
    if "connect_timeout" not in options.driver_options:
        # An unreachable host must not hang a reconnection attempt for minutes.
        common["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    if backend == "postgresql":
        return sa.create_engine(url, isolation_level="AUTOCOMMIT", **common)
    return sa.create_engine(url, isolation_level="READ COMMITTED", pool_recycle=3600, **common)


def _sqlite_engine(url: sa.URL, *, create_directory: bool) -> sa.Engine:
    database = url.database or ":memory:"
    memory = database == ":memory:" or database.startswith("file::memory:")
    if memory:
        # One connection, shared by the transport's threads: a memory database is private to
        # its connection, hence to one transport object.
        engine = sa.create_engine(
            url,
            hide_parameters=True,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            execution_options={ENGINE_MARK: True},
        )
    else:
        if create_directory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT},
            execution_options={ENGINE_MARK: True},
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        if not memory:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Take the write lock up front: a deferred transaction that later wants to write can
        # fail with "database is locked" without waiting for the busy timeout. Reads (marked
        # in the connection's info) take no lock, so they never wait for a writer.
        connection.exec_driver_sql(connection.info.get(SQLITE_BEGIN, "BEGIN IMMEDIATE"))

    return engine


def transaction_engine(engine: sa.Engine) -> sa.Engine:
    """An engine for handlers' transactions on ``engine``'s database.

    SQLite: ``engine`` itself (its ``BEGIN IMMEDIATE`` is what a writing transaction needs).
    PostgreSQL and MySQL: an engine of its own in READ COMMITTED (a transport's PostgreSQL
    engine is in autocommit, and its small pool is the transport's), keeping a few idle
    connections for the worker's handler threads.
    """
    if engine.dialect.name == "sqlite":
        if isinstance(engine.pool, StaticPool):
            raise ConfigurationError(
                "transactional handling needs a SQLite file: an in-memory database "
                "has one connection, the transport's"
            )
        return engine
    url = engine.url
    options: dict[str, Any] = {
        "hide_parameters": True,
        "isolation_level": "READ COMMITTED",
        "pool_size": TRANSACTION_POOL_SIZE,
        "max_overflow": -1,
        "pool_pre_ping": False,  # a dead connection fails its message, which is retried
    }
    if "connect_timeout" not in url.query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    if engine.dialect.name == "mysql":
        options["pool_recycle"] = 3600
    return sa.create_engine(url, **options)


def database_identity(url: sa.URL) -> tuple[str, str, int | None, str]:
    """What tells two URLs apart as databases: backend, host, port and database name.

    Two SQLAlchemy connections with the same identity reach the same database (the driver
    and the user may differ).
    """
    backend = url.get_backend_name()
    backend = "mysql" if backend == "mariadb" else backend
    database = url.database or ""
    if backend == "sqlite":
        if database and database != ":memory:" and not database.startswith("file:"):
            database = os.path.realpath(database)
        return (backend, "", None, database)
    host = (url.host or "").lower()
    host = "127.0.0.1" if host in ("localhost", "::1") else host
    return (backend, host, url.port or _DEFAULT_PORTS.get(backend), database)
