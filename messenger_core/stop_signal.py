"""The "stop workers" signal: ``messenger stop-workers`` asks every running worker to stop.

A worker stops after its current message when a stop was requested after it started. The
default signal is a file in the system's temporary directory (every worker on this host sees
it, with no configuration), or the file named by the ``MESSENGER_STOP_SIGNAL_FILE`` environment
variable (to keep groups of workers apart on one host, as tests do); an application that runs
workers on several hosts passes a :class:`StopSignal` backed by a shared store.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["STOP_SIGNAL_FILE_VARIABLE", "FileStopSignal", "StopSignal"]

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


class FileStopSignal:
    """A stop signal kept as the modification time of a file (one host)."""

    CHECK_INTERVAL = 1.0
    """Seconds between two looks at the file: workers ask after every message."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = path or os.environ.get(STOP_SIGNAL_FILE_VARIABLE)
        self.path = Path(path) if path else Path(tempfile.gettempdir()) / "messenger-stop-workers"
        self._checked_at = 0.0
        self._requested_at = 0.0

    def request(self) -> None:
        """Touch the file: its modification time is the request's time."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{time.time()}\n")

    def requested_since(self, started_at: float) -> bool:
        """Look at the file at most once per ``CHECK_INTERVAL``."""
        now = time.monotonic()
        if now - self._checked_at >= self.CHECK_INTERVAL:
            self._checked_at = now
            try:
                self._requested_at = self.path.stat().st_mtime
            except FileNotFoundError:
                self._requested_at = 0.0
        return self._requested_at > started_at
