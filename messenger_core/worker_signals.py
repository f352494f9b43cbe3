"""SIGTERM and SIGINT in a worker: the first stops it after the current message, a second at once.

A worker run in the main thread installs :func:`install_stop_handlers` for the time it runs and
puts the previous handlers back with :func:`restore_handlers`. A second signal raises
:class:`WorkerInterrupted` wherever the worker is (inside a handler too); the worker then leaves
the current message unsettled, so that it comes back when its reservation expires.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Protocol

__all__ = [
    "SignalHandler",
    "StoppableWorker",
    "WorkerInterrupted",
    "install_stop_handlers",
    "restore_handlers",
]

logger = logging.getLogger("messenger.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
"""What :func:`signal.getsignal` returns and :func:`signal.signal` takes."""


class WorkerInterrupted(BaseException):
    """A second SIGTERM/SIGINT: stop now, without settling the current message.

    A ``BaseException`` so that handlers catching ``Exception`` do not swallow it.
    """


class StoppableWorker(Protocol):
    """What the signal handlers need of a worker."""

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for already."""
        ...

    def stop(self, reason: str = ...) -> None:
        """Stop after the current message."""
        ...


def install_stop_handlers(worker: StoppableWorker) -> dict[int, SignalHandler]:
    """Make SIGTERM and SIGINT stop ``worker``; return the handlers they had before."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if worker.stopping:
            raise WorkerInterrupted(name)
        logger.info("%s received: stopping after the current message (again to stop at once)", name)
        worker.stop(f"{name} received")

    previous: dict[int, SignalHandler] = {}
    for signum in STOP_SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, on_signal)
    return previous


def restore_handlers(previous: Mapping[int, SignalHandler]) -> None:
    """Put back the handlers :func:`install_stop_handlers` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
