"""When a worker stops on its own: after so many messages or failures, memory, or time.

The command line's ``--limit``, ``--failure-limit``, ``--memory-limit`` and ``--time-limit``
become a :class:`WorkerLimits`; the worker asks :meth:`WorkerLimits.reached` after every
message and every empty round, and stops (after the current message) with the reason it gives.
"""

from __future__ import annotations

import resource
import sys

import attrs

from messenger_core._describe import plural
from messenger_core.errors import ConfigurationError
from messenger_core.worker_stats import WorkerStats

__all__ = ["WorkerLimits", "parse_memory_limit", "peak_memory"]

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_memory_limit(value: str | int) -> int:
    """``"128M"`` (K, M, G; a bare number is bytes) as a number of bytes."""
    if isinstance(value, int):
        return value
    text = value.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    number = text[: len(text) - len(unit)]
    if not number.isdigit():
        raise ConfigurationError(f"memory limit {value!r} is not like 128M, 1G or 500000")
    return int(number) * _UNITS[unit]


def peak_memory() -> int:
    """The peak resident memory of this process, in bytes (what a memory limit checks).

    ``getrusage`` gives ``ru_maxrss`` in bytes on macOS but in KiB on Linux and the BSDs.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@attrs.frozen(kw_only=True)
class WorkerLimits:
    """When a worker stops on its own (``None``: never for that reason)."""

    limit: int | None = None
    """Messages received (handled or failed)."""
    failure_limit: int | None = None
    """Messages that failed (retried or parked)."""
    memory_limit: int | None = None
    """Peak resident memory of the process, in bytes."""
    time_limit: float | None = None
    """Seconds since the worker started."""

    @classmethod
    def of(
        cls,
        *,
        limit: int | None = None,
        failure_limit: int | None = None,
        memory_limit: str | int | None = None,
        time_limit: float | None = None,
    ) -> WorkerLimits:
        """The limits of :meth:`Worker.run <messenger_core.worker.Worker.run>`'s arguments
        (a memory limit may be written like ``"128M"``)."""
        return cls(
            limit=limit,
            failure_limit=failure_limit,
            memory_limit=parse_memory_limit(memory_limit) if memory_limit is not None else None,
            time_limit=time_limit,
        )

    def reached(self, stats: WorkerStats) -> str | None:
        """Why the worker stops now, by what ``stats`` counted; ``None`` to carry on."""
        if self.limit is not None and stats.received >= self.limit:
            return f"message limit of {self.limit} reached"
        if self.failure_limit is not None and stats.failed >= self.failure_limit:
            return f"failure limit of {self.failure_limit} reached"
        if self.time_limit is not None and stats.elapsed >= self.time_limit:
            return f"time limit of {self.time_limit:g}s reached"
        if self.memory_limit is not None and peak_memory() >= self.memory_limit:
            return f"memory limit of {self.memory_limit} bytes reached"
        return None

    def describe(self) -> str:
        """The limits in force, for the start-up log line."""
        parts = []
        if self.limit is not None:
            parts.append(plural(self.limit, "message"))
        if self.failure_limit is not None:
            parts.append(plural(self.failure_limit, "failure"))
        if self.memory_limit is not None:
            parts.append(f"memory {_size(self.memory_limit)}")
        if self.time_limit is not None:
            parts.append(f"{self.time_limit:g}s")
        return ", ".join(parts) or "none"


def _size(size: int) -> str:
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"
