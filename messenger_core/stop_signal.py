"""The "stop workers" signal: ``messenger stop-workers`` asks every running worker to stop.

A worker stops after its current message when a stop was requested after it started.

Where the signal is kept, first match wins:

1. a :class:`StopSignal` given to ``Messenger(stop_signal=...)`` (or set on the application);
2. the ``stop_signal`` configuration key: ``file:///path``, or the DSN of a shared store
   (Redis, SQL) to stop workers on several hosts;
3. the file named by the ``MESSENGER_STOP_SIGNAL_FILE`` environment variable;
4. a file of the application in the system's temporary directory,
   ``messenger-stop-workers-<key>``, where ``<key>`` is a short hash of the configuration's
   ``app`` (``module:attribute``) and of its transports (names and DSNs, after ``${VAR}``
   expansion; see :func:`application_key`).

The default (4) is per application: two deployments of one application on a host (the same
``app`` and the same queues, even from two release directories) share it, so a
``messenger stop-workers`` after a deploy stops the old workers; two different applications,
or one application pointed at other queues (staging beside production), do not stop each
other's workers.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from messenger_core.dsn import mask_dsn

if TYPE_CHECKING:
    from messenger_core.config import MessengerConfig

__all__ = [
    "ClosableStopSignal",
    "DEFAULT_FILE_NAME",
    "STOP_SIGNAL_FILE_VARIABLE",
    "FileStopSignal",
    "PollingStopSignal",
    "StopSignal",
    "application_key",
    "default_stop_file",
]

logger = logging.getLogger("messenger.worker")

STOP_SIGNAL_FILE_VARIABLE = "MESSENGER_STOP_SIGNAL_FILE"
"""Environment variable naming the default stop-signal file."""

DEFAULT_FILE_NAME = "messenger-stop-workers"
"""The default file's name in the temporary directory (``-<application key>`` is appended)."""


def application_key(config: MessengerConfig) -> str:
    """A short, stable key of the application ``config`` describes: 12 hex digits.

    It is a hash of the ``app`` key and of every transport's name and DSN (sorted), so it
    does not depend on the directory the application runs from. The DSNs are hashed, never
    shown: they may hold passwords.
    """
    parts = [f"app={config.app or ''}"]
    parts += sorted(f"transport {name}={t.dsn}" for name, t in config.transports.items())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def default_stop_file(config: MessengerConfig | None = None) -> Path:
    """The stop file used when nothing else is configured: ``MESSENGER_STOP_SIGNAL_FILE``,
    else ``messenger-stop-workers-<application key>`` in the temporary directory (without
    ``config``: ``messenger-stop-workers``)."""
    configured = os.environ.get(STOP_SIGNAL_FILE_VARIABLE)
    if configured:
        return Path(configured)
    name = DEFAULT_FILE_NAME if config is None else f"{DEFAULT_FILE_NAME}-{application_key(config)}"
    return Path(tempfile.gettempdir()) / name


@runtime_checkable
class StopSignal(Protocol):
    """A shared "stop" timestamp."""

    def request(self) -> None:
        """Ask every worker started before now to stop."""
        ...

    def requested_since(self, started_at: float) -> bool:
        """Whether a stop was requested after ``started_at`` (a ``time.time()`` value)."""
        ...


@runtime_checkable
class ClosableStopSignal(Protocol):
    """A stop signal that holds connections to its store (Redis, SQL).

    The application calls :meth:`close` when it is closed, with its transports.
    """

    def close(self) -> None:
        """Release the signal's connections. It is not used afterwards."""
        ...


class PollingStopSignal(ABC):
    """A stop signal kept in a store, as the time of the last request.

    Workers ask after every message, so the store is read at most once per
    :attr:`CHECK_INTERVAL`. A failed read is logged (once per outage) and answered with what
    was known: a worker must not die because the signal's store blinked; reads then pause for
    :attr:`FAILURE_INTERVAL`. Subclasses implement :meth:`read_request_time` and
    :meth:`write_request_time` and list the errors a read may raise in :attr:`READ_ERRORS`.
    """

    CHECK_INTERVAL = 1.0
    """Seconds between two reads of the store."""
    FAILURE_INTERVAL = 10.0
    """Seconds to wait after a failed read: a store that is down must not slow every message
    down with connection attempts."""
    READ_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError)
    """What a failed read raises (anything else is a bug and propagates)."""

    def __init__(self) -> None:
        self._checked_at = -math.inf
        self._requested_at = 0.0
        self._failing = False

    @abstractmethod
    def read_request_time(self) -> float:
        """The ``time.time()`` of the last request, 0 if there was none."""

    @abstractmethod
    def write_request_time(self, when: float) -> None:
        """Record ``when`` as the time of the last request (raise a clear error if it fails)."""

    def request(self) -> None:
        """Ask every worker started before now to stop."""
        now = time.time()
        self.write_request_time(now)
        self._requested_at = max(self._requested_at, now)  # this process knows at once

    def requested_since(self, started_at: float) -> bool:
        """Whether a stop was requested after ``started_at`` (a ``time.time()`` value)."""
        now = time.monotonic()
        interval = self.FAILURE_INTERVAL if self._failing else self.CHECK_INTERVAL
        if now - self._checked_at >= interval:
            self._checked_at = now
            try:
                self._requested_at = self.read_request_time()
            except self.READ_ERRORS as error:
                reason = mask_dsn(f"{type(error).__name__}: {error}")
                if not self._failing:
                    self._failing = True
                    logger.warning(
                        "%r: cannot read the stop signal, trying again in %g s: %s",
                        self,
                        self.FAILURE_INTERVAL,
                        reason,
                    )
                else:
                    logger.debug("%r: still cannot read the stop signal: %s", self, reason)
            else:
                if self._failing:
                    self._failing = False
                    logger.warning("%r: the stop signal can be read again", self)
        return self._requested_at > started_at


class FileStopSignal(PollingStopSignal):
    """A stop signal kept in a file (one host): the request's time, as text.

    The time written in the file counts, or the file's modification time if that is later
    (a ``touch`` by hand). The written time is exact where file timestamps are coarse: a stop
    requested a few milliseconds after a worker started must still stop it.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        """Keep the signal in ``path``; without one, in :func:`default_stop_file` (with no
        application: prefer :meth:`for_application`)."""
        super().__init__()
        self.path = Path(path) if path else default_stop_file()

    @classmethod
    def for_application(cls, config: MessengerConfig) -> FileStopSignal:
        """The default signal of the application ``config`` describes (see the module)."""
        return cls(default_stop_file(config))

    def __repr__(self) -> str:
        return f"FileStopSignal({str(self.path)!r})"

    def write_request_time(self, when: float) -> None:
        """Write ``when`` into the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{when}\n")

    def read_request_time(self) -> float:
        """The time in the file, or its modification time if later; 0 without a file."""
        try:
            modified = self.path.stat().st_mtime
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            return 0.0
        try:
            written = float(text)
        except ValueError:
            written = 0.0  # empty or foreign content: the modification time alone counts
        return max(written, modified)
