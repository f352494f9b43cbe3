"""One consume of one receiver: the real worker, for a bounded time, one consumer at a time.

:meth:`Consumer.consume` runs :class:`messenger_core.worker.Worker` (so retries, the failure
transport, hooks, keepalive and the stop-workers signal apply as with ``messenger consume``)
with a time limit and a memory limit, and stops it at the first empty poll when it has handled
nothing yet (as Shopware's endpoint returns early). It blocks: the ASGI app calls it in a
worker thread, never on the event loop.

Each receiver is read one message per ``get()`` (see :mod:`messenger_http.receivers`), so that
a consume stopping at its time limit leaves nothing reserved behind it.

Only one consume of a receiver runs at a time: :meth:`Consumer.reserve` marks it busy in this
process, and :meth:`Consumer.consume` then takes the transport's cross-process lock (see
:mod:`messenger_http.locks`).
"""

from __future__ import annotations

import logging
import threading
import time

import attrs

from messenger_core.app import Messenger
from messenger_core.cli.consume import consumable_transports
from messenger_core.dsn import mask_dsn
from messenger_core.hookspecs import hookimpl
from messenger_core.transport import Transport
from messenger_core.worker import Worker
from messenger_http.locks import Reservations, TransportLock, transport_lock
from messenger_http.receivers import one_at_a_time_transport
from messenger_http.settings import HttpSettings

__all__ = [
    "ConsumeResult",
    "Consumer",
    "LockUnavailableError",
    "ReceiverBusyError",
    "ShuttingDownError",
]

logger = logging.getLogger("messenger.http")

NOTHING_WAITING = "no message was waiting"
"""The stop reason of a consume that found its receiver empty before handling anything."""


class ReceiverBusyError(Exception):
    """Another process (or host) holds the receiver's lock."""


class LockUnavailableError(Exception):
    """The store holding the receiver's lock cannot be reached (details in the log)."""


class ShuttingDownError(Exception):
    """The endpoint is shutting down: it starts no new consume."""


@attrs.frozen(kw_only=True)
class ConsumeResult:
    """What one consume did."""

    receiver: str
    handled: int
    """Messages handled and acknowledged (``handledMessages``)."""
    failed: int
    """Messages whose handling failed (retried or parked)."""
    stop_reason: str | None
    seconds: float


