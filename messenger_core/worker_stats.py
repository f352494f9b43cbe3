"""What a worker did: the counts it keeps while it runs, and its one-line summary."""

from __future__ import annotations

import time

import attrs

__all__ = ["WorkerStats"]


@attrs.define
class WorkerStats:
    """What a worker did; updated as it runs.

    Every received message ends up counted once as ``handled`` or ``failed``; a failed one is
    then ``retried`` (a copy re-sent with a delay), ``parked`` (stored in the failure
    transport), ``rejected`` (failed for good with no failure transport: dropped), or, when
    storing the copy failed, none of those (:attr:`unsettled`: it comes back later).
    """

    received: int = 0
    handled: int = 0
    failed: int = 0
    """Failed attempts: ``retried + parked + rejected + unsettled``."""
    retried: int = 0
    parked: int = 0
    rejected: int = 0
    started_at: float = attrs.field(factory=time.time)
    stop_reason: str | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the worker started."""
        return time.time() - self.started_at

    @property
    def unsettled(self) -> int:
        """Failed messages left on their transport (storing the retry or failure copy
        failed): they come back when their reservation expires."""
        return self.failed - self.retried - self.parked - self.rejected

    def summary(self) -> str:
        """``3 handled, 54 retried, 5 parked, 0 rejected`` (and any unsettled)."""
        text = (
            f"{self.handled} handled, {self.retried} retried, {self.parked} parked, "
            f"{self.rejected} rejected"
        )
        unsettled = self.unsettled
        if unsettled:
            text += f", {unsettled} left on the transport for later"
        return text
