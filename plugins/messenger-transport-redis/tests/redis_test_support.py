"""Helpers for the Redis transport's tests (imported by the test modules and conftest).

Tests run against the real Redis named by ``MESSENGER_TEST_REDIS_DSN`` (default: the local
server); they skip when it is unreachable, or fail under ``MESSENGER_REQUIRE_SERVICES=1``.
Every test gets a stream of its own (and its delay queue), deleted afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import redis
from messenger_transport_redis import (
    RedisTransport,
    RedisTransportFactory,
    endpoint_of,
    parse_options,
)

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import Stamp, TransportMessageIdStamp
from messenger_core.testing.services import (
    free_port,
    require_service,
    service_dsn,
    service_unavailable,
)

REDIS_DSN = service_dsn("MESSENGER_TEST_REDIS_DSN", "redis://127.0.0.1:6379")


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


def raw_client(dsn: str = REDIS_DSN) -> redis.Redis:
    """A plain redis-py client on the test server (to look behind the transport's back)."""
    parsed = Dsn.parse(dsn)
    options = parse_options(parsed.options, parsed.path if parsed.hosts else "")
    endpoint = endpoint_of(parsed, options)
    if endpoint.unix_socket is not None:
        return redis.Redis(
            unix_socket_path=endpoint.unix_socket,
            username=endpoint.username,
            password=endpoint.password,
            db=options.dbindex,
            socket_timeout=5,
        )
    return redis.Redis(
        host=endpoint.host or "127.0.0.1",
        port=endpoint.port,
        username=endpoint.username,
        password=endpoint.password,
        db=options.dbindex,
        ssl=endpoint.tls,
        socket_timeout=5,
    )


_reachable: dict[str, bool] = {}


def require_redis(dsn: str = REDIS_DSN) -> None:
    """Skip (or fail) the test when Redis at ``dsn`` is not reachable."""

    def probe() -> None:
        client = raw_client(dsn)
        try:
            client.ping()
        finally:
            client.close()

    if _reachable.get(dsn):
        return
    require_service("Redis", dsn, probe)
    _reachable[dsn] = True


@attrs.define
class Stream:
    """A stream (and its delay queue) of the running test's own, on the test server."""

    name: str
    base_dsn: str = REDIS_DSN
    _made: list[RedisTransport] = attrs.field(factory=list)

    @property
    def queue(self) -> str:
        return f"{self.name}__queue"

    def dsn(self) -> Dsn:
        """The server's DSN with this stream as the ``stream`` option."""
        parsed = Dsn.parse(self.base_dsn)
        return attrs.evolve(parsed, options={**parsed.options, "stream": self.name})

    def transport(self, serializer: Serializer | None = None, **options: Any) -> RedisTransport:
        """A new transport (a new consumer) on this stream, closed after the test."""
        transport = RedisTransportFactory().create(
            self.dsn(), options, serializer if serializer is not None else make_serializer()
        )
        self._made.append(transport)
        return transport

    def client(self) -> redis.Redis:
        """A plain client on the server."""
        return raw_client(self.base_dsn)

    def close(self) -> None:
        for transport in self._made:
            transport.close()
        client = self.client()
        try:
            client.delete(self.name, self.queue)
        finally:
            client.close()


def unique_stream() -> str:
    """A stream name no other test uses."""
    return f"messenger-test-{uuid.uuid4().hex[:16]}"


def receive(transport: RedisTransport, count: int, timeout: float = 5.0) -> list[Envelope]:
    """Poll ``transport`` until ``count`` envelopes came or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    received: list[Envelope] = []
    while len(received) < count and time.monotonic() < deadline:
        received.extend(transport.get())
    return received


def order(number: int, text: str = "", *stamps: Stamp) -> Envelope:
    """An envelope holding ``Order(number, text)``."""
    return Envelope(Order(number, text), stamps)


def entry_id(envelope: Envelope) -> str:
    """The stream entry id of a received (or sent) envelope."""
    stamp = envelope.last(TransportMessageIdStamp)
    assert stamp is not None, envelope
    return stamp.id


# -- a Redis server of the test's own, to stop and restart -------------------------------------
REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """A redis-server on a spare port that keeps its data across restarts: an append-only
    file in ``directory``, fsynced after every command (``appendfsync always``), so that even
    ``kill -9`` loses nothing Redis acknowledged; no RDB snapshots."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it (again, on the same port and data) and wait until it answers."""
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:  # not listening yet, or loading its data
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def client(self) -> Any:
        """A plain client on this server (typed loosely, as redis-py's sync client)."""
        return redis.Redis(port=self.port, password=self.password)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (Redis finishes writing its append-only file), or ``kill -9``."""
        if self.process is not None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(20)
            self.process = None

    def restart(self, downtime: float, *, kill: bool = False) -> None:
        """Stop it, wait ``downtime`` seconds, start it again."""
        self.stop(kill=kill)
        time.sleep(downtime)
        self.start()


def own_redis_server(directory: Path, password: str | None = None) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` (for a fixture), stopped afterwards; skips the test if
    ``redis-server`` is not installed (fails it under ``MESSENGER_REQUIRE_SERVICES=1``)."""
    if REDIS_SERVER is None:
        service_unavailable("redis-server is not installed: the restart tests start their own")
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory, password)
    server.start()
    try:
        yield server
    finally:
        server.stop()
