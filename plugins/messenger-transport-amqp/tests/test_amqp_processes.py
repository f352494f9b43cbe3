"""Real processes and signals: a consumer killed with ``kill -9``, ``messenger consume``
stopped with SIGTERM, RabbitMQ restarted under a consuming worker and under a producer (on a
node of the tests' own), RabbitMQ down at start-up, a handler running long. Marked slow."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from amqp_test_support import (
    AMQP_DSN,
    Exchange,
    RabbitNode,
    order,
    ready_count,
    receive,
    require_amqp,
)
from messenger_transport_amqp import AmqpUnreachableError

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.stamps import TransportRedeliveredStamp
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
app = "amqp_app:messenger"
failure_transport = "failed"

[messenger.transports.async]
dsn = "{main}"
retry_strategy = {{ max_retries = 3, delay = 100 }}

[messenger.transports.failed]
dsn = "{failed}"

[messenger.routing]
"amqp_app.Job" = "async"
"""


@attrs.frozen
class Job:
    """The test application's ``amqp_app.Job``, as the test process encodes it."""

    id: int


def app_serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Job, "amqp_app.Job")
    return JsonSerializer(registry)


class App:
    """One test's application: configuration, handler log, ``messenger`` processes."""

    def __init__(self, root: Path, main: Exchange, failed: Exchange, delay: float) -> None:
        self.root = root
        self.config = root / "messenger.toml"
        self.config.write_text(CONFIG.format(main=dsn_of(main), failed=dsn_of(failed)))
        self.log = root / "handled.log"
        self.env = messenger_environment(
            [HERE / "app", HERE],
            root / "stop-workers",
            MESSENGER_AMQP_TEST_CONFIG=str(self.config),
            MESSENGER_AMQP_TEST_LOG=str(self.log),
            MESSENGER_AMQP_TEST_DELAY=str(delay),
        )
        self.processes: list[MessengerProcess] = []

    def consume(self, *args: str) -> MessengerProcess:
        """``messenger consume async ARGS``; every worker's output goes to ``worker.out``."""
        process = MessengerProcess(
            messenger_command("consume", "async", "--time-limit", "300", *args, config=self.config),
            self.root / "worker.out",
            env=self.env,
            cwd=self.root,
            timeout=DEADLINE,
            append=True,
        )
        self.processes.append(process)
        return process

    def output(self) -> str:
        path = self.root / "worker.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def events(self, event: str) -> list[int]:
        if not self.log.exists():
            return []
        return [
            int(line.split()[1])
            for line in self.log.read_text().splitlines()
            if line.startswith(f"{event} ")
        ]

    def stop_all(self) -> None:
        for process in self.processes:
            process.kill()


def dsn_of(exchange: Exchange, **query: str) -> str:
    options = {"delay[exchange_name]": exchange.delays, **query}
    return exchange.dsn() + "?" + "&".join(f"{k}={v}" for k, v in options.items())


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    made: list[tuple[App, Exchange, Exchange]] = []

    def make(main: Exchange, delay: float = 0.0) -> App:
        root = tmp_path / f"app{len(made)}"
        root.mkdir()
        failed = Exchange(base_dsn=main.base_dsn)
        app = App(root, main, failed, delay)
        made.append((app, main, failed))
        return app

    yield make
    for app, main, failed in made:
        app.stop_all()
        main.close()
        failed.close()


