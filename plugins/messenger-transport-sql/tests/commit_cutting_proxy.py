"""A proxy between a worker and the real PostgreSQL or MariaDB that loses a ``COMMIT``.

The protocol-independent proxy is :mod:`messenger_core.testing.cutting_proxy`; this module
reads the client's side as the database's wire protocol: PostgreSQL's messages (psycopg sends
its ``COMMIT`` as a simple query, ``Q``; an extended-protocol one, ``Parse`` ... ``Sync``, is
recognised too) or MySQL's packets (``COM_QUERY`` ``COMMIT``, as PyMySQL sends it). The first
``COMMIT`` sent on a connection that earlier sent ``marker`` (the test's own table name, so that
the transport's own transactions pass) is handled as the test asked, once:

- ``Cut.AFTER``: the ``COMMIT`` reaches the server and its reply comes back (the server
  committed), then the proxy closes the connection without passing the reply on;
- ``Cut.BEFORE``: the proxy closes both sides instead of passing the ``COMMIT`` on: the
  server rolls the transaction back;
- ``Cut.LATE``: the client's side is closed at once (its connection is lost while the
  ``COMMIT`` is on its way), and the ``COMMIT`` reaches the server ``delay`` seconds later.

``proxy.applied`` says whether the server answered that it committed the cut ``COMMIT``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from messenger_core.testing.cutting_proxy import Cut, CuttingProxy, cutting_proxy

__all__ = ["Cut", "commit_cutting_proxy"]

_PG_SSL_REQUEST = 80877103
_PG_GSSENC_REQUEST = 80877104
_MYSQL_COM_QUERY = 0x03


def _is_commit(sql: bytes) -> bool:
    return sql.strip().rstrip(b";").strip().upper() in (b"COMMIT", b"COMMIT WORK", b"END")


class _PgClient:
    """Splits a PostgreSQL client's stream into units sent as one: a message, or an
    extended-protocol ``COMMIT`` from its ``Parse`` to its ``Sync``."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False  # past the untyped start-up packets
        self._group: bytes | None = None  # an extended-protocol COMMIT being gathered

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """The units completed by ``data``: (is a COMMIT, raw bytes) each."""
        self._buffer += data
        units: list[tuple[bool, bytes]] = []
        while (message := self._message()) is not None:
            kind, raw = message
            if self._group is not None:
                self._group += raw
                if kind == b"S":
                    units.append((True, self._group))
                    self._group = None
            elif kind == b"P" and _is_commit(raw[5:].split(b"\0")[1]):
                self._group = raw
            else:
                units.append((kind == b"Q" and _is_commit(raw[5:].rstrip(b"\0")), raw))
        return units

    def _message(self) -> tuple[bytes, bytes] | None:
        buffer = self._buffer
        if not self._started:
            if len(buffer) < 8:
                return None
            (length, code) = struct.unpack("!ii", buffer[:8])
            if len(buffer) < length:
                return None
            self._started = code not in (_PG_SSL_REQUEST, _PG_GSSENC_REQUEST)
            self._buffer = buffer[length:]
            return b"", buffer[:length]
        if len(buffer) < 5:
            return None
        end = 1 + struct.unpack("!i", buffer[1:5])[0]
        if len(buffer) < end:
            return None
        self._buffer = buffer[end:]
        return buffer[:1], buffer[:end]


def _pg_reply(buffer: bytes) -> tuple[bool, bool]:
    """Whether a PostgreSQL reply is complete (``ReadyForQuery``) and whether it says the
    ``COMMIT`` committed (``CommandComplete`` ``COMMIT``, not ``ROLLBACK``)."""
    position, committed = 0, False
    while position + 5 <= len(buffer):
        kind = buffer[position : position + 1]
        end = position + 1 + struct.unpack("!i", buffer[position + 1 : position + 5])[0]
        if end > len(buffer):
            break
        if kind == b"C" and buffer[position + 5 : end].rstrip(b"\0") == b"COMMIT":
            committed = True
        if kind == b"Z":
            return True, committed
        position = end
    return False, committed


class _MySqlClient:
    """Splits a MySQL client's stream into packets."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """The packets completed by ``data``: (is a ``COM_QUERY`` ``COMMIT``, raw bytes)."""
        self._buffer += data
        units: list[tuple[bool, bytes]] = []
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[:3], "little")
            if len(self._buffer) < 4 + length:
                break
            raw, self._buffer = self._buffer[: 4 + length], self._buffer[4 + length :]
            # A command starts a sequence (number 0); the log-in exchange does not.
            command = raw[3] == 0 and length > 0 and raw[4] == _MYSQL_COM_QUERY
            units.append((command and _is_commit(raw[5:]), raw))
        return units


def _mysql_reply(buffer: bytes) -> tuple[bool, bool]:
    """Whether a reply to ``COMMIT`` arrived (one packet) and whether it is an OK."""
    if len(buffer) < 5 or len(buffer) < 4 + int.from_bytes(buffer[:3], "little"):
        return False, False
    return True, buffer[4] == 0x00


class _MarkedCommits:
    """The commits to cut on one connection: only once it sent ``marker``."""

    def __init__(
        self,
        units: _PgClient | _MySqlClient,
        reply: Callable[[bytes], tuple[bool, bool]],
        marker: bytes,
    ) -> None:
        self._units = units
        self._reply = reply
        self._marker = marker
        self._marked = False

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """The units completed by ``data``: (is a COMMIT of a marked connection, raw bytes)."""
        chosen: list[tuple[bool, bytes]] = []
        for commit, raw in self._units.feed(data):
            self._marked = self._marked or self._marker in raw
            chosen.append((commit and self._marked, raw))
        return chosen

    def forward(self, command: bytes) -> bytes:
        return command

    def answer(self, replies: bytes) -> tuple[bool, bool]:
        return self._reply(replies)


@contextmanager
def commit_cutting_proxy(
    upstream: tuple[str, int], protocol: str, cut: Cut, marker: bytes, *, delay: float = 0.0
) -> Iterator[CuttingProxy]:
    """A proxy to ``upstream`` (``protocol``: ``postgresql`` or ``mysql``) cutting the first
    ``COMMIT`` of a connection that sent ``marker``, for the block, closed after."""
    assert protocol in ("postgresql", "mysql")

    def watcher() -> _MarkedCommits:
        if protocol == "postgresql":
            return _MarkedCommits(_PgClient(), _pg_reply, marker)
        return _MarkedCommits(_MySqlClient(), _mysql_reply, marker)

    with cutting_proxy(upstream, watcher, cut, delay=delay, late_closes_client=True) as proxy:
        yield proxy
