"""The worker's loop: receiver priority, limits, stopping, signals, buses, events, keepalive.

Retries and the failure transport are in ``test_retry.py``. Every worker here consumes
``memory://`` transports in this process.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

from messenger_core import (
    DEFAULT_BUS,
    BusNameStamp,
    ConfigurationError,
    ConsumedByWorkerStamp,
    Envelope,
    HandledStamp,
    Messenger,
    ReceivedStamp,
    TransportMessageIdStamp,
    UndecodableMessage,
    UnrecoverableMessageError,
    hookimpl,
    worker_limits,
)
from messenger_core.cli import output
from messenger_core.dsn import Dsn
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.serializer import Serializer
from messenger_core.stop_signal import FileStopSignal, StopSignal
from messenger_core.transports.memory import MemoryTransport
from messenger_core.worker import (
    Worker,
    WorkerLimits,
    WorkerStats,
    describe_message,
    parse_memory_limit,
)
from messenger_core.worker_limits import peak_memory


@attrs.frozen
class PlaceOrder:
    order_id: int


@attrs.frozen
class Refund:
    order_id: int


FAST_RETRY = {"max_retries": 3, "delay": 0, "multiplier": 2, "jitter": 0}


@pytest.fixture(autouse=True)
def own_stop_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep these workers away from a ``messenger stop-workers`` run elsewhere on this host."""
    monkeypatch.setenv("MESSENGER_STOP_SIGNAL_FILE", str(tmp_path / "stop-workers"))


