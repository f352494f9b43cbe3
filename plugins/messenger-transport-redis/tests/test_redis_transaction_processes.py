"""A worker handling with ``redis_transaction`` killed with SIGKILL: every effect exactly once.

The worker handles five quick messages, then is killed in a slow one whose write is queued in
its pipeline, not applied. Without the middleware that write would be applied before the kill
and again when the message comes back; with it, it is applied once, with the acknowledgement.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from redis_test_support import Stream

from messenger_core.testing.processes import (
    MessengerProcess,
    messenger_command,
    messenger_environment,
)

HERE = Path(__file__).parent

_CONFIG = """\
[messenger]
app = "redis_transaction_app:messenger"

[messenger.transports.jobs]
dsn = "{dsn}"

[messenger.buses."messenger.bus.default"]
middleware = ["redis_transaction"]

[messenger.routing]
"redis_transaction_app.Ping" = "jobs"
"redis_transaction_app.Slow" = "jobs"
"""


@pytest.mark.slow
def test_a_worker_killed_mid_handler_leaves_every_effect_exactly_once(
    stream: Stream, redis_client: Any, tmp_path: Path
) -> None:
    dsn = stream.dsn()
    options = {"redeliver_timeout": "2", "claim_interval": "200", "fetch_size": "10"}
    dsn = attrs.evolve(dsn, options={**dsn.options, **options})
    config = tmp_path / "messenger.toml"
    config.write_text(_CONFIG.format(dsn=dsn))
    log = tmp_path / "handled.log"
    key = f"{stream.name}:counts"
    env = messenger_environment(
        [HERE / "app"],
        tmp_path / "stop-workers",
        MESSENGER_REDIS_TX_CONFIG=str(config),
        MESSENGER_REDIS_TX_LOG=str(log),
        MESSENGER_REDIS_TX_KEY=key,
    )
    try:
        fill = "import redis_transaction_app as app; app.fill(5, 99)"
        subprocess.run([sys.executable, "-c", fill], env=env, cwd=tmp_path, check=True, timeout=60)
        consume = messenger_command("consume", config=config)
        with MessengerProcess(
            [*consume, "jobs", "--sleep", "0.05"], tmp_path / "worker.log", env=env, cwd=tmp_path
        ) as worker:
            worker.wait_until(
                lambda: log.exists() and "started 99" in log.read_text(),
                "the slow message to start",
                interval=0.02,
            )
            counted = {int(k): int(v) for k, v in redis_client.hgetall(key).items()}
            assert counted == dict.fromkeys(range(5), 1), "the slow one's write is not applied"
            worker.kill()

        log.with_name(log.name + ".release").touch()
        # Another consumer claims the slow message after redeliver_timeout and handles it.
        again = subprocess.run(
            [*consume, "jobs", "--limit", "1", "--time-limit", "30", "--sleep", "0.05"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        counted = {int(k): int(v) for k, v in redis_client.hgetall(key).items()}
        assert counted == {**dict.fromkeys(range(5), 1), 99: 1}
        assert log.read_text().split() == ["started", "99", "started", "99"]
        assert redis_client.xpending(stream.name, "symfony")["pending"] == 0
    finally:
        redis_client.delete(key)
