"""The connection role: one transport's link to Redis, and the reconnect policy it owns.

Like Symfony's Redis ``Connection``, it knows the stream, the group and the consumer, builds
the redis-py client from the endpoint on first use, loads the Lua scripts, sets the stream up,
and runs every operation through the reconnect policy (:mod:`.reconnect`). The sender, the
receiver and the settler each get one connection of the client's pool held for their hot path
(:class:`~messenger_transport_redis._wire.DirectConnection`).

The DSN parsing lives in :mod:`.endpoint`; its names are re-exported here, where they were
first published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import redis
from redis.exceptions import NoScriptError, ResponseError

from messenger_core.dsn import mask_dsn
from messenger_core.errors import ConfigurationError, TransportError
from messenger_transport_redis._wire import DirectConnection
from messenger_transport_redis.endpoint import (
    DEFAULT_PORT,
    DEFAULT_SENTINEL_PORT,
    RedisEndpoint,
    describe,
    endpoint_of,
)
from messenger_transport_redis.options import RedisTransportOptions
from messenger_transport_redis.reconnect import ReconnectPolicy
from messenger_transport_redis.scripts import SCRIPTS, Script

__all__ = [
    "CONSUMER_SLICE",
    "DEFAULT_PORT",
    "DEFAULT_SENTINEL_PORT",
    "RedisConnection",
    "RedisEndpoint",
    "call",
    "describe",
    "endpoint_of",
    "is_no_such_key",
    "is_nogroup",
    "logger",
    "pipeline",
    "safe",
]

logger = logging.getLogger("messenger.transport.redis")
"""The logger of every role of the transport (one name, so one switch turns it on)."""

T = TypeVar("T")

CONSUMER_SLICE = 0.5
"""Seconds a ``get()`` of a consumer that was connected before keeps reconnecting before it
returns nothing: short, so that the worker sees a stop request between attempts (the backoff
itself goes on across calls). Also the budget of the steps of a close during an outage."""


def pipeline(client: redis.Redis) -> Any:
    """A non-transactional pipeline (typed loosely: redis-py's pipeline methods are not)."""
    return client.pipeline(transaction=False)


def call(client: redis.Redis, *command: Any) -> Any:
    """One command (typed loosely: redis-py's ``execute_command`` is not)."""
    return cast(Any, client).execute_command(*command)


def is_nogroup(error: object) -> bool:
    """Whether ``error`` says the consumer group does not exist."""
    # In a script's error the code comes after the script's name: not a prefix test.
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)


def is_no_such_key(error: object) -> bool:
    """Whether ``error`` says the stream does not exist."""
    return isinstance(error, ResponseError) and "no such key" in str(error).lower()


def safe(error: BaseException) -> str:
    """``error``'s text with any password in it masked."""
    return mask_dsn(str(error))


