"""Messages both ways between Symfony Messenger 5.4 and this project, with and without delays:
each message handled exactly once, with the field values it was sent with."""

from __future__ import annotations

import time

import pytest
from interop_support import (
    AMQP_VARIANTS,
    BACKENDS,
    Interop,
    check_handled,
    check_symfony_stamps_only,
)

pytestmark = pytest.mark.usefixtures("symfony_serializer")

N = 50
DELAY_MS = 2000
EARLIEST = 1.0
"""Seconds a 2 s delay holds a message back at least: Doctrine's whole-second columns cut a
delay by up to a second (PHP truncates ``available_at``), Redis keeps milliseconds."""


# Both phpredis forms of the Redis entry, Symfony's default and its option serializer=0;
# RabbitMQ with a topic exchange and routing keys, and with a quorum queue, too.
ALL_BACKENDS = pytest.mark.parametrize(
    "backend", ["redis-json", *BACKENDS, *AMQP_VARIANTS], indirect=True
)
WITH_AMQP_VARIANTS = pytest.mark.parametrize("backend", [*BACKENDS, *AMQP_VARIANTS], indirect=True)


@ALL_BACKENDS
def test_php_to_python(interop: Interop) -> None:
    expected = interop.php_produce("php", N)
    worker = interop.python_worker(interop.python_settings(), "async", "--limit", str(N))
    worker.finish()
    check_handled(interop.records(), expected, side="python")
    assert interop.backend.waiting() == 0


@ALL_BACKENDS
def test_python_to_php(interop: Interop) -> None:
    expected = interop.python_dispatch("py", N)
    headers = interop.backend.raw_headers()
    assert len(headers) == N
    check_symfony_stamps_only(headers)
    worker = interop.php_worker(interop.php_config(), "--limit", str(N))
    worker.finish()
    records = check_handled(interop.records(), expected, side="php")
    assert {r["busName"] for r in records} == {"messenger.bus.default"}
    assert interop.backend.waiting() == 0


@WITH_AMQP_VARIANTS
def test_a_delay_from_php_is_honoured_by_python(interop: Interop) -> None:
    worker = interop.python_worker(interop.python_settings(), "async", "--limit", "10")
    time.sleep(1)  # the worker is up and polling: an ignored delay would show
    sent = time.time()
    expected = interop.php_produce("php", 10, delay_ms=DELAY_MS)
    if interop.backend.amqp:  # in Symfony's delay queue, which dead-letters to the exchange
        assert interop.backend.amqp_ready() == {interop.backend.delay_queue(DELAY_MS): 10}
    worker.finish()
    records = check_handled(interop.records(), expected, side="python")
    early = [r for r in records if r["at"] < sent + EARLIEST]
    assert not early, f"handled before the delay was over: {early}"


@WITH_AMQP_VARIANTS
def test_a_delay_from_python_is_honoured_by_php(interop: Interop) -> None:
    worker = interop.php_worker(interop.php_config(), "--limit", "10")
    time.sleep(0.5)
    sent = time.time()
    expected = interop.python_dispatch("py", 10, delay_ms=DELAY_MS)
    if interop.backend.amqp:
        assert interop.backend.amqp_ready() == {interop.backend.delay_queue(DELAY_MS): 10}
    worker.finish()
    records = check_handled(interop.records(), expected, side="php")
    early = [r for r in records if r["at"] < sent + EARLIEST]
    assert not early, f"handled before the delay was over: {early}"


@pytest.mark.parametrize("backend", ["amqp", *AMQP_VARIANTS], indirect=True)
def test_both_sides_delay_through_the_same_amqp_queue(interop: Interop) -> None:
    # Each side declares the delay queue before publishing into it: RabbitMQ refuses a
    # declaration whose arguments differ from the queue's (PRECONDITION_FAILED).
    expected = interop.php_produce("php", 5, delay_ms=DELAY_MS)
    expected |= interop.python_dispatch("py", 5, delay_ms=DELAY_MS)
    expected |= interop.php_produce("php", 5, start=5, delay_ms=DELAY_MS)
    assert interop.backend.amqp_ready() == {interop.backend.delay_queue(DELAY_MS): 15}
    interop.python_worker(interop.python_settings(), "async", "--limit", "15").finish()
    check_handled(interop.records(), expected, side="python")
    assert interop.backend.waiting() == 0
