"""Real processes: a consumer killed with SIGKILL, several processes on one SQLite file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sql_test_support import Database, order

from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp

CONSUMER = Path(__file__).with_name("sql_consumer_process.py")


def _start(mode: str, database: Database, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CONSUMER), mode, str(database.dsn()), json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_consumer_s_message_comes_back(database: Database) -> None:
    producer = database.transport()
    sent = producer.send(order(42, "survives kill -9"))
    sent_id = sent.last(TransportMessageIdStamp)
    assert sent_id is not None

    consumer = _start("hold", database, redeliver_timeout=1)
    try:
        assert consumer.stdout is not None
        line = consumer.stdout.readline()
        assert line.strip() == f"holding {sent_id.id}", (
            consumer.stderr.read() if consumer.stderr else ""
        )
        survivor = database.transport(redeliver_timeout=1)
        assert survivor.get() == [], "the message is reserved while its consumer lives"
    finally:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()
    assert consumer.returncode == -signal.SIGKILL

    deadline = time.monotonic() + 10
    received: list[Envelope] = []
    while not received and time.monotonic() < deadline:
        received = survivor.get()
        time.sleep(0.05)
    assert [envelope.message.id for envelope in received] == [42]
    assert received[0].last(TransportMessageIdStamp) == sent_id
    survivor.ack(received[0])


@pytest.mark.slow
def test_processes_share_one_sqlite_file_without_loss_or_lock_errors(
    database_factory: Any,
) -> None:
    database: Database = database_factory("sqlite")
    producer = database.transport()
    count = 2000
    producer.send_batch([order(number) for number in range(count)])
    consumers = [_start("drain", database, fetch_size=fetch_size) for fetch_size in (1, 1, 5, 20)]
    for consumer in consumers:
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == "ready"
    for consumer in consumers:
        assert consumer.stdin is not None
        consumer.stdin.write("go\n")
        consumer.stdin.flush()
    # A producer keeps writing while they consume.
    for number in range(count, count + 100):
        producer.send(order(number))
    numbers: list[int] = []
    busy = 0
    for consumer in consumers:
        out, err = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, err
        assert "locked" not in err, err
        numbers.extend(int(line) for line in out.split())
        busy += bool(out.strip())
    assert sorted(numbers) == list(range(count + 100)), "lost or duplicated messages"
    assert producer.message_count() == 0
    assert busy >= 2, "the consumers did not run side by side"
