"""What to do about a database error, and reconnecting with backoff through an outage.

:func:`classify` sorts a SQLAlchemy ``DBAPIError`` by what the transport should do next, from
SQLAlchemy's public API (``connection_invalidated``, ``OperationalError``, ``InterfaceError``)
and the drivers' error codes: reconnect after a pause (the server is down, restarting, refusing
connections, or a SQLite file is locked or cannot be opened), retry at once (a deadlock or a
lock timeout), create the missing table, or give up (anything else: a bug or a broken schema).

:class:`ReconnectPolicy` keeps the state of one transport's outage across its calls: a bounded
exponential backoff with jitter (0.1 s doubling to 5 s between attempts), one warning when an
outage starts and one INFO line when the database answers again, and an event that
:meth:`ReconnectPolicy.close` sets so that no wait outlasts the transport's ``close()``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import threading
import time

import sqlalchemy as sa

from messenger_core.dsn import mask_dsn

__all__ = [
    "OUTAGE_WAIT",
    "ErrorKind",
    "FailedAttempts",
    "NextStep",
    "ReconnectPolicy",
    "classify",
    "describe_error",
    "reason",
]

logger = logging.getLogger("messenger.transport.sql")

FIRST_DELAY = 0.1
"""Seconds before the first reconnection attempt of an outage."""
MAX_DELAY = 5.0
"""Seconds between two reconnection attempts, at most."""
OUTAGE_WAIT = 1.0
"""Seconds one ``get()``, ``ack()``, ``reject()`` or ``keepalive()`` keeps reconnecting during an
outage before it returns (nothing; the settlement deferred) so that the worker around it can
check whether it should stop. Other operations keep trying for ``reconnect_timeout``."""
JITTER = 0.2
"""Each delay is shortened by up to this fraction at random: consumers that lost the same
server do not all come back in the same instant."""

# PostgreSQL SQLSTATEs: class 08 (connection exception) and the server shutting down, crashed,
# starting up or out of connection slots.
_PG_OUTAGE = frozenset({"57P01", "57P02", "57P03", "53300"})
_PG_RETRY = frozenset({"40P01", "40001", "55P03"})  # deadlock, serialization, lock not available
_PG_UNDEFINED_TABLE = "42P01"
# MySQL/MariaDB client and server codes: cannot connect (2002, 2003), server gone or
# connection lost (2006, 2013, 2055), too many connections (1040), shutdown in progress (1053),
# connection killed (1927), disconnected for inactivity (4031).
_MYSQL_OUTAGE = frozenset({1040, 1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
_MYSQL_RETRY = frozenset({1213, 1205})  # deadlock, lock wait timeout
_MYSQL_NO_SUCH_TABLE = 1146
# SQLite: the file is locked beyond the busy timeout, or cannot be opened or read right now.
_SQLITE_OUTAGE = (
    "database is locked",
    "database is busy",
    "unable to open database file",
    "disk i/o error",
    "database disk image is malformed",
)


class ErrorKind(enum.Enum):
    """What to do after a database error."""

    OUTAGE = "outage"
    """The database cannot be reached or used right now: wait (backing off), then try again
    (on a new connection when the old one is broken)."""
    RETRY = "retry"
    """A deadlock or lock timeout: run the operation again at once (a few times)."""
    MISSING_TABLE = "missing table"
    """The messages table does not exist (yet)."""
    FATAL = "fatal"
    """Trying again would not help."""


class NextStep(enum.Enum):
    """What an operation does after a failed attempt (see :class:`FailedAttempts`)."""

    CREATE_TABLE = "create the table, then try again"
    WAIT_OUT = "count the outage and try again once the policy lets it"
    BACK_OFF = "sleep a little, then try again"
    GIVE_UP = "raise"


RETRIES = 5
"""How often an operation is retried at once after a deadlock or a lock timeout."""


class FailedAttempts:
    """The failed attempts of one database operation, and what each calls for: the table
    created once (with ``auto_setup``), outages waited out (the policy bounds them), deadlocks
    retried :data:`RETRIES` times with a growing pause, anything else given up. Shared by the
    blocking connection and the async sender, so that both retry alike."""

    def __init__(self, *, auto_setup: bool) -> None:
        self._may_create = auto_setup
        self._retries = 0

    def after(self, kind: ErrorKind) -> tuple[NextStep, float]:
        """The step after an error of ``kind``, and the seconds to sleep for ``BACK_OFF``."""
        if kind is ErrorKind.MISSING_TABLE and self._may_create:
            self._may_create = False
            return NextStep.CREATE_TABLE, 0.0
        if kind is ErrorKind.OUTAGE:
            return NextStep.WAIT_OUT, 0.0
        self._retries += 1
        if kind is ErrorKind.RETRY and self._retries <= RETRIES:
            return NextStep.BACK_OFF, 0.01 * 2**self._retries
        return NextStep.GIVE_UP, 0.0


def classify(error: sa.exc.DBAPIError, backend: str) -> ErrorKind:
    """What ``error`` (raised by a ``backend`` database: sqlite, postgresql, mysql) calls for."""
    original = error.orig
    if backend == "postgresql":
        code = getattr(original, "sqlstate", None)
        if code in _PG_RETRY:
            return ErrorKind.RETRY
        if code == _PG_UNDEFINED_TABLE:
            return ErrorKind.MISSING_TABLE
        if error.connection_invalidated:
            return ErrorKind.OUTAGE
        # psycopg gives no SQLSTATE to errors of its own (a refused or broken connection).
        connection_level = isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
        if (
            (connection_level and code is None)
            or (code or "").startswith("08")
            or code in _PG_OUTAGE
        ):
            return ErrorKind.OUTAGE
        return ErrorKind.FATAL
    if backend == "mysql":
        args = getattr(original, "args", ())
        code = args[0] if args else None
        if code in _MYSQL_RETRY:
            return ErrorKind.RETRY
        if code == _MYSQL_NO_SUCH_TABLE:
            return ErrorKind.MISSING_TABLE
        if error.connection_invalidated or code in _MYSQL_OUTAGE:
            return ErrorKind.OUTAGE
        # PyMySQL raises InterfaceError on a connection it already found closed.
        if isinstance(error, sa.exc.InterfaceError):
            return ErrorKind.OUTAGE
        return ErrorKind.FATAL
    text = str(original).lower()
    if "no such table" in text:
        return ErrorKind.MISSING_TABLE
    if error.connection_invalidated or (
        isinstance(error, sa.exc.OperationalError) and any(s in text for s in _SQLITE_OUTAGE)
    ):
        return ErrorKind.OUTAGE
    return ErrorKind.FATAL


def describe_error(error: BaseException) -> str:
    """The driver's message of ``error`` on one line, any password in it masked."""
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    return mask_dsn(text) or type(original).__name__


