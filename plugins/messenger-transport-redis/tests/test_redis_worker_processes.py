"""``messenger consume`` in real processes on Redis: restarts of the server under a worker and
under a producer, garbage written straight into the stream, a failure store that comes back,
a worker stopped with a fetched batch, and Redis down at start-up.

The servers that get stopped are the tests' own (``redis-server`` on a spare port, persisting
every command to an append-only file); the others run on the test Redis. Marked slow.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
from redis_test_support import (
    REDIS_DSN,
    RedisServer,
    Stream,
    own_redis_server,
    raw_client,
    require_redis,
    unique_stream,
)

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.testing.processes import (
    MessengerProcess,
    messenger_command,
    messenger_environment,
)
from messenger_core.testing.services import free_port

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
DEADLINE = 60.0
"""Seconds any one wait may take before the test fails (a loaded machine is slow)."""

CONFIG = """\
[messenger]
app = "redis_app:messenger"
failure_transport = "failed"

[messenger.transports.async]
dsn = "{main}"
retry_strategy = {{ max_retries = 0 }}

[messenger.transports.failed]
dsn = "{failed}"

[messenger.routing]
"redis_app.Job" = "async"
"redis_app.Doomed" = "async"
"""


@attrs.frozen
class Job:
    """The test application's ``redis_app.Job``, as the test process encodes it."""

    id: int


@attrs.frozen
class Doomed:
    """The test application's ``redis_app.Doomed``."""

    id: int


def app_serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Job, "redis_app.Job")
    registry.register(Doomed, "redis_app.Doomed")
    return JsonSerializer(registry)


class App:
    """One test's application: configuration, handler log, ``messenger`` processes."""

    def __init__(self, root: Path, main: str, failed: str, delay: float = 0.0) -> None:
        self.root = root
        self.config = root / "messenger.toml"
        self.config.write_text(CONFIG.format(main=main, failed=failed))
        self.log = root / "handled.log"
        self.env = messenger_environment(
            [HERE / "app", HERE],
            root / "stop-workers",
            MESSENGER_REDIS_TEST_CONFIG=str(self.config),
            MESSENGER_REDIS_TEST_LOG=str(self.log),
            MESSENGER_REDIS_TEST_DELAY=str(delay),
        )
        self.processes: list[MessengerProcess] = []

    def consume(self, *args: str, output: str = "worker.out", **env: str) -> MessengerProcess:
        """``messenger consume async ARGS`` in the background, its output in ``output``."""
        process = MessengerProcess(
            messenger_command("consume", "async", "--time-limit", "300", *args, config=self.config),
            self.root / output,
            env={**self.env, **env},
            cwd=self.root,
            timeout=DEADLINE,
        )
        self.processes.append(process)
        return process

    def handled(self) -> list[int]:
        """The ids of the Jobs handled so far (with repeats)."""
        if not self.log.exists():
            return []
        return [
            int(line.split()[1])
            for line in self.log.read_text().splitlines()
            if line.startswith("handled ")
        ]

    def handlers_of(self, event: str) -> list[tuple[int, int]]:
        """``(id, pid)`` of every ``event`` line."""
        if not self.log.exists():
            return []
        return [
            (int(parts[1]), int(parts[2]))
            for parts in (line.split() for line in self.log.read_text().splitlines())
            if parts[0] == event
        ]

    def stop_all(self) -> None:
        for process in self.processes:
            process.kill()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    made: list[App] = []

    def make(main: str, failed: str, delay: float = 0.0) -> App:
        root = tmp_path / f"app{len(made)}"
        root.mkdir()
        app = App(root, main, failed, delay)
        made.append(app)
        return app

    yield make
    for app in made:
        app.stop_all()


def entries(client: Any, stream: str) -> list[dict[str, Any]]:
    """The stream's entries as ``{"id", "body", "headers"}``."""
    found = []
    for entry_id, fields in client.xrange(stream):
        document = json.loads(fields[b"message"])
        found.append({"id": entry_id.decode(), **document})
    return found


