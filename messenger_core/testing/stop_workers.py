"""A real-process check for stop signals kept in a shared store (``stop_signal = "<dsn>"``).

A plugin whose transport factory implements ``create_stop_signal`` calls
:func:`check_stop_workers_across_hosts` from one of its tests: a ``messenger consume`` worker
runs in one process, ``messenger stop-workers`` runs in another with another working
directory and another default stop file (another "host"), and the worker must stop, exit 0,
and have been reached through the store, not through a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

__all__ = ["check_stop_workers_across_hosts"]

DEADLINE = 60.0
"""Seconds any one step may take (generous: machines running tests are busy)."""


def check_stop_workers_across_hosts(signal_dsn: str, tmp_path: Path) -> None:
    """Fail the calling test unless ``stop-workers`` reaches a worker through ``signal_dsn``."""
    config = tmp_path / "messenger.toml"
    config.write_text(
        "[messenger]\n"
        f"stop_signal = {json.dumps(signal_dsn)}\n\n"
        "[messenger.transports.async]\n"
        'dsn = "memory://"\n'
    )
    worker_host, command_host = tmp_path / "worker-host", tmp_path / "command-host"
    worker = _start(worker_host, config, "consume", "async", "--sleep", "0.05")
    try:
        _wait_for_line(worker, "worker consuming")
        stop = _run(command_host, config, "stop-workers")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert worker.popen.wait(DEADLINE) == 0, worker.text()
    finally:
        worker.kill()
    assert "stop-workers was requested" in worker.text()
    # The store carried the request, not a file on either "host".
    assert not (worker_host / "stop-file").exists()
    assert not (command_host / "stop-file").exists()


@attrs.define
class _Process:
    popen: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(DEADLINE)


def _host_environment(host: Path) -> dict[str, str]:
    """A process on ``host``: its own default stop file, which a worker would watch if the
    configured store were not used."""
    host.mkdir(exist_ok=True)
    environment = {**os.environ, "MESSENGER_STOP_SIGNAL_FILE": str(host / "stop-file")}
    for name in (
        "MESSENGER_APP",
        "MESSENGER_DISABLE_PLUGIN_AUTOLOAD",
        "MESSENGER_DISABLED_PLUGINS",
    ):
        environment.pop(name, None)
    return environment


def _command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "messenger_core", "--config", str(config), *args]


def _start(host: Path, config: Path, *args: str) -> _Process:
    host.mkdir(exist_ok=True)
    output = host / "output.log"
    with output.open("wb") as sink:
        popen = subprocess.Popen(  # noqa: S603  (this Python, our own module, test arguments)
            # A time limit ends a worker that a failing test leaves behind.
            [*_command(config, *args), "--time-limit", "300"],
            env=_host_environment(host),
            cwd=host,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return _Process(popen, output)


def _run(host: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  (this Python, our own module, test arguments)
        _command(config, *args),
        env=_host_environment(host),
        cwd=host,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def _wait_for_line(process: _Process, text: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while text not in process.text():
        if process.popen.poll() is not None:
            pytest.fail(f"the process exited {process.popen.returncode}:\n{process.text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {DEADLINE}s:\n{process.text()}")
        time.sleep(0.05)
