"""Real processes: a consumer killed with ``kill -9``, and a Redis server restarted under a
consumer. Marked slow: they take a few seconds each."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_test_support import REDIS_DSN, RedisServer, Stream, order, receive

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


# -- kill -9 ---------------------------------------------------------------------------------------
def test_messages_of_a_consumer_killed_mid_message_are_handled_by_another(stream: Stream) -> None:
    count, acked_by_victim = 20, 5
    sender = stream.transport()
    sender.setup()
    sender.send_batch([order(number) for number in range(count)])

    victim = subprocess.Popen(
        [sys.executable, str(HERE / "redis_consumer_process.py"), REDIS_DSN, stream.name,
         str(acked_by_victim)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: list[list[str]] = []
    try:
        assert victim.stdout is not None
        for line in victim.stdout:
            lines.append(line.split())
            if line.startswith("holding"):
                break
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    acked = {int(number) for word, number in lines if word == "acked"}
    [held] = [int(number) for word, number in lines if word == "holding"]
    assert len(acked) == acked_by_victim

    survivor = stream.transport(redeliver_timeout=1, claim_interval=50, fetch_size=10)
    handled: list[int] = []
    deadline = time.monotonic() + 10
    while len(handled) < count - acked_by_victim and time.monotonic() < deadline:
        for envelope in survivor.get():
            handled.append(envelope.message.id)
            survivor.ack(envelope)
    assert held in handled, "the message the killed consumer held came back"
    assert not acked & set(handled), "a message acknowledged before the kill came back"
    assert [n for n, times in Counter(handled).items() if times > 1] == []
    assert sorted(acked | set(handled)) == list(range(count)), "a message was lost"
    assert receive(survivor, 1, timeout=1.5) == [], "something came back after its ack"


# -- a Redis server of the test's own, restarted ---------------------------------------------
def test_a_consumer_carries_on_across_a_redis_restart(redis_server: RedisServer) -> None:
    stream = Stream("restarted", base_dsn=redis_server.dsn)
    before, after = 200, 200
    sender = stream.transport(reconnect_timeout=20)
    sender.send_batch([order(number) for number in range(before)])

    received: list[int] = []
    progress = threading.Condition()
    stop = threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:
        consumer = stream.transport(fetch_size=10, reconnect_timeout=1)
        try:
            while not stop.is_set():
                for envelope in consumer.get():
                    consumer.ack(envelope)
                    with progress:
                        received.append(envelope.message.id)
                        progress.notify_all()
                time.sleep(0.001)  # a slow handler: the restart hits mid-stream
        except BaseException as error:
            errors.append(error)
        finally:
            consumer.close()

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        with progress:
            assert progress.wait_for(lambda: len(received) >= 50, timeout=10)
        redis_server.stop()
        time.sleep(1.5)  # longer than the consumer's reconnect_timeout: get() gives up once
        redis_server.start()
        sender.send_batch([order(number) for number in range(before, before + after)])
        with progress:
            progress.wait_for(lambda: len(received) >= before + after, timeout=20)
    finally:
        stop.set()
        thread.join(30)
        sender.close()
    assert not errors, errors
    duplicates = [number for number, times in Counter(received).items() if times > 1]
    assert not duplicates, f"handled twice (an acknowledgement was lost): {duplicates}"
    assert sorted(received) == list(range(before + after)), "a message was lost"
    client: Any = redis.Redis(port=redis_server.port)
    assert client.xlen("restarted") == 0
    assert client.xpending("restarted", "symfony")["pending"] == 0
    client.close()
