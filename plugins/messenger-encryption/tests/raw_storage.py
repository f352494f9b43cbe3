"""What an attacker reads: one test world's storage on each backend, through the raw client
(never the transport), and the DSNs that give the world storage of its own.

- SQLite: a file in the test's directory;
- PostgreSQL (``MESSENGER_TEST_POSTGRESQL_DSN``) and MariaDB/MySQL (``MESSENGER_TEST_MYSQL_DSN``,
  read with PyMySQL, the SQL transport's driver): a table of the world's own;
- Redis (``MESSENGER_TEST_REDIS_DSN``): streams and delay sets of the world's own;
- RabbitMQ (``MESSENGER_TEST_AMQP_DSN``, with its virtual host): per transport an exchange
  and a queue of the world's own, one delays exchange, and the delay queues the transport
  names after them (computed by its :class:`~messenger_transport_amqp.topology.Topology`).

Unreachable services skip the test, or fail it under ``MESSENGER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pika
import psycopg
import pymysql
import redis
from messenger_transport_amqp import parse_options
from messenger_transport_amqp.connection import parameters_of
from messenger_transport_amqp.options import AmqpOptions
from messenger_transport_amqp.topology import Topology

from messenger_core.dsn import Dsn
from messenger_core.testing.services import require_service, service_dsn

POSTGRESQL_DSN = service_dsn(
    "MESSENGER_TEST_POSTGRESQL_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_DSN = service_dsn("MESSENGER_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")
REDIS_DSN = service_dsn("MESSENGER_TEST_REDIS_DSN", "redis://127.0.0.1:6379")
AMQP_DSN = service_dsn("MESSENGER_TEST_AMQP_DSN", "amqp://guest:guest@127.0.0.1:5672/%2f")
BACKENDS = ["sqlite", "postgresql", "mysql", "redis", "amqp"]
SQLITE_FILE = "messages.db"
"""The SQLite world's database, in its directory."""


class Storage(Protocol):
    """One world's storage on one backend."""

    def dsn(self, transport: str) -> str:
        """The DSN of the world's transport named ``transport``."""
        ...

    def raw(self) -> str:
        """Everything the storage holds for the world, as text."""
        ...

    def cleanup(self) -> None:
        """Drop what the world stored on a shared server."""
        ...


def open_storage(
    backend: str, root: Path, name: str, transports: Sequence[str], delays_ms: Sequence[int]
) -> Storage:
    """The storage of the world called ``name`` (``root``: its directory) on ``backend``, for
    its ``transports``; ``delays_ms``: every delay its messages may wait (AMQP names a queue
    after each)."""
    if backend == "sqlite":
        return SqliteStorage(root / SQLITE_FILE)
    if backend == "postgresql":
        return PostgresqlStorage(name)
    if backend == "mysql":
        return MysqlStorage(name)
    if backend == "redis":
        return RedisStorage(name)
    if backend == "amqp":
        return AmqpStorage(name, transports, delays_ms)
    raise ValueError(f"unknown backend {backend!r}")


def require_backend(backend: str) -> None:
    """Skip (or fail) the test if the backend's server is not reachable."""
    if backend == "postgresql":
        dsn = POSTGRESQL_DSN.split("?", 1)[0]
        require_service("PostgreSQL", dsn, lambda: psycopg.connect(dsn, connect_timeout=3).close())
    elif backend == "mysql":
        require_service("MariaDB", MYSQL_DSN, lambda: mysql_connection().close())
    elif backend == "redis":
        require_service("Redis", REDIS_DSN, lambda: redis_client().ping())
    elif backend == "amqp":
        parameters = parameters_of(parse_options(Dsn.parse(AMQP_DSN), {}))
        require_service("RabbitMQ", AMQP_DSN, lambda: pika.BlockingConnection(parameters).close())


# -- SQL -------------------------------------------------------------------------------------
class SqliteStorage:
    """Every table of a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def dsn(self, transport: str) -> str:
        return f"sqlite:///{self.path}?queue_name={transport}"

    def raw(self) -> str:
        with sqlite3.connect(self.path) as connection:
            tables = [
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            rows = [list(connection.execute(f'SELECT * FROM "{t}"')) for t in tables]
        return repr(rows)

    def cleanup(self) -> None:
        pass  # the test's directory goes with it


class PostgresqlStorage:
    """A table of the world's own on PostgreSQL."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.base = POSTGRESQL_DSN.split("?", 1)[0]

    def dsn(self, transport: str) -> str:
        return f"{self.base}?table_name={self.table}&queue_name={transport}"

    def raw(self) -> str:
        with psycopg.connect(self.base) as connection:
            return repr(list(connection.execute(f'SELECT * FROM "{self.table}"')))

    def cleanup(self) -> None:
        with psycopg.connect(self.base, autocommit=True) as connection:
            connection.execute(f'DROP TABLE IF EXISTS "{self.table}"')


def mysql_connection() -> Any:
    """A PyMySQL connection (the SQL transport's MySQL driver) to the test database."""
    dsn = Dsn.parse(MYSQL_DSN)
    return pymysql.connect(
        host=dsn.host or "localhost",
        port=dsn.port or 3306,
        user=dsn.user or "root",
        password=dsn.password or "",
        database=dsn.path.strip("/") or None,
        connect_timeout=3,
        autocommit=True,
    )


