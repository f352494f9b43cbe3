"""The worker: receives messages from transports, dispatches them, and settles each one.

A message leaves its transport only once it was handled (ack), re-sent for retry, or stored
in the failure transport (reject); :mod:`messenger_core.failure_policy` says which. If storing
the retry copy or the failure copy fails, the original is left alone (it comes back when its
reservation expires) and only its receiver pauses for a while: nothing is dropped, and the
other transports are still served. A receiver whose ``get()``, ``ack()`` or ``reject()``
raises pauses the same way; the worker never dies of it.
"""

from __future__ import annotations

import logging
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

import attrs

from messenger_core._describe import describe_message
from messenger_core.bus import MessageBus
from messenger_core.config import RetryStrategyConfig
from messenger_core.envelope import Envelope
from messenger_core.errors import (
    BrokerUnreachableError,
    ConfigurationError,
    HandlerFailedError,
    MessageDecodingError,
)
from messenger_core.failure_policy import (
    HISTORY,
    Backoff,
    failure_copy,
    is_encoding_error,
    quarantined_copy,
    retry_copy,
    should_retry,
)
from messenger_core.retry import RetryStrategy, retry_count_of, retry_strategy_from_config
from messenger_core.stamps import BusNameStamp, ConsumedByWorkerStamp, ReceivedStamp
from messenger_core.stop_signal import StopSignal
from messenger_core.transport import KeepaliveReceiver, QueueReceiver, Receiver, UndecodableMessage

if TYPE_CHECKING:
    from messenger_core.app import Messenger

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
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_memory_limit(value: str | int) -> int:
    """``"128M"`` (K, M, G; a bare number is bytes) as a number of bytes."""
    if isinstance(value, int):
        return value
    text = value.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    number = text[: len(text) - len(unit)]
    if not number.isdigit():
        raise ConfigurationError(f"memory limit {value!r} is not like 128M, 1G or 500000")
    return int(number) * _UNITS[unit]


class WorkerInterrupted(BaseException):
    """A second SIGTERM/SIGINT: stop now, without settling the current message.

    A ``BaseException`` so that handlers catching ``Exception`` do not swallow it.
    """


@attrs.frozen(kw_only=True)
class WorkerLimits:
    """When a worker stops on its own (``None``: never for that reason)."""

    limit: int | None = None
    """Messages received (handled or failed)."""
    failure_limit: int | None = None
    """Messages that failed (retried or parked)."""
    memory_limit: int | None = None
    """Peak resident memory of the process, in bytes."""
    time_limit: float | None = None
    """Seconds since the worker started."""

    def describe(self) -> str:
        """The limits in force, for the start-up log line."""
        parts = []
        if self.limit is not None:
            parts.append(_plural(self.limit, "message"))
        if self.failure_limit is not None:
            parts.append(_plural(self.failure_limit, "failure"))
        if self.memory_limit is not None:
            parts.append(f"memory {_size(self.memory_limit)}")
        if self.time_limit is not None:
            parts.append(f"{self.time_limit:g}s")
        return ", ".join(parts) or "none"


