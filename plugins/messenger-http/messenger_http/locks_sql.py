"""The receiver lock on PostgreSQL (session advisory lock) and MySQL/MariaDB (``GET_LOCK``).

Both are held by one database session: the lock keeps a connection of its own checked out
while held, and a process that dies loses its session and so its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from messenger_transport_sql.engine import backend_of, create_engine
from messenger_transport_sql.options import SqlTransportOptions, parse_options

from messenger_core.config import TransportConfig
from messenger_core.dsn import Dsn
from messenger_http.locks import lock_name

__all__ = ["SessionLock", "mysql_lock", "postgresql_lock"]

logger = logging.getLogger("messenger.http")


def _options(dsn: Dsn, config: TransportConfig) -> SqlTransportOptions:
    return parse_options(dsn.with_options(config.options), backend_of(dsn), dsn=dsn)


def postgresql_lock(dsn: Dsn, config: TransportConfig) -> SessionLock:
    """``pg_try_advisory_lock`` on a 64-bit hash of the table and queue name."""
    options = _options(dsn, config)
    digest = lock_name("messenger-http", options.table_name, options.queue_name)
    key = int.from_bytes(bytes.fromhex(digest)[:8], "big", signed=True)
    return SessionLock(
        lambda: create_engine(dsn, options),
        acquire=sa.text("SELECT pg_try_advisory_lock(:key)").bindparams(key=key),
        release=sa.text("SELECT pg_advisory_unlock(:key)").bindparams(key=key),
        description=f"PostgreSQL advisory lock {key} on {dsn}",
    )


def mysql_lock(dsn: Dsn, config: TransportConfig) -> SessionLock:
    """``GET_LOCK`` on a name made of a hash of the table and queue name (64 characters at
    most, as MySQL requires)."""
    options = _options(dsn, config)
    name = "messenger-http:" + lock_name(options.table_name, options.queue_name)
    return SessionLock(
        lambda: create_engine(dsn, options),
        acquire=sa.text("SELECT GET_LOCK(:name, 0)").bindparams(name=name),
        release=sa.text("SELECT RELEASE_LOCK(:name)").bindparams(name=name),
        description=f"MySQL lock {name!r} on {dsn}",
    )


class SessionLock:
    """A lock held by a database session: ``acquire`` returns 1 when taken, without waiting."""

    def __init__(
        self,
        make_engine: Callable[[], sa.Engine],
        *,
        acquire: sa.TextClause,
        release: sa.TextClause,
        description: str,
    ) -> None:
        self._make_engine = make_engine
        self._engine: sa.Engine | None = None
        self._acquire = acquire
        self._release = release
        self._connection: sa.Connection | None = None
        self.description = description

    def acquire(self) -> bool:
        """Run the acquiring statement on a connection kept while the lock is held."""
        if self._engine is None:
            self._engine = self._make_engine()
        connection = self._engine.connect()
        try:
            taken = connection.execute(self._acquire).scalar()
            connection.commit()  # no transaction left open while held (MySQL)
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        if taken != 1:
            connection.close()
            return False
        self._connection = connection
        return True

    def release(self) -> None:
        """Run the releasing statement; a session that fails to is discarded (which releases
        its locks too)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute(self._release)
            connection.commit()
        except sa.exc.SQLAlchemyError as error:
            logger.warning("could not release %s, closing its session: %s", self.description, error)
            connection.invalidate()
        finally:
            connection.close()

    def close(self) -> None:
        """Release the lock if held and dispose of the engine."""
        self.release()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()
