"""The worker: receives messages from transports, dispatches them, and settles each one.

A message leaves its transport only once it was handled (ack), re-sent for retry, or stored
in the failure transport (reject); :mod:`messenger_core.failure_policy` says which. If storing
the retry copy or the failure copy fails, the original is left alone (it comes back when its
reservation expires) and only its receiver pauses for a while: nothing is dropped, and the
other transports are still served. A receiver whose ``get()``, ``ack()`` or ``reject()``
raises pauses the same way; the worker never dies of it, with one exception: a ``get()`` that
raises :class:`~messenger_core.errors.BrokerUnreachableError` (the broker was never reached:
a wrong DSN or a stopped server at start-up) stops the worker with that error.

This module is the receive loop. Its other jobs each have a module of their own:

- :mod:`messenger_core.worker_message`: the steps of one message (receive, dispatch, settle);
- :mod:`messenger_core.worker_limits`: when it stops on its own (messages, failures, memory,
  time);
- :mod:`messenger_core.failure_policy`: what becomes of a failed message (retry or park);
- :mod:`messenger_core.keepalive`: keeping a slow handler's message reserved;
- :mod:`messenger_core.worker_signals`: SIGTERM and SIGINT;
- :mod:`messenger_core.worker_stats`: what it counted;
- :mod:`messenger_core.concurrency`: handling up to ``concurrency`` messages at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from messenger_core._describe import describe_message, plural
from messenger_core.bus import MessageBus
from messenger_core.envelope import Envelope
from messenger_core.errors import (
    BrokerUnreachableError,
    ConfigurationError,
)
from messenger_core.failure_policy import HISTORY, Backoff, FailurePolicy
from messenger_core.keepalive import Keepalive
from messenger_core.logging_json import message_fields, receiving_from, worker_fields
from messenger_core.stamps import ConsumedByWorkerStamp, ReceivedStamp
from messenger_core.stop_signal import StopSignal
from messenger_core.transport import (
    FlushingReceiver,
    QueueReceiver,
    Receiver,
    WaitingReceiver,
)
from messenger_core.worker_limits import WorkerLimits, parse_memory_limit
from messenger_core.worker_message import MessageSteps
from messenger_core.worker_signals import (
    WorkerInterrupted,
    install_stop_handlers,
    restore_handlers,
)
from messenger_core.worker_stats import WorkerStats

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.concurrency import HandlerPool

__all__ = [
    "HISTORY",
    "Worker",
    "WorkerInterrupted",
    "WorkerLimits",
    "WorkerStats",
    "describe_message",
    "parse_memory_limit",
]

logger = logging.getLogger("messenger.worker")

_SLEEP_SLICE = 0.05
"""Seconds the worker sleeps at a time while idle or paused, so that a stop is seen at once."""


class Worker(MessageSteps):
    """Consumes the named transports, highest priority first.

    After every message the worker starts again from the first transport, so a busy
    high-priority transport is always served first. With ``concurrency`` above 1 it handles up
    to that many messages at once (:mod:`messenger_core.concurrency`); with ``handler_timeout``
    a message whose handling takes longer fails (and is retried like any other failure).
    """

    def __init__(
        self,
        messenger: Messenger,
        transport_names: Sequence[str],
        *,
        bus: str | None = None,
        queues: Sequence[str] | None = None,
        stop_signal: StopSignal | None = None,
        keepalive_interval: float | None = None,
        concurrency: int = 1,
        handler_timeout: float | None = None,
    ) -> None:
        if not transport_names:
            raise ConfigurationError("a worker needs at least one transport to consume")
        if concurrency < 1:
            raise ConfigurationError(f"a worker's concurrency is at least 1, got {concurrency}")
        if handler_timeout is not None and not handler_timeout > 0:
            raise ConfigurationError(f"a handler timeout is positive, got {handler_timeout}")
        self.concurrency = concurrency
        self.handler_timeout = handler_timeout
        self.messenger = messenger
        self.transport_names = list(transport_names)
        self.receivers: list[tuple[str, Receiver]] = []
        for name in self.transport_names:
            receiver = messenger.get_transport(name)
            if queues and not isinstance(receiver, QueueReceiver):
                raise ConfigurationError(f"transport {name!r} cannot consume selected queues")
            self.receivers.append((name, receiver))
        # Receivers after the first that hold acknowledgements back: the worker goes back to
        # the first after their messages, which may keep it busy for long; they write theirs
        # before it does, so a crash meanwhile redelivers nothing they had settled.
        self._flush_when_leaving = {
            name for name, receiver in self.receivers[1:] if isinstance(receiver, FlushingReceiver)
        }
        self.forced_bus: MessageBus | None = messenger.get_bus(bus) if bus else None
        self.queues = list(queues) if queues else None
        self.stop_signal = stop_signal or messenger.stop_signal
        self.keepalive_interval = keepalive_interval
        self.stats = WorkerStats()
        self.failure_policy = FailurePolicy(self)
        """Settles the failed messages: retry or park (:mod:`messenger_core.failure_policy`)."""
        self._stopping = False
        self.backoff = Backoff()
        """How long a receiver pauses after its store or its broker failed (per receiver)."""
        self._paused: dict[str, float] = {}  # receiver name -> monotonic time it resumes
        self._unreachable: set[str] = set()  # receivers whose get/ack/reject raised last time
        self._received_stamps = {
            name: (ReceivedStamp(transport_name=name), ConsumedByWorkerStamp())
            for name in self.transport_names
        }
        self._keepalive: Keepalive | None = None
        self._pool: HandlerPool | None = None
        self._limits = WorkerLimits()
        self._announce_each_message = True
        self.on_message: Callable[[Worker], None] | None = None
        """Called after every message (the command line's live status line uses it)."""

    # -- running ----------------------------------------------------------------------------
    def run(
        self,
        *,
        limit: int | None = None,
        failure_limit: int | None = None,
        memory_limit: str | int | None = None,
        time_limit: float | None = None,
        sleep: float = 1.0,
        handle_signals: bool | None = None,
    ) -> WorkerStats:
        """Consume until a limit is reached, :meth:`stop` is called, or a stop is requested.

        With ``handle_signals`` (default: when running in the main thread) SIGTERM and SIGINT
        stop the worker after the current message; a second one stops it at once.
        """
        limits = WorkerLimits.of(
            limit=limit,
            failure_limit=failure_limit,
            memory_limit=memory_limit,
            time_limit=time_limit,
        )
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        self.stats = WorkerStats()
        self._stopping = False
        self._limits = limits
        hooks = self.messenger.hooks
        # Plugins are registered before a worker starts; asking pluggy twice per message
        # whether anyone listens would cost more than the rest of the worker's own work.
        self._announce_each_message = hooks.implemented(
            "messenger_message_received", "messenger_message_handled"
        )
        hooks.worker_started(self)
        logger.info("%s", _start_line(self, limits), extra=worker_fields(self.transport_names))
        # Installed last, so that the ``finally`` below always puts the previous ones back.
        previous = install_stop_handlers(self) if handle_signals else {}
        try:
            if self.concurrency > 1:
                from messenger_core.concurrency import HandlerPool  # noqa: PLC0415 (imports this)

                self._pool = HandlerPool(self, self.concurrency)
            while not self._stopping:
                if self._pool is not None:
                    self._pool.settle_ready()
                if self._consume_once(limits):
                    continue
                if self._stopping:
                    break
                hooks.worker_idle(self)
                self._check_limits(limits)
                if not self._stopping and (self._paused or not self._receivers_wait()):
                    self._idle(sleep)
            if self._pool is not None:
                self._pool.drain()  # a stop finishes and settles every message in flight
        except WorkerInterrupted:
            self.stats.stop_reason = "interrupted"
            logger.warning("worker interrupted: stopping at once")
        finally:
            restore_handlers(previous)
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            if self._keepalive:
                self._keepalive.stop()
                self._keepalive = None
            self._flush_receivers()
            hooks.worker_stopped(self)
            logger.info(
                "worker stopped (%s): %s",
                self.stats.stop_reason or "stopped",
                self.stats.summary(),
                extra=worker_fields(self.transport_names),
            )
        return self.stats

    @property
    def stopping(self) -> bool:
        """Whether the worker was asked to stop (it does after the current message)."""
        return self._stopping

    def stop(self, reason: str = "stop requested") -> None:
        """Stop after the current message."""
        if not self._stopping:
            self._stopping = True
            self.stats.stop_reason = reason

    def _flush_receivers(self) -> None:
        # Transports that batch acknowledgements (SQL, Redis) write them now rather than when
        # the application closes them: a worker that returned has settled its messages.
        for name, receiver in self.receivers:
            self._flush(name, receiver)

    @staticmethod
    def _flush(name: str, receiver: Receiver) -> None:
        if not isinstance(receiver, FlushingReceiver):
            return
        try:
            receiver.flush()
        except Exception as error:
            logger.warning(
                "could not write the pending acknowledgements of %s (those messages will "
                "be delivered again): %s",
                name,
                error,
                extra=message_fields(None, name),
            )

    def _receivers_wait(self) -> bool:
        # Receivers that wait for a message inside get() (PostgreSQL LISTEN) make the worker's
        # own sleep a pure delay: a message arriving then would wait for it. Asked after each
        # empty round, since a receiver may stop waiting (its LISTEN connection failed).
        return all(
            isinstance(receiver, WaitingReceiver) and receiver.waits_for_messages
            for _, receiver in self.receivers
        )

    def _consume_once(self, limits: WorkerLimits) -> bool:
        """One pass over the receivers; True if a message was received."""
        paused = self._paused
        for name, receiver in self.receivers:
            if paused and name in paused:
                if time.monotonic() < paused[name]:
                    continue
                del paused[name]
            if self._pool is not None:
                self._pool.wait_for_slot()  # receive no more than can be handled now
                if self._stopping:  # seen while waiting: receive nothing more
                    return True
            received = False
            receiving_from(name)
            try:
                envelopes: Iterable[Envelope] = (
                    receiver.get_from_queues(self.queues)  # type: ignore[attr-defined]
                    if self.queues
                    else receiver.get()
                )
                for envelope in envelopes:
                    received = True
                    if self._pool is not None:
                        self._pool.handle(envelope, name, receiver)
                    else:
                        self.handle(envelope, name, receiver)
                    self._check_limits(limits)
                    if self.on_message is not None:
                        self.on_message(self)
                    if self._stopping:
                        return True
            except Exception as error:
                if isinstance(error, BrokerUnreachableError) and not received:
                    # get() found the broker never there (transports wait out later outages
                    # themselves): a start-up error to show, not to wait out.
                    raise
                # The transport could not receive or settle (its broker is down, and it did not
                # reconnect by itself): unsettled messages come back; serve the others meanwhile.
                self.pause_receiver(name, f"receiving from or settling with {name} failed", error)
                self._unreachable.add(name)
                continue
            if received:
                if name in self._flush_when_leaving:
                    self._flush(name, receiver)
                if self._unreachable and name in self._unreachable and name not in paused:
                    # A message was received and settled: the next outage backs off afresh.
                    self._unreachable.discard(name)
                    self.backoff.reset(name)
                    logger.info("%s works again", name, extra=message_fields(None, name))
                return True
        return False

    def pause_receiver(self, name: str, what: str, error: BaseException) -> None:
        """Skip receiver ``name`` for its next backoff interval: ``what`` failed with ``error``."""
        delay = self.backoff.next_delay(name)
        self._paused[name] = time.monotonic() + delay
        logger.error(
            "%s (%s: %s); %s pauses for %.1fs, other transports are still served",
            what,
            type(error).__name__,
            error,
            name,
            delay,
            extra=message_fields(None, name),
        )

    def _idle(self, sleep: float) -> None:
        """Sleep ``sleep`` seconds (less if a paused receiver resumes sooner), seeing a stop."""
        until = time.monotonic() + sleep
        if self._paused:
            until = min(until, *self._paused.values())
        while not self._stopping:
            remaining = until - time.monotonic()
            if remaining <= 0:
                break
            if self._pool is not None:  # settle what finished meanwhile
                self._pool.settle_ready(timeout=min(_SLEEP_SLICE, remaining))
            else:
                time.sleep(min(_SLEEP_SLICE, remaining))

    def check_limits(self) -> None:
        """Stop (after the messages in flight) if a limit of the current run is reached."""
        self._check_limits(self._limits)

    def _check_limits(self, limits: WorkerLimits) -> None:
        reason = limits.reached(self.stats)
        if reason is None and self.stop_signal.requested_since(self.stats.started_at):
            reason = "stop-workers was requested"
        if reason is not None:
            self.stop(reason)


def _start_line(worker: Worker, limits: WorkerLimits) -> str:
    """What is consumed, on which bus(es) with how many handlers, and the limits in force."""
    consumed = ", ".join(worker.transport_names)
    if len(worker.transport_names) > 1:
        consumed += " (in priority order)"
    if worker.queues:
        consumed += f", queues {', '.join(worker.queues)}"
    forced = worker.forced_bus
    buses = [forced.name] if forced else worker.messenger.config.bus_names
    registry = worker.messenger.handlers
    counts = {name: len({id(d.callable) for d in registry if d.runs_on(name)}) for name in buses}
    listed = ", ".join(f"{name} ({plural(n, 'handler')})" for name, n in counts.items())
    on = f"bus {listed}" if len(buses) == 1 else f"buses {listed}"
    if forced:
        on += " for every message (--bus)"
    text = f"worker consuming {consumed}; {on}; limits: {limits.describe()}"
    if worker.concurrency > 1:
        text += f"; up to {worker.concurrency} messages at once"
    if worker.handler_timeout:
        text += f"; handler timeout {worker.handler_timeout:g}s"
    if worker.keepalive_interval:
        text += f"; keepalive every {worker.keepalive_interval:g}s"
    return text
