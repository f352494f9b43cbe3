"""A TCP proxy between a worker and the real PostgreSQL or MariaDB that loses a ``COMMIT``.

The worker connects to the proxy; the proxy relays every connection to the server as it is,
and reads the client's side as the database's wire protocol: PostgreSQL's messages (psycopg
sends its ``COMMIT`` as a simple query, ``Q``; an extended-protocol one, ``Parse`` ... ``Sync``,
is recognised too) or MySQL's packets (``COM_QUERY`` ``COMMIT``, as PyMySQL sends it). The first
``COMMIT`` sent on a connection that earlier sent ``marker`` (the test's own table name, so that
the transport's own transactions pass) is handled as the test asked (:class:`Cut`), once;
everything else, before and after, passes untouched:

- ``AFTER_COMMIT``: the ``COMMIT`` reaches the server and its reply comes back (the server
  committed), then the proxy closes the connection without passing the reply on;
- ``BEFORE_COMMIT``: the proxy closes both sides instead of passing the ``COMMIT`` on: the
  server rolls the transaction back;
- ``LATE_COMMIT``: the client's side is closed at once (its connection is lost while the
  ``COMMIT`` is on its way), and the ``COMMIT`` reaches the server ``delay`` seconds later.

Only the standard library: threads and blocking sockets.
"""

from __future__ import annotations

import enum
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["CommitCuttingProxy", "Cut", "commit_cutting_proxy"]

_PG_SSL_REQUEST = 80877103
_PG_GSSENC_REQUEST = 80877104
_MYSQL_COM_QUERY = 0x03


class Cut(enum.Enum):
    """What happens to the ``COMMIT`` (see the module documentation)."""

    AFTER_COMMIT = "after"
    BEFORE_COMMIT = "before"
    LATE_COMMIT = "late"


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


class CommitCuttingProxy:
    """Listens on 127.0.0.1 (:attr:`port`) and relays to ``upstream``; see the module doc."""

    def __init__(
        self,
        upstream: tuple[str, int],
        protocol: str,
        cut: Cut,
        marker: bytes,
        *,
        delay: float = 0.0,
    ) -> None:
        assert protocol in ("postgresql", "mysql")
        self.upstream = upstream
        self.protocol = protocol
        self.cut = cut
        self.marker = marker
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = True  # one COMMIT only
        self._sockets: list[socket.socket] = []
        self._closing = False
        self.cut_done = threading.Event()
        """Set once the ``COMMIT`` was dealt with (``LATE_COMMIT``: passed on late and
        answered, or its connection closed by the server before)."""
        self.commit_applied: bool | None = None
        """Whether the server answered the cut ``COMMIT`` that it committed; ``False``: it
        did not (``BEFORE_COMMIT``; ``LATE_COMMIT`` with its session ended first); ``None``:
        not known (yet)."""
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop listening and close every relayed connection."""
        self._closing = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for each in sockets:
            _close(each)

    def take_commit(self) -> bool:
        """Whether this ``COMMIT`` (of a marked connection) is the one to cut (the first)."""
        with self._lock:
            armed, self._armed = self._armed, False
            return armed

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            _Relay(self, client, server).start()


class _Relay:
    """One client connection and its connection to the server, relayed both ways."""

    def __init__(
        self, proxy: CommitCuttingProxy, client: socket.socket, server: socket.socket
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self._reply = _pg_reply if proxy.protocol == "postgresql" else _mysql_reply
        self._withhold = False  # replies are kept from the client
        self._withheld = b""
        self._answered = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._upstream, daemon=True).start()
        threading.Thread(target=self._downstream, daemon=True).start()

    def _upstream(self) -> None:
        """Client to server, unit by unit, cutting at the marked connection's COMMIT."""
        proxy = self.proxy
        units = _PgClient() if proxy.protocol == "postgresql" else _MySqlClient()
        marked = False
        try:
            while data := self.client.recv(65536):
                for commit, raw in units.feed(data):
                    marked = marked or proxy.marker in raw
                    if commit and marked and proxy.take_commit():
                        self._cut(raw)
                        return
                    self.server.sendall(raw)
        except OSError:
            pass
        # The client closed: the server sees it after every byte written before.
        _shutdown_write(self.server)

    def _downstream(self) -> None:
        """Server to client; once a COMMIT is cut, kept back until its reply is complete
        (or the server closed the connection)."""
        try:
            while data := self.server.recv(65536):
                if self._withhold:
                    self._withheld += data
                    if self._reply(self._withheld)[0]:
                        self._answered.set()
                    continue
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            self._answered.set()
        _shutdown_write(self.client)

    def _cut(self, commit: bytes) -> None:
        proxy = self.proxy
        try:
            if proxy.cut is Cut.BEFORE_COMMIT:
                proxy.commit_applied = False
                _close(self.server)
                _close(self.client)
                return
            self._withhold = True
            if proxy.cut is Cut.LATE_COMMIT:
                _close(self.client)  # the client's connection is lost now...
                time.sleep(proxy.delay)  # ...and its COMMIT arrives later
            with suppress(OSError):  # (LATE_COMMIT: the server may have closed it meanwhile)
                self.server.sendall(commit)
            if not self._answered.wait(10):
                proxy.commit_applied = None  # neither: the test sees it
                return
            proxy.commit_applied = self._reply(self._withheld)[1]
            _close(self.client)
            _close(self.server)
        finally:
            proxy.cut_done.set()


def _shutdown_write(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def commit_cutting_proxy(
    upstream: tuple[str, int], protocol: str, cut: Cut, marker: bytes, *, delay: float = 0.0
) -> Iterator[CommitCuttingProxy]:
    """A :class:`CommitCuttingProxy` to ``upstream`` for the block, closed after."""
    proxy = CommitCuttingProxy(upstream, protocol, cut, marker, delay=delay)
    try:
        yield proxy
    finally:
        proxy.close()
