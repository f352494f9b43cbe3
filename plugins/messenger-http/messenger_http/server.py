"""``messenger serve-http``'s server: uvicorn, stopping consumes gracefully on SIGTERM/SIGINT.

The first SIGTERM or SIGINT stops the running consumes after their current message (they
answer with what they handled), refuses new ones (``/health`` answers 503) and lets uvicorn
finish the requests in flight; the app's shutdown then closes the transports. A second signal
stops at once. The process exits 0 after a graceful stop, like ``messenger consume``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn

from messenger_http.app import MessengerHttpApp

__all__ = ["HttpServer"]

logger = logging.getLogger("messenger.http")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class HttpServer(uvicorn.Server):
    """A uvicorn server for ``app`` that stops its consumes first on a signal."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: MessengerHttpApp,
        *,
        on_listening: Callable[[list[str]], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.http_app = app
        self.on_listening = on_listening

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: stop gracefully; a second one: at once."""
        if self.should_exit:
            self.force_exit = True
            return
        logger.info(
            "%s: finishing the messages being handled, then stopping",
            signal.Signals(sig).name,
        )
        self.http_app.stop()
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGINT and SIGTERM while serving; unlike uvicorn's own, do not raise the
        signal again afterwards: a graceful stop exits 0 with the transports closed."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then report the addresses actually bound (``--port 0``)."""
        await super().startup(sockets)
        if self.should_exit or self.on_listening is None:
            return
        addresses = [
            _url(sock.getsockname()) for server in self.servers for sock in (server.sockets or ())
        ]
        self.on_listening(addresses)


def _url(address: object) -> str:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"
    return f"unix:{address}"
