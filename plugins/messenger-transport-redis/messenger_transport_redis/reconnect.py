"""How the Redis transport rides out an outage: its reconnect policy, in one place.

The transport drives its connections by hand on the hot path, so redis-py's own retries are
off and every operation goes through :meth:`ReconnectPolicy.run`:

- after a connection error the operation is tried again, waiting between attempts with
  exponential backoff (``first`` doubling up to ``maximum`` seconds) and jitter (each wait is
  drawn within ``±jitter`` of it), so that the workers of a fleet do not reconnect in step;
- an operation gives up after its **budget** (``reconnect_timeout`` for sends and for the first
  use of the transport; a short slice for a consumer that was connected before, so that its
  ``get()`` returns and the worker can notice a stop request between attempts);
- the backoff state belongs to the outage, not to one call: a consumer polling through a long
  outage keeps backing off instead of starting again at ``first``;
- one WARNING when an outage starts, one INFO line when Redis answers again (with how long it
  was away), nothing in between.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import redis
from redis.exceptions import ReadOnlyError

from messenger_core.dsn import mask_dsn
from messenger_core.errors import BrokerUnreachableError

__all__ = ["RETRYABLE", "Backoff", "ReconnectPolicy", "RedisUnreachableError"]

T = TypeVar("T")

RETRYABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # includes BusyLoadingError (a restarted server loading its data)
    redis.TimeoutError,
    ReadOnlyError,  # a Sentinel failover turned our server into a replica: reconnect
    OSError,
)
"""Errors that mean "the connection is gone or the server is not ready": worth another try."""


class RedisUnreachableError(BrokerUnreachableError):
    """Redis could not be reached within an operation's reconnect budget."""


@attrs.frozen(kw_only=True)
class Backoff:
    """Waits between attempts: ``first`` doubling to ``maximum`` seconds, each within
    ``±jitter`` (a fraction) of its nominal value."""

    first: float = 0.05
    maximum: float = 2.0
    jitter: float = 0.2

    def next(self, previous: float | None) -> float:
        """The nominal wait after ``previous`` (``None``: the first failure)."""
        return self.first if previous is None else min(previous * 2, self.maximum)

    def jittered(self, nominal: float, rng: random.Random) -> float:
        """``nominal`` spread by the jitter."""
        return nominal * rng.uniform(1 - self.jitter, 1 + self.jitter)


