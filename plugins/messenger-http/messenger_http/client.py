"""The loop client: calls ``POST /consume`` the way Shopware's administration does.

After a call that handled messages it calls again at once; after one that handled nothing (or
found the receiver busy elsewhere) it pauses; after an error (the server down, a 5xx, a
timeout) it backs off, doubling the pause up to a maximum. A 400, 401, 403 or 404 is a mistake
in the client's configuration, not a passing problem: it stops with that error.
``messenger consume-http URL --receiver NAME`` runs it, for hosts where only HTTP may leave.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import attrs
import httpx

__all__ = ["ConsumeHttpError", "ConsumeLoop", "LoopStats", "consume_url"]

logger = logging.getLogger("messenger.http.client")

_PERMANENT = {400, 401, 403, 404, 405, 413}


class ConsumeHttpError(Exception):
    """The endpoint refused the client's requests for good (wrong URL, token or receiver)."""


@attrs.define
class LoopStats:
    """What the loop did."""

    requests: int = 0
    handled: int = 0
    errors: int = 0
    stop_reason: str | None = None


def consume_url(url: str) -> str:
    """The ``/consume`` URL of an endpoint given by its base URL (or by that URL itself)."""
    url = url.rstrip("/")
    return url if url.endswith("/consume") else f"{url}/consume"


class ConsumeLoop:
    """Calls the consume endpoint at ``url`` for ``receiver`` until stopped or a limit.

    ``idle_pause``: seconds to wait after a call that handled nothing; errors back off from
    ``backoff`` seconds, doubling up to ``max_backoff``; ``request_timeout`` bounds one call
    (it must exceed the server's time limit plus the slowest message); ``limit`` stops after so
    many handled messages, ``time_limit`` after so many seconds.
    """

    def __init__(
        self,
        url: str,
        receiver: str,
        *,
        token: str | None = None,
        idle_pause: float = 5.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        request_timeout: float = 120.0,
        limit: int | None = None,
        time_limit: float | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = consume_url(url)
        self.receiver = receiver
        self.idle_pause = idle_pause
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.limit = limit
        self.time_limit = time_limit
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(request_timeout, connect=10.0))
        self._stop = threading.Event()
        self.stats = LoopStats()

    def __repr__(self) -> str:  # no token in it
        return f"ConsumeLoop({self.url!r}, receiver={self.receiver!r})"

    def stop(self, reason: str = "stop requested") -> None:
        """Stop after the current call (a pause ends at once)."""
        if not self._stop.is_set():
            self.stats.stop_reason = reason
            self._stop.set()

    def run(self) -> LoopStats:
        """Call the endpoint until :meth:`stop` or a limit; raises :class:`ConsumeHttpError`
        when the endpoint refuses the requests for good."""
        started = time.monotonic()
        failures = 0
        try:
            while not self._stop.is_set():
                pause = self._call_once()
                if pause is None:  # an error: back off
                    failures += 1
                    pause = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
                else:
                    failures = 0
                if self.limit is not None and self.stats.handled >= self.limit:
                    self.stop(f"limit of {self.limit} messages reached")
                elif self.time_limit is not None:
                    left = self.time_limit - (time.monotonic() - started)
                    if left <= 0:
                        self.stop(f"time limit of {self.time_limit:g}s reached")
                    pause = min(pause, max(left, 0.0))
                if pause > 0:
                    self._stop.wait(pause)
        finally:
            if self._own_client:
                self._client.close()
        return self.stats

    def _call_once(self) -> float | None:
        """One call; the pause before the next, or ``None`` after an error."""
        self.stats.requests += 1
        try:
            response = self._client.post(
                self.url, json={"receiver": self.receiver}, headers=self._headers
            )
        except httpx.HTTPError as error:
            self.stats.errors += 1
            logger.warning("calling %s failed: %s: %s", self.url, type(error).__name__, error)
            return None
        if response.status_code == 200:
            handled = _handled(response)
            if handled is None:
                self.stats.errors += 1
                logger.warning("%s answered 200 without a handledMessages count", self.url)
                return None
            self.stats.handled += handled
            if handled:
                logger.info("%s: %d handled", self.receiver, handled)
                return 0.0
            return self.idle_pause
        if response.status_code == 409:  # consumed elsewhere right now: as good as idle
            logger.debug("%s is being consumed by another client", self.receiver)
            return self.idle_pause
        reason = _error_of(response)
        if response.status_code in _PERMANENT:
            raise ConsumeHttpError(f"{self.url} answered {response.status_code}: {reason}")
        self.stats.errors += 1
        logger.warning("%s answered %d: %s", self.url, response.status_code, reason)
        return None


def _handled(response: httpx.Response) -> int | None:
    try:
        document: Any = response.json()
    except ValueError:
        return None
    handled = document.get("handledMessages") if isinstance(document, dict) else None
    return handled if isinstance(handled, int) and not isinstance(handled, bool) else None


def _error_of(response: httpx.Response) -> str:
    try:
        document: Any = response.json()
    except ValueError:
        return response.reason_phrase or "no reason given"
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])
    return response.reason_phrase or "no reason given"