class MysqlStorage:
    """A table of the world's own on MariaDB (or MySQL)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.base = MYSQL_DSN.split("?", 1)[0]

    def dsn(self, transport: str) -> str:
        return f"{self.base}?table_name={self.table}&queue_name={transport}"

    def _execute(self, sql: str) -> list[Any]:
        connection = mysql_connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def raw(self) -> str:
        return repr(self._execute(f"SELECT * FROM `{self.table}`"))

    def cleanup(self) -> None:
        self._execute(f"DROP TABLE IF EXISTS `{self.table}`")


# -- Redis -----------------------------------------------------------------------------------
def redis_client() -> Any:
    """A plain redis-py client on the test server."""
    return redis.Redis.from_url(REDIS_DSN)


def redis_entries(prefix: str) -> Iterator[Any]:
    """Every stream entry and delay-queue member under keys starting with ``prefix``."""
    client = redis_client()
    try:
        for key in client.scan_iter(f"{prefix}*"):
            kind = client.type(key)
            if kind == b"stream":
                yield key, client.xrange(key)
            elif kind == b"zset":
                yield key, client.zrange(key, 0, -1, withscores=True)
            elif kind == b"hash":
                yield key, client.hgetall(key)
            elif kind == b"string":
                yield key, client.get(key)
            elif kind == b"list":
                yield key, client.lrange(key, 0, -1)
    finally:
        client.close()


class RedisStorage:
    """Every key starting with the world's name."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.base = REDIS_DSN.split("?", 1)[0].rstrip("/")

    def dsn(self, transport: str) -> str:
        return f"{self.base}/{self.prefix}-{transport}"

    def raw(self) -> str:
        return repr(list(redis_entries(self.prefix)))

    def cleanup(self) -> None:
        client = redis_client()
        for key in client.scan_iter(f"{self.prefix}*"):
            client.delete(key)
        client.close()


# -- RabbitMQ --------------------------------------------------------------------------------
class AmqpStorage:
    """Per transport an exchange and a queue (``<name>-<transport>``), one delays exchange
    (``<name>-delays``) and the delay queues: every queue read without taking anything away.

    Only messages ready in a queue can be read: those a live consumer holds unacknowledged
    are out of reach (AMQP cannot browse them), so the tests read with no worker holding any
    (closing an application hands its consumers' messages back)."""

    def __init__(self, name: str, transports: Sequence[str], delays_ms: Sequence[int]) -> None:
        self.name = name
        self.transports = tuple(transports)
        self.delays_ms = tuple(delays_ms)
        self.base = AMQP_DSN.split("?", 1)[0].rstrip("/")  # with the virtual host

    def dsn(self, transport: str) -> str:
        # Publisher confirms: a send returns once the message is in its queue, to be read.
        return (
            f"{self.base}/{self.name}-{transport}"
            f"?delay[exchange_name]={self.name}-delays&confirm_timeout=5"
        )

    def _options(self) -> list[AmqpOptions]:
        return [parse_options(Dsn.parse(self.dsn(t)), {}) for t in self.transports]

    def queues(self) -> list[str]:
        """The delay queues (any of them may not exist), then the transports' queues: a
        message moving from one to the other while they are read is seen in the second."""
        options = self._options()
        delay_queues = [
            Topology(each).delay_queue_name(delay, routing_key, retry)
            for each in options
            for delay in self.delays_ms
            # a delayed message waits under its routing key (none here), a retry under the
            # queue it failed in
            for routing_key, retry in [(None, False), *((q, True) for q in each.queue_names)]
        ]
        return [*delay_queues, *(q for each in options for q in each.queue_names)]

    def _connection(self) -> Any:
        return pika.BlockingConnection(parameters_of(parse_options(Dsn.parse(AMQP_DSN), {})))

    def raw(self) -> str:
        connection = self._connection()
        try:
            return repr([(queue, peek(connection, queue)) for queue in self.queues()])
        finally:
            connection.close()

    def cleanup(self) -> None:
        connection = self._connection()
        try:
            exchanges = [f"{self.name}-{t}" for t in self.transports]
            for queue in self.queues():
                _on_fresh_channel(connection, lambda channel, q=queue: channel.queue_delete(q))
            for exchange in [*exchanges, f"{self.name}-delays"]:
                _on_fresh_channel(
                    connection, lambda channel, e=exchange: channel.exchange_delete(e)
                )
        finally:
            connection.close()


def _on_fresh_channel(connection: Any, call: Callable[[Any], object]) -> None:
    channel = connection.channel()
    try:
        call(channel)
    except pika.exceptions.ChannelClosedByBroker:
        return  # not there (RabbitMQ closes the channel)
    channel.close()


def peek(connection: Any, queue: str) -> list[tuple[Any, bytes]]:
    """The (properties, body) of every ready message in ``queue`` (none if it does not exist),
    left in the queue.

    Each is taken without acknowledgement, published again to the queue as it was (confirmed),
    then the original acknowledged, as the transport hands back what it prefetched: a requeue
    would flag it redelivered, and the worker's reject-redelivered middleware would then fail
    it. (A copy in a delay queue waits its delay again.)"""
    channel = connection.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return []  # never declared, or expired
    taken: list[tuple[Any, Any, bytes]] = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        taken.append((method, properties, body))
    if taken:
        channel.confirm_delivery()
        for _, properties, body in taken:
            channel.basic_publish("", queue, body, properties, mandatory=True)
        channel.basic_ack(taken[-1][0].delivery_tag, multiple=True)
    channel.close()
    return [(properties, body) for _, properties, body in taken]
