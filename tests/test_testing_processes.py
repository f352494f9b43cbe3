"""messenger_core.testing.processes.MessengerProcess: a real child process, its output in a
file, waited for with a deadline and never left running."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from messenger_core.testing.processes import MessengerProcess, messenger_command

PRINT_THEN_SLEEP = "import time; print('ready', flush=True); time.sleep(60)"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_wait_until_returns_what_the_condition_found_in_the_output(tmp_path: Path) -> None:
    with MessengerProcess(_python(PRINT_THEN_SLEEP), tmp_path / "out.log", timeout=30) as child:
        found = child.wait_until(lambda: "ready" in child.output() and "yes", "the ready line")
        assert found == "yes"
        assert child.running()
        child.assert_running()
        assert child.stop(signal.SIGTERM) == -signal.SIGTERM
    assert child.returncode == -signal.SIGTERM


def test_wait_until_fails_with_the_output_of_a_process_that_exited_early(tmp_path: Path) -> None:
    code = "import sys; print('config is broken'); sys.exit(3)"
    with MessengerProcess(_python(code), tmp_path / "out.log", timeout=30) as child:
        with pytest.raises(AssertionError) as failed:
            child.wait_until(lambda: False, "a line that never comes")
        assert child.returncode == 3
        with pytest.raises(AssertionError, match="exited with 3"):
            child.assert_running()
    message = str(failed.value)
    assert "waiting for a line that never comes" in message
    assert "exited with 3" in message
    assert "config is broken" in message


def test_wait_until_sees_what_a_process_did_just_before_it_exited(tmp_path: Path) -> None:
    with MessengerProcess(_python("print('done')"), tmp_path / "out.log", timeout=30) as child:
        assert child.wait() == 0
        assert child.wait_until(lambda: "done" in child.output(), "the last line")


def test_wait_until_fails_after_the_timeout_with_the_output(tmp_path: Path) -> None:
    with MessengerProcess(_python(PRINT_THEN_SLEEP), tmp_path / "out.log", timeout=30) as child:
        child.wait_until(lambda: "ready" in child.output(), "the ready line")
        with pytest.raises(AssertionError, match=r"no nothing within 0\.2 s:\nready"):
            child.wait_until(lambda: False, "nothing", timeout=0.2)
        with pytest.raises(AssertionError, match=r"did not exit within 0\.1 s:\nready"):
            child.wait(timeout=0.1)
        assert child.running()


def test_the_context_manager_kills_the_process_even_when_the_test_fails(tmp_path: Path) -> None:
    started: list[MessengerProcess] = []

    def failing_test() -> None:
        with MessengerProcess(_python(PRINT_THEN_SLEEP), tmp_path / "out.log") as child:
            started.append(child)
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError):
        failing_test()
    [child] = started
    assert child.returncode == -signal.SIGKILL
    assert not _alive(child.pid)


def test_a_stop_that_is_not_obeyed_fails_and_kills_the_process(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(60)"
    )
    with MessengerProcess(_python(code), tmp_path / "out.log", timeout=30) as child:
        child.wait_until(lambda: "ignoring" in child.output(), "the handler installed")
        with pytest.raises(AssertionError, match=r"did not exit within 0\.3 s:\nignoring"):
            child.stop(signal.SIGTERM, timeout=0.3)
        assert child.returncode == -signal.SIGKILL


def test_append_keeps_the_output_of_an_earlier_process(tmp_path: Path) -> None:
    output = tmp_path / "out.log"
    MessengerProcess(_python("print('first')"), output).wait()
    with MessengerProcess(_python("print('second')"), output, append=True) as child:
        assert child.wait() == 0
    assert child.output().split() == ["first", "second"]


def test_messenger_command_runs_this_python_s_messenger(tmp_path: Path) -> None:
    assert messenger_command("consume", "async") == [
        sys.executable, "-m", "messenger_core", "consume", "async",
    ]  # fmt: skip
    config = tmp_path / "messenger.toml"
    assert messenger_command("stop-workers", config=config)[3:] == [
        "--config", str(config), "stop-workers",
    ]  # fmt: skip
    with MessengerProcess(messenger_command("--help"), tmp_path / "out.log") as child:
        assert child.wait() == 0, child.output()
    assert "consume" in child.output()
