"""Helpers of the messenger-http tests: a world of one test (its configuration on SQLite or
Redis, its state directory, the ``messenger`` processes it started) and real servers.

Processes are started with the ``messenger`` command line (``python -m messenger_core``)
and the test application ``app/http_app.py``; every wait polls with a deadline.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from messenger_core import Messenger
from messenger_core.testing.processes import messenger_environment
from messenger_core.testing.services import require_service, service_dsn
from messenger_core.transport import MessageCountAware

APP_DIR = Path(__file__).parent / "app"
DEADLINE = 30.0
"""Seconds any one wait may take before the test fails (a loaded machine is slow)."""
TOKEN = "tests-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REDIS_DSN = service_dsn("MESSENGER_TEST_REDIS_DSN", "redis://127.0.0.1:6379")

ROUTING = """
[messenger.routing]
"http_app.Ping" = "async"
"http_app.Slow" = "async"
"http_app.Broken" = "async"
"""
SQLITE_CONFIG = """\
[messenger]
app = "http_app:make"
failure_transport = "failed"

[messenger.transports.async]
dsn = "sqlite:///{db}?queue_name=async"
retry_strategy = {{ max_retries = 0 }}

[messenger.transports.failed]
dsn = "sqlite:///{db}?queue_name=failed"
"""
REDIS_CONFIG = """\
[messenger]
app = "http_app:make"
failure_transport = "failed"

[messenger.transports.async]
dsn = "{redis}"
options = {{ stream = "{stream}", group = "http-tests" }}
retry_strategy = {{ max_retries = 0 }}

[messenger.transports.failed]
dsn = "{redis}"
options = {{ stream = "{stream}-failed", group = "http-tests" }}
"""


def require_redis() -> None:
    """Skip (or fail under MESSENGER_REQUIRE_SERVICES=1) without the test Redis."""
    require_service("Redis", REDIS_DSN, lambda: redis_client().ping())


def redis_client() -> Any:
    """A plain client on the test Redis (to clean up behind the transports)."""
    return redis.Redis.from_url(REDIS_DSN, socket_timeout=5)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Process:
    """A ``messenger`` process a test started, its output (stdout and stderr) in a file."""

    def __init__(self, popen: subprocess.Popen[bytes], output: Path) -> None:
        self.popen = popen
        self.output = output

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {self.popen.pid} did not end within {timeout}s:\n{self.text()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


class Server(Process):
    """A ``messenger serve-http`` process, with the URL it listens on."""

    url: str = ""

    def client(self, *, token: bool = True, timeout: float = DEADLINE) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH if token else {}, timeout=timeout)

    def consume(self, receiver: str = "async", **options: Any) -> httpx.Response:
        with self.client(**options) as client:
            return client.post("/consume", json={"receiver": receiver})


class World:
    """One test's configuration (SQLite or Redis), state directory and processes."""

    def __init__(self, root: Path, backend: str) -> None:
        self.root = root
        self.backend = backend
        self.state = root / "state"
        self.state.mkdir()
        self.config = root / "messenger.toml"
        self.stream = f"messenger-http-tests-{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            text = SQLITE_CONFIG.format(db=root / "messages.db")
        else:
            text = REDIS_CONFIG.format(redis=REDIS_DSN, stream=self.stream)
        self.config.write_text(text + ROUTING)
        self.env = messenger_environment(
            [APP_DIR],
            root / "stop-workers",
            MESSENGER_HTTP_TEST_CONFIG=str(self.config),
            MESSENGER_HTTP_TEST_STATE=str(self.state),
            MESSENGER_HTTP_TOKEN=TOKEN,
        )
        self.processes: list[Process] = []
        self._messenger: Messenger | None = None

    # -- this process's view ------------------------------------------------------------------
    @property
    def messenger(self) -> Messenger:
        """The application, built in the test's process (to dispatch and count)."""
        if self._messenger is None:
            import http_app  # noqa: PLC0415 - on sys.path through conftest

            self._messenger = http_app.build(self.config, self.state)
        return self._messenger

    def dispatch(self, *messages: object) -> None:
        for message in messages:
            self.messenger.bus.dispatch(message)
        for name in self.messenger.transport_names:
            flush = getattr(self.messenger.get_transport(name), "flush", None)
            if flush is not None:
                flush()

    def count(self, name: str) -> int:
        transport = self.messenger.get_transport(name)
        assert isinstance(transport, MessageCountAware)
        return transport.message_count()

    def events(self, kind: str) -> list[str]:
        """The message ids of the log lines of ``kind`` (``handled``, ``started``...)."""
        log = self.state / "handled.log"
        if not log.exists():
            return []
        return [
            parts[1]
            for parts in (line.split() for line in log.read_text().splitlines())
            if parts[0] == kind
        ]

    # -- processes ----------------------------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "messenger_core", "--config", str(self.config), *args]

    def _popen(self, args: tuple[str, ...], env: dict[str, str] | None, kind: type[Process]) -> Any:
        output = self.root / f"process-{len(self.processes)}.log"
        with output.open("wb") as sink:
            popen = subprocess.Popen(
                self.command(*args),
                env=env or self.env,
                cwd=self.root,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        process = kind(popen, output)
        self.processes.append(process)
        return process

    def start(self, *args: str, env: dict[str, str] | None = None) -> Process:
        """Start ``messenger ARGS``."""
        return self._popen(args, env, Process)  # type: ignore[no-any-return]

    def serve(self, *args: str, env: dict[str, str] | None = None) -> Server:
        """Start ``messenger serve-http --port 0 ARGS`` and wait until it listens."""
        server: Server = self._popen(("serve-http", "--port", "0", *args), env, Server)

        def listening() -> str | None:
            if server.popen.poll() is not None:
                pytest.fail(f"serve-http exited {server.popen.returncode}:\n{server.text()}")
            found = re.search(r"listening on (http://\S+?)[;,]", server.text())
            return found.group(1) if found else None

        server.url = wait_for(listening, "serve-http to listen")
        return server

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``messenger ARGS`` to its end."""
        return subprocess.run(
            self.command(*args),
            env=env or self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=DEADLINE * 2,
            check=False,
        )

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        if self._messenger is not None:
            self._messenger.close()
        if self.backend == "redis":
            client = redis_client()
            keys = list(client.scan_iter(f"{self.stream}*"))
            keys += list(client.scan_iter(f"messenger:http-consume:{self.stream}*"))
            if keys:
                client.delete(*keys)
            client.close()