class RedisConnection:
    """The client, the held connections, the scripts and the reconnect policy of one transport.

    Contract:

    - nothing connects before the first operation; :meth:`prepare` connects, loads the scripts,
      sets the stream up (with ``auto_setup``) and creates the held connections, retried for
      ``reconnect_timeout``;
    - :meth:`with_retry` runs an operation with the client through the reconnect policy, so
      that an outage is retried with backoff and logged once; :meth:`with_retry_checked` also
      turns Redis's error replies into :class:`TransportError`;
    - once :meth:`begin_close` ran, every operation raises :class:`TransportError`.

    Thread-safe as far as redis-py's pool is; the held connections have a lock each.
    """

    def __init__(
        self, endpoint: RedisEndpoint, options: RedisTransportOptions, consumer: str
    ) -> None:
        self.endpoint = endpoint
        self.options = options
        self.where = endpoint.where
        """The endpoint without secrets, for messages."""
        self.consumer = consumer
        self.stream = options.stream.encode()
        self.group = options.group.encode()
        self.queue = options.queue.encode()
        """The delay queue (a sorted set)."""
        self.consumer_key = consumer.encode()
        self.reconnect = ReconnectPolicy(endpoint.where, options.reconnect_timeout, logger=logger)
        self.client: redis.Redis | None = None
        self.ready = False
        """Connected once, scripts loaded (and set up with ``auto_setup``)."""
        self.closed = False
        # One held connection per role, so that a sender thread, the consumer and the
        # acknowledgements never wait for each other's replies.
        self.sending: DirectConnection | None = None
        self.reading: DirectConnection | None = None
        self.settling: DirectConnection | None = None

    def check_open(self) -> None:
        """Raise :class:`TransportError` once the transport is closed."""
        if self.closed:
            raise TransportError(f"the Redis transport for {self.where} is closed")

    def begin_close(self) -> redis.Redis | None:
        """Mark the transport closed; the client to close (``None``: never connected, or
        closed before). Idempotent."""
        self.closed = True
        client, self.client = self.client, None
        return client

    def prepare(self) -> redis.Redis:
        """Connect, load the scripts and (with ``auto_setup``) set up; retried."""
        self.check_open()
        client = self.client
        if client is None:
            client = self.client = self.endpoint.client(self.options)

        def attempt(client: redis.Redis) -> None:
            self.load_scripts(client)
            if self.options.auto_setup:
                self.setup_with(client)

        self.with_retry_checked(attempt, "connect", client=client)
        if self.sending is None:
            self.sending, self.settling = DirectConnection(client), DirectConnection(client)
            self.reading = DirectConnection(client)
        self.ready = True
        return client

    def setup_with(self, client: redis.Redis) -> None:
        """Create the stream and the group if missing; refuse deleting with several groups."""
        pipe = pipeline(client)
        pipe.execute_command("XGROUP", "CREATE", self.stream, self.group, "0", "MKSTREAM")
        pipe.execute_command("XINFO", "GROUPS", self.stream)
        created, groups = pipe.execute(raise_on_error=False)
        self.check_setup(created, groups)

    def check_setup(self, created: Any, groups: Any) -> None:
        """Check the replies of ``XGROUP CREATE … MKSTREAM`` and ``XINFO GROUPS`` (run by
        :meth:`setup_with`, and by the async sender on its first use)."""
        if isinstance(created, Exception) and not str(created).startswith("BUSYGROUP"):
            raise created
        if isinstance(groups, Exception):
            raise groups
        deleting = self.options.delete_after_ack or self.options.delete_after_reject
        if deleting and len(groups) > 1:
            names = ", ".join(repr(g[1].decode("utf-8", "replace")) for g in groups)
            raise ConfigurationError(
                f"stream {self.options.stream!r} has several consumer groups ({names}): "
                "delete_after_ack and delete_after_reject would delete entries before every "
                "group consumed them; set both to false for this transport"
            )

    def load_scripts(self, client: redis.Redis) -> None:
        """``SCRIPT LOAD`` every script (again after a server restart forgot them)."""
        pipe = pipeline(client)
        for script in SCRIPTS:
            pipe.execute_command("SCRIPT", "LOAD", script.source)
        pipe.execute()

    def run_script(
        self, client: redis.Redis, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        """``EVALSHA`` ``script``, loading the scripts first if the server forgot them."""
        try:
            return call(client, "EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.load_scripts(client)
            return call(client, "EVALSHA", script.sha, len(keys), *keys, *args)

    def with_retry_checked(
        self,
        operation: Callable[[redis.Redis], T],
        what: str,
        *,
        client: redis.Redis | None = None,
        budget: float | None = None,
    ) -> T:
        """:meth:`with_retry`, turning Redis's error replies into :class:`TransportError`."""
        try:
            return self.with_retry(operation, what, client=client, budget=budget)
        except ResponseError as error:
            raise self.error(what, error) from error

    def with_retry(
        self,
        operation: Callable[[redis.Redis], T],
        what: str,
        *,
        client: redis.Redis | None = None,
        budget: float | None = None,
    ) -> T:
        """Run ``operation`` with a client through the reconnect policy: after a connection
        error it waits (backing off), reconnects and runs it again, for ``budget`` seconds
        (default ``reconnect_timeout``); then
        :class:`~messenger_transport_redis.reconnect.RedisUnreachableError`."""
        if client is None:
            client = self.client
            if client is None or not self.ready:
                client = self.prepare()
        pool = client.connection_pool

        def drop_connections() -> None:
            # The pool's idle connections may be as dead as the one that failed.
            pool.disconnect(inuse_connections=False)

        bound = client
        return self.reconnect.run(
            lambda: operation(bound), what, budget=budget, on_error=drop_connections
        )

    def error(self, what: str, error: BaseException) -> TransportError:
        """The one clear error for a failed ``what`` ("send messages")."""
        return TransportError(
            f"Redis at {self.where} could not {what} (stream {self.options.stream!r}): "
            f"{safe(error)}"
        )
