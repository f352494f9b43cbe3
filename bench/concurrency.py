"""Benchmark: ``consume --processes N`` / ``--concurrency M``, and ``dispatch_async``.

1. **Processes**: messages per second that ``messenger consume jobs --processes N`` (N = 1, 2,
   4) consumes from Redis and from PostgreSQL, with a CPU-bound handler (about a millisecond
   of pure Python) and an I/O-bound one (waits 5 ms); plus the I/O-bound one, sync and async,
   in one process with ``--concurrency 16``. Queued first (not timed); timed from the first
   message consumed to the queue being empty, so process start-up is left out.
2. **Concurrency in one process** (``memory://``): handlers waiting 10 ms, sync and async,
   with ``concurrency`` 1 and 16: the ratio is what the issue asks to be at least 10.
3. **Async dispatch**: ``bus.dispatch`` in a loop against ``await bus.dispatch_async`` one at
   a time and 64 at once: routed to Redis and to PostgreSQL, on the native path (their async
   clients on the loop) and on the thread path (the same bus with the ``logging`` middleware,
   which keeps ``dispatch_async`` in a dispatch thread), and to an in-process handler; and to
   RabbitMQ (pika's asyncio adapter natively).

Figures are messages per second, the median of ``--repeats`` runs. Services come from
``MESSENGER_TEST_REDIS_DSN``, ``MESSENGER_TEST_POSTGRESQL_DSN`` and ``MESSENGER_TEST_AMQP_DSN``
(local defaults).
Run: ``python bench/concurrency.py`` (``--only processes|concurrency|dispatch``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from messenger_core import MessageBus, Messenger
from messenger_core.middleware import MiddlewareContext
from messenger_core.middleware.logging import LoggingMiddleware
from messenger_core.middleware.stack import build_stack
from messenger_core.transports.memory import MemoryTransport

HERE = Path(__file__).resolve().parent
REDIS_DSN = os.environ.get("MESSENGER_TEST_REDIS_DSN") or "redis://127.0.0.1:6379"
AMQP_DSN = (
    os.environ.get("MESSENGER_TEST_AMQP_DSN") or "amqp://guest:guest@127.0.0.1:5672/%2f"
).rstrip("/")
POSTGRESQL_DSN = (
    os.environ.get("MESSENGER_TEST_POSTGRESQL_DSN") or "postgresql://postgres@127.0.0.1:5432/test"
)


def median(runs: list[float]) -> float:
    return statistics.median(runs)


# -- 1. processes --------------------------------------------------------------------------------


class Queue:
    """One run's ``jobs`` queue (a fresh stream or table) and how many messages it has left."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        if backend == "redis":
            import redis  # noqa: PLC0415

            self.client: Any = redis.Redis.from_url(REDIS_DSN)
            self.dsn = f"{REDIS_DSN}?stream={self.name}&group=bench"
        else:
            import psycopg  # noqa: PLC0415

            self.client = psycopg.connect(POSTGRESQL_DSN, autocommit=True)
            self.dsn = f"{POSTGRESQL_DSN}?queue_name=default&table_name={self.name}"

    def left(self) -> int:
        if self.backend == "redis":
            return int(self.client.xlen(self.name))
        row = self.client.execute(f"SELECT count(*) FROM {self.name}").fetchone()
        return int(row[0])

    def drop(self) -> None:
        if self.backend == "redis":
            self.client.delete(self.name, f"{self.name}__queue")
        else:
            self.client.execute(f"DROP TABLE IF EXISTS {self.name}")
        self.client.close()


def consume_rate(
    backend: str, handler: str, processes: int, concurrency: int, count: int, root: Path
) -> float:
    """Messages per second of one ``consume`` run over ``count`` queued messages."""
    queue = Queue(backend)
    config = root / f"{queue.name}.toml"
    config.write_text(
        '[messenger]\napp = "_concurrency_app:messenger"\n'
        f'[messenger.transports.jobs]\ndsn = "{queue.dsn}"\n'
        '[messenger.routing]\n"_concurrency_app.Job" = "jobs"\n'
    )
    env = dict(
        os.environ,
        BENCH_CONFIG=str(config),
        BENCH_HANDLER=handler,
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        MESSENGER_STOP_SIGNAL_FILE=str(root / "stop-workers"),
    )
    try:
        fill = f"import _concurrency_app as a; a.fill({count}); a.messenger.close()"
        subprocess.run([sys.executable, "-c", fill], env=env, check=True, cwd=root)
        command = [sys.executable, "-m", "messenger_core", "-q", "--config", str(config)]
        command += ["consume", "jobs"]
        command += ["--processes", str(processes), "--concurrency", str(concurrency)]
        worker = subprocess.Popen([*command, "--sleep", "0.01"], env=env, cwd=root)
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + 600
        while True:
            left = queue.left()
            now = time.monotonic()
            if first is None and left < count:
                first = (now, left)
            if left == 0 or now > deadline or worker.poll() is not None:
                break
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
        assert first is not None, "no message was consumed"
        assert left == 0, "the run did not finish"
        return first[1] / max(now - first[0], 1e-6)
    finally:
        queue.drop()


