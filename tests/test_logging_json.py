"""Structured logs: ``--log-format json`` and the message fields on every worker line."""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from messenger_core import Envelope, Messenger
from messenger_core.cli import main
from messenger_core.logging_json import ContextFilter, JsonFormatter, install, message_fields
from messenger_core.stamps import ReceivedStamp, TransportMessageIdStamp

FIXTURES = Path(__file__).parent / "fixtures"
APP = ["--app", "cli_app.app:create_app"]


@attrs.frozen
class Ping:
    n: int


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_formatter_writes_one_object_per_record_with_extras_and_masks_passwords() -> None:
    logger = logging.getLogger("messenger.test.formatter")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        logger.warning(
            "cannot reach %s", "redis://user:secret@host:6379", extra={"transport": "async"}
        )
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed\non two lines")
    finally:
        logger.removeHandler(handler)
    first, second = records(stream.getvalue())
    assert first["level"] == "WARNING"
    assert first["logger"] == "messenger.test.formatter"
    assert first["transport"] == "async"
    assert "secret" not in first["message"]
    assert "***" in first["message"]
    assert first["time"].endswith("+00:00")
    assert second["message"] == "it failed\non two lines"
    assert "ValueError: boom" in second["exception"]


@pytest.fixture
def fx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """The command line's fixture application, reset and isolated in tmp_path."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.chdir(tmp_path)
    for name in ("MESSENGER_APP", "MESSENGER_DISABLE_PLUGIN_AUTOLOAD", "MESSENGER_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLI_APP_STOP_FILE", str(tmp_path / "stop-file"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    module = importlib.import_module("cli_app.app")
    module.reset()
    yield module
    module.reset()


def test_consume_with_log_format_json(fx: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    messenger = fx.create_app()
    messenger.bus.dispatch(fx.OrderPlaced(order_id=1))
    messenger.bus.dispatch(fx.Flaky(label="a"))

    code = main([*APP, "--log-format", "json", "consume", "async", "--limit", "3", "-v"])

    assert code == 0
    lines = records(capsys.readouterr().err)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    by_message = [line for line in lines if "message_id" in line]
    handled = [line for line in by_message if line["message"].startswith("handled ")]
    assert handled[0]["message_type"] == "cli_app.app.OrderPlaced"
    assert handled[0]["transport"] == "async"
    retried = next(line for line in by_message if "retry 1" in line["message"])
    parked = next(line for line in by_message if "failed for good" in line["message"])
    assert retried["message_type"] == parked["message_type"] == "cli_app.app.Flaky"
    assert retried["transport"] == parked["transport"] == "async"
    assert retried["level"] == "WARNING"
    assert parked["level"] == "ERROR"
    assert retried["message_id"] != parked["message_id"]  # the retry is a new message
    start = next(line for line in lines if line["message"].startswith("worker consuming"))
    assert start["transport"] == "async"  # one transport consumed: every line names it
    stop = next(line for line in lines if line["message"].startswith("worker stopped"))
    assert stop["transport"] == "async"


def test_the_environment_variable_chooses_the_format(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSENGER_LOG_FORMAT", "json")
    fx.create_app().bus.dispatch(fx.OrderPlaced(order_id=1))
    assert main([*APP, "consume", "async", "--limit", "1"]) == 0
    assert records(capsys.readouterr().err)[0]["logger"] == "messenger.worker"

    monkeypatch.setenv("MESSENGER_LOG_FORMAT", "xml")
    assert main([*APP, "stats"]) == 2
    assert "MESSENGER_LOG_FORMAT must be text or json, not 'xml'" in capsys.readouterr().err


def test_lines_logged_while_handling_carry_the_message() -> None:
    """A transport's, a middleware's or a handler's own line, logged while the worker handles
    a message, names it (ContextFilter), and stops naming it once it is settled."""
    messenger = Messenger({"transports": {"async": "memory://"}, "routing": {Ping: "async"}})
    inner = logging.getLogger("messenger.test.handler")

    @messenger.handler
    def ping(message: Ping) -> None:
        inner.warning("handling ping %d", message.n)

    install(messenger)
    assert install(messenger) is install(messenger)  # once per application
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger("messenger")
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        sent = messenger.bus.dispatch(Ping(1))
        messenger.worker(["async"]).run(limit=1, handle_signals=False)
        inner.warning("after the worker")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    lines = records(stream.getvalue())
    during = next(line for line in lines if line["message"] == "handling ping 1")
    assert during["message_type"] == f"{__name__}.Ping"
    assert during["transport"] == "async"
    assert during["message_id"] == message_fields(sent)["message_id"]
    after = next(line for line in lines if line["message"] == "after the worker")
    assert "message_id" not in after
    assert "transport" not in after


def test_message_fields() -> None:
    received = Envelope(Ping(1)).with_(
        TransportMessageIdStamp(id="7"), ReceivedStamp(transport_name="async")
    )
    assert message_fields(None) == {}
    assert message_fields(None, "async") == {"transport": "async"}
    assert message_fields(Envelope(Ping(1))) == {"message_type": f"{__name__}.Ping"}
    assert message_fields(received) == {
        "message_type": f"{__name__}.Ping",
        "message_id": "7",
        "transport": "async",
    }


def test_a_transport_line_logged_while_receiving_names_the_transport() -> None:
    """What a transport logs inside get() (an outage, a reconnection) names it, even for a
    worker consuming several transports."""
    messenger = Messenger({"transports": {"first": "memory://", "second": "memory://"}})
    transport_logger = logging.getLogger("messenger.test.transport")
    for name in ("first", "second"):
        transport = messenger.get_transport(name)
        original = transport.get

        def logging_get(original: Any = original, name: str = name) -> Any:
            transport_logger.warning("polling %s", name)
            return original()

        transport.get = logging_get  # type: ignore[method-assign]
    install(messenger)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger("messenger")
    root.addHandler(handler)
    try:
        messenger.worker(["first", "second"]).run(time_limit=0.05, handle_signals=False)
    finally:
        root.removeHandler(handler)
    polls = [line for line in records(stream.getvalue()) if line["message"].startswith("poll")]
    assert {(line["message"], line["transport"]) for line in polls} == {
        ("polling first", "first"),
        ("polling second", "second"),
    }