class ReconnectPolicy:
    """Retries operations on one Redis endpoint across connection errors, and logs outages.

    Shared by the threads of one transport (sends may come from several): its state is
    guarded by a lock, the operation itself runs outside it.
    """

    def __init__(
        self,
        where: str,
        timeout: float,
        *,
        logger: logging.Logger,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.where = where
        """The endpoint (password masked), for messages."""
        self.timeout = timeout
        """``reconnect_timeout``: the budget of an operation that must not give up early."""
        self.backoff = backoff or Backoff()
        self._logger = logger
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._outage_since: float | None = None
        self._delay: float | None = None  # the last nominal wait of this outage
        self._next_try = 0.0
        self._last_error: BaseException | None = None
        self._answered = False  # Redis answered once: later failures are outages

    @property
    def in_outage(self) -> bool:
        """Whether the last attempt failed (and no attempt succeeded since)."""
        return self._outage_since is not None

    def run(
        self,
        operation: Callable[[], T],
        what: str,
        *,
        budget: float | None = None,
        on_error: Callable[[], None] = lambda: None,
    ) -> T:
        """``operation()``, tried again after each retryable error (``on_error()`` is called
        first, to drop the broken connections) until it succeeds or ``budget`` seconds
        (default: :attr:`timeout`) have passed; then :class:`RedisUnreachableError`.

        ``what`` says what was being done ("receive messages"), for messages.
        """
        budget = self.timeout if budget is None else budget
        started = self._clock()
        deadline = started + budget
        while True:
            wait = self._wait_before_try(what, started, deadline)
            if wait > 0:
                self._sleep(wait)
                self._check_due(what, started)
            try:
                result = operation()
            except RETRYABLE as error:
                self._failed(what, error)
                on_error()
                if self._clock() >= deadline:
                    raise self._unreachable(what, self._clock() - started) from error
                continue
            self.recovered()
            return result

    async def run_async(
        self,
        operation: Callable[[], Awaitable[T]],
        what: str,
        *,
        on_error: Callable[[], Awaitable[None]],
    ) -> T:
        """:meth:`run` for an async ``operation`` (an async client's): the same retries, waits
        (``asyncio.sleep``, never blocking the loop), budget (:attr:`timeout`), outage state
        and errors."""
        started = self._clock()
        deadline = started + self.timeout
        while True:
            wait = self._wait_before_try(what, started, deadline)
            if wait > 0:
                await asyncio.sleep(wait)
                self._check_due(what, started)
            try:
                result = await operation()
            except RETRYABLE as error:
                self._failed(what, error)
                await on_error()
                if self._clock() >= deadline:
                    raise self._unreachable(what, self._clock() - started) from error
                continue
            self.recovered()
            return result

    def _wait_before_try(self, what: str, started: float, deadline: float) -> float:
        """Seconds to wait before the next try (none out of an outage), at most until
        ``deadline``; :class:`RedisUnreachableError` if the budget is spent."""
        wait = self._next_try - self._clock() if self.in_outage else 0.0
        if wait <= 0:
            return 0.0
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise self._unreachable(what, self._clock() - started)
        return min(wait, remaining)

    def _check_due(self, what: str, started: float) -> None:
        """After a wait: :class:`RedisUnreachableError` if the budget ended before the next
        try was due."""
        if self._clock() < self._next_try:
            raise self._unreachable(what, self._clock() - started)

    def recovered(self) -> None:
        """Redis answered: end the outage (one INFO line saying how long it lasted)."""
        self._answered = True
        if self._outage_since is None:
            return
        with self._lock:
            since, self._outage_since = self._outage_since, None
            self._delay = None
        if since is not None:
            self._logger.info(
                "Redis at %s is reachable again after %.1f s", self.where, self._clock() - since
            )

    def refused(self, what: str, error: BaseException) -> None:
        """Redis answered, with an error that is no one message's fault (its memory is full, the
        stream's key holds another type, a bug in reading the reply): the next :meth:`run`
        waits for the backoff, and the error is logged once until :meth:`recovered`."""
        first = self._begin_outage(error)
        if first:
            self._logger.error(
                "Redis at %s: could not %s: %s: %s; trying again with backoff up to %g s",
                self.where,
                what,
                type(error).__name__,
                _safe(error),
                self.backoff.maximum,
            )

    def _begin_outage(self, error: BaseException) -> bool:
        """Record a failed attempt and schedule the next; whether it starts an outage."""
        with self._lock:
            first = self._outage_since is None
            now = self._clock()
            if first:
                self._outage_since = now
            self._delay = self.backoff.next(self._delay)
            self._next_try = now + self.backoff.jittered(self._delay, self._rng)
            self._last_error = error
        return first

    def _failed(self, what: str, error: BaseException) -> None:
        first = self._begin_outage(error)
        if first:
            # Before Redis ever answered, the error raised after the budget says it all.
            self._logger.log(
                logging.WARNING if self._answered else logging.DEBUG,
                "Redis at %s went away (%s: %s: %s); reconnecting with backoff up to %g s",
                self.where,
                what,
                type(error).__name__,
                _safe(error),
                self.backoff.maximum,
            )

    def _unreachable(self, what: str, tried_for: float) -> RedisUnreachableError:
        since, error = self._outage_since, self._last_error
        reason = f" ({type(error).__name__}: {_safe(error)})" if error is not None else ""
        down = (
            f" (unreachable for {self._clock() - since:.1f} s)"
            if since is not None and self._clock() - since > tried_for + 0.05
            else ""
        )
        return RedisUnreachableError(
            f"Redis at {self.where} is unreachable{reason}: could not {what}, tried for "
            f"{tried_for:.1f} s{down} (reconnect_timeout={self.timeout:g}); check that Redis "
            "runs there and that the DSN's host, port and password are right"
        )


def _safe(error: BaseException) -> str:
    return mask_dsn(str(error)).rstrip(".")