@pytest.fixture
def streams() -> Iterator[list[str]]:
    """Names of streams on the test Redis to delete afterwards."""
    names: list[str] = []
    yield names
    client = raw_client()
    try:
        for name in names:
            client.delete(name, f"{name}__queue")
    finally:
        client.close()


def local_stream(streams: list[str]) -> str:
    require_redis()
    name = unique_stream()
    streams.append(name)
    return name


# -- 9.1: the server restarted under a consuming worker and under a producer -------------------
@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "shutdown"])
def test_a_worker_carries_on_across_a_redis_restart_and_loses_nothing(
    redis_server: RedisServer, make_app: Callable[..., App], kill: bool
) -> None:
    dsn = f"{redis_server.dsn}/jobs?redeliver_timeout=3600&reconnect_timeout=2"
    app = make_app(dsn, f"{redis_server.dsn}/failed", delay=0.005)
    stream = Stream("jobs", base_dsn=redis_server.dsn)
    sender = stream.transport(app_serializer(), reconnect_timeout=30)
    before, after = 300, 200
    sender.send_batch([Envelope(Job(number)) for number in range(before)])

    worker = app.consume()
    worker.wait_until(lambda: len(app.handled()) >= 50, "the worker to start handling")
    redis_server.restart(downtime=3, kill=kill)  # longer than reconnect_timeout
    assert worker.running(), f"the worker died during the outage:\n{worker.output()}"
    sender.send_batch([Envelope(Job(number)) for number in range(before, before + after)])
    worker.wait_until(
        lambda: set(app.handled()) >= set(range(before + after)), "every message to be handled"
    )
    assert worker.running(), "the worker is still running"
    assert worker.stop() == 0
    sender.close()

    output = worker.output()
    assert output.count("went away") == 1, f"one warning per outage:\n{output}"
    assert "reachable again" in output
    assert "Traceback" not in output
    client: Any = redis.Redis(port=redis_server.port)
    try:
        assert client.xpending("jobs", "symfony")["pending"] == 0, "every message settled"
        assert client.xlen("jobs") == 0
    finally:
        client.close()


def test_a_worker_stops_at_once_on_sigterm_while_redis_is_down(
    redis_server: RedisServer, make_app: Callable[..., App]
) -> None:
    dsn = f"{redis_server.dsn}/jobs?reconnect_timeout=30"
    app = make_app(dsn, f"{redis_server.dsn}/failed", delay=2)
    stream = Stream("jobs", base_dsn=redis_server.dsn)
    sender = stream.transport(app_serializer())
    sender.send(Envelope(Job(1)))
    sender.close()
    worker = app.consume()
    client = redis_server.client()
    worker.wait_until(lambda: client.xpending("jobs", "symfony")["pending"] == 1, "a delivery")
    client.close()
    redis_server.stop(kill=True)  # while the handler runs: its acknowledgement cannot be sent
    worker.wait_until(lambda: app.handled() == [1], "the handler to finish")
    worker.wait_until(lambda: "went away" in worker.output(), "the outage to be noticed")
    started = time.monotonic()
    assert worker.stop() == 0
    # Generous: reconnect_timeout is 30 s, a stop must not wait for it (twice).
    assert time.monotonic() - started < 15, worker.output()
    assert "delivered again" in worker.output(), "the unsent acknowledgement is reported"


@pytest.fixture
def redis_server_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    yield from own_redis_server(tmp_path / "redis-with-password", password="s3cret")


