"""Where the "stop workers" signal lives: the default file, a configured file, a shared store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from messenger_core import ConfigurationError, Messenger
from messenger_core.stop_signal import FileStopSignal


def test_a_configured_file_is_shared_by_every_application_using_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FileStopSignal, "CHECK_INTERVAL", 0.0)  # look now, not within a second
    path = tmp_path / "stop"
    config = {"stop_signal": f"file://{path}"}
    worker_side, command_side = Messenger(config), Messenger(config)
    started = time.time() - 1

    assert not worker_side.stop_signal.requested_since(started)
    command_side.stop_signal.request()

    assert worker_side.stop_signal.requested_since(started)
    assert path.exists()


def test_a_store_that_cannot_hold_a_signal_is_a_configuration_error() -> None:
    messenger = Messenger({"stop_signal": "memory://"})
    with pytest.raises(ConfigurationError, match=r"memory:// transport cannot keep a stop signal"):
        _ = messenger.stop_signal


def test_a_signal_passed_in_wins_over_the_configuration(tmp_path: Path) -> None:
    signal = FileStopSignal(tmp_path / "mine")
    messenger = Messenger({"stop_signal": "memory://"}, stop_signal=signal)
    assert messenger.stop_signal is signal
