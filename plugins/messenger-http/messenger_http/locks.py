"""One consumer per receiver: an in-process reservation, plus a lock shared with other
processes and hosts where the transport's store offers one.

- ``redis://``, ``rediss://``: the key ``messenger:http-consume:<stream>:<group>``, set with
  ``SET NX PX`` (30 s, renewed every 10 s while held, deleted only by its owner); shared by
  every process and host using that Redis;
- ``postgresql://``: a session advisory lock (``pg_try_advisory_lock``) on a hash of the table
  and queue name; shared by every process and host using that database;
- ``mysql://``, ``mariadb://``: ``GET_LOCK('messenger-http:<hash>', 0)``; shared by every
  process and host using that server;
- ``sqlite:///file``: ``fcntl.flock`` on ``<file>-messenger-http-<table>-<queue>.lock``;
  shared by the processes of that host (a SQLite file is not shared across hosts);
- anything else (``memory://``, ``amqp://``, a transport added as an object): none, this
  process only.

A lock held by a process that dies goes away with it: its session or file is closed, and a
Redis key expires after at most its time to live.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from messenger_core.app import Messenger
from messenger_core.config import TransportConfig
from messenger_core.dsn import Dsn

__all__ = [
    "LOCK_BACKENDS",
    "FileLock",
    "LockFactory",
    "Reservations",
    "TransportLock",
    "lock_name",
    "transport_lock",
]


@runtime_checkable
class TransportLock(Protocol):
    """A lock on one receiver that other processes (and hosts, for a shared store) see."""

    description: str
    """Where the lock lives, for logs and errors (no secret in it)."""

    def acquire(self) -> bool:
        """Take the lock without waiting; ``False`` if someone else holds it."""

    def release(self) -> None:
        """Give the lock back (only called after :meth:`acquire` returned ``True``)."""

    def close(self) -> None:
        """Close the connections the lock keeps."""


LockFactory = Callable[[Dsn, TransportConfig], "TransportLock | None"]
"""Builds the lock of a transport from its DSN and configuration (``None``: it has none)."""


class Reservations:
    """Which receivers this process is consuming now (a thread-safe set of names)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[str] = set()

    def reserve(self, name: str) -> bool:
        """Mark ``name`` busy; ``False`` if it already was."""
        with self._lock:
            if name in self._busy:
                return False
            self._busy.add(name)
            return True

    def release(self, name: str) -> None:
        """Mark ``name`` free again."""
        with self._lock:
            self._busy.discard(name)


def lock_name(*parts: str) -> str:
    """A short, stable name for a lock on ``parts`` (a table and a queue, a stream...)."""
    return hashlib.blake2b("\0".join(parts).encode("utf-8"), digest_size=16).hexdigest()


class FileLock:
    """An exclusive ``flock`` on a file: shared by the processes of one host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting."""
        import fcntl  # noqa: PLC0415 - POSIX only; imported where it is used

        handle = self.path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        except BaseException:
            handle.close()
            raise
        self._file = handle
        return True

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()

    def close(self) -> None:
        """Nothing stays open between acquisitions."""
        self.release()


def _sqlite_file_lock(dsn: Dsn, config: TransportConfig) -> TransportLock | None:
    from messenger_transport_sql.engine import sqlalchemy_url  # noqa: PLC0415
    from messenger_transport_sql.options import parse_options  # noqa: PLC0415

    options = parse_options(dsn.with_options(config.options), "sqlite", dsn=dsn)
    database = sqlalchemy_url(dsn, options).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # a database of this process alone: the reservation is enough
    path = Path(database)
    suffix = _safe(f"{options.table_name}-{options.queue_name}")
    return FileLock(path.with_name(f"{path.name}-messenger-http-{suffix}.lock"))


def _safe(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", text):
        return text
    return lock_name(text)


def _redis(dsn: Dsn, config: TransportConfig) -> TransportLock | None:
    from messenger_http.locks_redis import redis_lock  # noqa: PLC0415

    return redis_lock(dsn, config)


def _postgresql(dsn: Dsn, config: TransportConfig) -> TransportLock | None:
    from messenger_http.locks_sql import postgresql_lock  # noqa: PLC0415

    return postgresql_lock(dsn, config)


def _mysql(dsn: Dsn, config: TransportConfig) -> TransportLock | None:
    from messenger_http.locks_sql import mysql_lock  # noqa: PLC0415

    return mysql_lock(dsn, config)


LOCK_BACKENDS: dict[str, LockFactory] = {
    "redis": _redis,
    "rediss": _redis,
    "postgresql": _postgresql,
    "postgres": _postgresql,
    "mysql": _mysql,
    "mariadb": _mysql,
    "sqlite": _sqlite_file_lock,
}
"""The lock of each DSN scheme; add an entry for a transport plugin of your own."""


def transport_lock(messenger: Messenger, name: str) -> TransportLock | None:
    """The cross-process lock of transport ``name``, or ``None`` when its store offers none
    (or it was added as an object, with no configuration to read)."""
    config = messenger.config.transports.get(name)
    if config is None:
        return None
    dsn = Dsn.parse(config.dsn)
    factory = LOCK_BACKENDS.get(dsn.scheme)
    return factory(dsn, config) if factory is not None else None
