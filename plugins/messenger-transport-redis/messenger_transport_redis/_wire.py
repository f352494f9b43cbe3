"""A connection driven by hand, for the transport's hot paths.

redis-py's command layer (taking a connection from the pool and giving it back, a readiness
check, retries, reply callbacks) costs more than the round trip to a local Redis. The transport
instead holds a few connections of the client's pool for itself, writes commands it packed
once (one system call per batch) and reads the replies with redis-py's parser (hiredis).
"""

from __future__ import annotations

import threading
from typing import Any, cast

import redis
from redis.exceptions import ResponseError

__all__ = ["DirectConnection", "bulk", "bulks", "names_its_command", "pack", "pack_prefix"]

_NAMES_ITS_COMMAND = tuple(int(part) for part in redis.__version__.split(".")[:2]) < (5, 3)
"""redis-py before 5.3 wants a command name from ``ConnectionPool.get_connection`` (unused;
5.3 deprecated it, warning when given), and 5.0 to 5.2 are still pinned by other libraries."""


def names_its_command() -> bool:
    """Whether ``ConnectionPool.get_connection`` wants a command name (redis-py before 5.3)."""
    return _NAMES_ITS_COMMAND


def bulk(value: bytes) -> bytes:
    """``value`` as a RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    raise TypeError(f"cannot send {type(value).__name__} to Redis")


def pack(*args: Any) -> bytes:
    """A command (bytes, str or int arguments) in RESP."""
    return pack_prefix(len(args), *args)


def pack_prefix(count: int, *args: Any) -> bytes:
    """The start of a command of ``count`` arguments, ``args`` being the first ones: the rest
    are appended as :func:`bulk` strings."""
    return b"*%d\r\n" % count + bulks(*args)


def bulks(*args: Any) -> bytes:
    """``args`` (bytes, str or int) as consecutive bulk strings."""
    return b"".join(bulk(_bytes(arg)) for arg in args)


class DirectConnection:
    """One connection of ``client``'s pool, held until :meth:`disconnect`.

    Not thread-safe by itself: callers hold :attr:`lock` around each exchange. After any
    connection error it is disconnected, and connects again on next use.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.lock = threading.Lock()
        self._pool: Any = client.connection_pool
        self._connection: Any = None

    def write(self, packet: bytes, *, check_health: bool = True) -> None:
        """Write ``packet`` (one or more packed commands); connects if needed.

        ``check_health`` PINGs a connection that was idle for a while first; it must be off
        while replies are still unread.
        """
        connection = self._connection
        if connection is None:
            pool = self._pool
            connection = (
                pool.get_connection("XADD") if _NAMES_ITS_COMMAND else pool.get_connection()
            )
            self._connection = connection
        try:
            connection.send_packed_command([packet], check_health=check_health)
        except BaseException:
            self.disconnect()
            raise

    def read(self) -> Any:
        """The next reply; an error reply is returned as the :class:`ResponseError`."""
        connection = self._connection
        if connection is None:
            raise redis.ConnectionError("the connection was closed before its reply came")
        try:
            return connection.read_response()
        except ResponseError as error:
            return error
        except BaseException:
            self.disconnect()
            raise

    def roundtrip(self, packet: bytes, replies: int = 1) -> list[Any]:
        """Write ``packet`` and read its ``replies`` replies (error replies as exceptions)."""
        self.write(packet)
        return [self.read() for _ in range(replies)]

    def disconnect(self) -> None:
        """Close the connection and give it back to the pool."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            cast(Any, self._pool).release(connection)
