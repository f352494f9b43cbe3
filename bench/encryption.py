"""Benchmark of the encryption plugin: what encrypting a bus costs a dispatch-and-consume cycle.

    python bench/encryption.py [--backends sqlite,redis] [--messages 2000] [--runs 9]
                               [--size 1024]

For each backend and run, on fresh storage, three variants one after the other (their order
rotates from run to run, so that none always runs on a warm or a cold machine):

- **plain**: no plugin; messages dispatched on the default bus;
- **passthrough**: the plugin installed (every transport's serializer wrapped), messages
  dispatched on a bus it does not encrypt: what the wrapper costs everyone else;
- **encrypted**: messages dispatched on the encrypted bus (AES-256-GCM, symmetric mode).

Each variant dispatches ``--messages`` messages of about ``--size`` bytes (one by one, each
sent to the transport) and then the real worker (``messenger consume``'s loop, in this
process) receives, handles and acknowledges them all. Figures are messages per second for the
whole cycle (dispatch plus consume; ``messages / (dispatch time + consume time)``) and for
each half, the median of ``--runs`` runs; the overhead is ``1 - encrypted / plain``, of the
medians and, on the "paired" line, the median of each run's (and its extra CPU). The
last line is this process's CPU time per message (``time.process_time``), which a machine
busy with other work disturbs less than the rates: on a loaded machine, prefer many short
runs (``--messages 1000 --runs 15``) and read both.

Redis is the one named by ``MESSENGER_TEST_REDIS_DSN`` (default: the local one); SQLite is a
temporary file. The first line says which JSON library the core's serializer uses: orjson with
``messenger-core[fast]`` installed, else the standard library's (the defaults).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from messenger_encryption import EncryptionPlugin, SymmetricKeyRing
from messenger_encryption.keys import new_symmetric_key
from messenger_transport_redis import RedisTransportFactory
from messenger_transport_sql import SqlTransportFactory

from messenger_core import Messenger

REDIS_DSN = os.environ.get("MESSENGER_TEST_REDIS_DSN") or "redis://127.0.0.1:6379"
ENCRYPTED = "messenger.bus.encrypted"
VARIANTS = ("plain", "passthrough", "encrypted")


@attrs.frozen
class Payment:
    """A message of about ``--size`` bytes once encoded."""

    id: int
    details: str


@contextmanager
def storage(backend: str) -> Iterator[str]:
    """A DSN on fresh storage, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}?queue_name=bench"
        return
    import redis  # noqa: PLC0415

    stream = f"bench-encryption-{uuid.uuid4().hex[:12]}"
    try:
        yield f"{REDIS_DSN.rstrip('/')}/{stream}"
    finally:
        client = redis.Redis.from_url(REDIS_DSN)
        for key in client.scan_iter(f"{stream}*"):
            client.delete(key)
        client.close()


def cycle(backend: str, variant: str, count: int, size: int) -> tuple[float, float, float]:
    """Seconds to dispatch ``count`` messages, then to consume them, and the CPU seconds
    this process spent on both."""
    plugins: list[object] = []
    if variant != "plain":
        ring = SymmetricKeyRing([("bench", new_symmetric_key())])
        plugins.append(EncryptionPlugin({"buses": [ENCRYPTED]}, keyring=ring))
    bus_name = ENCRYPTED if variant == "encrypted" else "messenger.bus.default"
    handled = 0

    def on_payment(message: Payment) -> None:
        nonlocal handled
        handled += 1

    messages = [Payment(n, secrets.token_hex(size // 2)[:size]) for n in range(count)]
    with storage(backend) as dsn:
        config = {
            "transports": {"bench": dsn},
            "routing": {Payment: "bench"},
            "buses": {ENCRYPTED: {}},
        }
        factories = {"sqlite": SqlTransportFactory, "redis": RedisTransportFactory}
        with Messenger(config, autoload=False, plugins=plugins, transports=factories) as messenger:
            messenger.handler(on_payment, bus=bus_name, handles=Payment)
            bus = messenger.buses[bus_name]
            messenger.get_transport("bench")  # connected before the clock starts
            cpu = time.process_time()
            started = time.perf_counter()
            for message in messages:
                bus.dispatch(message)
            dispatched = time.perf_counter()
            messenger.worker(["bench"]).run(limit=count, sleep=0.001, handle_signals=False)
            consumed = time.perf_counter()
            cpu = time.process_time() - cpu
    assert handled == count, f"handled {handled} of {count}"
    return dispatched - started, consumed - dispatched, cpu


def one_run(backend: str, args: argparse.Namespace, shift: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    order = VARIANTS[shift % 3 :] + VARIANTS[: shift % 3]
    for variant in order:
        send, consume, cpu = cycle(backend, variant, args.messages, args.size)
        figures[f"{variant} cpu"] = cpu / args.messages * 1e6
        figures[f"{variant} cycle"] = args.messages / (send + consume)
        figures[f"{variant} dispatch"] = args.messages / send
        figures[f"{variant} consume"] = args.messages / consume
    return figures


def report(backend: str, runs: list[dict[str, float]]) -> None:
    median: Callable[[str], float] = lambda key: statistics.median(run[key] for run in runs)  # noqa: E731
    print(f"\n{backend}")
    print(f"  {'':10} {'plain':>9} {'passthrough':>12} {'encrypted':>10} {'overhead':>9}")
    for part in ("cycle", "dispatch", "consume"):
        plain, through, encrypted = (median(f"{v} {part}") for v in VARIANTS)
        overhead = 1 - encrypted / plain
        print(f"  {part:10} {plain:9,.0f} {through:12,.0f} {encrypted:10,.0f} {overhead:9.1%}")
    plain, through, encrypted = (median(f"{v} cpu") for v in VARIANTS)
    print(
        f"  {'cpu us/msg':10} {plain:9,.1f} {through:12,.1f} {encrypted:10,.1f} "
        f"{encrypted / plain - 1:+9.1%}  (this process's CPU per message, both halves)"
    )
    # Each run's variants ran one after the other: their ratio is disturbed less by a machine
    # whose load changes from run to run than the ratio of the medians above.
    paired = statistics.median(1 - run["encrypted cycle"] / run["plain cycle"] for run in runs)
    extra = statistics.median(run["encrypted cpu"] - run["plain cpu"] for run in runs)
    print(f"  paired: cycle overhead {paired:.1%}, CPU {extra:+.1f} us/msg (medians of each run's)")


def json_library() -> str:
    """The JSON library of the core's serializer (the ``messenger-core[fast]`` extra, or not)."""
    from messenger_core.serialization.json import JSON_BACKEND  # noqa: PLC0415

    return JSON_BACKEND


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--size", type=int, default=1024, help="bytes of each message's text")
    args = parser.parse_args(argv)
    print(
        f"dispatch then consume {args.messages} messages of {args.size} bytes; "
        f"median of {args.runs} runs, messages/s; overhead = 1 - encrypted/plain; "
        f"JSON: {json_library()}"
    )
    for backend in args.backends.split(","):
        runs: list[dict[str, Any]] = []
        for shift in range(args.runs):
            runs.append(one_run(backend, args, shift))
        report(backend, runs)


if __name__ == "__main__":
    main()