def test_a_producer_gets_a_clear_answer_for_every_send_across_a_restart(
    redis_server_with_password: RedisServer, make_app: Callable[..., App]
) -> None:
    server = redis_server_with_password
    app = make_app(
        f"redis://:s3cret@127.0.0.1:{server.port}/jobs?reconnect_timeout=1",
        f"redis://:s3cret@127.0.0.1:{server.port}/failed",
    )
    count = 200
    producer = subprocess.Popen(
        [sys.executable, str(HERE / "redis_producer_process.py"), str(count), "0.02"],
        env=app.env,
        cwd=app.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert producer.stdout is not None
    for line in producer.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("sent 49 "):
            server.restart(downtime=3, kill=True)
    assert producer.wait(DEADLINE) == 0, "\n".join(lines)

    answers: dict[int, str] = {}
    for line in lines:
        match = re.match(r"(sent|error) (\d+) (.*)", line)
        if match:
            assert int(match[2]) not in answers, f"two answers for one send: {line}"
            answers[int(match[2])] = line
    assert sorted(answers) == list(range(count)), "\n".join(lines)
    errors = [line for line in answers.values() if line.startswith("error")]
    sent = {number for number, line in answers.items() if line.startswith("sent")}
    assert errors, "a 3 s outage with reconnect_timeout=1 fails some sends"
    assert max(sent) > max(int(line.split()[1]) for line in errors), "sending resumed"
    for line in errors:
        assert "unreachable" in line, line
        assert "tried for" in line, line
        assert "s3cret" not in line, line
        assert "***" in line, line

    client = server.client()
    try:
        stored = {json.loads(entry["body"])["id"] for entry in entries(client, "jobs")}
    finally:
        client.close()
    assert sent <= stored, f"reported as sent but not stored: {sorted(sent - stored)}"


# -- 9.2: garbage written straight into the stream ---------------------------------------------
DEEP = 100_000
GARBAGE: list[dict[bytes, bytes]] = [
    {b"message": b"[" * DEEP + b"]" * DEEP},  # RecursionError in the JSON parser
    {
        b"message": b'{"body":"'
        + b"[" * DEEP
        + b"]" * DEEP
        + b'","headers":{"type":"redis_app.Job"}}'
    },
    {b"message": b"\xff\xfe\x00 not utf-8"},
    {b"payload": b"no message field"},
    {b"message": b'{"body":1,"headers":{}}'},  # a body that is not text
    {b"message": b'{"body":"{}","headers":"h"}'},  # headers that are not an object
    {b"message": b'{"body":"{\\"id\\":\\"x\\"}","headers":{"type":"redis_app.Job"}}'},
]


def test_garbage_entries_are_parked_with_their_raw_payload_and_the_worker_goes_on(
    make_app: Callable[..., App], streams: list[str]
) -> None:
    main, failed = local_stream(streams), local_stream(streams)
    app = make_app(f"{REDIS_DSN}/{main}", f"{REDIS_DSN}/{failed}")
    client: Any = raw_client()
    sender = Stream(main).transport(app_serializer())
    try:
        sender.setup()
        for number, fields in enumerate(GARBAGE):
            sender.send(Envelope(Job(number)))
            client.xadd(main, fields)
        sender.send(Envelope(Job(len(GARBAGE))))
        worker = app.consume()
        worker.wait_until(
            lambda: sorted(app.handled()) == list(range(len(GARBAGE) + 1)), "every good message"
        )
        worker.wait_until(lambda: client.xlen(failed) >= len(GARBAGE), "every bad entry parked")
        worker.assert_running()
        assert worker.stop() == 0
    finally:
        sender.close()
        client.close()

    parked = entries(raw_client(), failed)
    assert len(parked) == len(GARBAGE), parked
    bodies = [entry["body"] for entry in parked]
    assert bodies[0] == "[" * DEEP + "]" * DEEP, "the raw payload is parked as it was"
    assert "RecursionError" in json.dumps(parked[0]["headers"])
    assert parked[2]["headers"].get("X-Messenger-Body-Encoding") == "base64"
    assert base64.b64decode(bodies[2]) == GARBAGE[2][b"message"], "non-UTF-8 bytes kept exactly"
    assert bodies[3] == json.dumps({"payload": "no message field"}, separators=(",", ":"))
    assert client.xlen(main) == 0, "nothing left behind in the main stream"


# -- 9.4: the failure store down, then back -----------------------------------------------------
def test_a_message_left_pending_while_the_failure_store_was_down_is_parked_once_it_is_back(
    redis_server: RedisServer, make_app: Callable[..., App], streams: list[str]
) -> None:
    main = local_stream(streams)
    app = make_app(
        f"{REDIS_DSN}/{main}?redeliver_timeout=3600",  # far beyond this test: it must not wait
        f"{redis_server.dsn}/failed?reconnect_timeout=0.5",
    )
    sender = Stream(main).transport(app_serializer())
    try:
        sender.setup()
        redis_server.stop()  # the failure store is down
        sender.send(Envelope(Doomed(1)))
        sender.send(Envelope(Job(2)))
        worker = app.consume()
        # The park failed once the handler ran twice (the message came back to this worker),
        # or once the worker said so.
        worker.wait_until(
            lambda: len(app.handlers_of("failed")) >= 2 or "could not be stored" in worker.output(),
            "a failed park",
        )
        redis_server.start()
        worker.wait_until(
            lambda: bool(redis_server.client().xlen("failed")), "the message to be parked"
        )
        worker.wait_until(lambda: app.handled() == [2], "the next message")
        worker.assert_running()
        assert worker.stop() == 0
    finally:
        sender.close()
    client: Any = raw_client()
    try:
        assert client.xlen(main) == 0, "the parked original was rejected"
    finally:
        client.close()
    pids = {pid for _, pid in app.handlers_of("failed")}
    assert pids == {worker.pid}, "the same worker tried it again"


# -- 8.11: a worker stopped while it holds a fetched batch --------------------------------------
def test_a_worker_stopped_with_a_fetched_batch_hands_it_to_the_next_worker_at_once(
    make_app: Callable[..., App], streams: list[str]
) -> None:
    main = local_stream(streams)
    count = 10
    app = make_app(f"{REDIS_DSN}/{main}?redeliver_timeout=3600", f"{REDIS_DSN}/{main}-failed")
    streams.append(f"{main}-failed")
    sender = Stream(main).transport(app_serializer())
    try:
        sender.send_batch([Envelope(Job(number)) for number in range(count)])
        first = app.consume(output="first.out", MESSENGER_REDIS_TEST_DELAY="1")
        first.wait_until(lambda: len(app.handled()) >= 1, "the first worker's first message")
        # The default fetch_size: it holds the rest of its batch.
        assert first.stop(signal.SIGTERM) == 0, first.output()
        done_by_first = len(app.handled())
        assert done_by_first < count, "the first worker held unhandled messages when it stopped"
        assert "handed back" in first.output()

        second = app.consume(output="second.out")
        second.wait_until(
            lambda: sorted(app.handled()) == list(range(count)),
            "the next worker to take the handed-back messages",
            timeout=30,  # redeliver_timeout is an hour: only a hand-back makes this in time
        )
        assert second.stop() == 0
    finally:
        sender.close()


# -- 9.7: Redis down at start-up -----------------------------------------------------------------
def test_redis_down_at_start_up_is_one_clear_line(make_app: Callable[..., App]) -> None:
    port = free_port()  # nothing listens there
    app = make_app(
        f"redis://:s3cret@127.0.0.1:{port}/jobs?reconnect_timeout=1.5",
        f"redis://:s3cret@127.0.0.1:{port}/failed",
    )
    worker = app.consume()
    code = worker.wait()
    output = worker.output()
    assert code == 1, output
    assert "acknowledg" not in output, "nothing was received: no word about acknowledgements"
    assert "WARNING" not in output, output
    problems = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(problems) == 1, f"one line:\n{output}"
    [line] = problems
    assert line.startswith("messenger: error: "), line
    assert f"Redis at redis://:***@127.0.0.1:{port}/jobs" in line, line
    assert re.search(r"tried for 1\.[5-9] s", line), f"honours reconnect_timeout: {line}"
    assert "reconnect_timeout=1.5" in line, line
    assert "Connection refused" in line, line
    assert "check that Redis runs there" in line, line
    assert "s3cret" not in output
    assert "_Unreachable" not in output, "no private class name"
