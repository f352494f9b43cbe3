"""Benchmark: dispatches per second through the default bus to one handler.

Prints the figure for the full default middleware stack and, measured in the same run, for
calling the handler directly, and their ratio; then the same bus built without the speed-ups of
``messenger_core._fast_path`` (what they buy). Run: ``python bench/bus_dispatch.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import attrs

from messenger_core import MessageBus, Messenger
from messenger_core._fast_path import general_path


@attrs.frozen
class OrderPlaced:
    order_id: int
    customer: str
    total_cents: int


def _rate(run: Callable[[int], None], count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(count)
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5, help="median of this many runs")
    args = parser.parse_args()

    handled = 0

    def on_order_placed(message: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    messenger = Messenger(autoload=False)
    messenger.handler(on_order_placed)
    bus = messenger.bus
    message = OrderPlaced(order_id=1, customer="ada", total_cents=4200)

    def through_bus(count: int) -> None:
        dispatch = bus.dispatch
        for _ in range(count):
            dispatch(message)

    with general_path():
        general_bus = MessageBus(bus.name, bus.middleware)

    def through_general_bus(count: int) -> None:
        dispatch = general_bus.dispatch
        with general_path():  # its middleware build their steps as they are called
            for _ in range(count):
                dispatch(message)

    def direct(count: int) -> None:
        for _ in range(count):
            on_order_placed(message)

    through_bus(10_000)  # warm the caches and the handler lookup
    bus_rate = _rate(through_bus, args.messages, args.repeats)
    direct_rate = _rate(direct, args.messages, args.repeats)
    general_count = max(1, args.messages // 5)  # about five times slower
    general_rate = _rate(through_general_bus, general_count, args.repeats)
    assert handled >= args.messages * args.repeats * 2
    print(f"bus.dispatch, default stack, 1 handler : {bus_rate:>12,.0f} dispatches/s")
    print(f"handler called directly                 : {direct_rate:>12,.0f} calls/s")
    print(f"ratio bus / direct                      : {bus_rate / direct_rate:>12.3f}")
    print(f"the same bus without the fast path      : {general_rate:>12,.0f} dispatches/s")
    print(f"ratio fast / general path               : {bus_rate / general_rate:>12.3f}")


if __name__ == "__main__":
    main()
