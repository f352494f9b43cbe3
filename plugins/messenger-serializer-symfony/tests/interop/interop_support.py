"""What the interop tests share: the backends, both sides' configuration, their processes, and
the checks on what the handlers recorded.

Every test has a queue of its own: a Redis stream, a table, or a RabbitMQ exchange and queue
(:mod:`interop_amqp`), named after a random token. A Redis or AMQP test keeps its failure
transport in a PostgreSQL table: Symfony 5.4 cannot list a Redis transport
(``messenger:failed:show`` needs a ``ListableReceiverInterface``), and nothing can list an AMQP
queue.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import interop_amqp
import pytest
from interop_app import SETTINGS_VARIABLE, OrderPlaced, build_messenger

from messenger_core.stamps import DelayStamp
from messenger_core.testing.processes import messenger_environment
from messenger_core.testing.services import require_service, service_dsn

HERE = Path(__file__).parent
PHP_DIR = HERE / "php"
DEADLINE = 60.0
"""Seconds any one wait may take before the test fails (a loaded machine is slow)."""

REDIS_DSN = service_dsn("MESSENGER_TEST_REDIS_DSN", "redis://127.0.0.1:6379")
POSTGRESQL_DSN = service_dsn(
    "MESSENGER_TEST_POSTGRESQL_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_DSN = service_dsn("MESSENGER_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")

BACKENDS = ("redis", "postgresql", "mariadb", "amqp")
"""The backends every scenario runs on (the ``backend`` fixture's parameters)."""
AMQP_VARIANTS = ("amqp-topic", "amqp-quorum")
"""RabbitMQ with a topic exchange, a default publish routing key and a binding key; with a
quorum queue: where the messages' way through RabbitMQ differs (delay queue names, queue
type), the scenarios of messages, delays and retries run on these too."""

PHP_BASE_TIME = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))
"""``placedAt`` of the PHP producer's message 0 (``produce.php``); message i is i s later."""
PYTHON_BASE_TIME = datetime(2026, 3, 2, 8, 30, 0, tzinfo=timezone(timedelta(hours=-5)))


# -- backends -----------------------------------------------------------------------------------
def _dbal_url(dsn: str) -> str:
    """The Doctrine DBAL URL of a PostgreSQL or MySQL DSN of the SQL transport."""
    scheme, rest = dsn.split("://", 1)
    driver = {"postgresql": "pdo-pgsql", "postgres": "pdo-pgsql", "mysql": "pdo-mysql"}
    return f"{driver.get(scheme, 'pdo-mysql')}://{rest}"