@attrs.define
class WorkerStats:
    """What a worker did; updated as it runs.

    Every received message ends up counted once as ``handled`` or ``failed``; a failed one is
    then ``retried`` (a copy re-sent with a delay), ``parked`` (stored in the failure
    transport), ``rejected`` (failed for good with no failure transport: dropped), or, when
    storing the copy failed, none of those (:attr:`unsettled`: it comes back later).
    """

    received: int = 0
    handled: int = 0
    failed: int = 0
    """Failed attempts: ``retried + parked + rejected + unsettled``."""
    retried: int = 0
    parked: int = 0
    rejected: int = 0
    started_at: float = attrs.field(factory=time.time)
    stop_reason: str | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the worker started."""
        return time.time() - self.started_at

    @property
    def unsettled(self) -> int:
        """Failed messages left on their transport (storing the retry or failure copy
        failed): they come back when their reservation expires."""
        return self.failed - self.retried - self.parked - self.rejected

    def summary(self) -> str:
        """``3 handled, 54 retried, 5 parked, 0 rejected`` (and any unsettled)."""
        text = (
            f"{self.handled} handled, {self.retried} retried, {self.parked} parked, "
            f"{self.rejected} rejected"
        )
        unsettled = self.unsettled
        if unsettled:
            text += f", {unsettled} left on the transport for later"
        return text


class Worker:
    """Consumes the named transports, highest priority first.

    After every message the worker starts again from the first transport, so a busy
    high-priority transport is always served first.
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
    ) -> None:
        if not transport_names:
            raise ConfigurationError("a worker needs at least one transport to consume")
        self.messenger = messenger
        self.transport_names = list(transport_names)
        self.receivers: list[tuple[str, Receiver]] = []
        for name in self.transport_names:
            receiver = messenger.get_transport(name)
            if queues and not isinstance(receiver, QueueReceiver):
                raise ConfigurationError(f"transport {name!r} cannot consume selected queues")
            self.receivers.append((name, receiver))
        self.forced_bus: MessageBus | None = messenger.get_bus(bus) if bus else None
        self.queues = list(queues) if queues else None
        self.stop_signal = stop_signal or messenger.stop_signal
        self.keepalive_interval = keepalive_interval
        self.stats = WorkerStats()
        self._retry: dict[str, RetryStrategy] = {}
        for name in self.transport_names:
            # A strategy that cannot be loaded is a configuration error now, not at the first
            # failure (where it would stop the worker with the message still reserved).
            self._strategy(name)
        self._stopping = False
        self.backoff = Backoff()
        """How long a receiver pauses after its store or its broker failed (per receiver)."""
        self._paused: dict[str, float] = {}  # receiver name -> monotonic time it resumes
        self._unreachable: set[str] = set()  # receivers whose get/ack/reject raised last time
        self._received_stamps = {
            name: (ReceivedStamp(transport_name=name), ConsumedByWorkerStamp())
            for name in self.transport_names
        }
        self._keepalive: _Keepalive | None = None
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
        limits = WorkerLimits(
            limit=limit,
            failure_limit=failure_limit,
            memory_limit=parse_memory_limit(memory_limit) if memory_limit is not None else None,
            time_limit=time_limit,
        )
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        previous = self._install_signal_handlers() if handle_signals else {}
        self.stats = WorkerStats()
        self._stopping = False
        hooks = self.messenger.hooks
        # Plugins are registered before a worker starts; asking pluggy twice per message
        # whether anyone listens would cost more than the rest of the worker's own work.
        self._announce_each_message = hooks.implemented(
            "messenger_message_received", "messenger_message_handled"
        )
        hooks.worker_started(self)
        logger.info("%s", _start_line(self, limits))
        try:
            while not self._stopping:
                if self._consume_once(limits):
                    continue
                if self._stopping:
                    break
                hooks.worker_idle(self)
                self._check_limits(limits)
                if not self._stopping and (self._paused or not self._receivers_wait()):
                    self._idle(sleep)
        except WorkerInterrupted:
            self.stats.stop_reason = "interrupted"
            logger.warning("worker interrupted: stopping at once")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._keepalive:
                self._keepalive.stop()
            self._flush_receivers()
            hooks.worker_stopped(self)
            logger.info(
                "worker stopped (%s): %s", self.stats.stop_reason or "stopped", self.stats.summary()
            )
        return self.stats

    def _flush_receivers(self) -> None:
        # Transports that batch acknowledgements (SQL, Redis) write them now rather than when
        # the application closes them: a worker that returned has settled its messages.
        for name, receiver in self.receivers:
            flush = getattr(receiver, "flush", None)
            if flush is None:
                continue
            try:
                flush()
            except Exception as error:
                logger.warning(
                    "could not write the pending acknowledgements of %s (those messages will "
                    "be delivered again): %s",
                    name,
                    error,
                )

    def _receivers_wait(self) -> bool:
        # Receivers that wait for a message inside get() (PostgreSQL LISTEN) make the worker's
        # own sleep a pure delay: a message arriving then would wait for it. Asked after each
        # empty round, since a receiver may stop waiting (its LISTEN connection failed).
        return all(getattr(r, "waits_for_messages", False) for _, r in self.receivers)

    def stop(self, reason: str = "stop requested") -> None:
        """Stop after the current message."""
        if not self._stopping:
            self._stopping = True
            self.stats.stop_reason = reason

    def _consume_once(self, limits: WorkerLimits) -> bool:
        """One pass over the receivers; True if a message was received."""
        paused = self._paused
        for name, receiver in self.receivers:
            if paused and name in paused:
                if time.monotonic() < paused[name]:
                    continue
                del paused[name]
            received = False
            try:
                envelopes: Iterable[Envelope] = (
                    receiver.get_from_queues(self.queues)  # type: ignore[attr-defined]
                    if self.queues
                    else receiver.get()
                )
                for envelope in envelopes:
                    received = True
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
                self._pause(name, f"receiving from or settling with {name} failed", error)
                self._unreachable.add(name)
                continue
            if received:
                if self._unreachable and name in self._unreachable and name not in paused:
                    # A message was received and settled: the next outage backs off afresh.
                    self._unreachable.discard(name)
                    self.backoff.reset(name)
                    logger.info("%s works again", name)
                return True
        return False

    def _pause(self, name: str, what: str, error: BaseException) -> None:
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
        )

    def _idle(self, sleep: float) -> None:
        """Sleep ``sleep`` seconds (less if a paused receiver resumes sooner), seeing a stop."""
        deadline = time.monotonic() + sleep
        if self._paused:
            deadline = min(deadline, *self._paused.values())
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(_SLEEP_SLICE, remaining))

    def _check_limits(self, limits: WorkerLimits) -> None:
        stats = self.stats
        if limits.limit is not None and stats.received >= limits.limit:
            self.stop(f"message limit of {limits.limit} reached")
        elif limits.failure_limit is not None and stats.failed >= limits.failure_limit:
            self.stop(f"failure limit of {limits.failure_limit} reached")
        elif limits.time_limit is not None and stats.elapsed >= limits.time_limit:
            self.stop(f"time limit of {limits.time_limit:g}s reached")
        elif limits.memory_limit is not None and _peak_memory() >= limits.memory_limit:
            self.stop(f"memory limit of {limits.memory_limit} bytes reached")
        elif self.stop_signal.requested_since(stats.started_at):
            self.stop("stop-workers was requested")

    # -- one message ------------------------------------------------------------------------
    def handle(self, envelope: Envelope, transport_name: str, receiver: Receiver) -> None:
        """Dispatch one received envelope and settle it with its receiver."""
        hooks = self.messenger.hooks
        self.stats.received += 1
        envelope = envelope.with_(*self._received_stamps[transport_name])
        if self._announce_each_message:
            hooks.message_received(envelope, transport_name)
        if isinstance(envelope.message, UndecodableMessage):
            error = MessageDecodingError.from_message(envelope.message.reason)
            self._failed(envelope, transport_name, receiver, error, envelope)
            return
        keepalive = self._watch(envelope, receiver) if self.keepalive_interval else None
        try:
            handled = self._bus_for(envelope).dispatch(envelope)
        except Exception as error:
            failed = error.envelope if isinstance(error, HandlerFailedError) else envelope
            self._failed(envelope, transport_name, receiver, error, failed)
            return
        except WorkerInterrupted:
            logger.warning(
                "%s from %s was interrupted and not acknowledged: it comes back when its "
                "reservation expires",
                _describe(envelope),
                transport_name,
            )
            raise
        finally:
            if keepalive:
                keepalive.clear()
        receiver.ack(envelope)
        self.stats.handled += 1
        if self._announce_each_message:
            hooks.message_handled(handled, transport_name)

    def _bus_for(self, envelope: Envelope) -> MessageBus:
        if self.forced_bus is not None:
            return self.forced_bus
        stamp = envelope.last(BusNameStamp)
        return self.messenger.get_bus(stamp.bus_name) if stamp else self.messenger.bus

    def _failed(
        self,
        envelope: Envelope,
        transport_name: str,
        receiver: Receiver,
        error: BaseException,
        failed: Envelope,
    ) -> None:
        """Retry the message, or park it in the failure transport; then reject the original.

        The policy is :mod:`messenger_core.failure_policy`'s, step by step.
        """
        self.stats.failed += 1
        hooks = self.messenger.hooks
        retry = should_retry(self._strategy(transport_name), failed, error)
        hooks.message_failed(failed, transport_name, error, retry)
        try:
            try:
                if retry:
                    self._send_retry(envelope, transport_name, failed, error)
                else:
                    self._park(transport_name, failed, error)
            except Exception as storing_error:
                if not is_encoding_error(storing_error):
                    raise
                # It cannot be written (retrying cannot change that): park its raw form.
                self._park(transport_name, failed, error, encoding_error=storing_error)
        except Exception as storing_error:
            # The store is down. Leave the original unsettled: it comes back later; never
            # drop it. Only this receiver waits; the others are still served.
            self._pause(
                transport_name,
                f"{_describe(envelope)} from {transport_name} failed ({error}) and could not be "
                f"{'re-sent for retry' if retry else 'stored in the failure transport'}; it "
                "stays unsettled and comes back later",
                storing_error,
            )
            # A receiver that can take the message back (Redis: its consumer's pending list)
            # delivers it again once storing works, instead of after its redeliver_timeout.
            release = getattr(receiver, "release", None)
            if release is not None:
                release(envelope)
            return
        self.backoff.reset(transport_name)
        receiver.reject(envelope)

    def _send_retry(
        self, envelope: Envelope, transport_name: str, failed: Envelope, error: BaseException
    ) -> None:
        copy = retry_copy(self._strategy(transport_name), failed, error)
        self.messenger.get_transport(transport_name).send(copy)
        self.stats.retried += 1
        self.messenger.hooks.message_retried(copy, transport_name, retry_count_of(copy))
        logger.warning(
            "%s from %s failed, retry %d: %s",
            _describe(envelope),
            transport_name,
            retry_count_of(copy),
            error,
        )

    def _strategy(self, transport_name: str) -> RetryStrategy:
        strategy = self._retry.get(transport_name)
        if strategy is None:
            config = self.messenger.config.transports.get(transport_name)
            strategy = retry_strategy_from_config(
                config.retry_strategy if config else _DEFAULT_RETRY
            )
            self._retry[transport_name] = strategy
        return strategy

    def _park(
        self,
        transport_name: str,
        envelope: Envelope,
        error: BaseException,
        *,
        encoding_error: BaseException | None = None,
    ) -> None:
        failure_name = self.failure_transport_for(transport_name)
        if failure_name is None:
            self.stats.rejected += 1
            logger.error(
                "%s from %s failed for good and no failure transport is configured; "
                "it is rejected: %s",
                _describe(envelope),
                transport_name,
                error,
            )
            return
        if encoding_error is None:
            copy = failure_copy(envelope, transport_name, error)
        else:
            copy = quarantined_copy(envelope, transport_name, error, encoding_error)
        self.messenger.get_transport(failure_name).send(copy)
        self.stats.parked += 1
        logger.error(
            "%s from %s failed for good and was stored in failure transport %s%s: %s",
            _describe(envelope),
            transport_name,
            failure_name,
            ""
            if encoding_error is None
            else f" in its raw form, since it cannot be encoded again ({encoding_error})",
            error,
        )

    def failure_transport_for(self, transport_name: str) -> str | None:
        """The failure transport of ``transport_name`` (its own, else the global one)."""
        config = self.messenger.config
        own = config.transports.get(transport_name)
        return (own.failure_transport if own else None) or config.failure_transport

    # -- keepalive --------------------------------------------------------------------------
    def _watch(self, envelope: Envelope, receiver: Receiver) -> _Keepalive | None:
        if not self.keepalive_interval or not isinstance(receiver, KeepaliveReceiver):
            return None
        if self._keepalive is None:
            self._keepalive = _Keepalive(self.keepalive_interval)
        self._keepalive.watch(envelope, receiver)
        return self._keepalive

    # -- signals ----------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._stopping:
                raise WorkerInterrupted(signal.Signals(signum).name)
            logger.info(
                "%s received: stopping after the current message (again to stop at once)",
                signal.Signals(signum).name,
            )
            self.stop(f"{signal.Signals(signum).name} received")

        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, on_signal)
        return previous