def make_messenger(
    transport_config: Mapping[str, Any] | None = None,
    *,
    buses: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Messenger:
    """``async`` (``PlaceOrder`` routed there) and ``failed`` memory transports by default."""
    config: dict[str, Any] = {
        "failure_transport": "failed",
        "transports": dict(
            transport_config
            or {"async": {"dsn": "memory://", "retry_strategy": FAST_RETRY}, "failed": "memory://"}
        ),
    }
    if buses:
        config["buses"] = dict(buses)
    messenger = Messenger(config, autoload=False, **kwargs)
    if "async" in config["transports"]:
        messenger.route(PlaceOrder, "async")
    return messenger


def memory(messenger: Messenger, name: str) -> MemoryTransport:
    transport = messenger.get_transport(name)
    assert isinstance(transport, MemoryTransport)
    return transport


def run(worker: Worker, **limits: Any) -> WorkerStats:
    """Run with a short idle sleep; the time limit is a safety net the test must not reach."""
    limits.setdefault("sleep", 0.001)
    limits.setdefault("time_limit", 30)
    limits.setdefault("handle_signals", False)
    stats = worker.run(**limits)
    assert stats.stop_reason is not None
    if limits["time_limit"] == 30:
        assert not stats.stop_reason.startswith("time limit"), "the worker hit the safety net"
    return stats


# -- construction ------------------------------------------------------------------------------


class WaitingTransport(MemoryTransport):
    """A memory transport that says its get() waits for messages (as PostgreSQL LISTEN does)."""

    waits_for_messages = True


@pytest.mark.parametrize(("waits", "sleeps"), [(True, False), (False, True)])
def test_the_worker_sleeps_between_empty_rounds_only_if_a_receiver_does_not_wait(
    waits: bool, sleeps: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    messenger = make_messenger()
    kind = WaitingTransport if waits else MemoryTransport
    messenger.add_transport("idle", kind(memory(messenger, "async").serializer))
    worker = messenger.worker(["idle"])
    rounds = 0

    def on_idle_check() -> bool:
        nonlocal rounds
        rounds += 1
        if rounds == 3:
            worker.stop("three empty rounds")
        return False

    slept: list[float] = []
    monkeypatch.setattr(worker.stop_signal, "requested_since", lambda _: on_idle_check())
    monkeypatch.setattr("messenger_core.worker.time.sleep", slept.append)

    run(worker)

    assert rounds == 3
    assert bool(slept) is sleeps


def test_a_worker_needs_a_transport() -> None:
    with pytest.raises(ConfigurationError, match="at least one transport"):
        make_messenger().worker([])


def test_an_unknown_transport_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no transport named 'asnyc'"):
        make_messenger().worker(["asnyc"])


def test_queues_need_a_transport_that_has_queues() -> None:
    with pytest.raises(ConfigurationError, match="cannot consume selected queues"):
        make_messenger().worker(["async"], queues=["high"])


def test_an_unknown_forced_bus_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no bus named 'nope'"):
        make_messenger().worker(["async"], bus="nope")


# -- receiving and acknowledging ----------------------------------------------------------------


def test_the_worker_handles_each_message_and_acknowledges_it() -> None:
    messenger = make_messenger()
    handled: list[PlaceOrder] = []
    messenger.handler(handled.append, handles=PlaceOrder, name="place")
    for order_id in (1, 2, 3):
        messenger.bus.dispatch(PlaceOrder(order_id))

    stats = run(messenger.worker(["async"]), limit=3)

    assert handled == [PlaceOrder(1), PlaceOrder(2), PlaceOrder(3)]
    assert (stats.received, stats.handled, stats.failed) == (3, 3, 0)
    assert stats.stop_reason == "message limit of 3 reached"
    acknowledged = memory(messenger, "async").acknowledged
    assert [e.message for e in acknowledged] == handled
    assert memory(messenger, "async").message_count() == 0
    # What the bus saw on the consuming side: the received and worker stamps.
    assert all(e.last(ReceivedStamp) == ReceivedStamp(transport_name="async") for e in acknowledged)
    assert all(e.last(ConsumedByWorkerStamp) is not None for e in acknowledged)


def test_receivers_are_served_in_priority_order_starting_again_after_each_message() -> None:
    messenger = make_messenger(
        {"high": "memory://", "low": "memory://", "failed": "memory://"},
    )
    messenger.route(PlaceOrder, "low")
    messenger.route(Refund, "high")
    order: list[Any] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        order.append(message)
        if message.order_id == 1:
            # Arrives on the high-priority transport while "low" still has a message.
            messenger.bus.dispatch(Refund(2))

    messenger.handler(order.append, handles=Refund, name="refund")
    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(PlaceOrder(3))
    messenger.bus.dispatch(Refund(1))

    run(messenger.worker(["high", "low"]), limit=4)

    assert order == [Refund(1), PlaceOrder(1), Refund(2), PlaceOrder(3)]


def test_a_message_is_acknowledged_only_after_the_whole_dispatch_returned() -> None:
    events: list[str] = []
    holder: dict[str, Messenger] = {}

    def acknowledged() -> int:
        return len(memory(holder["messenger"], "async").acknowledged)

    def probe_factory(context: MiddlewareContext) -> Any:
        def probe(envelope: Envelope, next: Next, /) -> Envelope:
            if envelope.last(ReceivedStamp) is None:
                return next(envelope)  # the dispatch that sends it
            result = next(envelope)
            # The handlers are done; middleware still runs: not acknowledged yet.
            events.append(f"middleware after handlers: {acknowledged()} acknowledged")
            return result

        return probe

    messenger = make_messenger(
        buses={DEFAULT_BUS: {"middleware": ["probe"]}}, middleware={"probe": probe_factory}
    )
    holder["messenger"] = messenger

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        events.append(f"handler: {acknowledged()} acknowledged")

    messenger.bus.dispatch(PlaceOrder(1))
    run(messenger.worker(["async"]), limit=1)

    assert events == ["handler: 0 acknowledged", "middleware after handlers: 0 acknowledged"]
    assert acknowledged() == 1


# -- buses -------------------------------------------------------------------------------------

COMMANDS, EVENTS = "command.bus", "event.bus"


def two_buses() -> tuple[Messenger, list[str]]:
    messenger = make_messenger(buses={COMMANDS: {}, EVENTS: {"allow_no_handlers": True}})
    ran: list[str] = []
    messenger.handler(lambda m: ran.append(COMMANDS), handles=PlaceOrder, bus=COMMANDS, name="c")
    messenger.handler(lambda m: ran.append(EVENTS), handles=PlaceOrder, bus=EVENTS, name="e")
    messenger.handler(
        lambda m: ran.append(DEFAULT_BUS), handles=PlaceOrder, bus=DEFAULT_BUS, name="d"
    )
    return messenger, ran


def test_a_message_is_dispatched_again_on_the_bus_it_was_first_dispatched_on() -> None:
    messenger, ran = two_buses()
    messenger.buses[EVENTS].dispatch(PlaceOrder(1))
    messenger.buses[COMMANDS].dispatch(PlaceOrder(2))

    run(messenger.worker(["async"]), limit=2)

    assert ran == [EVENTS, COMMANDS]
    buses = [e.last(BusNameStamp) for e in memory(messenger, "async").acknowledged]
    assert buses == [BusNameStamp(bus_name=EVENTS), BusNameStamp(bus_name=COMMANDS)]


def test_a_message_without_a_bus_name_goes_to_the_default_bus() -> None:
    # A foreign producer does not stamp a bus.
    messenger, ran = two_buses()
    memory(messenger, "async").send(Envelope(PlaceOrder(1)))

    run(messenger.worker(["async"]), limit=1)

    assert ran == [DEFAULT_BUS]


def test_the_bus_option_forces_a_bus_for_every_message() -> None:
    messenger, ran = two_buses()
    messenger.buses[COMMANDS].dispatch(PlaceOrder(1))
    memory(messenger, "async").send(Envelope(PlaceOrder(2)))

    run(messenger.worker(["async"], bus=EVENTS), limit=2)

    assert ran == [EVENTS, EVENTS]


# -- limits --------------------------------------------------------------------------------------


def test_the_message_limit_leaves_the_rest_in_the_transport() -> None:
    messenger = make_messenger()
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    for order_id in range(5):
        messenger.bus.dispatch(PlaceOrder(order_id))

    stats = run(messenger.worker(["async"]), limit=2)

    assert stats.handled == 2
    assert memory(messenger, "async").message_count() == 3


def test_the_message_limit_counts_failed_messages_too() -> None:
    messenger = make_messenger()
    messenger.handler(lambda m: 1 / m.order_id, handles=PlaceOrder, name="divide")
    for order_id in (0, 1, 2):
        messenger.bus.dispatch(PlaceOrder(order_id))

    stats = run(messenger.worker(["async"]), limit=2)

    assert (stats.received, stats.handled, stats.failed) == (2, 1, 1)


def test_the_failure_limit_stops_after_that_many_failures() -> None:
    messenger = make_messenger()

    @messenger.handler
    def picky(message: PlaceOrder) -> None:
        if message.order_id % 2:
            raise UnrecoverableMessageError("odd")

    for order_id in range(10):
        messenger.bus.dispatch(PlaceOrder(order_id))

    stats = run(messenger.worker(["async"]), failure_limit=2)

    assert stats.stop_reason == "failure limit of 2 reached"
    assert (stats.handled, stats.failed) == (2, 2)  # 0 ok, 1 failed, 2 ok, 3 failed
    assert memory(messenger, "async").message_count() == 6


def test_the_time_limit_stops_an_idle_worker() -> None:
    messenger = make_messenger()

    stats = run(messenger.worker(["async"]), time_limit=0.05, sleep=0.01)

    assert stats.stop_reason == "time limit of 0.05s reached"
    assert stats.received == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128M", 128 * 1024**2),
        ("128m", 128 * 1024**2),
        ("128MB", 128 * 1024**2),
        (" 1G ", 1024**3),
        ("512K", 512 * 1024),
        ("500000", 500_000),
        (4096, 4096),
    ],
)
def test_memory_limits_are_read_like_128M(text: str | int, expected: int) -> None:
    assert parse_memory_limit(text) == expected


