"""Real processes: ``messenger stop-workers`` of one application leaves another's workers alone.

Two applications on one host (one temporary directory, no ``MESSENGER_STOP_SIGNAL_FILE``),
each with its own configuration file and ``app``, each with a ``messenger consume`` running.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from messenger_core.testing.processes import MessengerProcess, messenger_command

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


@pytest.mark.slow
def test_stop_workers_of_one_application_stops_only_its_workers(tmp_path: Path) -> None:
    host_tmp = tmp_path / "tmp"
    host_tmp.mkdir()
    environment = _environment(host_tmp)
    apps = {name: _application(tmp_path, name) for name in ("shop", "billing")}
    with ExitStack() as stack:
        workers = {
            name: stack.enter_context(
                MessengerProcess(
                    messenger_command("consume", "async", "--sleep", "0.05", "--time-limit", "300"),
                    tmp_path / f"{name}.log",
                    env=environment,
                    cwd=directory,
                    timeout=DEADLINE,
                )
            )
            for name, directory in apps.items()
        }
        for worker in workers.values():
            worker.wait_until(lambda w=worker: "worker consuming" in w.output(), "worker consuming")
        time.sleep(0.05)  # a request is for workers started before it

        stop = subprocess.run(
            messenger_command("stop-workers"),
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

        assert workers["shop"].wait() == 0, workers["shop"].output()
        assert "stop-workers was requested" in workers["shop"].output()
        time.sleep(3)  # several checks of the signal (one a second) by billing's worker
        assert workers["billing"].running(), workers["billing"].output()

        stop = subprocess.run(
            messenger_command("stop-workers"),
            cwd=apps["billing"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert workers["billing"].wait() == 0, workers["billing"].output()
        assert "stop-workers was requested" in workers["billing"].output()