class _Keepalive:
    """One background thread that keeps the current message's reservation alive."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._current: tuple[Envelope, KeepaliveReceiver, float] | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="messenger-keepalive", daemon=True)
        self._thread.start()

    def watch(self, envelope: Envelope, receiver: KeepaliveReceiver) -> None:
        with self._lock:
            self._current = (envelope, receiver, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._current = None

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval / 2):
            with self._lock:
                current = self._current
            if current is None or time.monotonic() - current[2] < self.interval:
                continue
            envelope, receiver, _ = current
            try:
                receiver.keepalive(envelope, self.interval * 2)
            except Exception as error:
                received = envelope.last(ReceivedStamp)
                logger.warning(
                    "keepalive for %s from %s failed: %s",
                    _describe(envelope),
                    received.transport_name if received else "its transport",
                    error,
                )


_DEFAULT_RETRY = RetryStrategyConfig()


_describe = describe_message


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
    listed = ", ".join(f"{name} ({_plural(n, 'handler')})" for name, n in counts.items())
    on = f"bus {listed}" if len(buses) == 1 else f"buses {listed}"
    if forced:
        on += " for every message (--bus)"
    text = f"worker consuming {consumed}; {on}; limits: {limits.describe()}"
    if worker.keepalive_interval:
        text += f"; keepalive every {worker.keepalive_interval:g}s"
    return text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _size(size: int) -> str:
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"


def _peak_memory() -> int:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
