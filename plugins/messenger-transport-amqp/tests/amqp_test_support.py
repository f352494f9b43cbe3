"""Helpers for the AMQP transport's tests (imported by the test modules and conftest).

Tests run against the real RabbitMQ named by ``MESSENGER_TEST_AMQP_DSN`` (default: the local
broker, ``/`` virtual host); they skip when it is unreachable, or fail under
``MESSENGER_REQUIRE_SERVICES=1``. Every test gets an exchange, a queue and a delays exchange
of its own, deleted afterwards (delay queues expire by themselves 10 s after their messages).

The tests that stop RabbitMQ start a node of their own (:class:`RabbitNode`) on spare ports,
with its own data directory, and never touch the shared broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pika
from messenger_transport_amqp import AmqpTransport, AmqpTransportFactory, parse_options
from messenger_transport_amqp.connection import parameters_of

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import Stamp
from messenger_core.testing.services import (
    free_port,
    port_accepts,
    require_service,
    service_dsn,
    service_unavailable,
)

AMQP_DSN = service_dsn("MESSENGER_TEST_AMQP_DSN", "amqp://guest:guest@127.0.0.1:5672/%2f")
"""The broker and virtual host the tests use (no exchange segment: each test names its own)."""


@attrs.frozen
class Order:
    """A message for these tests."""

    id: int
    text: str = ""


def make_serializer() -> JsonSerializer:
    """The JSON serializer, knowing :class:`Order`."""
    registry = MessageTypeRegistry()
    registry.register(Order, "tests.Order")
    return JsonSerializer(registry)


def order(number: int, text: str = "", *stamps: Stamp) -> Envelope:
    """An envelope holding ``Order(number, text)``."""
    return Envelope(Order(number, text), stamps)


def parameters(dsn: str = AMQP_DSN) -> pika.ConnectionParameters:
    """pika's parameters for the broker and virtual host of ``dsn``."""
    return parameters_of(parse_options(Dsn.parse(dsn), {}))


@contextmanager
def raw_channel(dsn: str = AMQP_DSN) -> Iterator[Any]:
    """A plain pika channel on the test broker (to look behind the transport's back)."""
    connection = pika.BlockingConnection(parameters(dsn))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


_reachable: set[str] = set()


def require_amqp(dsn: str = AMQP_DSN) -> None:
    """Skip (or fail) the test when RabbitMQ at ``dsn`` is not reachable."""
    if dsn in _reachable:
        return

    def probe() -> None:
        with raw_channel(dsn):
            pass

    require_service("RabbitMQ", dsn, probe)
    _reachable.add(dsn)


def unique_name() -> str:
    """An exchange (and queue) name no other test uses."""
    return f"messenger-test-{uuid.uuid4().hex[:12]}"


@attrs.define
class Exchange:
    """An exchange, its queue(s) and its delays exchange, of the running test's own."""

    name: str = attrs.field(factory=unique_name)
    base_dsn: str = AMQP_DSN
    queues: tuple[str, ...] = ()
    _made: list[AmqpTransport] = attrs.field(factory=list)

    @property
    def delays(self) -> str:
        return f"{self.name}.delays"

    @property
    def queue_names(self) -> tuple[str, ...]:
        return self.queues or (self.name,)

    def dsn(self) -> str:
        """The broker's DSN with this exchange as its path's exchange segment."""
        return f"{self.base_dsn.rstrip('/')}/{self.name}"

    def options(self, **options: Any) -> dict[str, Any]:
        return {"delay": {"exchange_name": self.delays}, **options}

    def transport(self, serializer: Serializer | None = None, **options: Any) -> AmqpTransport:
        """A new transport (a new connection) on this exchange, closed after the test."""
        transport = AmqpTransportFactory().create(
            Dsn.parse(self.dsn()),
            self.options(**options),
            serializer if serializer is not None else make_serializer(),
        )
        self._made.append(transport)
        return transport

    def close(self) -> None:
        for transport in self._made:
            with contextlib.suppress(Exception):  # the broker may be down in a failed test
                transport.close()
        try:
            with raw_channel(self.base_dsn) as channel:
                for queue in self.queue_names:
                    channel.queue_delete(queue)
                channel.exchange_delete(self.name)
                channel.exchange_delete(self.delays)
        except pika.exceptions.AMQPError:
            pass


