"""A worker stopped with SIGTERM hands back the messages it fetched but did not handle.

With ``fetch_size`` above 1 (the default is 10) one receive reserves a batch of rows. A worker
stopping gracefully finishes the message in hand, acknowledges it, and releases the rest of
the batch: a new consumer gets them at once, not after ``redeliver_timeout`` (an hour by
default). Real processes, a real SIGTERM (issue 8, point 11).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import attrs
import pytest
from sql_test_support import Database
from sql_worker_support import PING, SLOW, WorkerWorld

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer

pytestmark = pytest.mark.slow

DEADLINE = 60.0


@attrs.frozen
class Ping:
    """The worker application's ``Ping``, as this process sends it."""

    id: str


@attrs.frozen
class Slow:
    """The worker application's ``Slow``."""

    id: str


def _serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Ping, PING)
    registry.register(Slow, SLOW)
    return JsonSerializer(registry)


def test_sigterm_releases_the_rest_of_a_fetched_batch_at_once(
    database: Database, tmp_path: Path
) -> None:
    world = WorkerWorld(database, tmp_path)  # the default options: a batch of 10
    producer = database.transport(_serializer(), queue_name="async")
    producer.send_batch(
        [Envelope(Slow("first"))] + [Envelope(Ping(f"p{number}")) for number in range(5)]
    )

    with world.start("consume", "async", "--sleep", "0.05", "--time-limit", "120") as worker:
        worker.wait_until(lambda: "started first" in world.events(), "the first message started")
        # The whole batch is reserved by the worker now: nobody else gets any of it.
        assert database.transport(_serializer(), queue_name="async").get() == []
        worker.signal(signal.SIGTERM)
        time.sleep(0.2)  # the signal is noted while the handler still runs
        world.release()
        assert worker.wait(DEADLINE) == 0, worker.output()

    assert world.events() == ["started first", "handled first"], worker.output()
    # A new consumer, with the default hour-long redeliver_timeout, gets the rest at once.
    consumer = database.transport(_serializer(), queue_name="async", fetch_size=10)
    received = consumer.get()
    assert sorted(envelope.message.id for envelope in received) == [f"p{n}" for n in range(5)]
    for envelope in received:
        consumer.ack(envelope)
    consumer.flush()
    assert database.execute("SELECT id FROM {table}") == []
