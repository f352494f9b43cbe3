"""A worker in a real process survives bad rows and a failure store that is down (issue 9).

Each test runs ``messenger consume async other`` over two SQLite queues of one database file,
with the test application ``app/reliability_app.py``, and ends the worker with a real SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

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

CONFIG = """\
[messenger]
app = "reliability_app:messenger"
failure_transport = "failed"

[messenger.transports.async]
dsn = "sqlite:///{db}?queue_name=async&redeliver_timeout=1"
retry_strategy = {{ max_retries = 0 }}

[messenger.transports.other]
dsn = "sqlite:///{db}?queue_name=other&redeliver_timeout=1"
retry_strategy = {{ max_retries = 0 }}

[messenger.transports.failed]
dsn = "{failed_dsn}"

[messenger.routing]
"reliability_app.Poison" = "async"
"reliability_app.Ping" = "other"
"""

DEEP = 100_000
"""Nesting depth of the hostile JSON (far beyond Python's recursion limit)."""


class World:
    """One test's configuration, database, state directory and worker process."""

    def __init__(self, root: Path, failed_dsn: str | None) -> None:
        self.root = root
        self.db = root / "messages.db"
        self.state = root / "state"
        self.state.mkdir()
        self.config = root / "messenger.toml"
        failed = failed_dsn or f"sqlite:///{self.db}?queue_name=failed"
        self.config.write_text(CONFIG.format(db=self.db, failed_dsn=failed))
        self.env = messenger_environment(
            [APP_DIR],
            root / "stop-workers",
            MESSENGER_E2E_CONFIG=str(self.config),
            MESSENGER_E2E_STATE=str(self.state),
        )
        self.worker: MessengerProcess | None = None

    def messenger(self, *args: str) -> None:
        subprocess.run(
            messenger_command(*args, config=self.config),
            env=self.env,
            cwd=self.root,
            check=True,
            timeout=DEADLINE * 2,
            capture_output=True,
        )

    def dispatch(self, kind: str, *ids: str) -> None:
        code = f"import reliability_app; reliability_app.dispatch({kind!r}, *{list(ids)!r})"
        subprocess.run(
            [sys.executable, "-c", code], env=self.env, cwd=self.root, check=True, timeout=DEADLINE
        )

    def consume(self) -> MessengerProcess:
        command = ["-v", "consume", "async", "other", "--sleep", "0.05", "--time-limit", "120"]
        self.worker = MessengerProcess(
            messenger_command(*command, config=self.config),
            self.root / "worker.log",
            env=self.env,
            cwd=self.root,
            timeout=DEADLINE,
        )
        return self.worker

    def events(self, event: str) -> list[str]:
        path = self.state / "handled.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split()[1] for line in lines if line.split()[0] == event]

    def rows(self, queue: str) -> list[sqlite3.Row]:
        with sqlite3.connect(self.db, timeout=DEADLINE) as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute(
                "SELECT * FROM messenger_messages WHERE queue_name = ? ORDER BY id", (queue,)
            ).fetchall()

    def insert_raw(self, queue: str, body: str, headers_text: str) -> None:
        """A row as a broken or hostile producer writes it, straight into the table."""
        now = datetime.now(UTC).replace(tzinfo=None)
        stamp = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond:06d}"
        with sqlite3.connect(self.db, timeout=DEADLINE) as connection:
            connection.execute(
                "INSERT INTO messenger_messages "
                "(body, headers, queue_name, created_at, available_at, delivered_at) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (body, headers_text, queue, stamp, stamp),
            )

    def kill(self) -> None:
        if self.worker is not None:
            self.worker.kill()


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[[str | None], World]]:
    worlds: list[World] = []

    def make(failed_dsn: str | None = None) -> World:
        root = tmp_path / f"world-{len(worlds)}"
        root.mkdir()
        world = World(root, failed_dsn)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.kill()


def test_while_the_failure_store_is_down_other_transports_are_served_and_sigterm_stops_at_once(
    make_world: Callable[[str | None], World],
) -> None:
    world = make_world("unreachable://")
    world.messenger("setup-transports", "async")
    world.messenger("setup-transports", "other")
    world.dispatch("poison", "p1")
    worker = world.consume()

    # The poison message fails and cannot be parked: its receiver pauses, again and again.
    worker.wait_until(
        lambda: len(world.events("attempt")) >= 2, "the poison message to be tried twice"
    )
    world.dispatch("ping", *(f"ping{n}" for n in range(5)))
    worker.wait_until(lambda: len(world.events("handled")) == 5, "the other transport to be served")
    assert "the failure store is unreachable" in worker.output()

    started = time.monotonic()
    code = worker.stop(signal.SIGTERM)
    took = time.monotonic() - started

    assert code == 0, worker.output()
    assert took < 20, f"SIGTERM took {took:.1f}s"  # generous: the worker never sleeps long
    # Nothing lost: the poison message is still on its queue, to be parked later.
    assert [json.loads(row["body"])["id"] for row in world.rows("async")] == ["p1"]
    assert world.rows("other") == []


def test_rows_nested_100000_deep_do_not_stop_the_worker(
    make_world: Callable[[str | None], World],
) -> None:
    world = make_world(None)
    world.messenger("setup-transports")
    deep = "[" * DEEP + "]" * DEEP
    # The headers column itself nested 100,000 deep (the SQL plugin's codec reads it) ...
    world.insert_raw("async", "{}", '{"type": ' + deep + "}")
    # ... and, in a well-formed headers column, a body and a stamp header that deep (the core's
    # json serializer reads those).
    world.insert_raw(
        "other",
        deep,
        json.dumps({"type": "reliability_app.Ping", "Content-Type": "application/json"}),
    )
    world.insert_raw(
        "other",
        '{"id": "x"}',
        json.dumps(
            {
                "type": "reliability_app.Ping",
                "X-Message-Stamp-messenger_core.stamps.BusNameStamp": deep,
            }
        ),
    )
    worker = world.consume()
    world.dispatch("ping", "after")

    worker.wait_until(lambda: world.events("handled") == ["after"], "the ping behind the bad rows")
    worker.wait_until(lambda: len(world.rows("failed")) == 3, "the three bad rows parked")
    parked = world.rows("failed")
    reasons = [json.loads(row["headers"]).get("X-Message-Decoding-Error", "") for row in parked]
    assert all("nested too deeply" in r or "RecursionError" in r for r in reasons), reasons
    assert any(row["body"] == deep for row in parked)  # the raw payload is kept
    assert any(deep in row["headers"] for row in parked)  # the raw headers column too
    assert worker.running(), f"the worker stopped after meeting the bad rows:\n{worker.output()}"
    code = worker.stop(signal.SIGTERM)
    assert code == 0, worker.output()
    assert world.rows("async") == []
    assert world.rows("other") == []
