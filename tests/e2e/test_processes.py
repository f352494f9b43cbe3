"""The worker and the command line in real processes, on SQLite transports shared through files.

Each test gets its own directory: a ``messenger.toml`` whose transports live in one SQLite
database (WAL mode, shared by every process), the state directory of the test application
(``app/e2e_app.py``), and its own stop-workers signal file. Processes are started with the
``messenger`` command line (``python -m messenger_core``) and real signals; every wait polls
with a deadline.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from messenger_core.testing.processes import (
    MessengerProcess,
    messenger_command,
    messenger_environment,
)

pytestmark = pytest.mark.slow

APP_DIR = Path(__file__).parent / "app"
DEADLINE = 30.0
"""Seconds any one wait may take before the test fails (a loaded machine is slow)."""
SAFETY_TIME_LIMIT = "120"
"""``--time-limit`` of every worker: a worker a failed test forgot still ends."""
RETRY = {"max_retries": 2, "delay": 200, "multiplier": 2}

CONFIG = """\
[messenger]
app = "e2e_app:messenger"
failure_transport = "failed"

[messenger.transports.async]
dsn = "sqlite:///{db}?queue_name=async&redeliver_timeout=1"
retry_strategy = {{ max_retries = {max_retries}, delay = {delay}, multiplier = {multiplier}, \
jitter = 0 }}

[messenger.transports.failed]
dsn = "sqlite:///{db}?queue_name=failed"

[messenger.routing]
"e2e_app.Ping" = "async"
"e2e_app.Blocking" = "async"
"e2e_app.Flaky" = "async"
"""


class Shop:
    """One test's world: configuration, database, state directory and processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()
        self.db = root / "messages.db"
        self.config = root / "messenger.toml"
        self.config.write_text(CONFIG.format(db=self.db, **RETRY))
        self.env = messenger_environment(
            [APP_DIR],
            root / "stop-workers",
            MESSENGER_E2E_CONFIG=str(self.config),
            MESSENGER_E2E_STATE=str(self.state),
        )
        self.processes: list[MessengerProcess] = []

    # -- processes ----------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``messenger`` command to its end."""
        done = subprocess.run(
            messenger_command(*args, config=self.config),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=DEADLINE * 2,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"messenger {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done

    def start(self, *args: str) -> MessengerProcess:
        """Start a ``messenger`` command in the background."""
        process = MessengerProcess(
            messenger_command(*args, config=self.config),
            self.root / f"process-{len(self.processes)}.log",
            env=self.env,
            cwd=self.root,
            timeout=DEADLINE,
        )
        self.processes.append(process)
        return process

    def consume(self, *args: str) -> MessengerProcess:
        """Start a worker on ``async`` that notices new messages quickly."""
        return self.start(
            "-v", "consume", "async", "--sleep", "0.05", "--time-limit", SAFETY_TIME_LIMIT, *args
        )

    def dispatch(self, kind: str, message_id: str) -> None:
        """Dispatch one message from a separate process."""
        subprocess.run(
            [sys.executable, "-m", "e2e_dispatch", kind, message_id],
            env=self.env,
            cwd=self.root,
            check=True,
            timeout=DEADLINE,
        )

    def stop_all(self) -> None:
        for process in self.processes:
            process.kill()

    # -- what happened -------------------------------------------------------------------------
    def events(self, event: str | None = None, message_id: str | None = None) -> list[Any]:
        """``(event, id, pid, time)`` lines the handlers wrote, oldest first."""
        log = self.state / "handled.log"
        lines = log.read_text().splitlines() if log.exists() else []
        found = []
        for line in lines:
            name, ident, pid, at = line.split()
            if (event is None or name == event) and (message_id is None or ident == message_id):
                found.append((name, ident, int(pid), float(at)))
        return found

    def rows(self, queue: str) -> list[sqlite3.Row]:
        """The rows of ``queue`` in the messages table, read directly."""
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db, timeout=DEADLINE) as connection:
            connection.row_factory = sqlite3.Row
            try:
                return connection.execute(
                    "SELECT * FROM messenger_messages WHERE queue_name = ? ORDER BY id", (queue,)
                ).fetchall()
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return []
                raise

    def insert_raw(self, queue: str, body: str, headers: dict[str, str]) -> None:
        """Insert a row the way a foreign producer (or a corrupted one) would."""
        now = datetime.now(UTC).replace(tzinfo=None)
        stamp = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond:06d}"
        with sqlite3.connect(self.db, timeout=DEADLINE) as connection:
            connection.execute(
                "INSERT INTO messenger_messages "
                "(body, headers, queue_name, created_at, available_at, delivered_at) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (body, json.dumps(headers), queue, stamp, stamp),
            )


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    world = Shop(tmp_path)
    world.run("setup-transports")
    yield world
    world.stop_all()


# -- the tests -----------------------------------------------------------------------------------