def receive(transport: AmqpTransport, count: int, timeout: float = 5.0) -> list[Envelope]:
    """Poll ``transport`` until ``count`` envelopes came or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    received: list[Envelope] = []
    while len(received) < count and time.monotonic() < deadline:
        received.extend(transport.get())
    return received


def ready_count(queue: str, dsn: str = AMQP_DSN) -> tuple[int, int]:
    """``(ready messages, consumers)`` of ``queue``, by a passive declare."""
    with raw_channel(dsn) as channel:
        method = channel.queue_declare(queue, passive=True).method
        return method.message_count, method.consumer_count


# -- a RabbitMQ node of the test's own, to stop and restart ------------------------------------
_SBIN = Path("/usr/lib/rabbitmq/bin")  # Debian: the scripts themselves, not the su wrapper


def _tool(name: str) -> str | None:
    direct = _SBIN / name
    return str(direct) if direct.exists() else shutil.which(name)


class RabbitNode:
    """A RabbitMQ node on spare ports (AMQP and distribution), with its own data, log and
    cookie directories under ``directory``: stopping it disturbs no other test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"messenger-test-{uuid.uuid4().hex[:8]}@localhost"
        config = directory / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
        )
        (directory / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(directory),  # its own Erlang cookie, shared with rabbitmqctl below
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_PID_FILE": str(directory / "node.pid"),
        }

    @property
    def dsn(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2f"

    def _ctl(self, *args: str, timeout: float = 90) -> None:
        ctl = _tool("rabbitmqctl")
        assert ctl is not None
        subprocess.run(
            [ctl, "-q", "-n", self.name, *args],
            env=self.env,
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start it (again, on the same ports and data) and wait until it accepts clients."""
        server = _tool("rabbitmq-server")
        assert server is not None
        subprocess.run([server, "-detached"], env=self.env, check=True, timeout=60)
        self._ctl("wait", str(self.directory / "node.pid"), "--timeout", "60")
        self._wait_for_clients()

    def _wait_for_clients(self) -> None:
        """Return once a client can open a channel (fail after 30 s)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with raw_channel(self.dsn):
                    return
            except pika.exceptions.AMQPConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop it (RabbitMQ closes its clients' connections, then halts)."""
        self._ctl("stop", str(self.directory / "node.pid"))

    def restart(self, downtime: float, *, whole_node: bool = False) -> None:
        """Stop RabbitMQ, wait ``downtime`` seconds, start it again.

        By default this stops and starts the RabbitMQ application inside the node's running
        Erlang VM (``rabbitmqctl stop_app`` / ``start_app``): the clients see what a node stop
        shows them (RabbitMQ closes their connections, its port refuses new ones until the
        start, durable queues come back with their persistent messages from disk), in some
        4 s instead of some 17. ``whole_node``: the server process itself is stopped and
        started again (the VM's own shutdown and boot)."""
        if whole_node:
            self.stop()
            assert not port_accepts(self.port, timeout=1), "RabbitMQ stopped, its port accepts"
            time.sleep(downtime)
            self.start()
            return
        self._ctl("stop_app")
        assert not port_accepts(self.port, timeout=1), "RabbitMQ stopped, its port accepts"
        time.sleep(downtime)
        self._ctl("start_app")
        self._wait_for_clients()


def own_rabbit_node(directory: Path) -> Iterator[RabbitNode]:
    """A started :class:`RabbitNode` (for a fixture), stopped afterwards; skips the test if
    RabbitMQ's scripts are not installed (fails under ``MESSENGER_REQUIRE_SERVICES=1``)."""
    if _tool("rabbitmq-server") is None or _tool("rabbitmqctl") is None:
        service_unavailable(
            "rabbitmq-server is not installed: the restart tests start a node of their own"
        )
    directory.mkdir(parents=True, exist_ok=True)
    node = RabbitNode(directory)
    node.start()
    try:
        yield node
    finally:
        with contextlib.suppress(Exception):  # already stopped by a failed test
            node.stop()
