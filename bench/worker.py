"""Benchmark: messages per second a worker consumes and acknowledges from ``memory://``.

100,000 messages are queued first (not timed); then a worker with one trivial handler consumes
and acknowledges them all (timed). Printed beside the bus dispatch figure measured in the same
run (the default stack to one handler, as ``bench/bus_dispatch.py`` does), so the ratio shows
what the worker adds per message: receiving, stamping, settling, limits, events.
Run: ``python bench/worker.py`` (``--profile`` prints where the worker's time goes).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from messenger_core import BusNameStamp, Envelope, Messenger
from messenger_core.stop_signal import FileStopSignal
from messenger_core.transports.memory import MemoryTransport

TARGET = 100_000
"""Messages per second the worker should reach at least (issue 4)."""


@attrs.frozen
class OrderPlaced:
    order_id: int
    customer: str
    total_cents: int


def _median_rate(run: Callable[[int], float], count: int, repeats: int) -> float:
    """``run(count)`` returns the seconds it took; the median rate of ``repeats`` runs."""
    return statistics.median(count / run(count) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5, help="median of this many runs")
    parser.add_argument("--profile", action="store_true", help="profile one worker run")
    args = parser.parse_args()

    handled = 0

    def on_order_placed(message: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    messenger = Messenger({"transports": {"async": "memory://"}}, autoload=False)
    messenger.handler(on_order_placed)
    bus = messenger.bus
    transport = messenger.get_transport("async")
    assert isinstance(transport, MemoryTransport)
    message = OrderPlaced(order_id=1, customer="ada", total_cents=4200)
    # What a dispatch routed to the transport stores: the message and its bus name.
    queued = Envelope(message, [BusNameStamp(bus_name=bus.name)])
    # A stop-signal file of its own: a `messenger stop-workers` elsewhere must not end a run.
    stop_file = Path(tempfile.mkdtemp(prefix="messenger-bench-")) / "stop-workers"

    def fill(count: int) -> None:
        transport.reset()
        transport.send_batch([queued] * count)

    def consume(count: int) -> float:
        fill(count)
        worker = messenger.worker(["async"], stop_signal=FileStopSignal(stop_file))
        started = time.perf_counter()
        stats = worker.run(limit=count, sleep=0, handle_signals=False)
        elapsed = time.perf_counter() - started
        assert stats.handled == count, stats
        assert transport.message_count() == 0  # all acknowledged (the records are bounded)
        return elapsed

    def dispatch(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            bus.dispatch(message)
        return time.perf_counter() - started

    consume(10_000)  # warm the caches and the handler lookup
    dispatch(10_000)
    if args.profile:
        fill(args.messages)
        worker = messenger.worker(["async"], stop_signal=FileStopSignal(stop_file))
        profile = cProfile.Profile()
        profile.runcall(worker.run, limit=args.messages, sleep=0, handle_signals=False)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return

    worker_rate = _median_rate(consume, args.messages, args.repeats)
    bus_rate = _median_rate(dispatch, args.messages, args.repeats)
    print(f"worker, memory://, consume + ack, 1 handler : {worker_rate:>12,.0f} messages/s")
    print(f"bus.dispatch, default stack, 1 handler      : {bus_rate:>12,.0f} dispatches/s")
    print(f"ratio worker / bus                          : {worker_rate / bus_rate:>12.3f}")
    print(f"per message: worker {1e6 / worker_rate:.2f} us, bus {1e6 / bus_rate:.2f} us")
    verdict = "meets" if worker_rate >= TARGET else "MISSES"
    print(f"target {TARGET:,} messages/s: {verdict}")


if __name__ == "__main__":
    main()