def reason(error: sa.exc.SQLAlchemyError) -> str:
    """What went wrong, for an error message: the driver's error class and text where there is
    one (SQLAlchemy's wrapper adds only noise)."""
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {str(error.orig).strip()}"
    return f"{type(error).__name__}: {error}"


class ReconnectPolicy:
    """One transport's outage: when to try again, what to log, how long it has lasted.

    Thread-safe. ``where`` names the database in log lines (a masked URL); ``timeout`` is how
    long an operation may keep trying before its caller gives up (``reconnect_timeout``).
    """

    def __init__(self, where: str, timeout: float) -> None:
        self.where = where
        self.timeout = timeout
        self.connected_once = False
        """Whether the database ever answered this transport."""
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._outage_since: float | None = None
        self._next_attempt = 0.0
        self._delay = FIRST_DELAY
        self.last_error = ""
        """The latest error of the current outage, on one line."""

    @property
    def in_outage(self) -> bool:
        """Whether the latest attempt failed (and none succeeded since)."""
        return self._outage_since is not None

    @property
    def outage_duration(self) -> float:
        """Seconds since the current outage began (0 outside one)."""
        since = self._outage_since
        return 0.0 if since is None else time.monotonic() - since

    def failed(self, action: str, error: BaseException) -> None:
        """An attempt to ``action`` failed with an outage ``error``: schedule the next one."""
        with self._lock:
            now = time.monotonic()
            self.last_error = describe_error(error)
            if self._outage_since is None:
                self._outage_since = now
                self._delay = FIRST_DELAY
                if self.connected_once:
                    logger.warning(
                        "%s: the database is unreachable (could not %s: %s); reconnecting "
                        "with backoff (at most %g s apart); acknowledgements are written once "
                        "it is back",
                        self.where,
                        action,
                        self.last_error,
                        MAX_DELAY,
                    )
            delay = self._delay * (1 - JITTER * random.random())
            self._next_attempt = now + delay
            self._delay = min(MAX_DELAY, self._delay * 2)

    def succeeded(self) -> None:
        """The database answered: end the outage, if any (and say so)."""
        if self._outage_since is None and self.connected_once:
            return
        with self._lock:
            since, self._outage_since = self._outage_since, None
            was_connected, self.connected_once = self.connected_once, True
            self._delay = FIRST_DELAY
        if since is not None and was_connected:
            logger.info(
                "%s: the database answers again after %.1f s; carrying on",
                self.where,
                time.monotonic() - since,
            )

    def wait_for_attempt(self, deadline: float) -> bool:
        """Wait until the next attempt is due; false (after waiting until ``deadline``) if
        that is later than ``deadline``, or at once when the policy was closed."""
        attempt, wait = self._attempt_plan(deadline)
        if wait <= 0:
            return attempt
        closed = self._closing.wait(wait)
        return attempt and not closed

    async def wait_for_attempt_async(self, deadline: float) -> bool:
        """:meth:`wait_for_attempt` for an event loop: the same answer, waiting with
        ``asyncio.sleep`` (a close meanwhile is seen when the wait ends)."""
        attempt, wait = self._attempt_plan(deadline)
        if wait <= 0:
            return attempt
        await asyncio.sleep(wait)
        return attempt and not self._closing.is_set()

    def _attempt_plan(self, deadline: float) -> tuple[bool, float]:
        """Whether to attempt once the wait is over (unless closed meanwhile), and the seconds
        to wait first: until the next attempt is due, or until ``deadline`` if it is later."""
        if self._outage_since is None:
            return True, 0.0
        if self._closing.is_set():
            return False, 0.0
        now = time.monotonic()
        due = self._next_attempt
        if due <= now:
            return True, 0.0
        if due > deadline:
            return False, max(0.0, deadline - now)
        return True, due - now

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the policy is closed meanwhile; false then."""
        return not self._closing.wait(seconds)

    def close(self) -> None:
        """Cut short every wait, now and later (the transport is closing)."""
        self._closing.set()
