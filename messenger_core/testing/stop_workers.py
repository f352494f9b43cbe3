"""The tests every stop signal kept in a shared store (``stop_signal = "<dsn>"``) must pass.

A plugin whose transport factory implements ``create_stop_signal`` subclasses
:class:`StopSignalContract` in its tests and provides a ``signal_dsn`` fixture (a DSN of a
fresh, empty signal on the real store)::

    class TestRedisStopSignal(StopSignalContract):
        pass  # the module defines the signal_dsn fixture

The suite checks that two "hosts" share the signal, that a stop requested before a worker
started does not stop it, that reads are cached for ``CHECK_INTERVAL``, that the
``stop_signal`` configuration key builds it, and, with real processes, that ``messenger
stop-workers`` on one "host" stops ``messenger consume`` on another through the store
(:func:`check_stop_workers_across_hosts`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from messenger_core.app import Messenger
from messenger_core.dsn import Dsn
from messenger_core.plugins import TRANSPORTS_GROUP, PluginRegistry
from messenger_core.stop_signal import ClosableStopSignal, PollingStopSignal, StopSignal

__all__ = ["StopSignalContract", "check_stop_workers_across_hosts"]

DEADLINE = 60.0
"""Seconds any one step may take (generous: machines running tests are busy)."""


MakeSignal = Callable[..., StopSignal]


class StopSignalContract:
    """pytest base class; subclasses provide the ``signal_dsn`` fixture."""

    @pytest.fixture
    def make_signal(self, signal_dsn: str) -> Iterator[MakeSignal]:
        """Builds signals on ``signal_dsn`` (one per "host") that read the store every call."""
        made: list[StopSignal] = []
        dsn = Dsn.parse(signal_dsn)
        factory = PluginRegistry().load(TRANSPORTS_GROUP, dsn.scheme)
        if isinstance(factory, type):
            factory = factory()

        def make(**options: str) -> StopSignal:
            signal: StopSignal = factory.create_stop_signal(dsn, options)
            if isinstance(signal, PollingStopSignal):
                signal.CHECK_INTERVAL = 0.0  # look now, not within a second
            made.append(signal)
            return signal

        yield make
        for signal in made:
            _close(signal)

    def test_two_hosts_share_the_signal(self, make_signal: MakeSignal) -> None:
        worker_host, command_host = make_signal(), make_signal()
        started = time.time()
        assert not worker_host.requested_since(started)

        command_host.request()

        assert worker_host.requested_since(started)

    def test_a_request_made_before_a_worker_started_does_not_stop_it(
        self, make_signal: MakeSignal
    ) -> None:
        command_host = make_signal()
        command_host.request()
        started = time.time()
        worker_host = make_signal()

        assert not worker_host.requested_since(started)
        command_host.request()
        assert worker_host.requested_since(started)

    def test_the_store_is_read_at_most_once_per_check_interval(
        self, make_signal: MakeSignal
    ) -> None:
        worker_host, command_host = make_signal(), make_signal()
        if not isinstance(worker_host, PollingStopSignal):
            pytest.skip("the signal is not a PollingStopSignal")
        worker_host.CHECK_INTERVAL = 3600.0
        started = time.time()
        assert not worker_host.requested_since(started)  # read now, remembered for an hour

        command_host.request()

        assert not worker_host.requested_since(started)
        worker_host.CHECK_INTERVAL = 0.0
        assert worker_host.requested_since(started)

    def test_the_stop_signal_configuration_key_builds_it(
        self, signal_dsn: str, make_signal: MakeSignal
    ) -> None:
        config = {"stop_signal": signal_dsn, "transports": {"async": {"dsn": "memory://"}}}
        with Messenger(config) as worker_side, Messenger(config) as command_side:
            signal = worker_side.stop_signal
            assert type(signal) is type(make_signal())
            if isinstance(signal, PollingStopSignal):
                signal.CHECK_INTERVAL = 0.0
            started = time.time()
            assert not signal.requested_since(started)

            command_side.stop_signal.request()

            assert signal.requested_since(started)

    @pytest.mark.slow
    def test_stop_workers_in_one_process_stops_a_worker_in_another(
        self, signal_dsn: str, tmp_path: Path
    ) -> None:
        check_stop_workers_across_hosts(signal_dsn, tmp_path)


def _close(signal: StopSignal) -> None:
    if isinstance(signal, ClosableStopSignal):
        signal.close()


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
