"""The "stop workers" signal kept in a SQL database, shared by workers on every host.

``messenger stop-workers`` writes the time of the request into a small table of its own
(``messenger_stop_signal`` by default: a ``name`` primary key and a ``requested_at`` column
holding a Unix time in seconds); every worker reads it, at most once per
:attr:`SqlStopSignal.CHECK_INTERVAL`, and stops if the request came after the worker started.
Configured with the ``stop_signal`` key::

    [messenger]
    stop_signal = "postgresql://user:pass@db.internal/app"

The request time comes from the requesting host's clock and the worker's start time from the
worker's: keep the hosts' clocks synchronised (NTP).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
import sqlalchemy as sa

from messenger_core.dsn import Dsn, mask_dsn
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.stop_signal import PollingStopSignal
from messenger_transport_sql.engine import (
    SQLITE_BEGIN,
    backend_of,
    create_engine,
    sqlalchemy_url,
)
from messenger_transport_sql.options import (
    COMMON_OPTIONS,
    DRIVER_OPTIONS,
    POSTGRESQL_OPTIONS,
    parse_options,
)
from messenger_transport_sql.schema import table_options

__all__ = [
    "DEFAULT_SIGNAL_NAME",
    "DEFAULT_TABLE_NAME",
    "STOP_SIGNAL_OPTIONS",
    "SqlStopSignal",
    "SqlStopSignalOptions",
    "build_stop_signal_table",
    "parse_stop_signal_options",
]

logger = logging.getLogger("messenger.transport.sql")

DEFAULT_TABLE_NAME = "messenger_stop_signal"
"""The table holding stop requests unless the ``table_name`` option names another."""
DEFAULT_SIGNAL_NAME = "default"
"""The row of the table holding the request unless the ``name`` option names another."""
STOP_SIGNAL_OPTIONS: tuple[str, ...] = ("table_name", "name")
"""Options of the stop signal itself (besides the drivers' connection options)."""
_NAME_LENGTH = 190  # MySQL 5.6 indexes at most 191 utf8mb4 characters
_DEFAULT_CONNECT_TIMEOUT = "5"
"""Seconds to wait for a connection unless ``connect_timeout`` says otherwise: a worker asks
after every message, so an unreachable server must not hold it for minutes."""


@attrs.frozen(kw_only=True)
class SqlStopSignalOptions:
    """Validated options of a :class:`SqlStopSignal`."""

    table_name: str = DEFAULT_TABLE_NAME
    """The table holding the requests (created on first use if it is missing)."""
    name: str = DEFAULT_SIGNAL_NAME
    """The signal's row in the table: workers and ``stop-workers`` that use different names
    do not see each other's requests (to stop one group of workers, not all)."""
    driver_options: Mapping[str, str] = attrs.field(factory=dict)
    """Connection options passed to the database driver, as for the transport."""


def parse_stop_signal_options(options: Mapping[str, Any], backend: str) -> SqlStopSignalOptions:
    """Validate ``options`` for a stop signal on ``backend`` (``sqlite``, ``postgresql``,
    ``mysql``): :data:`STOP_SIGNAL_OPTIONS` and the driver's connection options.

    Raises :class:`ConfigurationError` for an unknown option, an option that belongs to the
    transport (``queue_name``...), or a bad value.
    """
    driver_names = DRIVER_OPTIONS[backend]
    known = (*STOP_SIGNAL_OPTIONS, *driver_names)
    for option in options:
        if option not in known:
            transport_option = option in COMMON_OPTIONS or option in POSTGRESQL_OPTIONS
            kind = (
                "is an option of the SQL transport, not of" if transport_option else "is unknown to"
            )
            raise ConfigurationError(
                f"option {option!r} {kind} the SQL stop signal; known options: {', '.join(known)}"
            )
    connection = {name: value for name, value in options.items() if name in driver_names}
    if backend != "sqlite":
        connection.setdefault("connect_timeout", _DEFAULT_CONNECT_TIMEOUT)
    if "table_name" in options:
        connection["table_name"] = options["table_name"]  # validated as the transport's
    parsed = parse_options(connection, backend)
    name = options.get("name", DEFAULT_SIGNAL_NAME)
    if not isinstance(name, str) or not name or len(name) > _NAME_LENGTH:
        raise ConfigurationError(
            f"option 'name' must be a non-empty string of at most {_NAME_LENGTH} characters, "
            f"got {name!r}"
        )
    return SqlStopSignalOptions(
        table_name=parsed.table_name if "table_name" in options else DEFAULT_TABLE_NAME,
        name=name,
        driver_options=parsed.driver_options,
    )


def build_stop_signal_table(
    table_name: str, metadata: sa.MetaData | None = None, *, backend: str | None = None
) -> sa.Table:
    """The stop-signal table: ``name`` (primary key) and ``requested_at`` (Unix seconds).

    ``backend`` keeps only that database's table options (see :func:`table_options`).
    """
    return sa.Table(
        table_name,
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("name", sa.String(_NAME_LENGTH), primary_key=True),
        # A double keeps microseconds: a stop requested just after a worker started counts.
        sa.Column("requested_at", sa.Double(), nullable=False),
        **table_options(backend),
    )


class SqlStopSignal(PollingStopSignal):
    """A :class:`~messenger_core.stop_signal.StopSignal` kept in a SQL database.

    Build it with :meth:`from_dsn` (or through the ``stop_signal`` configuration key). Two
    objects built from the same DSN, in any processes on any hosts, share the signal. Reads
    are cached and failures tolerated as :class:`~messenger_core.stop_signal.PollingStopSignal`
    describes.
    """

    # ValueError, TypeError: a value written by hand that is not a number.
    READ_ERRORS = (sa.exc.SQLAlchemyError, ValueError, TypeError)

    def __init__(
        self,
        engine: sa.Engine,
        options: SqlStopSignalOptions | None = None,
        *,
        description: str | None = None,
    ) -> None:
        """A signal on ``engine``, which :func:`~messenger_transport_sql.engine.create_engine`
        built (the signal disposes of it on :meth:`close`)."""
        super().__init__()
        self._engine = engine
        self._options = options if options is not None else SqlStopSignalOptions()
        self._description = (
            description
            if description is not None
            else engine.url.render_as_string(hide_password=True)
        )
        self._backend = "mysql" if engine.dialect.name == "mariadb" else engine.dialect.name
        self._table = build_stop_signal_table(self._options.table_name, backend=self._backend)
        self._table_checked = False

    @classmethod
    def from_dsn(cls, dsn: Dsn, options: Mapping[str, Any] | None = None) -> SqlStopSignal:
        """A signal in the database ``dsn`` names; ``options`` override the DSN's query.

        Raises :class:`ConfigurationError` for an unknown option, a bad value, an unsupported
        DSN, a missing driver, or an in-memory SQLite database (which no other process sees).
        """
        backend = backend_of(dsn)
        try:
            parsed = parse_stop_signal_options(dsn.with_options(options or {}), backend)
        except ConfigurationError as error:
            raise ConfigurationError(f"{error} ({dsn})") from None
        transport_options = parse_options(dict(parsed.driver_options), backend)
        database = sqlalchemy_url(dsn, transport_options).database or ":memory:"
        if backend == "sqlite" and (database == ":memory:" or database.startswith("file::memory:")):
            raise ConfigurationError(
                f"DSN {dsn}: a stop signal in an in-memory SQLite database reaches no other "
                "process; name a file (sqlite:///var/messenger.db)"
            )
        return cls(create_engine(dsn, transport_options), parsed, description=str(dsn))

    def __repr__(self) -> str:
        return (
            f"SqlStopSignal({self._description!r}, table={self._options.table_name!r}, "
            f"name={self._options.name!r})"
        )

    @property
    def options(self) -> SqlStopSignalOptions:
        """The signal's options."""
        return self._options

    def write_request_time(self, when: float) -> None:
        """Record ``when`` as the time of the request (creating the table if it is missing).

        Raises :class:`TransportError` (the password masked) if the database cannot be
        reached or written.
        """
        values = {"name": self._options.name, "requested_at": when}
        statement: sa.Executable
        # Each dialect's module is imported where it serves (a worker on SQLite never needs
        # PostgreSQL's or MySQL's).
        if self._backend == "postgresql":
            from sqlalchemy.dialects import postgresql  # noqa: PLC0415  (lazy, see above)

            upsert = postgresql.insert(self._table).values(values)
            statement = upsert.on_conflict_do_update(
                index_elements=["name"], set_={"requested_at": upsert.excluded.requested_at}
            )
        elif self._backend == "sqlite":
            from sqlalchemy.dialects import sqlite  # noqa: PLC0415  (lazy, see above)

            sqlite_upsert = sqlite.insert(self._table).values(values)
            statement = sqlite_upsert.on_conflict_do_update(
                index_elements=["name"], set_={"requested_at": sqlite_upsert.excluded.requested_at}
            )
        else:
            from sqlalchemy.dialects import mysql  # noqa: PLC0415  (lazy, see above)

            mysql_upsert = mysql.insert(self._table).values(values)
            statement = mysql_upsert.on_duplicate_key_update(
                requested_at=mysql_upsert.inserted.requested_at
            )
        try:
            self._ensure_table()
            with self._engine.begin() as connection:
                connection.execute(statement)
        except sa.exc.SQLAlchemyError as error:
            raise TransportError(f"{self!r}: cannot request the stop: {_reason(error)}") from error

    def close(self) -> None:
        """Close the signal's database connections."""
        self._engine.dispose()

    def read_request_time(self) -> float:
        """The time in the signal's row (0 without one)."""
        self._ensure_table()
        query = sa.select(self._table.c.requested_at).where(
            self._table.c.name == self._options.name
        )
        with self._engine.connect() as connection:
            connection.info[SQLITE_BEGIN] = "BEGIN"  # a read: no write lock on SQLite
            try:
                value = connection.execute(query).scalar()
            finally:
                connection.info.pop(SQLITE_BEGIN, None)
        return float(value) if value is not None else 0.0

    def _ensure_table(self) -> None:
        """Create the table if it is missing, once per object (safe from concurrent
        processes: one that lost the race finds the table there)."""
        if self._table_checked:
            return
        try:
            with self._engine.begin() as connection:
                self._table.create(connection, checkfirst=True)
        except sa.exc.SQLAlchemyError:
            with self._engine.connect() as connection:
                if not sa.inspect(connection).has_table(self._options.table_name):
                    raise
        self._table_checked = True


def _reason(error: Exception) -> str:
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        text = f"{type(error.orig).__name__}: {str(error.orig).strip()}"
    else:
        text = f"{type(error).__name__}: {error}"
    return mask_dsn(text)