def bench_processes(args: argparse.Namespace) -> None:
    print("1. consume --processes N (messages/s, median of runs; start-up not counted)")
    wanted = args.handlers.split(",")
    cases = [("cpu", 1, args.cpu_messages), ("io", 1, args.io_messages)]
    cases = [case for case in cases if case[0] in wanted]
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for backend in args.backends.split(","):
            for handler, concurrency, count in cases:
                # Interleaved (1, 2, 4, 1, 2, 4...): a machine whose load drifts during the
                # runs skews every N alike.
                runs: dict[int, list[float]] = {1: [], 2: [], 4: []}
                for _ in range(args.repeats):
                    for processes, rates_of in runs.items():
                        rates_of.append(
                            consume_rate(backend, handler, processes, concurrency, count, root)
                        )
                rates = {processes: median(rates_of) for processes, rates_of in runs.items()}
                label = f"{backend:<10} {handler:<8} handler"
                figures = "  ".join(f"N={p}: {rate:>7,.0f}" for p, rate in rates.items())
                print(f"  {label}  {figures}   (N=2/N=1: {rates[2] / rates[1]:.2f}x)")
            for handler in ("io", "io-async"):
                if "io" not in wanted:
                    continue
                one = median(
                    [
                        consume_rate(backend, handler, 1, 1, args.io_messages, root)
                        for _ in range(args.repeats)
                    ]
                )
                sixteen = median(
                    [
                        consume_rate(backend, handler, 1, 16, args.io_messages * 8, root)
                        for _ in range(args.repeats)
                    ]
                )
                print(
                    f"  {backend:<10} {handler:<8} handler  --concurrency 1: {one:>7,.0f}  "
                    f"--concurrency 16: {sixteen:>7,.0f}   ({sixteen / one:.1f}x)"
                )


# -- 2. concurrency in one process ---------------------------------------------------------------


@attrs.frozen
class Wait:
    n: int


def in_process_rate(kind: str, concurrency: int, count: int) -> float:
    messenger = Messenger({"transports": {"jobs": "memory://"}}, autoload=False)
    messenger.route(Wait, "jobs")
    if kind == "async":

        async def wait_async(message: Wait) -> None:
            await asyncio.sleep(0.01)

        messenger.handler(wait_async)
    else:

        def wait(message: Wait) -> None:
            time.sleep(0.01)

        messenger.handler(wait)
    for n in range(count):
        messenger.bus.dispatch(Wait(n))
    transport = messenger.get_transport("jobs")
    assert isinstance(transport, MemoryTransport)
    worker = messenger.worker(["jobs"], concurrency=concurrency)
    started = time.perf_counter()
    worker.run(limit=count, sleep=0.001, handle_signals=False)
    took = time.perf_counter() - started
    assert transport.message_count() == 0
    return count / took


def bench_concurrency(args: argparse.Namespace) -> None:
    print("2. --concurrency in one process, handlers waiting 10 ms (memory://, messages/s)")
    for kind in ("sync", "async"):
        one = median([in_process_rate(kind, 1, 100) for _ in range(args.repeats)])
        sixteen = median([in_process_rate(kind, 16, 1600) for _ in range(args.repeats)])
        print(
            f"  {kind:<6} concurrency 1: {one:>6,.0f}  concurrency 16: {sixteen:>6,.0f}"
            f"   ({sixteen / one:.1f}x; at least 10x asked)"
        )


# -- 3. async dispatch ---------------------------------------------------------------------------


@attrs.frozen
class Shipped:
    order_id: int


@attrs.frozen
class Stored:
    order_id: int


@attrs.frozen
class Queued:
    order_id: int


@attrs.frozen
class Handled:
    order_id: int


