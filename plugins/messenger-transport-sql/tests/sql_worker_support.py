"""Running ``messenger consume`` on a test's table, with the application ``sql_worker_app``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import attrs
from sql_test_support import Database

from messenger_core.testing.processes import (
    MessengerProcess,
    messenger_command,
    messenger_environment,
)

HERE = Path(__file__).parent
PING = "sql_worker_app.Ping"
SLOW = "sql_worker_app.Slow"

_CONFIG = """\
[messenger]
app = "sql_worker_app:messenger"
failure_transport = "failed"

[messenger.transports.async]
dsn = "{dsn_async}"
retry_strategy = {{ max_retries = 0 }}

[messenger.transports.failed]
dsn = "{dsn_failed}"

[messenger.routing]
"{ping}" = "async"
"{slow}" = "async"
"""


class WorkerWorld:
    """A ``messenger.toml`` with queues ``async`` and ``failed`` on the test's table."""

    def __init__(self, database: Database, root: Path, **async_options: Any) -> None:
        dsn = database.dsn()
        self.root = root
        self.config = root / "messenger.toml"
        self.log = root / "handled.log"
        async_dsn = attrs.evolve(
            dsn,
            options={
                **dsn.options,
                "queue_name": "async",
                **{k: str(v) for k, v in async_options.items()},
            },
        )
        failed_dsn = attrs.evolve(dsn, options={**dsn.options, "queue_name": "failed"})
        self.config.write_text(
            _CONFIG.format(dsn_async=async_dsn, dsn_failed=failed_dsn, ping=PING, slow=SLOW)
        )
        self.env = messenger_environment(
            [HERE],
            root / "stop-workers",
            MESSENGER_SQL_APP_CONFIG=str(self.config),
            MESSENGER_SQL_APP_LOG=str(self.log),
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a ``messenger`` command to its end."""
        return subprocess.run(
            messenger_command(*args, config=self.config),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self, *args: str) -> MessengerProcess:
        """Start a ``messenger`` command in the background (output in ``worker.log``)."""
        return MessengerProcess(
            messenger_command(*args, config=self.config),
            self.root / "worker.log",
            env=self.env,
            cwd=self.root,
        )

    def events(self) -> list[str]:
        """The handlers' log lines."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def release(self) -> None:
        """Let the waiting :class:`Slow` handler finish."""
        self.log.with_name(self.log.name + ".release").touch()
