"""A TCP proxy between the transport and the real Redis that loses the connection at an EXEC.

The transport connects to the proxy; the proxy relays every connection to Redis as it is, and
reads the client's side as RESP commands. The first ``EXEC`` it sees is handled as the test
asked (:class:`Cut`), once; everything else, before and after, passes untouched:

- ``AFTER_EXEC``: the ``EXEC`` reaches Redis and is applied (the proxy waits for Redis's
  reply to a ``PING`` it sends behind it), then the proxy closes the connection without passing
  the reply on: the transaction committed, the client does not know;
- ``BEFORE_EXEC``: the proxy closes both sides instead of passing the ``EXEC`` on: Redis drops
  the queued transaction, nothing is applied;
- ``LATE_EXEC``: the ``EXEC`` is held back ``delay`` seconds (a slow network, a Redis busy
  with something else) and then passed on, as TCP would deliver bytes written before the
  client gave up and closed: the client's read times out before.

Only the standard library: threads and blocking sockets.
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["Cut", "ExecCuttingProxy", "exec_cutting_proxy"]


class Cut(enum.Enum):
    """What happens to the first ``EXEC`` (see the module documentation)."""

    AFTER_EXEC = "after"
    BEFORE_EXEC = "before"
    LATE_EXEC = "late"


class _Commands:
    """Splits a client's byte stream into whole RESP commands (arrays of bulk strings)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The commands completed by ``data``: (upper-cased name, raw bytes) each."""
        self._buffer += data
        done: list[tuple[bytes, bytes]] = []
        while (parsed := self._one()) is not None:
            done.append(parsed)
        return done

    def _one(self) -> tuple[bytes, bytes] | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end < 0:
            return None
        if not buffer.startswith(b"*"):  # an inline command (redis-cli style): one line
            self._buffer = buffer[end + 2 :]
            return buffer[:end].split(b" ", 1)[0].upper(), buffer[: end + 2]
        count = int(buffer[1:end])
        position = end + 2
        name = b""
        for index in range(count):
            end = buffer.find(b"\r\n", position)
            if end < 0:
                return None
            length = int(buffer[position + 1 : end])
            start, position = end + 2, end + 2 + length + 2
            if position > len(buffer):
                return None
            if index == 0:
                name = buffer[start : start + length].upper()
        self._buffer = buffer[position:]
        return name, buffer[:position]


class ExecCuttingProxy:
    """Listens on 127.0.0.1 (:attr:`port`) and relays to ``upstream``; see the module doc."""

    def __init__(self, upstream: tuple[str, int], cut: Cut, *, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.cut = cut
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = True  # the first EXEC only
        self._sockets: list[socket.socket] = []
        self._closing = False
        self.cut_done = threading.Event()
        """Set once the first EXEC was dealt with (``LATE_EXEC``: passed on late and
        answered, or Redis had closed that connection before)."""
        self.exec_answered: bool | None = None
        """Whether Redis answered the cut EXEC (then it ran it); ``False``: Redis had closed
        that connection (``BEFORE_EXEC``: the proxy did); ``None``: not known (yet)."""
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop listening and close every relayed connection."""
        self._closing = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for each in sockets:
            _close(each)

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

    def take_exec(self) -> bool:
        """Whether this EXEC is the one to cut (the first one)."""
        with self._lock:
            armed, self._armed = self._armed, False
            return armed


class _Relay:
    """One client connection and its connection to Redis, relayed both ways."""

    def __init__(self, proxy: ExecCuttingProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = server
        self._withhold = False  # replies are kept from the client (AFTER_EXEC)
        self._withheld = b""
        self._answered = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._upstream, daemon=True).start()
        threading.Thread(target=self._downstream, daemon=True).start()

    def _upstream(self) -> None:
        """Client to Redis, command by command, cutting at the first EXEC."""
        commands = _Commands()
        try:
            while data := self.client.recv(65536):
                for name, raw in commands.feed(data):
                    if name == b"EXEC" and self.proxy.take_exec():
                        self._cut(raw)
                        if self.proxy.cut is not Cut.LATE_EXEC:
                            return
                    else:
                        self.server.sendall(raw)
        except OSError:
            pass
        # The client closed: Redis sees it after every byte written before (as over TCP).
        _shutdown_write(self.server)

    def _downstream(self) -> None:
        """Redis to client; once an EXEC is cut, kept back until the PING behind it is
        answered (or Redis closed the connection)."""
        try:
            while data := self.server.recv(65536):
                if self._withhold:
                    self._withheld += data
                    if self._withheld.endswith(b"+PONG\r\n"):
                        self._answered.set()
                    continue
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            self._answered.set()
        _shutdown_write(self.client)

    def _cut(self, exec_command: bytes) -> None:
        proxy = self.proxy
        try:
            if proxy.cut is Cut.BEFORE_EXEC:
                proxy.exec_answered = False
                _close(self.server)
                _close(self.client)
                return
            if proxy.cut is Cut.LATE_EXEC:
                time.sleep(proxy.delay)
            self._withhold = True
            # Redis answers in order: the PING's reply comes after the EXEC's. (LATE_EXEC:
            # Redis may have closed the connection meanwhile, and applies nothing.)
            with suppress(OSError):
                self.server.sendall(exec_command + b"*1\r\n$4\r\nPING\r\n")
            if not self._answered.wait(10):
                proxy.exec_answered = None  # neither: the test sees it
                return
            proxy.exec_answered = self._withheld.endswith(b"+PONG\r\n")
            if proxy.cut is Cut.AFTER_EXEC:
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
def exec_cutting_proxy(
    upstream: tuple[str, int], cut: Cut, *, delay: float = 0.0
) -> Iterator[ExecCuttingProxy]:
    """An :class:`ExecCuttingProxy` to ``upstream`` for the block, closed after."""
    proxy = ExecCuttingProxy(upstream, cut, delay=delay)
    try:
        yield proxy
    finally:
        proxy.close()
