"""A TCP proxy that loses a connection at one chosen command, for "lost reply" tests.

A transport's test points the transport at the proxy; the proxy relays every connection to
the real server as it is and reads the client's side through a :class:`CommandWatcher` (the
protocol-specific part: a Redis ``EXEC``, a SQL ``COMMIT``, ...). The first command the
watchers pick, over all connections, is handled as the test asked (:class:`Cut`), once;
everything else, before and after, passes untouched:

- :attr:`Cut.AFTER`: the command reaches the server and its reply comes back (the server
  applied it), then the proxy closes the connection without passing the reply on;
- :attr:`Cut.BEFORE`: the proxy closes both sides instead of passing the command on;
- :attr:`Cut.LATE`: the command is held back ``delay`` seconds (a slow network, a busy
  server), then passed on, as TCP would deliver bytes written before the client gave up; its
  reply is not passed on. The client's side stays open meanwhile (its read times out), or,
  with ``late_closes_client``, is closed at once (the connection is lost while the command is
  on its way).

Afterwards :attr:`CuttingProxy.applied` says whether the server applied the command and
:attr:`CuttingProxy.cut_done` is set. Only the standard library: threads and blocking sockets::

    with cutting_proxy(("127.0.0.1", 6379), MyWatcher, Cut.AFTER) as proxy:
        ...  # the transport connects to 127.0.0.1:proxy.port
        assert proxy.cut_done.is_set() and proxy.applied is True
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Protocol

__all__ = ["CommandWatcher", "Cut", "CuttingProxy", "cutting_proxy"]

ANSWER_TIMEOUT = 10.0
"""Seconds the proxy waits for the server's reply to the cut command before giving up."""


class Cut(enum.Enum):
    """What happens to the chosen command (see the module documentation)."""

    AFTER = "after"
    BEFORE = "before"
    LATE = "late"


class CommandWatcher(Protocol):
    """The protocol-specific part of the proxy: one per relayed connection."""

    def feed(self, data: bytes) -> Iterable[tuple[bool, bytes]]:
        """The units of the client's stream that ``data`` completes, each forwarded whole:
        (whether it is a command to cut, its raw bytes). Keeps an incomplete tail for later."""
        ...

    def forward(self, command: bytes) -> bytes:
        """What to send to the server for the cut ``command``: the command, perhaps followed
        by a probe whose reply shows that the command's reply is complete."""
        ...

    def answer(self, replies: bytes) -> tuple[bool, bool]:
        """Whether the server's ``replies`` since the cut are complete, and whether they say
        the command was applied."""
        ...


class CuttingProxy:
    """Listens on 127.0.0.1 (:attr:`port`) and relays to ``upstream``; see the module doc.

    ``watcher`` makes a :class:`CommandWatcher` for each connection.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        watcher: Callable[[], CommandWatcher],
        cut: Cut,
        *,
        delay: float = 0.0,
        late_closes_client: bool = False,
    ) -> None:
        self.upstream = upstream
        self.watcher = watcher
        self.cut = cut
        self.delay = delay
        self.late_closes_client = late_closes_client
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = True  # the first chosen command only
        self._sockets: list[socket.socket] = []
        self._closing = False
        self.cut_done = threading.Event()
        """Set once the chosen command was dealt with (:attr:`Cut.LATE`: passed on late and
        answered, or its connection closed by the server before)."""
        self.applied: bool | None = None
        """Whether the server answered that it applied the cut command; ``False``: it did
        not (:attr:`Cut.BEFORE`; the server closed that connection first); ``None``: not
        known (yet, or no reply came within :data:`ANSWER_TIMEOUT`)."""
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop listening and close every relayed connection."""
        self._closing = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for each in sockets:
            _close(each)

    def take(self) -> bool:
        """Whether a command a watcher picked is the one to cut (the first one)."""
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

    def __init__(self, proxy: CuttingProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.watcher = proxy.watcher()
        self._withhold = False  # replies are kept from the client (once the cut began)
        self._withheld = b""
        self._answered = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._upstream, daemon=True).start()
        threading.Thread(target=self._downstream, daemon=True).start()

    def _upstream(self) -> None:
        """Client to server, unit by unit, cutting at the chosen command."""
        try:
            while data := self.client.recv(65536):
                for chosen, raw in self.watcher.feed(data):
                    if chosen and self.proxy.take():
                        self._cut(raw)
                        return
                    self.server.sendall(raw)
        except OSError:
            pass
        # The client closed: the server sees it after every byte written before (as over TCP).
        _shutdown_write(self.server)

    def _downstream(self) -> None:
        """Server to client; once the cut began, kept back until the reply is complete (or
        the server closed the connection)."""
        try:
            while data := self.server.recv(65536):
                if self._withhold:
                    self._withheld += data
                    if self.watcher.answer(self._withheld)[0]:
                        self._answered.set()
                    continue
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            self._answered.set()
        _shutdown_write(self.client)

    def _cut(self, command: bytes) -> None:
        proxy = self.proxy
        try:
            if proxy.cut is Cut.BEFORE:
                proxy.applied = False
                _close(self.server)
                _close(self.client)
                return
            self._withhold = True
            if proxy.cut is Cut.LATE:
                if proxy.late_closes_client:
                    _close(self.client)  # the client's connection is lost now...
                time.sleep(proxy.delay)  # ...and its command arrives later
            with suppress(OSError):  # (LATE: the server may have closed it meanwhile)
                self.server.sendall(self.watcher.forward(command))
            if not self._answered.wait(ANSWER_TIMEOUT):
                proxy.applied = None  # neither: the test sees it
                return
            proxy.applied = self.watcher.answer(self._withheld)[1]
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
def cutting_proxy(
    upstream: tuple[str, int],
    watcher: Callable[[], CommandWatcher],
    cut: Cut,
    *,
    delay: float = 0.0,
    late_closes_client: bool = False,
) -> Iterator[CuttingProxy]:
    """A :class:`CuttingProxy` to ``upstream`` for the block, closed after."""
    proxy = CuttingProxy(upstream, watcher, cut, delay=delay, late_closes_client=late_closes_client)
    try:
        yield proxy
    finally:
        proxy.close()
