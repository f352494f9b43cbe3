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
    """A stop signal kept in a file (one host): the request's time, as text.

    The time written in the file counts, or the file's modification time if that is later
    (a ``touch`` by hand). The written time is exact where file timestamps are coarse: a stop
    requested a few milliseconds after a worker started must still stop it.
    """

    CHECK_INTERVAL = 1.0
    """Seconds between two looks at the file: workers ask after every message."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = path or os.environ.get(STOP_SIGNAL_FILE_VARIABLE)
        self.path = Path(path) if path else Path(tempfile.gettempdir()) / "messenger-stop-workers"
        self._checked_at = 0.0
        self._requested_at = 0.0

    def request(self) -> None:
        """Write the current time into the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{time.time()}\n")

    def requested_since(self, started_at: float) -> bool:
        """Look at the file at most once per ``CHECK_INTERVAL``."""
        now = time.monotonic()
        if now - self._checked_at >= self.CHECK_INTERVAL:
            self._checked_at = now
            self._requested_at = self._read()
        return self._requested_at > started_at

    def _read(self) -> float:
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
