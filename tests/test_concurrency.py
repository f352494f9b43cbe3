"""``--concurrency M`` in one process: overlap, settling, limits, priorities, stop, timeouts.

Workers here consume ``memory://`` transports in this process; the real-process tests (signals,
supervisor, PostgreSQL and Redis) are in ``tests/e2e/test_processes_supervisor.py``.
Throughput is measured in ``bench/concurrency.py``, never here: these tests assert that the
handlers overlapped (how many ran at once), not how fast.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from messenger_core import Envelope, ErrorDetailsStamp, HandlerFailedError, Messenger, hookimpl
from messenger_core.handlers import HandlerTimeoutError
from messenger_core.transports.memory import MemoryTransport
from messenger_core.worker import Worker, WorkerStats

FAST_RETRY = {"max_retries": 3, "delay": 0, "multiplier": 2, "jitter": 0}


@attrs.frozen
class Work:
    n: int


@attrs.frozen
class AsyncWork:
    n: int


@attrs.frozen
class Urgent:
    n: int


@pytest.fixture(autouse=True)
def own_stop_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSENGER_STOP_SIGNAL_FILE", str(tmp_path / "stop-workers"))


def make_messenger(retry: dict[str, Any] | None = None) -> Messenger:
    messenger = Messenger(
        {
            "failure_transport": "failed",
            "transports": {
                "high": "memory://",
                "async": {"dsn": "memory://", "retry_strategy": retry or FAST_RETRY},
                "failed": "memory://",
            },
        },
        autoload=False,
    )
    messenger.route(Work, "async")
    messenger.route(AsyncWork, "async")
    messenger.route(Urgent, "high")
    return messenger


def memory(messenger: Messenger, name: str) -> MemoryTransport:
    transport = messenger.get_transport(name)
    assert isinstance(transport, MemoryTransport)
    return transport


def run(worker: Worker, **limits: Any) -> WorkerStats:
    limits.setdefault("sleep", 0.001)
    limits.setdefault("time_limit", 30)
    limits.setdefault("handle_signals", False)
    stats = worker.run(**limits)
    assert stats.stop_reason is not None
    assert not stats.stop_reason.startswith("time limit"), "the worker hit the safety net"
    return stats


class InFlight:
    """Counts the handlers running at once, and the peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.done: list[int] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.threads.add(threading.get_ident())

    def end(self, n: int) -> None:
        with self._lock:
            self.now -= 1
            self.done.append(n)


def test_16_sync_handlers_waiting_10ms_run_at_once() -> None:
    messenger = make_messenger()
    flight = InFlight()

    @messenger.handler
    def wait(message: Work) -> None:
        flight.start()
        time.sleep(0.01)
        flight.end(message.n)

    for n in range(160):
        messenger.bus.dispatch(Work(n))
    stats = run(messenger.worker(["async"], concurrency=16), limit=160)

    assert flight.peak == 16
    assert sorted(flight.done) == list(range(160))
    assert stats.handled == 160
    assert memory(messenger, "async").message_count() == 0


def test_16_async_handlers_waiting_10ms_run_at_once_as_tasks_on_one_loop() -> None:
    messenger = make_messenger()
    flight = InFlight()

    @messenger.handler
    async def wait(message: AsyncWork) -> None:
        flight.start()
        await asyncio.sleep(0.01)
        flight.end(message.n)

    for n in range(160):
        messenger.bus.dispatch(AsyncWork(n))
    stats = run(messenger.worker(["async"], concurrency=16), limit=160)

    assert flight.peak == 16
    assert len(flight.threads) == 1, "every async handler ran on the worker's one event loop"
    assert sorted(flight.done) == list(range(160))
    assert stats.handled == 160
    assert memory(messenger, "async").message_count() == 0


def test_a_sync_and_an_async_handler_of_one_message_both_run() -> None:
    messenger = make_messenger()
    ran: list[str] = []

    @messenger.handler
    def plain(message: Work) -> None:
        ran.append(f"sync {message.n}")

    @messenger.handler
    async def coroutine(message: Work) -> None:
        await asyncio.sleep(0)
        ran.append(f"async {message.n}")

    for n in range(5):
        messenger.bus.dispatch(Work(n))
    stats = run(messenger.worker(["async"], concurrency=4), limit=5)

    assert sorted(ran) == sorted([f"sync {n}" for n in range(5)] + [f"async {n}" for n in range(5)])
    assert stats.handled == 5


def test_the_message_limit_counts_received_messages_and_the_rest_stay_queued() -> None:
    messenger = make_messenger()
    handled: list[int] = []

    @messenger.handler
    def work(message: Work) -> None:
        time.sleep(0.002)
        handled.append(message.n)

    for n in range(30):
        messenger.bus.dispatch(Work(n))
    stats = run(messenger.worker(["async"], concurrency=8), limit=10)

    assert stats.received == stats.handled == 10
    assert len(handled) == 10
    assert memory(messenger, "async").message_count() == 20
    assert "message limit of 10" in (stats.stop_reason or "")


