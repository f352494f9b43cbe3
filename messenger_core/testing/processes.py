"""``messenger`` processes that tests start (``messenger consume`` and co.).

A test that runs the command line as a real process wants it to import the test's own app
modules, to keep its stop signal to itself, to print its log lines as they come, and not to
be steered by the environment the test suite itself runs in: :func:`messenger_environment`.
It then waits for the process to do something, stops it with a signal, and fails with the
process's output when it died early or took too long: :class:`MessengerProcess`, started with
:func:`messenger_command`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from signal import SIGTERM
from typing import Self, TypeVar

__all__ = ["OUTER_VARIABLES", "MessengerProcess", "messenger_command", "messenger_environment"]

T = TypeVar("T")

OUTER_VARIABLES = (
    "MESSENGER_APP",
    "MESSENGER_DISABLE_PLUGIN_AUTOLOAD",
    "MESSENGER_DISABLED_PLUGINS",
)
"""Variables of the outer environment that would pick another application or block plugins."""


def messenger_environment(
    import_paths: Iterable[Path], stop_signal_file: Path, **variables: str
) -> dict[str, str]:
    """This process's environment for a ``messenger`` child process.

    ``import_paths`` go before any ``PYTHONPATH`` already set; the stop signal is
    ``stop_signal_file`` (``MESSENGER_STOP_SIGNAL_FILE``), so that ``stop-workers`` in one
    test reaches no other test's workers; output is unbuffered; :data:`OUTER_VARIABLES` are
    removed; ``variables`` are added last.
    """
    environment = {name: value for name, value in os.environ.items() if name not in OUTER_VARIABLES}
    inherited = [path for path in [os.environ.get("PYTHONPATH")] if path]
    environment["PYTHONPATH"] = os.pathsep.join([*map(str, import_paths), *inherited])
    environment["MESSENGER_STOP_SIGNAL_FILE"] = str(stop_signal_file)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(variables)
    return environment


def messenger_command(*arguments: str, config: Path | None = None) -> list[str]:
    """The command line ``python -m messenger_core [--config CONFIG] ARGUMENTS``, with the
    interpreter running the tests."""
    options = ["--config", str(config)] if config is not None else []
    return [sys.executable, "-m", "messenger_core", *options, *arguments]


class MessengerProcess:
    """A child process a test started (``messenger consume`` and co.), its output in a file.

    It starts on construction: ``command`` with ``env`` (see :func:`messenger_environment`)
    in ``cwd``, stdout and stderr both written to ``output`` (``append`` keeps what the file
    holds, for several processes writing one file in turn). ``timeout`` is the default of
    every wait in seconds. Every failure is an :class:`AssertionError` carrying the process's
    output. As a context manager it kills the process on exit, so that a failing test leaves
    none behind::

        with MessengerProcess(messenger_command("consume", "async", config=config),
                              tmp_path / "worker.log", env=env, cwd=tmp_path) as worker:
            worker.wait_until(lambda: "handled" in log.read_text(), "a handled message")
            assert worker.stop(signal.SIGTERM) == 0, worker.output()
    """

    def __init__(
        self,
        command: Sequence[str],
        output: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
        append: bool = False,
    ) -> None:
        self.output_file = output
        """The file holding the process's stdout and stderr."""
        self.timeout = timeout
        """Seconds any one wait may take unless told otherwise."""
        with output.open("ab" if append else "wb") as sink:
            self.popen = subprocess.Popen(  # noqa: S603  (the test's own command)
                list(command),
                env=env,
                cwd=cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited, else ``None`` (it polls)."""
        return self.popen.poll()

    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.popen.poll() is None

    def output(self) -> str:
        """What the process has written so far (stdout and stderr, undecodable bytes replaced)."""
        if not self.output_file.exists():
            return ""
        return self.output_file.read_text(errors="replace")

    def assert_running(self) -> None:
        """Fail with the output if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise AssertionError(f"process {self.pid} exited with {code}:\n{self._tail()}")

    def wait_until(
        self,
        condition: Callable[[], T],
        what: str,
        *,
        timeout: float | None = None,
        interval: float = 0.05,
    ) -> T:
        """Check ``condition`` every ``interval`` seconds until it returns something true, and
        return that.

        Fails (naming ``what``, with the output) if the process exits first, or once
        ``timeout`` seconds (default :attr:`timeout`) have passed. ``condition`` is checked
        once more after the process is seen to have exited, so a process that does its work
        and ends (``--limit``) is not mistaken for one that died early.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            exited = self.popen.poll()
            result = condition()
            if result:
                return result
            if exited is not None:
                raise AssertionError(
                    f"waiting for {what}: process {self.pid} exited with {exited}:\n{self._tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {limit} s:\n{self._tail()}")
            time.sleep(interval)

    def signal(self, signum: int) -> None:
        """Send ``signum`` (if the process still runs); do not wait."""
        self.popen.send_signal(signum)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit and return its exit code (``-N`` after signal N);
        fail with the output after ``timeout`` seconds (default :attr:`timeout`)."""
        limit = self.timeout if timeout is None else timeout
        try:
            return self.popen.wait(limit)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {self.pid} did not exit within {limit} s:\n{self._tail()}"
            ) from None

    def stop(self, signum: int = SIGTERM, timeout: float | None = None) -> int:
        """Send ``signum`` (SIGTERM by default) and wait for the exit code, as :meth:`wait`.

        A process still running after ``timeout`` is killed, and the stop fails with its
        output.
        """
        self.signal(signum)
        try:
            return self.wait(timeout)
        except AssertionError:
            self.kill()
            raise

    def kill(self) -> int:
        """SIGKILL the process if it still runs; wait for it and return its exit code."""
        if self.popen.poll() is None:
            self.popen.kill()
        return self.popen.wait(self.timeout)

    def _tail(self) -> str:
        # A worker that handled thousands of messages writes a long log: its end tells why.
        text = self.output()
        if len(text) <= _SHOWN:
            return text
        return f"[... the last {_SHOWN} characters]\n{text[-_SHOWN:]}"


_SHOWN = 20_000
"""How many characters of the output a failure shows at most."""
