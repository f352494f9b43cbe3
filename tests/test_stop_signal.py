"""Where the "stop workers" signal lives: the default file, a configured file, a shared store."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from messenger_core import ConfigurationError, Messenger
from messenger_core.cli import main
from messenger_core.stop_signal import (
    STOP_SIGNAL_FILE_VARIABLE,
    FileStopSignal,
    application_key,
)


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


# -- the default signal is per application --------------------------------------------------
def _config(app: str, dsn: str = "memory://") -> dict[str, object]:
    return {"app": app, "transports": {"async": dsn}}


@pytest.fixture
def default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default signal's files go to ``tmp_path`` (the "host's" temporary directory)."""
    monkeypatch.delenv(STOP_SIGNAL_FILE_VARIABLE, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(FileStopSignal, "CHECK_INTERVAL", 0.0)
    return tmp_path


def test_the_default_signal_is_a_file_of_the_application(default_location: Path) -> None:
    signal = Messenger(_config("shop.messaging:messenger")).stop_signal

    assert isinstance(signal, FileStopSignal)
    assert signal.path.parent == default_location
    assert signal.path.name.startswith("messenger-stop-workers-")


def test_two_applications_on_one_host_do_not_stop_each_other(default_location: Path) -> None:
    shop, billing = Messenger(_config("shop.app:messenger")), Messenger(_config("billing:app"))
    started = time.time() - 1

    shop.stop_signal.request()

    assert Messenger(_config("shop.app:messenger")).stop_signal.requested_since(started)
    assert not billing.stop_signal.requested_since(started)
    assert shop.stop_signal.path != billing.stop_signal.path  # type: ignore[attr-defined]


def test_the_same_application_on_other_queues_has_its_own_signal(default_location: Path) -> None:
    production = Messenger(_config("shop:app", "sqlite:////srv/production.db"))
    staging = Messenger(_config("shop:app", "sqlite:////srv/staging.db"))
    assert production.stop_signal.path != staging.stop_signal.path  # type: ignore[attr-defined]


def test_two_deployments_of_one_application_share_the_signal(
    default_location: Path, tmp_path: Path
) -> None:
    # The same configuration in two release directories: the key ignores where it lives.
    text = '[messenger]\napp = "shop:app"\n[messenger.transports]\nasync = "memory://"\n'
    (tmp_path / "release-1").mkdir()
    (tmp_path / "release-2").mkdir()
    (tmp_path / "release-1" / "messenger.toml").write_text(text)
    (tmp_path / "release-2" / "messenger.toml").write_text(text)
    old = Messenger.from_config(tmp_path / "release-1" / "messenger.toml")
    new = Messenger.from_config(tmp_path / "release-2" / "messenger.toml")
    started = time.time() - 1

    new.stop_signal.request()

    assert old.stop_signal.requested_since(started)


def test_the_key_hides_the_dsn(default_location: Path) -> None:
    messenger = Messenger(_config("shop:app", "redis://user:s3cret@localhost:6379/messages"))
    assert "s3cret" not in application_key(messenger.config)
    assert len(application_key(messenger.config)) == 12


def test_the_variable_still_names_the_default_file(
    default_location: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STOP_SIGNAL_FILE_VARIABLE, str(default_location / "chosen"))
    signal = Messenger(_config("shop:app")).stop_signal
    assert signal.path == default_location / "chosen"  # type: ignore[attr-defined]


def test_stop_workers_without_an_application_says_whose_workers_it_misses(
    default_location: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(default_location)
    for name in ("MESSENGER_APP", "MESSENGER_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    assert main(["stop-workers"]) == 0

    out = capsys.readouterr().out
    assert f"stop file {default_location / 'messenger-stop-workers'}" in out
    assert "no application was found here" in out
    assert "--config or --app" in out