def test_failures_are_retried_then_parked_and_the_failure_limit_counts_them() -> None:
    messenger = make_messenger(retry={"max_retries": 1, "delay": 0, "jitter": 0})
    attempts: list[int] = []
    lock = threading.Lock()

    @messenger.handler
    def fail(message: Work) -> None:
        with lock:
            attempts.append(message.n)
        raise RuntimeError("boom")

    for n in range(4):
        messenger.bus.dispatch(Work(n))
    stats = run(messenger.worker(["async"], concurrency=4), limit=8)

    assert stats.failed == 8
    assert stats.retried == 4
    assert stats.parked == 4
    assert sorted(attempts) == sorted([*range(4), *range(4)])
    assert len(memory(messenger, "failed").all()) == 4
    assert memory(messenger, "async").message_count() == 0

    for n in range(10):
        messenger.bus.dispatch(Work(n))
    stats = run(messenger.worker(["async"], concurrency=4), failure_limit=3)
    assert stats.failed >= 3
    assert stats.failed == stats.received, "every message received was settled"


def test_a_higher_priority_transport_is_always_asked_first() -> None:
    messenger = make_messenger()
    order: list[str] = []

    class Recorder:
        @hookimpl
        def messenger_message_received(self, envelope: Envelope, transport_name: str) -> None:
            order.append(transport_name)

    messenger.hooks.register(Recorder())

    @messenger.handler
    def work(message: Work) -> None:
        time.sleep(0.002)

    @messenger.handler
    def urgent(message: Urgent) -> None:
        time.sleep(0.002)

    for n in range(20):
        messenger.bus.dispatch(Work(n))
    for n in range(20):
        messenger.bus.dispatch(Urgent(n))
    run(messenger.worker(["high", "async"], concurrency=4), limit=40)

    assert order == ["high"] * 20 + ["async"] * 20


def test_a_stop_finishes_and_settles_every_message_in_flight() -> None:
    messenger = make_messenger()
    flight = InFlight()
    worker = messenger.worker(["async"], concurrency=16)
    release = threading.Event()

    @messenger.handler
    def wait(message: Work) -> None:
        flight.start()
        release.wait(10)
        flight.end(message.n)

    for n in range(40):
        messenger.bus.dispatch(Work(n))

    def stop_when_16_run() -> None:
        deadline = time.monotonic() + 10
        while flight.now < 16 and time.monotonic() < deadline:
            time.sleep(0.001)
        worker.stop("test")
        release.set()

    stopper = threading.Thread(target=stop_when_16_run)
    stopper.start()
    stats = run(worker)
    stopper.join()

    assert flight.peak == 16
    assert stats.received == stats.handled == 16
    transport = memory(messenger, "async")
    assert transport.message_count() == 24
    assert len(transport.acknowledged) == 16


def test_the_handler_timeout_cancels_an_async_handler_and_the_message_is_retried() -> None:
    messenger = make_messenger(retry={"max_retries": 1, "delay": 0, "jitter": 0})
    cancelled: list[int] = []

    @messenger.handler
    async def slow(message: AsyncWork) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(message.n)
            raise

    messenger.bus.dispatch(AsyncWork(1))
    started = time.monotonic()
    stats = run(messenger.worker(["async"], concurrency=2, handler_timeout=0.05), limit=2)

    assert time.monotonic() - started < 4
    assert cancelled == [1, 1]
    assert stats.retried == 1
    assert stats.parked == 1
    [parked] = memory(messenger, "failed").all()
    details = parked.last(ErrorDetailsStamp)
    assert details is not None
    assert details.exception_class.endswith("HandlerTimeoutError")


def test_the_handler_timeout_fails_a_sync_handler_that_overran_when_it_returns() -> None:
    messenger = make_messenger(retry={"max_retries": 1, "delay": 0, "jitter": 0})
    calls: list[int] = []

    @messenger.handler
    def slow(message: Work) -> None:
        calls.append(message.n)
        time.sleep(0.1)

    messenger.bus.dispatch(Work(1))
    stats = run(messenger.worker(["async"], handler_timeout=0.02), limit=2)

    assert calls == [1, 1]
    assert stats.retried == 1
    assert stats.parked == 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_per_handler_timeout_fails_only_that_handler(concurrency: int) -> None:
    messenger = make_messenger(retry={"max_retries": 1, "delay": 0, "jitter": 0})
    ran: list[str] = []

    @messenger.handler(timeout=0.05)
    async def slow(message: AsyncWork) -> None:
        await asyncio.sleep(5)
        ran.append("slow")  # never reached

    @messenger.handler
    def quick(message: AsyncWork) -> None:
        ran.append("quick")

    messenger.bus.dispatch(AsyncWork(1))
    stats = run(messenger.worker(["async"], concurrency=concurrency), limit=2)

    # The quick handler ran once: the retry skips the handler that succeeded.
    assert ran == ["quick"]
    assert stats.retried == 1
    assert stats.parked == 1


def test_a_per_handler_timeout_on_a_direct_dispatch_raises_handler_timeout_error() -> None:
    messenger = Messenger(autoload=False)

    @messenger.handler(timeout=0.01)
    async def slow(message: Work) -> None:
        await asyncio.sleep(5)

    with pytest.raises(HandlerFailedError) as caught:
        messenger.bus.dispatch(Work(1))
    [error] = caught.value.wrapped_exceptions
    assert isinstance(error, HandlerTimeoutError)
