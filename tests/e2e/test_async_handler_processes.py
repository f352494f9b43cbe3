"""``async def`` handlers in a real ``messenger consume`` process on a SQLite transport.

The worker must run every async handler body to its end before it acknowledges the message:
a message whose handler body never ran must never leave its queue as handled.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from messenger_core.testing.processes import messenger_environment

pytestmark = pytest.mark.slow

APP_DIR = Path(__file__).parent / "app"
DEADLINE = 120.0
"""Seconds a process may take (a loaded machine is slow); a hung worker fails the test."""
MESSAGES = 5
"""Messages of each kind (async function, async ``__call__``, function returning a coroutine)."""
SHAPES = ("function", "callable", "awaitable")

CONFIG = """\
[messenger]
app = "e2e_async_app:messenger"
failure_transport = "failed"

[messenger.transports.async]
dsn = "sqlite:///{db}?queue_name=async"
retry_strategy = {{ max_retries = 1, delay = 10, jitter = 0 }}

[messenger.transports.failed]
dsn = "sqlite:///{db}?queue_name=failed"

[messenger.routing]
"e2e_async_app.ByFunction" = "async"
"e2e_async_app.ByCallable" = "async"
"e2e_async_app.ByAwaitable" = "async"
"""


def _environment(root: Path, state: Path, config: Path) -> dict[str, str]:
    return messenger_environment(
        [APP_DIR],
        root / "stop-workers",
        MESSENGER_E2E_CONFIG=str(config),
        MESSENGER_E2E_STATE=str(state),
    )


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert done.returncode == 0, (
        f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


def _count(db: Path, queue: str) -> int:
    with sqlite3.connect(db, timeout=30) as connection:
        [(count,)] = connection.execute(
            "SELECT COUNT(*) FROM messenger_messages WHERE queue_name = ?", (queue,)
        ).fetchall()
    return int(count)


def test_a_worker_runs_every_async_handler_body_before_it_acknowledges(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = tmp_path / "messages.db"
    config = tmp_path / "messenger.toml"
    config.write_text(CONFIG.format(db=db))
    env = _environment(tmp_path, state, config)
    messenger = [sys.executable, "-m", "messenger_core", "--config", str(config)]
    _run([*messenger, "setup-transports"], env, tmp_path)
    _run(
        [sys.executable, "-c", f"import e2e_async_app; e2e_async_app.main(['{MESSAGES}'])"],
        env,
        tmp_path,
    )
    total = MESSAGES * len(SHAPES)
    assert _count(db, "async") == total

    done = _run(
        [*messenger, "consume", "async", "--limit", str(total), "--time-limit", "100"],
        env,
        tmp_path,
    )

    missing = [
        f"{shape}-{n}"
        for shape in SHAPES
        for n in range(MESSAGES)
        if not (state / f"{shape}-{n}").exists()
    ]
    assert missing == [], f"handler bodies that never ran: {missing}\n{done.stderr}"
    assert _count(db, "async") == 0
    assert _count(db, "failed") == 0
    assert f"{total} handled" in done.stderr
