"""The ``messenger`` command line, driven in-process through ``main([...])``.

The application is ``tests/fixtures/cli_app/app.py``: memory transports whose queues live in
that module, so that each command (which builds its own application, as a process would) and
the test see the same messages.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import attrs
import pytest

from messenger_core import ConfigurationError, Envelope, Messenger, TransportNamesStamp
from messenger_core.cli import Commands, main
from messenger_core.message_types import type_name_of
from messenger_core.plugins import PLUGINS_GROUP, TRANSPORTS_GROUP
from messenger_core.transports.memory import MemoryTransport

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
APP = ["--app", "cli_app.app:create_app"]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@attrs.frozen
class Gone:
    """A message class the application does not know: it cannot decode it."""

    n: int


@pytest.fixture
def fx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """The fixture application's module, reset, with the command line isolated in tmp_path."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.chdir(tmp_path)  # no messenger.toml / pyproject.toml found by accident
    monkeypatch.delenv("MESSENGER_APP", raising=False)
    monkeypatch.delenv("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("MESSENGER_DISABLED_PLUGINS", raising=False)
    # Never touch the host's real stop-workers file: the app's signal and the default one
    # both live in tmp_path.
    monkeypatch.setenv("CLI_APP_STOP_FILE", str(tmp_path / "stop-file"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    module = importlib.import_module("cli_app.app")
    module.reset()
    yield module
    module.reset()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ids_in(fx: ModuleType, queue: str) -> list[str]:
    return [id for id, _ in fx.queue(queue).payloads()]


def app(fx: ModuleType) -> Messenger:
    messenger: Messenger = fx.create_app()
    return messenger


def handled(fx: ModuleType) -> list[object]:
    return list(fx.HANDLED)


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def park_a_flaky_message(fx: ModuleType, capsys: pytest.CaptureFixture[str], label: str) -> str:
    """Dispatch a Flaky message and consume it until it is in the failure transport."""
    app(fx).bus.dispatch(fx.Flaky(label=label))
    code, _, _ = run(capsys, *APP, "consume", "async", "--limit", "2")  # one retry, then parked
    assert code == 0
    return ids_in(fx, "failed")[-1]


# -- consume --------------------------------------------------------------------------------------
def test_consume_handles_retries_and_parks_then_failed_show_lists_it(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    messenger = app(fx)
    for n in range(3):
        messenger.bus.dispatch(fx.OrderPlaced(order_id=n))
    messenger.bus.dispatch(fx.Flaky(label="a"))

    code, out, err = run(capsys, *APP, "consume", "async", "--limit", "5")

    assert code == 0
    assert handled(fx) == [fx.OrderPlaced(order_id=n) for n in range(3)]
    assert "\r" not in err  # not a terminal: plain log lines
    assert "worker consuming async; buses messenger.bus.default (" in err
    assert "; limits: 5 messages\n" in err
    assert re.search(r"Flaky \(id \w+\) from async failed, retry 1", err)
    assert re.search(r"Flaky \(id \w+\) from async failed for good and was stored", err)
    assert "stored in failure transport failed" in err
    # One retry and one parked message are told apart, not "2 failed".
    assert (
        "worker stopped (message limit of 5 reached): 3 handled, 1 retried, 1 parked, "
        "0 rejected\n" in err
    )
    assert "handled OrderPlaced" not in err  # that needs -v
    assert len(ids_in(fx, "failed")) == 1

    code, out, err = run(capsys, *APP, "failed", "show")

    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "1 message in failure transport 'failed':"
    assert lines[1].split() == ["Id", "Message", "type", "Failed", "at", "Error"]
    row = lines[3]
    assert row.startswith(ids_in(fx, "failed")[0] + " ")
    assert "Flaky" in row
    assert "RuntimeError: " in row
    assert time.strftime("%Y-%m-%d") in row or time.strftime("%Y") in row  # a failure time


def test_consume_verbose_logs_one_line_per_message(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    messenger = app(fx)
    messenger.bus.dispatch(fx.OrderPlaced(order_id=1))
    messenger.bus.dispatch(fx.OrderPlaced(order_id=2))

    code, _, err = run(capsys, *APP, "consume", "async", "--limit", "2", "-v")

    assert code == 0
    assert len(re.findall(r"handled OrderPlaced \(id \w+\) from async in ", err)) == 2


def test_consume_quiet_logs_only_problems(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    app(fx).bus.dispatch(fx.OrderPlaced(order_id=1))

    code, _, err = run(capsys, "-q", *APP, "consume", "async", "--limit", "1")

    assert code == 0
    assert err == ""
    assert handled(fx) == [fx.OrderPlaced(order_id=1)]


def test_consume_on_a_terminal_shows_a_live_line(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    messenger = app(fx)
    for n in range(3):
        messenger.bus.dispatch(fx.OrderPlaced(order_id=n))
    messenger.bus.dispatch(fx.Flaky(label="a"))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    code = main([*APP, "-v", "consume", "async", "--limit", "5"])

    text = terminal.getvalue()
    assert code == 0
    assert "\r" in text
    last = text.rstrip("\n").rsplit("\r", 1)[-1]
    assert last.startswith("async: 3 handled, 1 retried, 1 parked, 0 rejected, ")
    assert " msg/s, memory " in last
    assert "MiB" in last
    assert "handled OrderPlaced (id " in text  # -v: a line per message, above the status
    assert text.endswith("\n")


def test_consume_all_skips_failure_and_sync_transports(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    messenger = app(fx)
    messenger.bus.dispatch(fx.OrderPlaced(order_id=1))
    messenger.bus.dispatch(
        fx.OrderPlaced(order_id=2), TransportNamesStamp(transport_names=("priority",))
    )

    code, _, err = run(capsys, *APP, "consume", "--all", "--limit", "2")

    assert code == 0
    assert "worker consuming async, priority (in priority order); " in err
    assert sorted(m.order_id for m in fx.HANDLED) == [1, 2]


def test_consume_stops_at_the_failure_limit(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    messenger = app(fx)
    messenger.bus.dispatch(fx.Flaky(label="a"))
    messenger.bus.dispatch(fx.OrderPlaced(order_id=1))

    code, _, err = run(capsys, *APP, "consume", "async", "--failure-limit", "1")

    assert code == 0
    assert "failure limit of 1 reached" in err


def test_consume_stops_at_the_time_limit_with_options_accepted(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        *APP,
        "consume",
        "async",
        "priority",
        "--time-limit",
        "0.1",
        "--sleep",
        "0.02",
        "--memory-limit",
        "4G",
        "--keepalive",
        "--bus",
        "event.bus",
    )

    assert code == 0
    assert "time limit of 0.1s reached" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["consume"], "name the transports to consume, or give --all (transports: async, "),
        (["consume", "async", "--all"], "not both"),
        (["consume", "nope"], "no transport named 'nope'"),
        (["consume", "direct"], "sync://"),
        (["consume", "async", "--limit", "x"], "argument --limit: 'x' is not a whole number"),
        (["consume", "async", "--limit", "0"], "must be above zero"),
        (["consume", "async", "--memory-limit", "12Q"], "is not like 128M"),
        (["consume", "async", "--sleep", "-1"], "must not be negative"),
        (["consume", "async", "--bus", "nobus"], "no bus named 'nobus'"),
        (["consume", "async", "--queues", "a,b"], "cannot consume selected queues"),
        (["consume", "async", "--bogus"], "unrecognized arguments: --bogus"),
        (["failed", "show", "--transport", "direct"], "cannot list its messages"),
        (["failed", "retry", "1"], "add --force"),
        (["failed", "retry"], "name the messages to retry"),
        (["failed", "remove", "1", "--all", "--force"], "not both"),
        (["failed"], "required: SUBCOMMAND"),
        (["stats", "nope"], "no transport named 'nope'"),
        (["stats", "--format", "xml"], "invalid choice: 'xml'"),
        (["setup-transports", "nope"], "no transport named 'nope'"),
        (["debug", "event.bs"], "did you mean 'event.bus'?"),
        (["consme"], "unknown command 'consme'; did you mean 'consume'?"),
        ([], "name a command: consume, failed, setup-transports, stats, debug, stop-workers"),
    ],
)
def test_usage_and_configuration_errors_are_one_line_and_exit_2(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, out, err = run(capsys, *APP, *argv)

    assert code == 2
    assert out == ""
    line = one_line_error(err)
    assert expected in line
    assert line.startswith("messenger")
    assert ": error: " in line


def test_usage_errors_name_the_command_and_its_help(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, err = run(capsys, *APP, "consume")
    assert one_line_error(err).startswith("messenger consume: error: name the transports")
    assert err.rstrip().endswith("(see: messenger consume --help)")


def test_verbose_adds_the_traceback(fx: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *APP, "-v", "consume", "nope")

    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == (
        "messenger: error: no transport named 'nope' (configured: async, priority, failed, direct)"
    )


def test_global_options_are_accepted_after_the_command(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "stats", "--format", "json", *APP, "-q")

    assert code == 0
    assert json.loads(out)["uncountable_transports"] == ["direct"]


# -- failed ---------------------------------------------------------------------------------------
def test_failed_show_one_message_in_detail(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    id = park_a_flaky_message(fx, capsys, "a")

    code, out, err = run(capsys, *APP, "failed", "show", id)

    assert code == 0
    assert err == ""
    assert out.startswith(f"Message {id} in failure transport 'failed'\n")
    assert f"Type                {type_name_of(fx.Flaky)}" in out
    assert "Original transport  async" in out
    assert "Retries             1" in out
    assert "label = 'a'" in out
    stamps = out.split("\nStamps\n")[1].split("\n\n")[0].splitlines()
    assert [line.split("(")[0].strip() for line in stamps] == [
        "BusNameStamp",
        "RedeliveryStamp",
        "ErrorDetailsStamp",
        "ErrorDetailsStamp",
        "SentToFailureTransportStamp",
        "TransportMessageIdStamp",
    ]
    history = out.split("Error history (oldest first)\n")[1].split("\n\n")[0].splitlines()
    assert len(history) == 2
    assert all("builtins.RuntimeError: " in line for line in history)
    traceback = out.split("Traceback of the last error\n")[1]
    assert "Traceback (most recent call last)" in traceback
    assert "RuntimeError: flaky a is broken" in traceback


def test_failed_show_stats_counts_by_type(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    park_a_flaky_message(fx, capsys, "a")
    park_a_flaky_message(fx, capsys, "b")

    code, out, _ = run(capsys, *APP, "failed", "show", "--stats")

    assert code == 0
    assert out.splitlines()[2].split() == ["Flaky", "2"]
    assert "2 messages in failure transport 'failed'." in out


def test_failed_show_max_limits_the_list(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    park_a_flaky_message(fx, capsys, "a")
    park_a_flaky_message(fx, capsys, "b")

    code, out, _ = run(capsys, *APP, "failed", "show", "--max", "1")

    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "2 messages in failure transport 'failed':"
    assert len([line for line in lines if "Flaky" in line]) == 1
    assert "Showing the first 1: --max N shows more." in out


def test_failed_show_an_empty_transport_and_an_unknown_id(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *APP, "failed", "show") == (
        0,
        "No messages in failure transport 'failed'.\n",
        "",
    )
    assert run(capsys, *APP, "failed", "show", "999") == (
        1,
        "",
        "messenger: error: no message with id '999' in failure transport 'failed'\n",
    )


def test_an_undecodable_message_is_listed_with_its_raw_type(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = MemoryTransport(Messenger().serializer(), queue=fx.queue("async"), serialize=True)
    foreign.send(Envelope(Gone(n=1)))
    assert run(capsys, *APP, "consume", "async", "--limit", "1")[0] == 0
    [id] = ids_in(fx, "failed")

    code, out, _ = run(capsys, *APP, "failed", "show")

    assert code == 0
    row = out.splitlines()[3]
    assert type_name_of(Gone) in row
    assert "MessageDecodingError: " in row
    assert " - " not in row  # the failure time was read from the raw stamp header

    code, out, _ = run(capsys, *APP, "failed", "show", id)

    assert code == 0
    assert f"{type_name_of(Gone)} (could not be decoded)" in out
    assert "Original transport  async" in out
    assert 'Body (7 bytes)\n  {"n":1}\n' in out


def test_failed_retry_after_the_fix_handles_and_removes_it(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    id = park_a_flaky_message(fx, capsys, "a")
    fx.STATE["broken"] = False

    code, out, _ = run(capsys, *APP, "failed", "retry", id, "--force")

    assert code == 0
    assert f"Message {id} (Flaky): handled, removed from 'failed'." in out
    assert handled(fx) == [fx.Flaky(label="a")]
    assert ids_in(fx, "failed") == []


def test_failed_retry_that_fails_again_stores_it_again(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    id = park_a_flaky_message(fx, capsys, "a")

    code, out, _ = run(capsys, *APP, "failed", "retry", id, "--force")

    assert code == 1
    assert f"Message {id} (Flaky): failed again (HandlerFailedError: " in out
    assert "stored in failure transport 'failed'." in out
    [again] = ids_in(fx, "failed")
    assert again != id
    _, detail, _ = run(capsys, *APP, "failed", "show", again)
    assert "Original transport  async" in detail


def test_failed_retry_and_remove_of_unknown_ids_exit_1(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *APP, "failed", "retry", "999", "--force")
    assert (code, out) == (1, "Message 999: not found in failure transport 'failed'.\n")
    code, out, _ = run(capsys, *APP, "failed", "remove", "999", "--force")
    assert (code, out) == (1, "Message 999: not found in failure transport 'failed'.\n")


def test_failed_retry_asks_for_each_message(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = park_a_flaky_message(fx, capsys, "a")
    second = park_a_flaky_message(fx, capsys, "b")
    fx.STATE["broken"] = False
    monkeypatch.setattr(sys, "stdin", Terminal("maybe\nn\nyes\n"))

    code, out, _ = run(capsys, *APP, "failed", "retry", "--all")

    assert code == 0
    assert out.count("Retry message ") == 3  # "maybe" is asked again
    assert f"Message {first}: skipped." in out
    assert f"Message {second} (Flaky): handled" in out
    assert handled(fx) == [fx.Flaky(label="b")]
    assert ids_in(fx, "failed") == [first]


def test_failed_retry_quit_stops_asking(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = park_a_flaky_message(fx, capsys, "a")
    second = park_a_flaky_message(fx, capsys, "b")
    monkeypatch.setattr(sys, "stdin", Terminal("q\n"))

    code, out, _ = run(capsys, *APP, "failed", "retry", first, second)

    assert code == 0
    assert out.count("Retry message ") == 1
    assert ids_in(fx, "failed") == [first, second]


def test_failed_remove(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = park_a_flaky_message(fx, capsys, "a")
    second = park_a_flaky_message(fx, capsys, "b")
    third = park_a_flaky_message(fx, capsys, "c")

    code, out, _ = run(capsys, *APP, "failed", "remove", first, "--force")

    assert code == 0
    assert out == f"Message {first} (Flaky): removed from 'failed'.\n"
    assert ids_in(fx, "failed") == [second, third]

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert run(capsys, *APP, "failed", "remove", "--all")[0] == 0
    assert ids_in(fx, "failed") == [second, third]

    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    code, out, _ = run(capsys, *APP, "failed", "remove", "--all")
    assert code == 0
    assert "Remove these 2 messages?" in out
    assert ids_in(fx, "failed") == []


# -- setup-transports, stats, debug --------------------------------------------------------------
def test_setup_transports(fx: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *APP, "setup-transports")

    assert code == 0
    assert out.splitlines() == [
        "Set up async (memory://async).",
        "Set up priority (memory://priority).",
        "Set up failed (memory://failed).",
        "Skipped direct (sync://): it has nothing to set up.",
    ]
    assert (
        run(capsys, *APP, "setup-transports", "failed")[1] == "Set up failed (memory://failed).\n"
    )


def test_stats_json_is_exact(fx: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    messenger = app(fx)
    messenger.bus.dispatch(fx.OrderPlaced(order_id=1))
    messenger.bus.dispatch(fx.OrderPlaced(order_id=2))

    code, out, _ = run(capsys, *APP, "stats", "--format", "json")

    assert code == 0
    assert json.loads(out) == {
        "transports": {
            "async": {"count": 2},
            "priority": {"count": 0},
            "failed": {"count": 0, "failure_transport": True},
        },
        "uncountable_transports": ["direct"],
    }
    code, out, _ = run(capsys, *APP, "stats", "direct", "async", "--format", "json")
    assert json.loads(out) == {
        "transports": {"async": {"count": 2}},
        "uncountable_transports": ["direct"],
    }


def test_stats_text(fx: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    app(fx).bus.dispatch(fx.OrderPlaced(order_id=1))

    code, out, _ = run(capsys, *APP, "stats")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Transport", "Count", "Messages"]
    assert [line.split() for line in lines[2:5]] == [
        ["async", "1", "waiting"],
        ["priority", "0", "waiting"],
        ["failed", "0", "parked", "(failure", "transport)"],
    ]
    assert lines[5] == "Cannot count the messages of: direct."


def test_debug_lists_handlers_in_run_order_with_options_and_routes(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *APP, "debug")

    assert code == 0
    default, events, routing = out.split("\n\n")
    audited = type_name_of(fx.Audited)
    assert default.startswith("Bus messenger.bus.default (default)\n")
    assert f"  {audited}  (routed to direct)\n    1. " in default
    assert "audit_on_events" not in default
    assert "audit_from_direct  [priority=0, from_transport=direct]" in default
    assert f"  {type_name_of(fx.OrderPlaced)}  (routed to async)" in default
    assert "record_order  [priority=10]" in default
    event_lines = events.splitlines()
    assert event_lines[0] == "Bus event.bus"
    at = event_lines.index(f"  {audited}  (routed to direct)")
    assert "audit_on_events  [priority=0, bus=event.bus]" in event_lines[at + 1]
    assert "audit_from_direct  [priority=0, from_transport=direct]" in event_lines[at + 2]
    assert routing.splitlines()[0] == "Routing"
    assert f"  {type_name_of(fx.OrderPlaced)} -> async" in routing

    code, out, _ = run(capsys, *APP, "debug", "event.bus")
    assert code == 0
    assert "messenger.bus.default" not in out


# -- stop-workers ---------------------------------------------------------------------------------
def test_stop_workers_stops_a_running_worker(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    app(fx).bus.dispatch(fx.Started())
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(main([*APP, "consume", "async", "--sleep", "0.02"]))
    )
    worker.start()
    try:
        assert fx.STARTED.wait(10), "the worker did not start"
        time.sleep(0.05)  # a request is for workers started before it, to the file's mtime

        code = main([*APP, "stop-workers"])

        worker.join(10)
    finally:
        if worker.is_alive():  # do not leave it running whatever happened
            (tmp_path / "stop-file").touch()
            worker.join(10)
    out, err = capsys.readouterr()
    assert code == 0
    assert f"(stop file {tmp_path / 'stop-file'})" in out
    assert codes == [0]
    assert "worker stopped (stop-workers was requested)" in err


def test_stop_workers_without_an_application_uses_the_default_file(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "stop-workers")

    assert code == 0
    assert (tmp_path / "messenger-stop-workers").is_file()
    assert out.startswith("Asked every worker started before now to stop")


# -- finding the application ----------------------------------------------------------------------
def test_no_application_is_a_clear_error(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "stats")

    assert code == 2
    assert out == ""
    assert one_line_error(err) == (
        "messenger: error: no application: pass --app module:attribute, set MESSENGER_APP, or "
        "create messenger.toml (or [tool.messenger] in pyproject.toml) in the current directory"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cli_app.app", "is not like 'package.module:attribute'"),
        ("cli_app.nope:app", "cannot import application module 'cli_app.nope' (from --app): "),
        ("cli_app.app:nothing", "module 'cli_app.app' has no attribute 'nothing'"),
        ("cli_app.app:not_an_app", "is a int, not a Messenger"),
        ("cli_app.app:reset", "returned a NoneType, not a Messenger"),
    ],
)
def test_a_bad_application_is_a_clear_error(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], spec: str, expected: str
) -> None:
    code, _, err = run(capsys, "--app", spec, "stats")

    assert code == 2
    assert expected in one_line_error(err)


def test_the_application_instance_and_the_environment_variable(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "--app", "cli_app.app:app", "greet", "ada")[:2] == (
        0,
        "hello ada from 4 transports\n",
    )
    monkeypatch.setenv("MESSENGER_APP", "cli_app.app:create_app")
    assert run(capsys, "greet", "bob")[:2] == (0, "hello bob from 4 transports\n")


def test_the_current_directory_is_importable(
    fx: ModuleType,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = f"cwd_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(
        "from messenger_core import Messenger\nmessenger = Messenger()\n", encoding="utf-8"
    )
    monkeypatch.delitem(sys.modules, module, raising=False)

    code, out, _ = run(capsys, "--app", f"{module}:messenger", "stats", "--format", "json")

    assert code == 0
    assert json.loads(out) == {"transports": {}, "uncountable_transports": []}
    assert str(tmp_path) not in sys.path  # put there for the command only
    sys.modules.pop(module, None)


def test_an_application_module_that_fails_to_import(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    module = f"broken_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text("raise RuntimeError('no database')\n", encoding="utf-8")

    code, _, err = run(capsys, "--app", f"{module}:app", "stats")

    assert code == 2
    assert one_line_error(err) == (
        f"messenger: error: cannot import application module {module!r} (from --app): "
        "RuntimeError: no database"
    )


def test_messenger_toml_names_the_application(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "messenger.toml").write_text(
        '[messenger]\napp = "cli_app.app:create_app"\n', encoding="utf-8"
    )

    assert run(capsys, "greet", "ada")[:2] == (0, "hello ada from 4 transports\n")


def test_pyproject_tool_messenger_alone_is_the_application(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "shop"

            [tool.messenger]
            failure_transport = "failed"

            [tool.messenger.transports]
            jobs = "memory://"
            failed = "memory://"
            """
        ),
        encoding="utf-8",
    )

    code, out, _ = run(capsys, "stats", "--format", "json")

    assert code == 0
    assert json.loads(out) == {
        "transports": {"jobs": {"count": 0}, "failed": {"count": 0, "failure_transport": True}},
        "uncountable_transports": [],
    }
    assert run(capsys, "failed", "show")[1] == "No messages in failure transport 'failed'.\n"


def test_a_pyproject_without_tool_messenger_is_not_a_configuration(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")

    code, _, err = run(capsys, "stats")

    assert code == 2
    assert "no application" in one_line_error(err)


def test_config_option_and_errors_in_the_file(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "other.toml"
    config.write_text('[messenger.transports]\njobs = "memory://"\n', encoding="utf-8")
    assert json.loads(run(capsys, "--config", str(config), "stats", "--format", "json")[1]) == {
        "transports": {"jobs": {"count": 0}},
        "uncountable_transports": [],
    }

    code, _, err = run(capsys, "--config", str(tmp_path / "missing.toml"), "stats")
    assert code == 2
    assert "missing.toml does not exist" in one_line_error(err)

    config.write_text("[messenger]\nfailure_transprt = 'x'\n", encoding="utf-8")
    code, _, err = run(capsys, "--config", str(config), "stats")
    assert code == 2
    assert "did you mean 'failure_transport'?" in one_line_error(err)


def test_no_failure_transport_configured(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "messenger.toml").write_text(
        '[messenger.transports]\njobs = "memory://"\n', encoding="utf-8"
    )

    code, _, err = run(capsys, "failed", "show")

    assert code == 2
    assert one_line_error(err) == (
        "messenger: error: no failure transport is configured: set failure_transport in "
        "[messenger] (or pass --transport)"
    )


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_passwords_in_dsns_are_never_printed(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path, verbose: list[str]
) -> None:
    (tmp_path / "messenger.toml").write_text(
        textwrap.dedent(
            """\
            [messenger.transports]
            jobs = "memory://user:s3cret@jobs"
            cache = "redsi://user:s3cret@cache:6379/0"
            """
        ),
        encoding="utf-8",
    )

    code, out, err = run(capsys, *verbose, "setup-transports", "jobs")
    assert code == 0
    assert out == "Set up jobs (memory://user:***@jobs).\n"

    code, out, err = run(capsys, *verbose, "stats")
    assert code == 2
    assert "no transport for DSN scheme 'redsi'" in err
    assert "s3cret" not in out + err
    if verbose:
        assert "Traceback" in err
    else:
        one_line_error(err)


# -- commands from plugins, unexpected errors -----------------------------------------------------
def test_a_command_from_an_application_plugin(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *APP, "greet", "ada", "--shout")[:2] == (0, "HELLO ADA FROM 4 TRANSPORTS\n")
    assert run(capsys, *APP, "greet", "three")[0] == 3
    code, out, _ = run(capsys, *APP, "greet", "--help")
    assert code == 0
    assert "usage: messenger greet [-h]" in out


def test_an_unexpected_error_is_one_line_exit_1_and_a_traceback_with_v(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *APP, "greet", "boom")
    assert code == 1
    assert one_line_error(err) == ("messenger: error: RuntimeError: boom (-v shows the traceback)")

    code, _, err = run(capsys, *APP, "-v", "greet", "boom")
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == "messenger: error: RuntimeError: boom"


FAKE_PLUGIN = """
from messenger_core import hookimpl

def hello(context, args):
    context.echo("hello from an entry point")

@hookimpl
def messenger_add_commands(commands):
    commands.add("hello", hello, help="say hello from a plugin")
"""


def test_plugins_lists_entry_points_with_load_errors_and_their_commands_work(
    fx: ModuleType,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    prefix = f"fakecli_{tmp_path.name.replace('-', '_')}"
    (site / f"{prefix}_plugin.py").write_text(FAKE_PLUGIN, encoding="utf-8")
    (site / f"{prefix}_broken.py").write_text(
        "raise ImportError('needs libfoo')\n", encoding="utf-8"
    )
    info = site / "messenger_cli_fake-2.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: messenger-cli-fake\nVersion: 2.5\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[{TRANSPORTS_GROUP}]\nbrokenq = {prefix}_broken:Factory\n\n"
        f"[{PLUGINS_GROUP}]\nfakecli = {prefix}_plugin\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))

    code, out, _ = run(capsys, "plugins")

    assert code == 1
    listing = out.split("\n\n")[0].splitlines()[2:]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in listing}
    assert rows[(TRANSPORTS_GROUP, "brokenq")] == ["messenger-cli-fake", "2.5", "FAILED"]
    assert rows[(PLUGINS_GROUP, "fakecli")] == ["messenger-cli-fake", "2.5", "ok"]
    assert rows[(TRANSPORTS_GROUP, "memory")][0] == "messenger-core"
    assert rows[(TRANSPORTS_GROUP, "memory")][-1] == "ok"
    assert f"{TRANSPORTS_GROUP} brokenq ({prefix}_broken:Factory): ImportError: needs libfoo" in out

    assert run(capsys, "hello")[:2] == (0, "hello from an entry point\n")
    assert "say hello from a plugin" in run(capsys, "--help")[1]
    for name in (f"{prefix}_plugin", f"{prefix}_broken"):
        sys.modules.pop(name, None)


def test_commands_registry_refuses_duplicates_and_bad_names() -> None:
    commands = Commands()
    commands.add("one", lambda context, args: 0, help="first")
    with pytest.raises(ConfigurationError, match="defined twice"):
        commands.add("one", lambda context, args: 0, help="again")
    with pytest.raises(ConfigurationError, match="must start with a letter"):
        commands.add("two words", lambda context, args: 0, help="bad")
    assert commands.names() == ["one"]


# -- help -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        [],
        ["consume"],
        ["failed"],
        ["failed", "show"],
        ["failed", "retry"],
        ["failed", "remove"],
        ["setup-transports"],
        ["stats"],
        ["debug"],
        ["stop-workers"],
        ["plugins"],
    ],
)
def test_help_on_every_command_needs_no_application(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, err = run(capsys, *command, "--help")

    assert code == 0
    assert err == ""
    assert out.startswith(f"usage: messenger {' '.join(command)}".rstrip())


def test_top_level_help_lists_commands_and_exit_codes(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "--help")[1]
    for name in ("consume", "failed", "setup-transports", "stats", "debug", "stop-workers"):
        assert f"\n    {name}" in out
    assert "Exit codes: 0 done, 1 something failed, 2 wrong usage or configuration" in out


def test_python_m_messenger_core_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "messenger_core", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: messenger ")
    assert "consume" in result.stdout
    assert result.stderr == ""


# -- start-up checks ------------------------------------------------------------------------------
BAD_MIDDLEWARE_APP = """\
from cli_app.app import CONFIG, create_app
from messenger_core import Messenger


def create():
    good = create_app()
    config = {**CONFIG, "buses": {"messenger.bus.default": {"middleware": ["loging"]}}}
    memory = good.factories.load("messenger.transports", "memory")
    messenger = Messenger(config, transports={"memory": memory})
    for descriptor in good.handlers:
        messenger.handler(descriptor.callable, handles=descriptor.handles)
    return messenger
"""


def test_consume_with_an_unknown_middleware_exits_2_before_taking_a_message(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "bad_middleware_app.py").write_text(BAD_MIDDLEWARE_APP, encoding="utf-8")
    app(fx).bus.dispatch(fx.OrderPlaced(order_id=1))
    waiting = ids_in(fx, "async")

    code, out, err = run(capsys, "--app", "bad_middleware_app:create", "consume", "async")

    assert code == 2
    assert out == ""
    line = one_line_error(err)
    assert line.startswith(
        "messenger: error: messenger.buses.'messenger.bus.default'.middleware[0]: no middleware "
        "named 'loging' (available: add_bus_name_stamp, "
    )
    assert line.endswith("; did you mean 'logging'?")
    assert ids_in(fx, "async") == waiting  # untouched: not tried, not retried, not parked
    assert ids_in(fx, "failed") == []
    assert handled(fx) == []


STARTUP_PROBLEMS_TOML = """\
[messenger]
failure_transport = "failed"

[messenger.transports]
jobs = "memory://"
failed = "memory://"

[messenger.routing]
"shop.OrderPlacd" = "jobs"
"""


def test_debug_lists_problems_and_consume_warns_of_them_at_start(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "messenger.toml").write_text(STARTUP_PROBLEMS_TOML, encoding="utf-8")

    code, out, _ = run(capsys, "debug")

    assert code == 0
    problems = out.split("\n\n")[-1].splitlines()
    assert problems[0] == "Problems"
    assert problems[1].startswith(
        "  - route 'shop.OrderPlacd' -> jobs names no known message class; messages no route "
        "matches are handled at once"
    )
    assert len(problems) == 2

    code, _, err = run(capsys, "consume", "jobs", "--time-limit", "0.1", "--sleep", "0.01")

    assert code == 0
    assert "route 'shop.OrderPlacd' -> jobs names no known message class" in err


def test_a_well_configured_application_has_no_problems_section(
    fx: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *APP, "debug")

    assert code == 0
    assert "Problems" not in out


def test_a_config_file_the_application_does_not_use_is_a_warning(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[messenger.transports]\njobs = "memory://"\n', encoding="utf-8")

    code, out, err = run(capsys, *APP, "--config", str(other), "debug")

    assert code == 0
    expected = (
        f"--config {other} sets transports differently from the application "
        "'cli_app.app:create_app': the application's own configuration is used, not the file's"
    )
    assert expected in err  # logged as a warning by every command
    assert f"Problems\n  - {expected}" in out

    # The same file naming the application and agreeing with it: nothing to say.
    other.write_text('[messenger]\napp = "cli_app.app:create_app"\n', encoding="utf-8")
    code, out, err = run(capsys, "--config", str(other), "debug")
    assert code == 0
    assert "differently" not in err
    assert "Problems" not in out


def test_plugins_flags_two_claimants_and_a_plugin_for_another_core(
    fx: ModuleType,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    module = f"fakedoctor_{tmp_path.name.replace('-', '_')}"
    (site / f"{module}.py").write_text("class Factory:\n    pass\n", encoding="utf-8")
    for name, extra in (
        ("messenger-shadow", ""),
        ("messenger-old", "Requires-Dist: messenger-core<0.0.1\n"),
    ):
        info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{extra}", encoding="utf-8"
        )
        scheme = "memory" if name == "messenger-shadow" else "oldq"
        (info / "entry_points.txt").write_text(
            f"[{TRANSPORTS_GROUP}]\n{scheme} = {module}:Factory\n", encoding="utf-8"
        )
    monkeypatch.syspath_prepend(str(site))

    code, out, _ = run(capsys, "plugins")

    assert code == 1
    lines = out.splitlines()
    rows = {tuple(line.split()[1:3]): line for line in lines if line.startswith("messenger.")}
    shadow, core = rows[("memory", "messenger-shadow")], rows[("memory", "messenger-core")]
    assert "CONFLICT with messenger-core" in shadow
    assert "CONFLICT with messenger-shadow" in core
    old = rows[("oldq", "messenger-old")]
    assert "needs another messenger-core" in old
    assert f"{TRANSPORTS_GROUP} memory: claimed by messenger-core and messenger-shadow" in out
    assert "MESSENGER_DISABLED_PLUGINS=messenger-shadow:memory" in out
    assert "messenger-old requires messenger-core<0.0.1, but" in out

    # Picking one settles the conflict.
    monkeypatch.setenv("MESSENGER_DISABLED_PLUGINS", "messenger-shadow:memory,oldq")
    code, out, _ = run(capsys, "plugins")
    assert "CONFLICT" not in out
    shadow = next(line for line in out.splitlines() if "messenger-shadow" in line)
    assert "(disabled by MESSENGER_DISABLED_PLUGINS)" in shadow
    sys.modules.pop(module, None)


ASYNC_APP = """
import attrs
from messenger_core import Messenger


@attrs.frozen
class Ping:
    n: int


def create():
    messenger = Messenger({})

    @messenger.handler
    async def pong(message: Ping) -> None:
        pass

    @messenger.handler
    def log_ping(message: Ping) -> None:
        pass

    return messenger
"""


def test_debug_marks_async_handlers(
    fx: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "async_debug_app.py").write_text(ASYNC_APP, encoding="utf-8")

    code, out, _ = run(capsys, "--app", "async_debug_app:create", "debug")

    assert code == 0
    assert "pong  [priority=0, async]" in out
    assert "log_ping  [priority=0]" in out
