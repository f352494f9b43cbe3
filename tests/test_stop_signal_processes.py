"""Real processes: ``messenger stop-workers`` of one application leaves another's workers alone.

Two applications on one host (one temporary directory, no ``MESSENGER_STOP_SIGNAL_FILE``),
each with its own configuration file and ``app``, each with a ``messenger consume`` running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEADLINE = 60.0
"""Seconds any one step may take (generous: the machine is busy)."""

APP_MODULE = """\
from pathlib import Path

from messenger_core import Messenger

messenger = Messenger.from_config(Path(__file__).with_name("messenger.toml"))
"""


def _application(root: Path, name: str) -> Path:
    """An application in ``root/name``: module ``<name>_app`` and its ``messenger.toml``."""
    directory = root / name
    directory.mkdir()
    (directory / f"{name}_app.py").write_text(APP_MODULE)
    config = directory / "messenger.toml"
    # The same DSN in both: only the application tells the two apart.
    config.write_text(
        f'[messenger]\napp = "{name}_app:messenger"\n\n'
        '[messenger.transports.async]\ndsn = "memory://"\n'
    )
    return directory


def _environment(host_tmp: Path) -> dict[str, str]:
    environment = {**os.environ, "TMPDIR": str(host_tmp)}
    for name in (
        "MESSENGER_STOP_SIGNAL_FILE",
        "MESSENGER_APP",
        "MESSENGER_DISABLE_PLUGIN_AUTOLOAD",
        "MESSENGER_DISABLED_PLUGINS",
    ):
        environment.pop(name, None)
    return environment


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "messenger_core", *args]


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode}:\n{path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {DEADLINE}s:\n{path.read_text(errors='replace')}")
        time.sleep(0.05)


@pytest.mark.slow
def test_stop_workers_of_one_application_stops_only_its_workers(tmp_path: Path) -> None:
    host_tmp = tmp_path / "tmp"
    host_tmp.mkdir()
    environment = _environment(host_tmp)
    apps = {name: _application(tmp_path, name) for name in ("shop", "billing")}
    workers: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in apps}
    try:
        for name, directory in apps.items():
            with logs[name].open("wb") as sink:
                workers[name] = subprocess.Popen(
                    [*_command("consume", "async", "--sleep", "0.05", "--time-limit", "300")],
                    cwd=directory,
                    env=environment,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
        for name in apps:
            _wait_for(logs[name], "worker consuming", workers[name])
        time.sleep(0.05)  # a request is for workers started before it

        stop = subprocess.run(
            _command("stop-workers"),
            cwd=apps["shop"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert str(host_tmp / "messenger-stop-workers-") in stop.stdout
        assert "this application's" in stop.stdout

        assert workers["shop"].wait(DEADLINE) == 0, logs["shop"].read_text()
        assert "stop-workers was requested" in logs["shop"].read_text()
        time.sleep(3)  # several checks of the signal (one a second) by billing's worker
        assert workers["billing"].poll() is None, logs["billing"].read_text()

        stop = subprocess.run(
            _command("stop-workers"),
            cwd=apps["billing"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert workers["billing"].wait(DEADLINE) == 0, logs["billing"].read_text()
        assert "stop-workers was requested" in logs["billing"].read_text()
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait(DEADLINE)
