"""The receiver lock on Redis: a key set with ``SET NX PX``, renewed while held.

The key holds a random value of its owner's; renewing and deleting check that value first (in
one Lua script each), so a process whose key expired (it stalled longer than the time to live)
never deletes or extends the key of the next owner.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any, cast

import redis
from messenger_transport_redis import endpoint_of, parse_options

from messenger_core.config import TransportConfig
from messenger_core.dsn import Dsn, mask_dsn

__all__ = ["KEY_PREFIX", "RedisLock", "redis_lock"]

logger = logging.getLogger("messenger.http")

KEY_PREFIX = "messenger:http-consume:"
TIME_TO_LIVE = 30.0
"""Seconds the key lives unless renewed: how long a crashed owner blocks the receiver."""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def redis_lock(dsn: Dsn, config: TransportConfig) -> RedisLock:
    """The lock of the Redis transport ``config`` describes: one per stream and group."""
    options = parse_options(
        dsn.with_options(config.options), dsn.path if dsn.hosts else "", dsn=dsn
    )
    endpoint = endpoint_of(dsn, options)
    key = f"{KEY_PREFIX}{options.stream}:{options.group}"
    return RedisLock(lambda: endpoint.client(options), key, where=endpoint.where)


class RedisLock:
    """A lock in the Redis key ``key``; the client is made by ``connect`` on first use."""

    def __init__(
        self,
        connect: Callable[[], Any],
        key: str,
        *,
        where: str = "",
        time_to_live: float = TIME_TO_LIVE,
    ) -> None:
        self._connect = connect
        self._client: Any = None
        self.key = key
        self.time_to_live = time_to_live
        self.description = f"Redis key {key!r} on {where}" if where else f"Redis key {key!r}"
        self._value: str | None = None
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None

    def _redis(self) -> Any:
        if self._client is None:
            self._client = cast(Any, self._connect())
        return self._client

    def acquire(self) -> bool:
        """``SET key value NX PX ttl``; on success a thread renews the key until release."""
        value = secrets.token_hex(16)
        milliseconds = int(self.time_to_live * 1000)
        if not self._call(lambda client: client.set(self.key, value, nx=True, px=milliseconds)):
            return False
        self._value = value
        self._stop_renewing.clear()
        self._renewer = threading.Thread(
            target=self._renew, args=(value,), name="messenger-http-lock-renewal", daemon=True
        )
        self._renewer.start()
        return True

    def release(self) -> None:
        """Stop renewing and delete the key if it is still ours."""
        value, self._value = self._value, None
        self._stop_renewing.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if value is None:
            return
        try:
            self._call(lambda client: client.eval(_DELETE, 1, self.key, value))
        except (redis.RedisError, OSError) as error:
            logger.warning(
                "could not delete the lock %s (it expires within %gs): %s",
                self.description,
                self.time_to_live,
                mask_dsn(str(error)),
            )

    def close(self) -> None:
        """Release the lock if held, and close the client."""
        self.release()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _renew(self, value: str) -> None:
        milliseconds = int(self.time_to_live * 1000)
        while not self._stop_renewing.wait(self.time_to_live / 3):
            try:
                kept = self._call(
                    lambda client: client.eval(_RENEW, 1, self.key, value, milliseconds)
                )
            except (redis.RedisError, OSError) as error:
                logger.warning("could not renew the lock %s: %s", self.description, error)
                continue
            if not kept:
                logger.warning(
                    "the lock %s expired while held (Redis was unreachable for longer than "
                    "%gs): another consumer may start on this receiver",
                    self.description,
                    self.time_to_live,
                )
                return

    def _call(self, command: Any) -> Any:
        client = self._redis()
        try:
            return command(client)
        except redis.ConnectionError:
            # A pooled connection may have died with a restarted server: once more, afresh.
            client.connection_pool.disconnect(inuse_connections=False)
            return command(client)