def _with_query(dsn: str, **options: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


def _probe_redis(dsn: str) -> None:
    import redis  # noqa: PLC0415  (only the Redis tests need it)

    client = redis.Redis.from_url(dsn, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _sql(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement on the database of ``dsn`` (PostgreSQL or MySQL); its rows."""
    parts = urlsplit(dsn)
    if parts.scheme.startswith("postgres"):
        import psycopg  # noqa: PLC0415

        with psycopg.connect(
            host=parts.hostname,
            port=parts.port or 5432,
            user=parts.username,
            password=parts.password,
            dbname=parts.path.lstrip("/"),
            connect_timeout=2,
            autocommit=True,
        ) as connection:
            cursor = connection.execute(statement)  # trusted test SQL
            return list(cursor.fetchall()) if cursor.description else []
    import pymysql  # type: ignore[import-untyped]  # noqa: PLC0415

    connection = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=parts.password or "",
        database=parts.path.lstrip("/"),
        connect_timeout=2,
        autocommit=True,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        connection.close()


def symfony_stamp_classes() -> set[str]:
    """The stamp classes of the installed Symfony Messenger (the component and its bridges)."""
    root = Path("/usr/share/php/Symfony/Component/Messenger")
    found = {f"Symfony\\Component\\Messenger\\Stamp\\{p.stem}" for p in root.glob("Stamp/*.php")}
    for path in root.glob("Bridge/*/Transport/*Stamp.php"):
        bridge = path.parent.parent.name
        found.add(f"Symfony\\Component\\Messenger\\Bridge\\{bridge}\\Transport\\{path.stem}")
    return found


@attrs.frozen
class Backend:
    """One kind of shared transport, with the DSNs of each side for a test's own queues."""

    name: str
    token: str

    @property
    def redis(self) -> bool:
        """Redis: ``redis`` (Symfony's default phpredis serializer, PHP's ``serialize()``
        around the JSON entry) or ``redis-json`` (Symfony's option ``serializer=0``)."""
        return self.name.startswith("redis")

    @property
    def table(self) -> str:
        return f"interop_{self.token}"

    @property
    def amqp(self) -> bool:
        """RabbitMQ: Symfony's AmqpTransport (php-amqp) and the AMQP plugin; ``amqp`` (a
        fanout exchange), ``amqp-topic`` (a topic exchange, a default publish routing key and
        a binding key) or ``amqp-quorum`` (a quorum queue)."""
        return self.name.startswith("amqp")

    @property
    def routing_key(self) -> str:
        """AMQP: the routing key messages are published with."""
        return "orders.new" if self.name == "amqp-topic" else ""

    def _amqp_queues(self) -> list[str]:
        return interop_amqp.queue_names(self.exchange, self.routing_key)

    @property
    def exchange(self) -> str:
        """AMQP: the test's exchange, and its queue's name."""
        return self.table

    @property
    def delays_exchange(self) -> str:
        """AMQP: the test's own ``delay[exchange_name]`` (so that no delay queue is shared)."""
        return f"{self.table}.delays"

    def _sql_dsn(self) -> str:
        return MYSQL_DSN if self.name == "mariadb" else POSTGRESQL_DSN

    def require(self) -> None:
        """Skip (or fail under MESSENGER_REQUIRE_SERVICES=1) if a service is unreachable."""
        if self.redis:
            require_service("Redis", REDIS_DSN, lambda: _probe_redis(REDIS_DSN))
        if self.amqp:
            require_service("RabbitMQ", interop_amqp.AMQP_DSN, interop_amqp.probe)
        sql = self._sql_dsn()
        require_service(self.name, sql, lambda: _sql(sql, "SELECT 1"))

    @property
    def dbal_url(self) -> str:
        return _dbal_url(self._sql_dsn())

    def php_dsn(self, queue: str) -> str:
        """Symfony's DSN of ``queue`` (``async`` or ``failed``)."""
        if self.amqp and queue != "failed":
            return self._amqp_dsn()
        if self.redis and queue != "failed":
            plain = "&serializer=0" if self.name == "redis-json" else ""
            return f"{REDIS_DSN}/{self.table}_{queue}?delete_after_ack=1{plain}"
        return f"doctrine://default?table_name={self.table}&queue_name={queue}"

    def python_dsn(self, queue: str) -> str:
        """This project's DSN of the same queue."""
        if self.amqp and queue != "failed":
            return self._amqp_dsn()
        if self.redis and queue != "failed":
            return f"{REDIS_DSN}/{self.table}_{queue}"
        return _with_query(self._sql_dsn(), table_name=self.table, queue_name=queue)

    def _amqp_dsn(self) -> str:
        """Both sides' DSN: the test's exchange (and queue, named after it), its delays."""
        base = interop_amqp.AMQP_DSN.rstrip("/")
        dsn = f"{base}/{self.exchange}?delay[exchange_name]={self.delays_exchange}"
        queue = f"queues[{self.exchange}]"
        if self.name == "amqp-topic":
            dsn += f"&exchange[type]=topic&exchange[default_publish_routing_key]={self.routing_key}"
            dsn += f"&{queue}[binding_keys][]=orders.*"
        elif self.name == "amqp-quorum":
            dsn += f"&{queue}[arguments][x-queue-type]=quorum"
        return dsn

    def delay_queue(self, delay_ms: int) -> str:
        """AMQP: Symfony's name of the queue where a delayed message waits."""
        return f"delay_{self.exchange}_{self.routing_key}_{delay_ms}_delay"

    def retry_queue(self, delay_ms: int) -> str:
        """AMQP: Symfony's name of the queue where a retry waits (for the test's queue)."""
        return f"delay_{self.exchange}_{self.exchange}_{delay_ms}_retry"

    def amqp_ready(self) -> dict[str, int]:
        """AMQP: the messages ready in the test's queue and in its delay and retry queues, by
        queue name, where there are any."""
        ready = interop_amqp.ready_counts(self._amqp_queues())
        return {name: count for name, count in ready.items() if count}

    def raw_headers(self, queue: str = "async") -> list[dict[str, str]]:
        """The headers of every message waiting in ``queue``, as stored (AMQP: in the queue
        and its delay queues; no consumer may run)."""
        if self.amqp and queue != "failed":
            return interop_amqp.peek_headers(self._amqp_queues())
        if self.redis and queue != "failed":
            import redis  # noqa: PLC0415

            # (Any: redis-py annotates its sync client as possibly asynchronous.)
            client: Any = redis.Redis.from_url(REDIS_DSN)
            try:
                name = f"{self.table}_{queue}"
                fields = [f[b"message"] for _, f in client.xrange(name)]
                fields += client.zrange(f"{name}__queue", 0, -1)
            finally:
                client.close()
            return [_entry_headers(field) for field in fields]
        rows = _sql(
            self._sql_dsn(),
            f"SELECT headers FROM {self.table} WHERE queue_name = '{queue}' ORDER BY id",
        )
        return [json.loads(row[0]) for row in rows]

    def waiting(self, queue: str = "async") -> int:
        """Messages left in ``queue``: not yet received, or received and not settled (rows
        Symfony's MySQL transport acknowledged, ``delivered_at`` = 9999-12-31, do not count;
        AMQP: ready in the queue and its delay queues)."""
        if self.amqp and queue != "failed":
            return sum(interop_amqp.ready_counts(self._amqp_queues()).values())
        if self.redis and queue != "failed":
            import redis  # noqa: PLC0415

            client: Any = redis.Redis.from_url(REDIS_DSN)
            try:
                name = f"{self.table}_{queue}"
                return int(client.xlen(name)) + int(client.zcard(f"{name}__queue"))
            finally:
                client.close()
        [(count,)] = _sql(
            self._sql_dsn(),
            f"SELECT COUNT(*) FROM {self.table} WHERE queue_name = '{queue}' "
            "AND (delivered_at IS NULL OR delivered_at < '9999-01-01')",
        )
        return int(count)

    def cleanup(self) -> None:
        if self.redis:
            import redis  # noqa: PLC0415

            # (Any: redis-py annotates its sync client as possibly asynchronous.)
            client: Any = redis.Redis.from_url(REDIS_DSN)
            try:
                name = f"{self.table}_async"
                client.delete(name, f"{name}__queue")
            finally:
                client.close()
        if self.amqp:
            interop_amqp.delete([self.exchange, self.delays_exchange], self._amqp_queues())
        _sql(self._sql_dsn(), f"DROP TABLE IF EXISTS {self.table}")


def _entry_headers(field: bytes) -> dict[str, str]:
    """The headers of a Redis entry's ``message`` field (plain JSON, or phpredis' serialized
    string ``s:<length>:"<json>";``)."""
    text = field.decode()
    if text.startswith("s:"):
        text = text[text.index(":", 2) + 2 : -2]
    headers: dict[str, str] = json.loads(text)["headers"]
    return headers


def check_symfony_stamps_only(all_headers: Iterable[Mapping[str, str]]) -> None:
    """No stamp header names a class Symfony 5.4 lacks (Symfony would delete the message)."""
    known = symfony_stamp_classes()
    for headers in all_headers:
        assert headers["type"] == "App\\Message\\OrderPlaced", headers
        prefix = "X-Message-Stamp-"
        stamps = {name.removeprefix(prefix) for name in headers if name.startswith(prefix)}
        assert stamps <= known, f"stamp headers Symfony 5.4 does not have: {stamps - known}"


def new_backend(name: str) -> Backend:
    return Backend(name, uuid.uuid4().hex[:12])


# -- messages -----------------------------------------------------------------------------------
@attrs.frozen
class Expected:
    """A message as it was sent."""

    order_id: str
    amount: int
    placed_at: datetime


def php_messages(prefix: str, count: int, start: int = 0) -> dict[str, Expected]:
    """What ``produce.php --prefix P --count N --start S`` sends."""
    return {
        f"{prefix}-{i}": Expected(f"{prefix}-{i}", 1000 + i, PHP_BASE_TIME + timedelta(seconds=i))
        for i in range(start, start + count)
    }


def python_messages(prefix: str, count: int) -> dict[str, Expected]:
    """Messages the Python side sends: with microseconds and another UTC offset."""
    return {
        f"{prefix}-{i}": Expected(
            f"{prefix}-{i}",
            2000 + i,
            PYTHON_BASE_TIME + timedelta(seconds=i, microseconds=1000 * i + 7),
        )
        for i in range(count)
    }


def check_handled(
    records: Iterable[Mapping[str, Any]],
    expected: Mapping[str, Expected],
    *,
    side: str | None = None,
    whole_seconds: Iterable[str] = (),
) -> list[Mapping[str, Any]]:
    """Every expected message was handled exactly once (by ``side`` if given), and nothing
    else; each with the fields it was sent with. ``whole_seconds``: order ids whose time went
    through Symfony's DateTimeNormalizer on the way (RFC 3339 without fractions)."""
    handled = [r for r in records if r["outcome"] == "handled"]
    counts = Counter(r["orderId"] for r in handled)
    problems = []
    duplicated = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(expected.keys() - counts.keys())
    unexpected = sorted(counts.keys() - expected.keys())
    if duplicated:
        problems.append(f"handled more than once: {duplicated}")
    if missing:
        problems.append(f"never handled ({len(missing)} of {len(expected)}): {missing[:10]}")
    if unexpected:
        problems.append(f"handled but never sent: {unexpected[:10]}")
    truncated = set(whole_seconds)
    for record in handled:
        want = expected.get(record["orderId"])
        if want is None:
            continue
        if side is not None and record["side"] != side:
            problems.append(f"{record['orderId']} handled by {record['side']}, not {side}")
        if record["amount"] != want.amount:
            problems.append(f"{record['orderId']}: amount {record['amount']!r} != {want.amount}")
        placed_at = datetime.fromisoformat(record["placedAt"])
        wanted = want.placed_at
        if want.order_id in truncated:
            wanted = wanted.replace(microsecond=0)
        if placed_at != wanted:
            problems.append(
                f"{record['orderId']}: placedAt {record['placedAt']} is not {wanted.isoformat()}"
            )
    assert not problems, "\n".join(problems[:20])
    return handled


# -- the two sides ------------------------------------------------------------------------------
class Interop:
    """One test's two applications: configuration files, the shared handler log, processes."""

    def __init__(self, root: Path, backend: Backend) -> None:
        self.root = root
        self.backend = backend
        self.handled_file = root / "handled.jsonl"
        self.processes: list[subprocess.Popen[bytes]] = []
        self._files = 0

    def _write(self, stem: str, content: Mapping[str, Any]) -> Path:
        self._files += 1
        path = self.root / f"{stem}-{self._files}.json"
        path.write_text(json.dumps(content, indent=1))
        return path

    # -- configuration ---------------------------------------------------------------------
    def php_config(
        self,
        *,
        max_retries: int = 0,
        delay: int = 100,
        fail: Sequence[str] = (),
        below_retry: int | None = None,
        sleep_ms: float = 0,
    ) -> Path:
        """A PHP configuration: ``async`` (retries as given) and ``failed``."""
        retry = {"max_retries": max_retries, "delay": delay, "multiplier": 1, "max_delay": 0}
        return self._write(
            "php",
            {
                "transports": {
                    "async": {"dsn": self.backend.php_dsn("async"), "retry": retry},
                    "failed": {"dsn": self.backend.php_dsn("failed")},
                },
                "failure_transport": "failed",
                "routing": "async",
                "dbal_url": self.backend.dbal_url,
                "handled_file": str(self.handled_file),
                "fail": {"ids": list(fail), "below_retry": below_retry},
                "sleep_ms": sleep_ms,
            },
        )

    def python_settings(
        self,
        *,
        max_retries: int = 0,
        delay: int = 100,
        fail: Sequence[str] = (),
        below_retry: int | None = None,
        sleep_ms: float = 0,
        audit: bool = False,
    ) -> Path:
        """The Python side's settings, the same transports under this project's DSNs."""
        retry = {"max_retries": max_retries, "delay": delay, "multiplier": 1, "jitter": 0}
        return self._write(
            "python",
            {
                "transports": {
                    "async": {"dsn": self.backend.python_dsn("async"), "retry_strategy": retry},
                    "failed": {"dsn": self.backend.python_dsn("failed")},
                },
                "failure_transport": "failed",
                "handled_file": str(self.handled_file),
                "fail": {"ids": list(fail), "below_retry": below_retry},
                "sleep_ms": sleep_ms,
                "audit": audit,
            },
        )

    # -- PHP ---------------------------------------------------------------------------------
    def php(self, script: str, config: Path, *args: str, stderr: bool = False) -> str:
        """Run ``php script CONFIG ARGS`` to its end; its output, with what it wrote on stderr
        if ``stderr`` (Symfony's console commands write their tables there); fails the test
        on an error."""
        result = subprocess.run(
            ["php", str(PHP_DIR / script), str(config), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"php {script} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout + result.stderr if stderr else result.stdout

    def setup_symfony(self) -> None:
        """``messenger:setup-transports`` on the PHP side: Symfony creates the table."""
        self.php("setup.php", self.php_config())

    def php_produce(
        self, prefix: str, count: int, *, start: int = 0, delay_ms: int = 0, trace: bool = False
    ) -> dict[str, Expected]:
        """Dispatch from PHP (``produce.php``); with ``trace``, each message carries a stamp
        of the PHP application's own, ``App\\Stamp\\TraceStamp {traceId: "trace-<id>"}``."""
        config = self.php_config()
        self.php(
            "produce.php",
            config,
            *("--prefix", prefix, "--count", str(count), "--start", str(start)),
            *("--delay-ms", str(delay_ms), "--trace", "1" if trace else "0"),
        )
        return php_messages(prefix, count, start)

    def php_worker(self, config: Path, *args: str, name: str = "php-worker") -> Process:
        """``php consume.php CONFIG ARGS`` in the background."""
        return self._start(name, ["php", str(PHP_DIR / "consume.php"), str(config), *args])

    # -- Python ------------------------------------------------------------------------------
    def python_env(self, settings: Path) -> dict[str, str]:
        return messenger_environment(
            [HERE], self.root / "stop-workers", **{SETTINGS_VARIABLE: str(settings)}
        )

    def messenger_command(self, settings: Path, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "messenger_core",
            "--app",
            "interop_app:from_environment",
            *args,
        ]

    def python_worker(self, settings: Path, *args: str, name: str = "py-worker") -> Process:
        """``messenger consume ARGS`` in the background."""
        return self._start(
            name, self.messenger_command(settings, "consume", *args), self.python_env(settings)
        )

    def messenger(self, settings: Path, *args: str, check: bool = True) -> str:
        """``messenger ARGS`` to its end; its output."""
        result = subprocess.run(
            self.messenger_command(settings, *args),
            cwd=self.root,
            env=self.python_env(settings),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        output = result.stdout + result.stderr
        if check and result.returncode != 0:
            pytest.fail(f"messenger {' '.join(args)} exited {result.returncode}:\n{output}")
        return output

    def python_dispatch(self, prefix: str, count: int, *, delay_ms: int = 0) -> dict[str, Expected]:
        """Dispatch from this process, through the ``symfony`` serializer."""
        expected = python_messages(prefix, count)
        settings = json.loads(self.python_settings().read_text())
        messenger = build_messenger(settings)
        try:
            stamps = [DelayStamp(delay_ms=delay_ms)] if delay_ms else []
            for message in expected.values():
                messenger.bus.dispatch(
                    OrderPlaced(message.order_id, message.amount, message.placed_at), *stamps
                )
        finally:
            messenger.close()
        return expected

    # -- processes and records ---------------------------------------------------------------
    def _start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Process:
        output = self.root / f"{name}-{len(self.processes)}.out"
        with output.open("wb") as sink:
            popen = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        self.processes.append(popen)
        return Process(name, popen, output)

    def records(self) -> list[dict[str, Any]]:
        """Every attempt either handler recorded so far, in order."""
        if not self.handled_file.exists():
            return []
        return [json.loads(line) for line in self.handled_file.read_text().splitlines() if line]

    def handled_ids(self) -> set[str]:
        return {r["orderId"] for r in self.records() if r["outcome"] == "handled"}

    def wait_for(
        self,
        condition: Callable[[], bool],
        what: str,
        *processes: Process,
        timeout: float = DEADLINE,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                outputs = "\n".join(p.describe() for p in processes)
                pytest.fail(f"timed out waiting for {what}\n{outputs}")
            for process in processes:
                if process.popen.poll() not in (None, 0):
                    pytest.fail(f"{process.name} died waiting for {what}\n{process.describe()}")
            time.sleep(0.05)

    def stop_all(self) -> None:
        for popen in self.processes:
            if popen.poll() is None:
                popen.kill()
                popen.wait(10)


@attrs.frozen
class Process:
    """A worker started in the background, with the file holding its output."""

    name: str
    popen: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def describe(self) -> str:
        return f"--- {self.name} (exit {self.popen.poll()}):\n{self.text()}"

    def finish(self, timeout: float = DEADLINE) -> str:
        """Wait for the process to stop on its own; it must exit 0. Its output."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            pytest.fail(f"{self.name} did not stop within {timeout} s\n{self.describe()}")
        if code != 0:
            pytest.fail(f"{self.name} exited {code}\n{self.describe()}")
        return self.text()
