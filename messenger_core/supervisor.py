"""``messenger consume --processes N``: N worker processes under a small supervisor.

Each child is ``python -m messenger_core`` with the very command line the supervisor got
(``--processes 1`` appended) and ``MESSENGER_WORKER_PROCESS`` set to its number, so it loads
the application itself and opens its own transport connections; nothing is shared with the
supervisor or across children but the brokers. A child logs lines and draws no live status
line (they would overwrite each other on one terminal).

- A child that exits 0 stopped cleanly (a limit, ``messenger stop-workers``, a signal): it is
  not started again. Limits therefore count per child.
- A child that exits 2 found the configuration or the command line wrong: every child would,
  so the supervisor stops the others and exits 2.
- A child that died otherwise (killed, crashed, a non-zero exit) is started again after a
  growing pause (:class:`~messenger_core.failure_policy.Backoff`, reset once a child ran for
  :data:`HEALTHY_AFTER` seconds); its unsettled messages come back from their transport.
- SIGTERM or SIGINT is passed on to every child as SIGTERM, and the supervisor waits for each
  to finish and settle its messages in flight; a second signal is passed on too (the children
  then stop at once). The children run in a process group of their own, so a Ctrl-C on the
  terminal reaches them once, through the supervisor. On Linux a child also gets SIGTERM if
  the supervisor dies (``PR_SET_PDEATHSIG``), so none is left running without it.

The supervisor exits 0 when every child stopped cleanly, 2 on a configuration error, and 1
otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

import attrs

from messenger_core.failure_policy import Backoff
from messenger_core.worker_signals import STOP_SIGNALS, SignalHandler, restore_handlers

__all__ = ["HEALTHY_AFTER", "WORKER_PROCESS_VARIABLE", "Supervisor"]

logger = logging.getLogger("messenger.supervisor")

HEALTHY_AFTER = 10.0
"""Seconds a child must have run for its death not to grow the restart pause further."""

WORKER_PROCESS_VARIABLE = "MESSENGER_WORKER_PROCESS"
"""Set in each child's environment to its number (0 to N - 1)."""

_POLL = 0.05
"""Seconds between two looks at the children."""

_CONFIGURATION_ERROR = 2


def _stop_with_parent() -> None:
    """In the child before it runs: SIGTERM when the supervisor dies (Linux; elsewhere none)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


@attrs.define
class _Child:
    """One slot of the supervisor: the process running in it now, if any."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    exit_code: int | None = None
    """The code it stopped with for good (0: cleanly)."""


class Supervisor:
    """Runs ``processes`` children of ``messenger <arguments>`` until they all stopped."""

    def __init__(
        self,
        arguments: Sequence[str],
        processes: int,
        *,
        backoff: Backoff | None = None,
        executable: Sequence[str] | None = None,
    ) -> None:
        self.arguments = list(arguments)
        self.processes = processes
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.executable = list(executable or [sys.executable, "-m", "messenger_core"])
        self.restarts = 0
        """Children started again after they died."""
        self._children = [_Child(index) for index in range(processes)]
        self._signals = 0
        self._stopping = False
        """Set by a signal or a configuration error: a child that exits now stays stopped."""

    def run(self) -> int:
        """Start the children, keep them running, and return the exit code once all stopped."""
        previous: dict[int, SignalHandler] = {
            signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS
        }
        try:
            for child in self._children:
                self._start(child)
            logger.info("supervising %d worker processes", self.processes)
            while not all(child.exit_code is not None for child in self._children):
                self._look_after_children()
                time.sleep(_POLL)
        finally:
            restore_handlers(previous)
        codes = [child.exit_code for child in self._children]
        if _CONFIGURATION_ERROR in codes:
            return _CONFIGURATION_ERROR
        code = 0 if all(c == 0 for c in codes) else 1
        logger.info(
            "all %d worker processes stopped (%s); %d restarted after dying",
            self.processes,
            "cleanly" if code == 0 else f"exit codes {codes}",
            self.restarts,
        )
        return code

    @property
    def pids(self) -> list[int]:
        """The process ids of the children running now."""
        return [c.process.pid for c in self._children if c.process and c.process.poll() is None]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        self._stopping = True
        name = signal.Signals(signum).name
        logger.info(
            "%s received: passing it on to the worker processes and waiting for them%s",
            name,
            " (again: they stop at once)" if self._signals > 1 else "",
        )
        for child in self._children:
            if child.exit_code is None and child.process is None:
                child.exit_code = 0  # waiting to be restarted: stays stopped
            self._signal(child, signal.SIGTERM)

    @staticmethod
    def _signal(child: _Child, signum: int) -> None:
        process = child.process
        if process is not None and process.poll() is None:
            # It may have died meanwhile; the next look sees it.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def _start(self, child: _Child) -> None:
        command = [*self.executable, *self.arguments, "--processes", "1"]
        env = dict(os.environ, **{WORKER_PROCESS_VARIABLE: str(child.index)})
        # A group of its own: a terminal's Ctrl-C reaches it through the supervisor only.
        # preexec_fn is safe here: the supervisor process runs no other thread.
        child.process = subprocess.Popen(  # noqa: S603
            command,
            env=env,
            process_group=0,
            preexec_fn=_stop_with_parent,  # noqa: PLW1509
        )
        child.started_at = time.monotonic()
        child.restart_at = None

    def _look_after_children(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.exit_code is not None:
                continue
            if child.process is None:
                if child.restart_at is not None and now >= child.restart_at:
                    self.restarts += 1
                    self._start(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            self._exited(child, code, now)

    def _exited(self, child: _Child, code: int, now: float) -> None:
        pid = child.process.pid if child.process else "?"
        child.process = None
        if code == 0 or self._stopping:
            child.exit_code = code
            logger.info(
                "worker process %s (pid %s) stopped with exit code %d", child.index, pid, code
            )
            return
        if code == _CONFIGURATION_ERROR:
            child.exit_code = code
            self._stopping = True
            logger.error(
                "worker process %s exited with a configuration error: stopping the others",
                child.index,
            )
            for other in self._children:
                if other.exit_code is None and other.process is None:
                    other.exit_code = _CONFIGURATION_ERROR
                self._signal(other, signal.SIGTERM)
            return
        if now - child.started_at >= HEALTHY_AFTER:
            self.backoff.reset(child.index)
        delay = self.backoff.next_delay(child.index)
        child.restart_at = now + delay
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        logger.error(
            "worker process %s (pid %s) %s; starting it again in %.1fs",
            child.index,
            pid,
            how,
            delay,
        )