class Consumer:
    """Consumes the receivers of ``messenger`` on request, one consume per receiver at a time."""

    def __init__(self, messenger: Messenger, settings: HttpSettings) -> None:
        self.messenger = messenger
        self.settings = settings
        self._reservations = Reservations()
        self._state = threading.Lock()
        self._workers: dict[str, Worker] = {}
        self._running: dict[str, Worker] = {}
        self._locks: dict[str, TransportLock | None] = {}
        self._own_transports: list[Transport] = []
        self._receivers: list[str] | None = None
        self._stopping = False
        self._hooks = _EarlyReturn(self)
        messenger.hooks.register(self._hooks)

    # -- what may be consumed ---------------------------------------------------------------
    def receivers(self) -> list[str]:
        """The transports ``POST /consume`` accepts."""
        if self._receivers is None:
            if self.settings.receivers is not None:
                self._receivers = list(self.settings.receivers)
            else:
                self._receivers = consumable_transports(self.messenger)
        return self._receivers

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called: no new consume starts."""
        return self._stopping

    # -- consuming --------------------------------------------------------------------------
    def reserve(self, name: str) -> bool:
        """Mark receiver ``name`` busy in this process; ``False`` if a consume of it runs."""
        return self._reservations.reserve(name)

    def unreserve(self, name: str) -> None:
        """Free receiver ``name`` (after :meth:`consume` returned)."""
        self._reservations.release(name)

    def consume(self, name: str) -> ConsumeResult:
        """Consume receiver ``name`` (reserved before) until a limit, an empty first poll, or
        :meth:`stop`. Blocks; call it in a worker thread.

        Raises :class:`ReceiverBusyError` if another process holds the receiver's lock,
        :class:`LockUnavailableError` if the lock's store cannot be reached, and
        :class:`ShuttingDownError` once :meth:`stop` was called; the worker's own errors
        (a broker never reached: ``BrokerUnreachableError``) pass through.
        """
        if self._stopping:
            raise ShuttingDownError("the endpoint is shutting down")
        lock = self._lock_of(name)
        if lock is not None:
            try:
                taken = lock.acquire()
            except Exception as error:
                logger.error("could not take %s: %s", lock.description, mask_dsn(str(error)))
                raise LockUnavailableError(
                    f"the lock of receiver {name!r} cannot be taken"
                ) from error
            if not taken:
                logger.debug("%s is being consumed elsewhere: %s is held", name, lock.description)
                raise ReceiverBusyError("by another process or host")
        try:
            worker = self._worker_of(name)
            with self._state:
                if self._stopping:
                    raise ShuttingDownError("the endpoint is shutting down")
                self._running[name] = worker
            started = time.monotonic()
            try:
                settings = self.settings
                stats = worker.run(
                    time_limit=settings.time_limit,
                    memory_limit=settings.memory_limit,
                    sleep=settings.poll_interval,
                    handle_signals=False,
                )
            finally:
                with self._state:
                    self._running.pop(name, None)
        finally:
            if lock is not None:
                lock.release()
        return ConsumeResult(
            receiver=name,
            handled=stats.handled,
            failed=stats.failed,
            stop_reason=stats.stop_reason,
            seconds=time.monotonic() - started,
        )

    def owns(self, worker: Worker) -> bool:
        """Whether ``worker`` is one of this consumer's."""
        return any(own is worker for own in self._workers.values())

    def stop(self, reason: str = "the endpoint is shutting down") -> None:
        """Start no new consume, and stop the running ones after their current message."""
        with self._state:
            self._stopping = True
            running = list(self._running.values())
        for worker in running:
            worker.stop(reason)

    def close(self) -> None:
        """:meth:`stop`, then close the locks' connections and unregister the worker hooks."""
        self.stop()
        locks, self._locks = list(self._locks.values()), {}
        for lock in locks:
            if lock is not None:
                try:
                    lock.close()
                except Exception as error:  # closing must go on for the others
                    logger.warning("could not close %s: %s", lock.description, error)
        transports, self._own_transports = self._own_transports, []
        for transport in transports:
            try:
                transport.close()
            except Exception as error:
                logger.warning("could not close %r: %s", transport, error)
        if self.messenger.hooks.manager.is_registered(self._hooks):
            self.messenger.hooks.unregister(self._hooks)

    def _worker_of(self, name: str) -> Worker:
        # One worker per receiver, reused: its start-up checks and log lines come once, and a
        # receiver it paused after a broker failure stays paused across requests.
        worker = self._workers.get(name)
        if worker is None:
            worker = self.messenger.worker([name], keepalive_interval=self.settings.keepalive)
            own = one_at_a_time_transport(self.messenger, name)
            if own is not None:  # see messenger_http.receivers
                self._own_transports.append(own)
                worker.receivers = [(name, own)]
            self._workers[name] = worker
        return worker

    def _lock_of(self, name: str) -> TransportLock | None:
        if name not in self._locks:
            lock = transport_lock(self.messenger, name)
            logger.debug(
                "%s: %s",
                name,
                lock.description if lock else "no cross-process lock (this process only)",
            )
            self._locks[name] = lock
        return self._locks[name]


class _EarlyReturn:
    """Worker hooks: stop a consume at its first empty poll if it handled nothing, and at
    once if it starts while the endpoint shuts down."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    @hookimpl
    def messenger_worker_started(self, worker: Worker) -> None:
        if self._consumer.stopping and self._consumer.owns(worker):
            worker.stop("the endpoint is shutting down")

    @hookimpl
    def messenger_worker_idle(self, worker: Worker) -> None:
        if worker.stats.handled == 0 and self._consumer.owns(worker):
            worker.stop(NOTHING_WAITING)