# -- kill -9 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("acks", ["flushed", "held-back"])
def test_messages_of_a_consumer_killed_with_kill_9_come_back(exchange: Exchange, acks: str) -> None:
    """``held-back``: the consumer leaves its acknowledgements to the transport, which holds
    them back; they go out within a second or two while it sits on the next message."""
    count, acked_by_victim = 20, 5
    sender = exchange.transport()
    sender.setup()
    sender.send_batch([order(number) for number in range(count)])

    victim = subprocess.Popen(
        [sys.executable, str(HERE / "amqp_consumer_process.py"), AMQP_DSN, exchange.name,
         str(acked_by_victim), acks],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: list[list[str]] = []
    try:
        assert victim.stdout is not None
        for line in victim.stdout:
            lines.append(line.split())
            if line.startswith("holding"):
                break
        # It holds the rest in its prefetch window, unacknowledged.
        assert ready_count(exchange.name) == (0, 1)
        if acks == "held-back":
            time.sleep(2.5)  # "handling" the held message: the acknowledgements go out
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    acked = {int(number) for word, number in lines if word == "acked"}
    [held] = [int(number) for word, number in lines if word == "holding"]
    assert len(acked) == acked_by_victim

    survivor = exchange.transport()
    handled: list[int] = []
    redelivered: set[int] = set()
    deadline = time.monotonic() + 10
    while len(handled) < count - acked_by_victim and time.monotonic() < deadline:
        for envelope in survivor.get():
            handled.append(envelope.message.id)
            if envelope.last(TransportRedeliveredStamp):
                redelivered.add(envelope.message.id)
            survivor.ack(envelope)
    assert held in handled, "the message the killed consumer held came back"
    assert held in redelivered, "flagged redelivered (the reject-redelivered middleware sees it)"
    assert not acked & set(handled), "a message acknowledged before the kill came back"
    assert [n for n, times in Counter(handled).items() if times > 1] == []
    assert sorted(acked | set(handled)) == list(range(count)), "a message was lost"
    assert receive(survivor, 1, timeout=0.5) == [], "something came back after its ack"


# -- SIGTERM -------------------------------------------------------------------------------------
def test_sigterm_finishes_the_current_message_and_hands_back_the_others(
    exchange: Exchange, make_app: Callable[..., App]
) -> None:
    app = make_app(exchange, delay=1.0)
    sender = exchange.transport(app_serializer())
    sender.setup()
    sender.send_batch([Envelope(Job(number)) for number in range(4)])
    worker = app.consume()
    worker.wait_until(lambda: app.events("started") == [0], "the first handler to start")
    assert worker.stop() == 0
    assert app.events("handled") == [0], "the current message was finished, no other begun"
    assert "Traceback" not in app.output()
    # The three it had prefetched are back, as new messages: the next worker handles them
    # (the reject-redelivered middleware would have sent them through a retry otherwise).
    assert ready_count(exchange.name) == (3, 0)
    second = app.consume("--limit", "3")
    assert second.wait() == 0, app.output()
    assert sorted(app.events("handled")) == [0, 1, 2, 3]
    assert "redelivered" not in app.output().lower(), app.output()


# -- RabbitMQ down at start-up, a handler running long --------------------------------------------
def test_rabbitmq_down_at_start_is_a_clear_error_after_a_bounded_wait() -> None:
    port = free_port()  # nothing listens there
    exchange = Exchange(base_dsn=f"amqp://guest:secret@127.0.0.1:{port}/%2f")
    transport = exchange.transport(reconnect_timeout=1)
    started = time.monotonic()
    with pytest.raises(AmqpUnreachableError) as raised:
        transport.get()
    assert time.monotonic() - started < 5
    text = str(raised.value)
    assert f"127.0.0.1:{port}" in text
    assert "unreachable" in text
    assert "tried for" in text
    assert "secret" not in text
    with pytest.raises(AmqpUnreachableError):
        transport.send(order(1))


def test_messenger_consume_with_rabbitmq_down_at_start_exits_with_one_clear_line(
    tmp_path: Path, make_app: Callable[..., App]
) -> None:
    port = free_port()
    app = make_app(Exchange(base_dsn=f"amqp://guest:guest@127.0.0.1:{port}/%2f"))
    config = app.config.read_text().replace("delays", "delays&reconnect_timeout=1")
    app.config.write_text(config)
    started = time.monotonic()
    worker = app.consume()
    code = worker.wait()
    assert code != 0
    assert time.monotonic() - started < 20
    assert "unreachable" in app.output(), app.output()
    assert "Traceback" not in app.output(), app.output()


def test_heartbeats_flow_while_a_handler_runs_long(exchange: Exchange) -> None:
    require_amqp()
    transport = exchange.transport(heartbeat=1)
    transport.setup()
    transport.send(order(1))
    [held] = receive(transport, 1)
    generation = transport._connection.generation
    time.sleep(4)  # four heartbeat intervals without touching the transport
    other = exchange.transport()
    assert receive(other, 1, timeout=0.5) == [], "the connection died: the message came back"
    transport.ack(held)
    transport.flush()
    assert transport._connection.generation == generation, "it reconnected"


# -- RabbitMQ restarted (a node of the tests' own) ------------------------------------------------
def test_a_worker_carries_on_across_a_rabbitmq_restart_and_loses_nothing(
    rabbit_node: RabbitNode, make_app: Callable[..., App]
) -> None:
    exchange = Exchange(base_dsn=rabbit_node.dsn)
    app = make_app(exchange, delay=0.005)
    sender = exchange.transport(app_serializer(), confirm_timeout=5, reconnect_timeout=30)
    sender.setup()
    before, after = 300, 200
    sender.send_batch([Envelope(Job(number)) for number in range(before)])

    worker = app.consume()
    worker.wait_until(lambda: len(app.events("handled")) >= 50, "the worker to start handling")
    rabbit_node.restart(downtime=2, whole_node=True)  # the server process itself
    assert worker.running(), f"the worker died during the outage:\n{app.output()}"
    sender.send_batch([Envelope(Job(number)) for number in range(before, before + after)])
    worker.wait_until(
        lambda: set(app.events("handled")) >= set(range(before + after)),
        "every message to be handled",
    )
    assert worker.stop() == 0
    output = app.output()
    assert "went away" in output, output
    assert "reachable again" in output, output
    assert "Traceback" not in output, output
    # Messages whose acknowledgement was lost with the connection came back redelivered and
    # went through a retry (a delayed copy): what is left in the queue is such copies only.
    left = receive(exchange.transport(app_serializer()), 1000, timeout=1)
    assert {envelope.message.id for envelope in left} <= set(app.events("handled"))
    sender.close()


def test_a_producer_loses_nothing_across_a_rabbitmq_restart(
    rabbit_node: RabbitNode, make_app: Callable[..., App]
) -> None:
    exchange = Exchange(base_dsn=rabbit_node.dsn)
    app = make_app(exchange)
    config = app.config.read_text().replace(
        "delays", "delays&confirm_timeout=5&reconnect_timeout=30", 1
    )
    app.config.write_text(config)
    exchange.transport().setup()
    count = 150
    producer = subprocess.Popen(
        [sys.executable, str(HERE / "amqp_producer_process.py"), str(count), "0.01"],
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
        if line.startswith("sent 49"):
            rabbit_node.restart(downtime=2)
    assert producer.wait(DEADLINE) == 0, "\n".join(lines)
    answers = {int(m[2]): m[1] for m in (re.match(r"(sent|error) (\d+)", x) for x in lines) if m}
    assert sorted(answers) == list(range(count)), "\n".join(lines)
    assert set(answers.values()) == {"sent"}, "\n".join(lines)

    consumer = exchange.transport(app_serializer())
    stored: list[int] = []
    deadline = time.monotonic() + 10
    while len(set(stored)) < count and time.monotonic() < deadline:
        for envelope in consumer.get():
            stored.append(envelope.message.id)
            consumer.ack(envelope)
    assert sorted(set(stored)) == list(range(count)), "a confirmed message was lost"
