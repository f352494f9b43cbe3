"""The supervisor of ``--processes N`` with stand-in children (small Python scripts).

Real workers on PostgreSQL and Redis are in ``tests/e2e/test_processes_supervisor.py``; here
each child is a script whose exit code the test chooses, to check what the supervisor does
with it: a clean stop is not restarted, a death is (after a growing pause), a configuration
error stops everything with 2, and a child outlives no supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from messenger_core import Messenger
from messenger_core.cli import main
from messenger_core.failure_policy import Backoff
from messenger_core.supervisor import WORKER_PROCESS_VARIABLE, Supervisor

pytestmark = pytest.mark.slow


def child(tmp_path: Path, body: str) -> list[str]:
    """A stand-in child: ``body`` runs with ``n`` (its number) and ``runs`` (its earlier runs,
    counted in a file) defined."""
    script = tmp_path / "child.py"
    script.write_text(
        "import os, pathlib, sys, time\n"
        f"n = int(os.environ[{WORKER_PROCESS_VARIABLE!r}])\n"
        f"count = pathlib.Path({str(tmp_path)!r}) / f'runs-{{n}}'\n"
        "runs = int(count.read_text()) if count.exists() else 0\n"
        "count.write_text(str(runs + 1))\n" + body + "\n"
    )
    return [sys.executable, str(script)]


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, maximum=0.2, jitter=0)


def runs(tmp_path: Path, n: int) -> int:
    return int((tmp_path / f"runs-{n}").read_text())


def test_children_that_stop_cleanly_are_not_restarted_and_it_exits_0(tmp_path: Path) -> None:
    supervisor = Supervisor(
        ["consume", "jobs"], 3, executable=child(tmp_path, "sys.exit(0)"), backoff=fast_backoff()
    )
    assert supervisor.run() == 0
    assert supervisor.restarts == 0
    assert [runs(tmp_path, n) for n in range(3)] == [1, 1, 1]


def test_a_child_that_died_is_started_again_after_a_growing_pause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Child 1 dies twice (exit 3, then killed), then stops cleanly; the others stop at once.
    body = (
        "if n == 1 and runs == 0: sys.exit(3)\n"
        "if n == 1 and runs == 1: os.kill(os.getpid(), 9)\n"
        "sys.exit(0)"
    )
    caplog.set_level(logging.INFO, logger="messenger.supervisor")
    supervisor = Supervisor(
        ["consume", "jobs"], 3, executable=child(tmp_path, body), backoff=fast_backoff()
    )
    assert supervisor.run() == 0
    assert supervisor.restarts == 2
    assert [runs(tmp_path, n) for n in range(3)] == [1, 3, 1]
    assert "exited with 3; starting it again in 0.1s" in caplog.text
    assert "was killed by SIGKILL; starting it again in 0.1s" in caplog.text


def test_a_configuration_error_stops_the_others_and_exits_2(tmp_path: Path) -> None:
    body = "sys.exit(2) if n == 0 else time.sleep(30)"
    supervisor = Supervisor(
        ["consume", "jobs"], 2, executable=child(tmp_path, body), backoff=fast_backoff()
    )
    started = time.monotonic()
    assert supervisor.run() == 2
    assert time.monotonic() - started < 20, "the sleeping child was stopped"


def test_the_children_are_given_the_command_line_and_processes_1(tmp_path: Path) -> None:
    body = f"pathlib.Path({str(tmp_path)!r}, f'argv-{{n}}').write_text(' '.join(sys.argv[1:]))"
    supervisor = Supervisor(
        ["consume", "jobs", "--processes", "2", "--limit", "5"], 2, executable=child(tmp_path, body)
    )
    assert supervisor.run() == 0
    argv = (tmp_path / "argv-0").read_text()
    assert argv == "consume jobs --processes 2 --limit 5 --processes 1"


def test_a_child_gets_sigterm_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    body = (
        "import signal\n"
        "def stop(*_):\n"
        "    pathlib.Path(str(count) + '.stopped').write_text('SIGTERM')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "pathlib.Path(str(count) + '.pid').write_text(str(os.getpid()))\n"
        "time.sleep(60)"
    )
    executable = child(tmp_path, body)
    code = (
        "from messenger_core.supervisor import Supervisor\n"
        f"Supervisor(['consume'], 1, executable={executable!r}).run()\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", code])
    pid_file = tmp_path / "runs-0.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    supervisor.kill()
    supervisor.wait()
    stopped = tmp_path / "runs-0.stopped"
    while not stopped.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert stopped.read_text() == "SIGTERM"
    finally:
        if not stopped.exists():
            os.kill(child_pid, signal.SIGKILL)


def test_processes_with_an_application_already_built_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    messenger = Messenger({"transports": {"async": "memory://"}}, autoload=False)
    code = main(["consume", "async", "--processes", "2"], application=messenger)
    assert code == 2
    assert "--processes needs the `messenger` command" in capsys.readouterr().err
