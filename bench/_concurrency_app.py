"""The application ``bench/concurrency.py`` runs in its worker processes.

Built from ``BENCH_CONFIG`` (a ``jobs`` transport); its one handler is chosen by
``BENCH_HANDLER``: ``cpu`` (pure Python work, about a millisecond), ``io`` (waits 5 ms, as a
call to another service would), ``io-async`` (the same, ``async def``), ``noop`` (nothing).
"""

from __future__ import annotations

import asyncio
import os
import time

import attrs

from messenger_core import Envelope, Messenger

KIND = os.environ.get("BENCH_HANDLER", "cpu")
CPU_ROUNDS = 20_000

messenger = Messenger.from_config(os.environ["BENCH_CONFIG"])


@attrs.frozen
class Job:
    id: int


def burn() -> int:
    total = 0
    for n in range(CPU_ROUNDS):
        total += n * n % 7
    return total


if KIND == "io-async":

    @messenger.handler
    async def on_job_async(message: Job) -> None:
        await asyncio.sleep(0.005)

elif KIND == "noop":

    @messenger.handler
    def on_job_noop(message: Job) -> None:
        """Nothing: what the worker and the transport cost alone."""

elif KIND == "io":

    @messenger.handler
    def on_job_io(message: Job) -> None:
        time.sleep(0.005)

else:

    @messenger.handler
    def on_job_cpu(message: Job) -> None:
        burn()


def fill(count: int, batch: int = 1000) -> None:
    """Queue jobs ``0 .. count - 1``."""
    transport = messenger.get_transport("jobs")
    for start in range(0, count, batch):
        transport.send_batch(  # type: ignore[attr-defined]
            [Envelope(Job(n)) for n in range(start, min(start + batch, count))]
        )