def test_a_message_dispatched_by_one_process_is_handled_by_a_worker_in_another(
    shop: Shop,
) -> None:
    worker = shop.consume()
    shop.dispatch("ping", "p1")

    [(_, _, pid, _)] = worker.wait_until(lambda: shop.events("handled", "p1"), "ping p1 handled")

    [(_, _, dispatcher, _)] = shop.events("dispatched", "p1")
    assert pid == worker.pid
    assert dispatcher != worker.pid
    worker.wait_until(lambda: not shop.rows("async"), "the async queue to be empty")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_sigterm_while_a_handler_runs_finishes_and_acknowledges_the_message(shop: Shop) -> None:
    shop.dispatch("blocking", "b1")
    worker = shop.consume()
    worker.wait_until(lambda: shop.events("started", "b1"), "the handler to start")

    worker.signal(signal.SIGTERM)
    # The worker must not stop in the middle: the handler finishes once released.
    time.sleep(0.2)
    assert worker.running(), worker.output()
    (shop.state / "release-b1").touch()

    assert worker.wait() == 0, worker.output()
    assert [e[2] for e in shop.events("handled", "b1")] == [worker.pid]
    assert shop.rows("async") == []  # acknowledged: the row is gone
    assert shop.rows("failed") == []


def test_a_second_sigterm_stops_at_once_and_the_message_comes_back(shop: Shop) -> None:
    shop.dispatch("blocking", "b2")
    worker = shop.consume()
    worker.wait_until(lambda: shop.events("started", "b2"), "the handler to start")

    worker.signal(signal.SIGTERM)
    time.sleep(0.2)  # two signals in a row could arrive as one
    worker.signal(signal.SIGTERM)

    assert worker.wait() == 130, worker.output()  # interrupted, as after Ctrl-C twice
    assert shop.events("handled", "b2") == []
    # Neither acknowledged nor rejected (closing the transport may release it at once).
    assert len(shop.rows("async")) == 1
    (shop.state / "release-b2").touch()
    second = shop.consume()
    second.wait_until(lambda: shop.events("handled", "b2"), "b2 handled again")
    assert [e[2] for e in shop.events("handled", "b2")] == [second.pid]
    second.wait_until(lambda: not shop.rows("async"), "the async queue to be empty")


def test_kill_9_while_a_handler_runs_the_next_worker_handles_the_message(shop: Shop) -> None:
    shop.dispatch("blocking", "k1")
    first = shop.consume()
    first.wait_until(lambda: shop.events("started", "k1"), "the handler to start")

    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert shop.events("handled", "k1") == []
    assert len(shop.rows("async")) == 1  # still there, reserved by a dead worker
    (shop.state / "release-k1").touch()

    second = shop.consume()
    # It comes back once the reservation is older than redeliver_timeout (1 s here).
    second.wait_until(lambda: shop.events("handled", "k1"), "k1 handled by the next worker")

    assert [e[2] for e in shop.events("handled", "k1")] == [second.pid]
    assert [e[2] for e in shop.events("started", "k1")] == [first.pid, second.pid]
    second.wait_until(lambda: not shop.rows("async"), "the async queue to be empty")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0


def test_a_message_that_keeps_failing_is_retried_then_parked_and_can_be_retried_by_hand(
    shop: Shop,
) -> None:
    shop.dispatch("flaky", "f1")
    worker = shop.consume()

    [parked] = worker.wait_until(lambda: shop.rows("failed"), "f1 in the failure transport")

    attempts = shop.events("attempt", "f1")
    assert len(attempts) == 1 + RETRY["max_retries"]
    assert all(pid == worker.pid for _, _, pid, _ in attempts)
    # Each retry waited its delay: 200 ms, then 400 ms (jitter 0).
    gaps = [b[3] - a[3] for a, b in pairwise(attempts)]
    assert gaps[0] >= 0.19
    assert gaps[1] >= 0.39
    headers = json.loads(parked["headers"])
    assert "ConnectionError" in _stamp_header(headers, "ErrorDetailsStamp")
    assert '"retry_count":2' in _stamp_header(headers, "RedeliveryStamp").replace(" ", "")
    # The original is rejected just after its copy is stored: give the worker that moment.
    worker.wait_until(lambda: not shop.rows("async"), "the original gone from async")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0

    shown = shop.run("failed", "show")
    assert str(parked["id"]) in shown.stdout
    assert "Flaky" in shown.stdout

    (shop.state / "fixed").touch()
    shop.run("failed", "retry", str(parked["id"]), "--force")

    assert len(shop.events("handled", "f1")) == 1
    assert shop.rows("failed") == []
    assert shop.rows("async") == []


def test_a_poison_row_is_parked_and_the_worker_keeps_going(shop: Shop) -> None:
    shop.insert_raw("async", '{"id": "x1"', {"type": "e2e_app.Ping"})
    worker = shop.consume()
    shop.dispatch("ping", "after-poison")

    worker.wait_until(lambda: shop.events("handled", "after-poison"), "the next message handled")
    [parked] = worker.wait_until(lambda: shop.rows("failed"), "the poison parked")

    assert parked["body"] == '{"id": "x1"'  # the raw body, untouched
    headers = json.loads(parked["headers"])
    assert headers["type"] == "e2e_app.Ping"
    assert "MessageDecodingError" in _stamp_header(headers, "ErrorDetailsStamp")
    assert worker.running(), worker.output()
    assert shop.rows("async") == []
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_stop_workers_stops_a_running_worker(shop: Shop) -> None:
    worker = shop.consume()
    shop.dispatch("ping", "s1")
    worker.wait_until(lambda: shop.events("handled", "s1"), "the worker running")

    shop.run("stop-workers")

    assert worker.wait() == 0, worker.output()


def _stamp_header(headers: dict[str, str], stamp: str) -> str:
    """The JSON text of the header holding ``stamp`` stamps."""
    [value] = [v for k, v in headers.items() if k.endswith(f".{stamp}") or k.endswith(stamp)]
    return value
