"""Helpers of the messenger-http tests: a world of one test (its configuration on SQLite or
Redis, its state directory, the ``messenger`` processes it started) and real servers.

Processes are started with the ``messenger`` command line (``python -m messenger_core``)
and the test application ``app/http_app.py``; every wait polls with a deadline.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from messenger_core import Messenger
from messenger_core.testing.processes import (
    MessengerProcess,
    messenger_command,
    messenger_environment,
)
from messenger_core.testing.services import require_service, service_dsn
from messenger_core.transport import MessageCountAware

APP_DIR = Path(__file__).parent / "app"
DEADLINE = 30.0
"""Seconds any one wait may take before the test fails (a loaded machine is slow)."""
TOKEN = "tests-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
P = TypeVar("P", bound=MessengerProcess)
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


class Server(MessengerProcess):
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
        self.processes: list[MessengerProcess] = []
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
    def start(self, *args: str, env: dict[str, str] | None = None) -> MessengerProcess:
        """Start ``messenger ARGS``."""
        return self._start(MessengerProcess, args, env)

    def serve(self, *args: str, env: dict[str, str] | None = None) -> Server:
        """Start ``messenger serve-http --port 0 ARGS`` and wait until it listens."""
        server = self._start(Server, ("serve-http", "--port", "0", *args), env)

        def url() -> str:
            found = re.search(r"listening on (http://\S+?)[;,]", server.output())
            return found.group(1) if found else ""

        server.url = server.wait_until(url, "serve-http to listen", interval=0.02)
        return server

    def _start(self, kind: type[P], args: tuple[str, ...], env: dict[str, str] | None) -> P:
        process = kind(
            messenger_command(*args, config=self.config),
            self.root / f"process-{len(self.processes)}.log",
            env=env or self.env,
            cwd=self.root,
            timeout=DEADLINE,
        )
        self.processes.append(process)
        return process

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``messenger ARGS`` to its end."""
        return subprocess.run(
            messenger_command(*args, config=self.config),
            env=env or self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=DEADLINE * 2,
            check=False,
        )

    def close(self) -> None:
        for process in self.processes:
            process.kill()
        if self._messenger is not None:
            self._messenger.close()
        if self.backend == "redis":
            client = redis_client()
            keys = list(client.scan_iter(f"{self.stream}*"))
            keys += list(client.scan_iter(f"messenger:http-consume:{self.stream}*"))
            if keys:
                client.delete(*keys)
            client.close()
