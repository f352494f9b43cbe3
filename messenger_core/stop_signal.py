"""The "stop workers" signal: ``messenger stop-workers`` asks every running worker to stop.

A worker stops after its current message when a stop was requested after it started. The
default signal is a file in the system's temporary directory (every worker on this host sees
it, with no configuration), or the file named by the ``MESSENGER_STOP_SIGNAL_FILE`` environment
variable (to keep groups of workers apart on one host, as tests do); an application that runs
workers on several hosts passes a :class:`StopSignal` backed by a shared store.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol, runtime_checkable

from messenger_core.dsn import mask_dsn

__all__ = ["STOP_SIGNAL_FILE_VARIABLE", "FileStopSignal", "PollingStopSignal", "StopSignal"]

logger = logging.getLogger("messenger.worker")

STOP_SIGNAL_FILE_VARIABLE = "MESSENGER_STOP_SIGNAL_FILE"
"""Environment variable naming the default stop-signal file."""


@runtime_checkable
class StopSignal(Protocol):
    """A shared "stop" timestamp."""

    def request(self) -> None:
        """Ask every worker started before now to stop."""
        ...

    def requested_since(self, started_at: float) -> bool:
        """Whether a stop was requested after ``started_at`` (a ``time.time()`` value)."""
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
        super().__init__()
        path = path or os.environ.get(STOP_SIGNAL_FILE_VARIABLE)
        self.path = Path(path) if path else Path(tempfile.gettempdir()) / "messenger-stop-workers"

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