@pytest.mark.parametrize("text", ["", "M", "lots", "12.5M", "-1M", "128T", "1 G B"])
def test_a_memory_limit_that_is_not_like_128M_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="is not like 128M"):
        parse_memory_limit(text)


def test_a_bad_memory_limit_is_refused_before_consuming_anything() -> None:
    messenger = make_messenger()
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    messenger.bus.dispatch(PlaceOrder(1))

    with pytest.raises(ConfigurationError, match="is not like 128M"):
        messenger.worker(["async"]).run(memory_limit="a lot", handle_signals=False)

    assert memory(messenger, "async").message_count() == 1
    assert memory(messenger, "async").acknowledged == []


def test_the_memory_limit_stops_the_worker_after_the_current_message() -> None:
    messenger = make_messenger()
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(PlaceOrder(2))

    stats = run(messenger.worker(["async"]), memory_limit="1K")  # any process is bigger

    assert stats.stop_reason is not None
    assert stats.stop_reason.startswith("memory limit of 1024 bytes")
    assert stats.handled == 1
    assert memory(messenger, "async").message_count() == 1


def test_a_large_memory_limit_does_not_stop_the_worker() -> None:
    messenger = make_messenger()
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(PlaceOrder(2))

    stats = run(messenger.worker(["async"]), memory_limit="1024G", limit=2)

    assert stats.stop_reason == "message limit of 2 reached"


