"""Reconnecting with backoff: how long to wait between attempts, and when to give up.

An operation that fails because the connection broke is tried again on a new connection,
waiting ``0.1 s``, ``0.2 s``, … up to ``2 s`` (with jitter) between attempts, until its budget
(``reconnect_timeout`` by default) is spent; then :class:`AmqpUnreachableError`. An outage is
logged once when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pika import exceptions as pika_errors  # type: ignore[import-untyped]

from messenger_core.dsn import mask_dsn
from messenger_core.errors import BrokerUnreachableError

__all__ = ["RETRYABLE", "AmqpUnreachableError", "ReconnectPolicy"]

T = TypeVar("T")

RETRYABLE: tuple[type[BaseException], ...] = (
    pika_errors.AMQPConnectionError,  # closed, lost stream, heartbeat timeout, refused
    pika_errors.ConnectionWrongStateError,  # used after it closed
    pika_errors.ChannelWrongStateError,  # its connection closed under it
    pika_errors.StreamLostError,
    socket.error,
)
"""Errors that mean "the connection is gone": reconnecting may help."""

_FIRST_DELAY = 0.1
_MAX_DELAY = 2.0


class AmqpUnreachableError(BrokerUnreachableError):
    """RabbitMQ could not be reached within the reconnect budget."""


class ReconnectPolicy:
    """Runs operations, retrying those that fail with a :data:`RETRYABLE` error."""

    def __init__(self, where: str, timeout: float, *, logger: logging.Logger) -> None:
        self.where = where
        self.timeout = timeout
        self._logger = logger
        self._lock = threading.Lock()
        self._outage_since: float | None = None
        self._delay = 0.0
        self._next_try = 0.0
        self._last_error: BaseException | None = None
        self._answered = False
        self._rng = random.Random()

    @property
    def in_outage(self) -> bool:
        """Whether the last attempt failed and none succeeded since."""
        return self._outage_since is not None

    def run(
        self,
        operation: Callable[[], T],
        what: str,
        *,
        budget: float | None = None,
        on_error: Callable[[], None] = lambda: None,
    ) -> T:
        """``operation()``, tried again after each retryable error (``on_error()`` first, to
        drop the broken connection) until it succeeds or ``budget`` seconds passed."""
        budget = self.timeout if budget is None else budget
        started = time.monotonic()
        deadline = started + budget
        while True:
            wait, give_up = self._wait_before_try(deadline)
            if wait > 0:
                time.sleep(wait)
            if give_up:
                raise self._unreachable(what, time.monotonic() - started)
            try:
                result = operation()
            except RETRYABLE as error:
                self.failed(what, error)
                on_error()
                self._check_budget(what, started, deadline, error)
                continue
            self.recovered()
            return result

    async def run_async(
        self,
        operation: Callable[[], Awaitable[T]],
        what: str,
        *,
        on_error: Callable[[], None],
    ) -> T:
        """:meth:`run` for an async ``operation`` (the async sender's): the same retries,
        budget (:attr:`timeout`), outage state and errors, waiting with ``asyncio.sleep``
        (never blocking the loop)."""
        started = time.monotonic()
        deadline = started + self.timeout
        while True:
            wait, give_up = self._wait_before_try(deadline)
            if wait > 0:
                await asyncio.sleep(wait)
            if give_up:
                raise self._unreachable(what, time.monotonic() - started)
            try:
                result = await operation()
            except RETRYABLE as error:
                self.failed(what, error)
                on_error()
                self._check_budget(what, started, deadline, error)
                continue
            self.recovered()
            return result

    def _wait_before_try(self, deadline: float) -> tuple[float, bool]:
        """Seconds to wait before the next try (none out of an outage), and whether the
        budget ends before that try is due (then: wait until ``deadline`` and give up)."""
        wait = self._next_try - time.monotonic() if self.in_outage else 0.0
        if wait <= 0:
            return 0.0, False
        if time.monotonic() + wait > deadline:
            return max(0.0, deadline - time.monotonic()), True
        return wait, False

    def _check_budget(
        self, what: str, started: float, deadline: float, error: BaseException
    ) -> None:
        """After a failed try: :class:`AmqpUnreachableError` if the budget is spent."""
        if time.monotonic() >= deadline:
            raise self._unreachable(what, time.monotonic() - started) from error

    def recovered(self) -> None:
        """RabbitMQ answered: end the outage (logged with its length)."""
        self._answered = True
        if self._outage_since is None:
            return
        with self._lock:
            since, self._outage_since = self._outage_since, None
            self._delay = 0.0
        if since is not None:
            self._logger.info(
                "RabbitMQ at %s is reachable again after %.1f s",
                self.where,
                time.monotonic() - since,
            )

    def failed(self, what: str, error: BaseException) -> None:
        """``what`` failed with a retryable ``error``: an outage starts (logged) or goes on."""
        with self._lock:
            first = self._outage_since is None
            now = time.monotonic()
            if first:
                self._outage_since = now
            self._delay = min(_MAX_DELAY, self._delay * 2 if self._delay else _FIRST_DELAY)
            self._next_try = now + self._delay * (0.5 + self._rng.random() / 2)
            self._last_error = error
        if first:
            self._logger.log(
                logging.WARNING if self._answered else logging.DEBUG,
                "RabbitMQ at %s went away (%s: %s: %s); reconnecting with backoff up to %g s",
                self.where,
                what,
                type(error).__name__,
                _safe(error),
                _MAX_DELAY,
            )

    def _unreachable(self, what: str, tried_for: float) -> AmqpUnreachableError:
        error = self._last_error
        reason = f" ({type(error).__name__}: {_safe(error)})" if error is not None else ""
        return AmqpUnreachableError(
            f"RabbitMQ at {self.where} is unreachable{reason}: could not {what}, tried for "
            f"{tried_for:.1f} s (reconnect_timeout={self.timeout:g}); check that RabbitMQ "
            "runs there and that the DSN's host, port, virtual host and credentials are right"
        )


def _safe(error: BaseException) -> str:
    return mask_dsn(str(error) or repr(error)).rstrip(".")