def dispatch_rates(bus: MessageBus, make: Callable[[int], Any], count: int) -> list[float]:
    started = time.perf_counter()
    for n in range(count):
        bus.dispatch(make(n))
    sync = count / (time.perf_counter() - started)

    async def one_at_a_time() -> float:
        started = time.perf_counter()
        for n in range(count):
            await bus.dispatch_async(make(n))
        return count / (time.perf_counter() - started)

    async def many_at_once(width: int = 64) -> float:
        started = time.perf_counter()
        for start in range(0, count, width):
            await asyncio.gather(
                *(bus.dispatch_async(make(n)) for n in range(start, min(start + width, count)))
            )
        return count / (time.perf_counter() - started)

    return [sync, asyncio.run(one_at_a_time()), asyncio.run(many_at_once())]


def thread_path_bus(messenger: Messenger) -> MessageBus:
    """The default bus with the ``logging`` middleware, which keeps ``dispatch_async`` on the
    thread path (it logs the send's outcome: see messenger_core.async_bus)."""
    name = messenger.config.default_bus
    context = MiddlewareContext(messenger=messenger, bus_name=name)
    return MessageBus(name, build_stack(context, [LoggingMiddleware(context)]))


def bench_dispatch(args: argparse.Namespace) -> None:
    print("3. dispatch against dispatch_async (messages/s)")
    print(f"  {'':<38} {'dispatch':>10} {'async, 1 at once':>17} {'async, 64 at once':>18}")
    stream = f"bench_{uuid.uuid4().hex[:10]}"
    table = f"bench_{uuid.uuid4().hex[:10]}"
    exchange = f"bench_{uuid.uuid4().hex[:10]}"
    messenger = Messenger(
        {
            "transports": {
                "redis": f"{REDIS_DSN}?stream={stream}",
                "postgresql": f"{POSTGRESQL_DSN}?table_name={table}",
                "rabbitmq": f"{AMQP_DSN}/{exchange}",
            }
        },
        autoload=True,
    )
    messenger.route(Shipped, "redis")
    messenger.route(Stored, "postgresql")
    messenger.route(Queued, "rabbitmq")

    def handled(message: Handled) -> None:
        """Does nothing: the dispatch itself is measured."""

    messenger.handler(handled)
    native, threaded = messenger.bus, thread_path_bus(messenger)
    try:
        for label, bus, make in (
            ("routed to Redis, native", native, Shipped),
            ("routed to Redis, thread path", threaded, Shipped),
            ("routed to PostgreSQL, native", native, Stored),
            ("routed to PostgreSQL, thread path", threaded, Stored),
            ("routed to RabbitMQ, native", native, Queued),
            ("routed to RabbitMQ, thread path", threaded, Queued),
            ("one in-process handler (thread path)", native, Handled),
        ):
            runs = [dispatch_rates(bus, make, args.dispatch_messages) for _ in range(args.repeats)]
            figures = [median([run[i] for run in runs]) for i in range(3)]
            print(f"  {label:<38} {figures[0]:>10,.0f} {figures[1]:>17,.0f} {figures[2]:>18,.0f}")
    finally:
        import redis  # noqa: PLC0415
        import sqlalchemy as sa  # noqa: PLC0415

        messenger.close()
        client = redis.Redis.from_url(REDIS_DSN)
        client.delete(stream, f"{stream}__queue")
        client.close()
        engine = sa.create_engine(POSTGRESQL_DSN.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            connection.exec_driver_sql(f'DROP FUNCTION IF EXISTS "notify_{table}"()')
        engine.dispose()
        import pika  # noqa: PLC0415

        amqp = pika.BlockingConnection(pika.URLParameters(AMQP_DSN))
        amqp.channel().queue_delete(exchange)
        amqp.channel().exchange_delete(exchange)
        amqp.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument("--cpu-messages", type=int, default=3000)
    parser.add_argument("--io-messages", type=int, default=1000)
    parser.add_argument("--dispatch-messages", type=int, default=5000)
    parser.add_argument("--only", choices=["processes", "concurrency", "dispatch"])
    parser.add_argument("--handlers", default="cpu,io", help="processes: cpu, io or both")
    parser.add_argument("--backends", default="redis,postgresql", help="processes: where")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, medians of {args.repeats} runs")
    if args.only in (None, "concurrency"):
        bench_concurrency(args)
    if args.only in (None, "dispatch"):
        bench_dispatch(args)
    if args.only in (None, "processes"):
        bench_processes(args)


if __name__ == "__main__":
    main()