# -- stopping ------------------------------------------------------------------------------------


@attrs.frozen
class FakeUsage:
    ru_maxrss: int


def fake_platform(monkeypatch: pytest.MonkeyPatch, platform: str, ru_maxrss: int) -> None:
    """Make ``peak_memory`` see ``platform`` and a ``getrusage`` peak of ``ru_maxrss``."""
    monkeypatch.setattr(worker_limits, "sys", SimpleNamespace(platform=platform))
    usage = FakeUsage(ru_maxrss)
    monkeypatch.setattr(
        worker_limits,
        "resource",
        SimpleNamespace(RUSAGE_SELF=resource.RUSAGE_SELF, getrusage=lambda who: usage),
    )


@pytest.mark.parametrize(
    ("platform", "ru_maxrss", "expected"),
    [("linux", 300 * 1024, 300 * 2**20), ("darwin", 300 * 2**20, 300 * 2**20)],
)
def test_peak_memory_is_in_bytes_on_linux_kib_and_on_macos_bytes(
    platform: str, ru_maxrss: int, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_platform(monkeypatch, platform, ru_maxrss)

    assert peak_memory() == expected


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_peak_memory_agrees_with_the_kernels_high_water_mark() -> None:
    status = Path("/proc/self/status").read_text()
    [kib] = re.findall(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)

    assert int(kib) * 1024 / 2 <= peak_memory() <= int(kib) * 1024 * 2


def test_the_worker_and_the_command_line_use_one_peak_memory() -> None:
    assert output.peak_memory is peak_memory


def test_on_macos_a_worker_reads_its_peak_memory_in_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # macOS gives bytes: 300 MiB must not be taken for 300 GiB and stop a worker limited to 1G.
    fake_platform(monkeypatch, "darwin", 300 * 2**20)
    messenger = make_messenger()
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(PlaceOrder(2))

    stats = run(messenger.worker(["async"]), memory_limit="1G", limit=2)

    assert stats.stop_reason == "message limit of 2 reached"
    assert stats.handled == 2


def test_stop_from_a_handler_finishes_that_message_first() -> None:
    messenger = make_messenger()
    worker = messenger.worker(["async"])

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        worker.stop("the handler said so")

    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(PlaceOrder(2))
    stats = run(worker)

    assert stats.stop_reason == "the handler said so"
    assert stats.handled == 1
    assert len(memory(messenger, "async").acknowledged) == 1
    assert memory(messenger, "async").message_count() == 1


def test_stop_from_another_thread_ends_an_idle_worker() -> None:
    messenger = make_messenger()
    worker = messenger.worker(["async"])
    started = threading.Event()

    class Announce:
        @hookimpl
        def messenger_worker_idle(self, worker: Any) -> None:
            started.set()

    messenger.hooks.register(Announce())
    thread = threading.Thread(target=run, args=(worker,), kwargs={"sleep": 0.005})
    thread.start()
    assert started.wait(10)
    worker.stop()
    thread.join(10)

    assert not thread.is_alive()
    assert worker.stats.stop_reason == "stop requested"


def test_the_stop_signal_stops_workers_started_before_it(tmp_path: Path) -> None:
    stop_signal = FileStopSignal(tmp_path / "stop-workers")
    messenger = make_messenger()
    messenger.handler(lambda m: stop_signal.request(), handles=PlaceOrder, name="stop")
    for order_id in range(3):
        messenger.bus.dispatch(PlaceOrder(order_id))

    stats = run(messenger.worker(["async"], stop_signal=stop_signal))

    assert stats.stop_reason == "stop-workers was requested"
    assert stats.handled == 1
    assert memory(messenger, "async").message_count() == 2


def test_a_stop_requested_before_a_worker_started_does_not_stop_it(tmp_path: Path) -> None:
    stop_signal = FileStopSignal(tmp_path / "stop-workers")
    stop_signal.request()
    time.sleep(0.01)  # the worker's start must be strictly later than the request
    messenger = make_messenger()
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    for order_id in range(3):
        messenger.bus.dispatch(PlaceOrder(order_id))

    stats = run(messenger.worker(["async"], stop_signal=stop_signal), limit=3)

    assert stats.stop_reason == "message limit of 3 reached"


def test_the_file_stop_signal_compares_the_request_with_a_start_time(tmp_path: Path) -> None:
    stop_signal = FileStopSignal(tmp_path / "sub" / "stop")
    before = time.time() - 1

    assert not stop_signal.requested_since(before)  # no file: no request
    stop_signal.request()
    # A new reader: the signal looks at the file at most once per CHECK_INTERVAL.
    reader = FileStopSignal(tmp_path / "sub" / "stop")
    assert reader.requested_since(before)
    assert not reader.requested_since(time.time() + 1)
    assert isinstance(stop_signal, StopSignal)


def test_the_written_time_counts_where_file_times_are_coarse(tmp_path: Path) -> None:
    stop_signal = FileStopSignal(tmp_path / "stop")
    stop_signal.request()
    requested_at = float((tmp_path / "stop").read_text())
    # A file system keeping whole seconds dates the file before the request.
    os.utime(tmp_path / "stop", (requested_at - 0.9, requested_at - 0.9))

    assert FileStopSignal(tmp_path / "stop").requested_since(requested_at - 0.001)


def test_touching_the_file_by_hand_is_a_request_too(tmp_path: Path) -> None:
    path = tmp_path / "stop"
    old = time.time() - 3600
    path.write_text(f"{old}\n")  # an old request
    os.utime(path, (old, old))
    started_at = time.time() - 10
    assert not FileStopSignal(path).requested_since(started_at)

    path.touch()

    assert FileStopSignal(path).requested_since(started_at)


def test_the_stop_signal_file_can_be_chosen_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSENGER_STOP_SIGNAL_FILE", str(tmp_path / "custom"))

    FileStopSignal().request()

    assert (tmp_path / "custom").exists()
    assert FileStopSignal(tmp_path / "custom").requested_since(time.time() - 5)


# -- signals -----------------------------------------------------------------------------------


def test_sigterm_finishes_and_acknowledges_the_current_message_then_stops() -> None:
    messenger = make_messenger()
    handled: list[int] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        if message.order_id == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        handled.append(message.order_id)

    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(PlaceOrder(2))
    before = signal.getsignal(signal.SIGTERM)
    stats = run(messenger.worker(["async"]), handle_signals=True)

    assert handled == [1]
    assert stats.stop_reason == "SIGTERM received"
    assert [e.message for e in memory(messenger, "async").acknowledged] == [PlaceOrder(1)]
    assert memory(messenger, "async").message_count() == 1
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_a_second_signal_stops_at_once_without_settling_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger = make_messenger()
    reached: list[str] = []

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the first signal")
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the second signal")

    messenger.bus.dispatch(PlaceOrder(1))
    with caplog.at_level(logging.INFO, logger="messenger.worker"):
        stats = run(messenger.worker(["async"]), handle_signals=True)

    assert reached == ["after the first signal"]
    assert any(
        re.match(r"PlaceOrder \(id \w+\) from async was interrupted and not acknowledged", line)
        for line in worker_lines(caplog)
    )
    assert stats.stop_reason == "interrupted"
    transport = memory(messenger, "async")
    assert transport.acknowledged == []
    assert transport.rejected == []
    assert transport.message_count() == 1  # still reserved: it comes back after the timeout


# -- events --------------------------------------------------------------------------------------


class EventRecorder:
    """A plugin recording every worker event."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @hookimpl
    def messenger_worker_started(self, worker: Any) -> None:
        self.events.append(("started",))

    @hookimpl
    def messenger_message_received(self, envelope: Envelope, transport_name: str) -> None:
        self.events.append(("received", envelope.message.order_id, transport_name))

    @hookimpl
    def messenger_message_handled(self, envelope: Envelope, transport_name: str) -> None:
        self.events.append(("handled", envelope.message.order_id, transport_name))

    @hookimpl
    def messenger_message_failed(
        self, envelope: Envelope, transport_name: str, error: BaseException, will_retry: bool
    ) -> None:
        self.events.append(("failed", envelope.message.order_id, type(error).__name__, will_retry))

    @hookimpl
    def messenger_message_retried(
        self, envelope: Envelope, transport_name: str, retry_count: int
    ) -> None:
        self.events.append(("retried", envelope.message.order_id, retry_count))

    @hookimpl
    def messenger_worker_idle(self, worker: Any) -> None:
        self.events.append(("idle",))
        worker.stop("idle")

    @hookimpl
    def messenger_worker_stopped(self, worker: Any) -> None:
        self.events.append(("stopped", worker.stats.stop_reason))


def test_worker_events_reach_plugins() -> None:
    recorder = EventRecorder()
    messenger = make_messenger(
        {
            "async": {"dsn": "memory://", "retry_strategy": {**FAST_RETRY, "max_retries": 1}},
            "failed": "memory://",
        },
        plugins=[recorder],
    )
    attempts: dict[int, int] = {}

    @messenger.handler
    def place(message: PlaceOrder) -> str:
        attempts[message.order_id] = attempts.get(message.order_id, 0) + 1
        if message.order_id == 2 and attempts[2] == 1:
            raise ConnectionError("once")
        if message.order_id == 3:
            raise UnrecoverableMessageError("never")
        return "ok"

    for order_id in (1, 2, 3):
        messenger.bus.dispatch(PlaceOrder(order_id))
    run(messenger.worker(["async"]))

    assert recorder.events == [
        ("started",),
        ("received", 1, "async"),
        ("handled", 1, "async"),
        ("received", 2, "async"),
        ("failed", 2, "HandlerFailedError", True),
        ("retried", 2, 1),
        ("received", 3, "async"),
        ("failed", 3, "HandlerFailedError", False),
        ("received", 2, "async"),
        ("handled", 2, "async"),
        ("idle",),
        ("stopped", "idle"),
    ]


def test_the_handled_event_carries_the_handlers_results() -> None:
    results: list[Any] = []

    class Results:
        @hookimpl
        def messenger_message_handled(self, envelope: Envelope) -> None:
            results.extend(s.result for s in envelope.all(HandledStamp))

    messenger = make_messenger()
    messenger.hooks.register(Results())  # attached programmatically, after construction
    messenger.handler(lambda m: m.order_id * 10, handles=PlaceOrder, name="times-ten")
    messenger.bus.dispatch(PlaceOrder(4))

    run(messenger.worker(["async"]), limit=1)

    assert results == [40]


def test_on_message_is_called_after_every_message() -> None:
    messenger = make_messenger()
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    for order_id in range(3):
        messenger.bus.dispatch(PlaceOrder(order_id))
    worker = messenger.worker(["async"])
    seen: list[int] = []
    worker.on_message = lambda w: seen.append(w.stats.handled)

    run(worker, limit=3)

    assert seen == [1, 2, 3]


# -- keepalive -----------------------------------------------------------------------------------


class CountingTransport(MemoryTransport):
    """A memory transport that records keepalive calls."""

    def __init__(self, serializer: Serializer) -> None:
        super().__init__(serializer)
        self.keepalives: list[tuple[Any, float | None]] = []

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        self.keepalives.append((envelope.message, seconds))
        super().keepalive(envelope, seconds)


class CountingFactory:
    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> CountingTransport:
        return CountingTransport(serializer)


def test_keepalive_renews_the_reservation_while_a_handler_runs_long() -> None:
    messenger = make_messenger(
        {"async": "counting://", "failed": "memory://"},
        transports={"counting": CountingFactory()},
    )
    transport = messenger.get_transport("async")
    assert isinstance(transport, CountingTransport)

    @messenger.handler
    def slow(message: PlaceOrder) -> None:
        deadline = time.monotonic() + 20
        while len(transport.keepalives) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)

    messenger.bus.dispatch(PlaceOrder(1))
    run(messenger.worker(["async"], keepalive_interval=0.02), limit=1)

    assert len(transport.keepalives) >= 2
    assert all(message == PlaceOrder(1) for message, _ in transport.keepalives)
    assert all(seconds is not None and seconds > 0 for _, seconds in transport.keepalives)
    assert len(transport.acknowledged) == 1


def test_without_a_keepalive_interval_there_is_no_keepalive() -> None:
    messenger = make_messenger(
        {"async": "counting://", "failed": "memory://"},
        transports={"counting": CountingFactory()},
    )
    transport = messenger.get_transport("async")
    assert isinstance(transport, CountingTransport)
    messenger.handler(lambda m: time.sleep(0.05), handles=PlaceOrder, name="slow")
    messenger.bus.dispatch(PlaceOrder(1))

    run(messenger.worker(["async"]), limit=1)

    assert transport.keepalives == []


def test_a_worker_run_again_keeps_its_messages_alive_again() -> None:
    # The first run stops its keepalive thread; the second must start a new one.
    messenger = make_messenger(
        {"async": "counting://", "failed": "memory://"},
        transports={"counting": CountingFactory()},
    )
    transport = messenger.get_transport("async")
    assert isinstance(transport, CountingTransport)

    @messenger.handler
    def slow(message: PlaceOrder) -> None:
        deadline = time.monotonic() + 20
        seen = len(transport.keepalives)
        while len(transport.keepalives) < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.005)

    worker = messenger.worker(["async"], keepalive_interval=0.02)
    messenger.bus.dispatch(PlaceOrder(1))
    run(worker, limit=1)
    first = len(transport.keepalives)
    messenger.bus.dispatch(PlaceOrder(2))
    run(worker, limit=1)

    assert first >= 2
    assert [m for m, _ in transport.keepalives[first:]].count(PlaceOrder(2)) >= 2
    assert len(transport.acknowledged) == 2


# -- what the worker says ----------------------------------------------------------------------


def worker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "messenger.worker"]


def test_the_start_line_names_transports_buses_handlers_and_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger, _ = two_buses()
    messenger.handler(lambda m: None, handles=Refund, name="everywhere")  # on every bus
    messenger.add_transport("high", MemoryTransport(memory(messenger, "async").serializer))

    with caplog.at_level(logging.INFO, logger="messenger.worker"):
        run(messenger.worker(["high", "async"]), limit=1, failure_limit=2, time_limit=0.05)
        run(messenger.worker(["async"], bus=EVENTS, keepalive_interval=5), time_limit=0.05)

    first, second = (line for line in worker_lines(caplog) if line.startswith("worker consuming"))
    assert first == (
        "worker consuming high, async (in priority order); buses "
        f"{DEFAULT_BUS} (2 handlers), {COMMANDS} (2 handlers), {EVENTS} (2 handlers); "
        "limits: 1 message, 2 failures, 0.05s"
    )
    assert second == (
        f"worker consuming async; bus {EVENTS} (2 handlers) for every message (--bus); "
        "limits: 0.05s; keepalive every 5s"
    )


def test_the_start_line_says_when_no_limit_is_set() -> None:
    limits = WorkerLimits()
    assert limits.describe() == "none"
    assert WorkerLimits(memory_limit=parse_memory_limit("128M")).describe() == "memory 128M"
    assert WorkerLimits(memory_limit=1000).describe() == "memory 1000 bytes"


def test_the_stop_line_tells_handled_retried_parked_and_rejected_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger = make_messenger(
        {
            "async": {"dsn": "memory://", "retry_strategy": {**FAST_RETRY, "max_retries": 1}},
            "failed": "memory://",
        }
    )

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        if message.order_id == 0:
            raise ValueError("no stock")

    for order_id in (0, 1, 2):
        messenger.bus.dispatch(PlaceOrder(order_id))

    with caplog.at_level(logging.INFO, logger="messenger.worker"):
        # 1 and 2 handled; 0 fails, is retried once, fails again and is parked.
        stats = run(messenger.worker(["async"]), limit=4)

    assert (stats.received, stats.handled, stats.failed) == (4, 2, 2)
    assert (stats.retried, stats.parked, stats.rejected, stats.unsettled) == (1, 1, 0, 0)
    lines = worker_lines(caplog)
    assert lines[-1] == (
        "worker stopped (message limit of 4 reached): 2 handled, 1 retried, 1 parked, 0 rejected"
    )
    # Each per-message line names the message, its id on the transport and the transport.
    [retry] = [line for line in lines if "retry 1" in line]
    assert re.match(r"PlaceOrder \(id \w+\) from async failed, retry 1: .*no stock", retry)
    [parked] = [line for line in lines if "for good" in line]
    assert re.match(r"PlaceOrder \(id \w+\) from async failed for good and was stored", parked)


def test_a_message_failed_for_good_without_failure_transport_counts_as_rejected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger = Messenger(
        {"transports": {"async": {"dsn": "memory://", "retry_strategy": FAST_RETRY}}},
        autoload=False,
    )
    messenger.route(PlaceOrder, "async")

    @messenger.handler
    def place(message: PlaceOrder) -> None:
        raise UnrecoverableMessageError("cancelled")

    messenger.bus.dispatch(PlaceOrder(1))
    with caplog.at_level(logging.INFO, logger="messenger.worker"):
        stats = run(messenger.worker(["async"]), limit=1)

    assert (stats.failed, stats.retried, stats.parked, stats.rejected) == (1, 0, 0, 1)
    lines = worker_lines(caplog)
    assert re.match(r"PlaceOrder \(id \w+\) from async failed for good and no failure", lines[1])
    assert lines[-1].endswith(": 0 handled, 0 retried, 0 parked, 1 rejected")


def test_the_summary_counts_failures_left_on_the_transport() -> None:
    stats = WorkerStats(received=9, handled=3, failed=6, retried=2, parked=1, rejected=1)

    assert stats.unsettled == 2
    assert stats.summary() == (
        "3 handled, 2 retried, 1 parked, 1 rejected, 2 left on the transport for later"
    )


def test_messages_are_described_with_their_transport_id() -> None:
    plain = Envelope(PlaceOrder(1), [])
    with_id = plain.with_(TransportMessageIdStamp(id="1700000000000-0"))
    undecodable = Envelope(
        UndecodableMessage(body=b"{", headers={"type": "shop.PlaceOrder"}, reason="bad JSON"),
        [TransportMessageIdStamp(id="7")],
    )

    assert describe_message(plain) == "PlaceOrder"
    assert describe_message(with_id) == "PlaceOrder (id 1700000000000-0)"
    assert describe_message(undecodable) == "undecodable message of type shop.PlaceOrder (id 7)"


class FailingKeepaliveTransport(MemoryTransport):
    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        raise ConnectionError("the database went away")


class FailingKeepaliveFactory:
    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> FailingKeepaliveTransport:
        return FailingKeepaliveTransport(serializer)


def test_a_failed_keepalive_names_the_message_its_id_and_its_transport(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger = make_messenger(
        {"async": "failing://", "failed": "memory://"},
        transports={"failing": FailingKeepaliveFactory()},
    )

    @messenger.handler
    def slow(message: PlaceOrder) -> None:
        deadline = time.monotonic() + 20
        while not any("keepalive for" in line for line in worker_lines(caplog)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)

    messenger.bus.dispatch(PlaceOrder(1))
    with caplog.at_level(logging.INFO, logger="messenger.worker"):
        run(messenger.worker(["async"], keepalive_interval=0.02), limit=1)

    [line, *_] = [line for line in worker_lines(caplog) if "keepalive for" in line]
    assert re.match(
        r"keepalive for PlaceOrder \(id \w+\) from async failed: the database went away", line
    )


def test_the_logging_middleware_names_a_received_message_with_its_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger = make_messenger(
        {"async": {"dsn": "memory://", "retry_strategy": FAST_RETRY}, "failed": "memory://"},
        buses={DEFAULT_BUS: {"middleware": ["logging"]}},
    )
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    messenger.bus.dispatch(PlaceOrder(1))

    with caplog.at_level(logging.DEBUG, logger="messenger.bus"):
        run(messenger.worker(["async"]), limit=1)

    lines = [r.getMessage() for r in caplog.records if r.name == "messenger.bus"]
    assert any(
        re.match(rf"bus {DEFAULT_BUS}: PlaceOrder \(id \w+\) from transport 'async' handled", x)
        for x in lines
    ), lines
