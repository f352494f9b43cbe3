"""A retry started on one side continues on the other: the retry count carries over.

The first worker fails some messages once and stops after its first attempts (their retries
wait 3 s); the second worker gets those retries, fails them again while their retry count is
below 2, and handles them on retry 2.
"""

from __future__ import annotations

from collections import Counter

import pytest
from interop_support import (
    AMQP_VARIANTS,
    BACKENDS,
    Interop,
    check_handled,
    check_symfony_stamps_only,
)

pytestmark = pytest.mark.usefixtures("symfony_serializer")

N = 20
FIRST_DELAY = 3000
# RabbitMQ with a topic exchange and routing keys, and with a quorum queue, too.
WITH_AMQP_VARIANTS = pytest.mark.parametrize("backend", [*BACKENDS, *AMQP_VARIANTS], indirect=True)


def _attempts(interop: Interop, order_id: str) -> list[tuple[str, str, int]]:
    return [
        (r["side"], r["outcome"], r["retryCount"])
        for r in interop.records()
        if r["orderId"] == order_id and r["outcome"] != "audited"
    ]


@WITH_AMQP_VARIANTS
def test_a_python_retry_is_read_by_php(interop: Interop) -> None:
    expected = interop.python_dispatch("py", N)
    doomed = [f"py-{i}" for i in range(0, N, 4)]
    first = interop.python_settings(max_retries=3, delay=FIRST_DELAY, fail=doomed)
    interop.python_worker(first, "async", "--limit", str(N)).finish()
    if interop.backend.amqp:  # Symfony's retry queue, back to the queue they failed in
        retries = {interop.backend.retry_queue(FIRST_DELAY): len(doomed)}
        assert interop.backend.amqp_ready() == retries
    headers = interop.backend.raw_headers()
    assert len(headers) == len(doomed)
    check_symfony_stamps_only(headers)
    second = interop.php_config(max_retries=3, fail=doomed, below_retry=2)
    interop.php_worker(second, "--limit", str(2 * len(doomed))).finish()

    for order_id in doomed:
        assert _attempts(interop, order_id) == [
            ("python", "failed", 0),
            ("php", "failed", 1),
            ("php", "handled", 2),
        ]
    # Symfony writes times as RFC 3339 without fractions: PHP's retry drops the microseconds.
    check_handled(interop.records(), expected, whole_seconds=doomed)


@WITH_AMQP_VARIANTS
def test_a_php_retry_is_read_by_python(interop: Interop) -> None:
    expected = interop.php_produce("php", N)
    doomed = [f"php-{i}" for i in range(0, N, 4)]
    first = interop.php_config(max_retries=3, delay=FIRST_DELAY, fail=doomed)
    interop.php_worker(first, "--limit", str(N)).finish()
    if interop.backend.amqp:
        retries = {interop.backend.retry_queue(FIRST_DELAY): len(doomed)}
        assert interop.backend.amqp_ready() == retries
    second = interop.python_settings(max_retries=3, fail=doomed, below_retry=2)
    interop.python_worker(second, "async", "--limit", str(2 * len(doomed))).finish()

    for order_id in doomed:
        assert _attempts(interop, order_id) == [
            ("php", "failed", 0),
            ("python", "failed", 1),
            ("python", "handled", 2),
        ]
    check_handled(interop.records(), expected)


def test_a_handler_that_succeeded_is_skipped_after_a_retry_through_php(interop: Interop) -> None:
    # Python's second handler succeeds on the first attempt; the retry goes through a PHP
    # worker (Symfony keeps the HandledStamp on its own retry) and back to Python, which must
    # not run that handler again.
    expected = interop.python_dispatch("py", 10)
    doomed = ["py-1", "py-4", "py-8"]
    settings = interop.python_settings(
        max_retries=3, delay=FIRST_DELAY, fail=doomed, below_retry=2, audit=True
    )
    interop.python_worker(settings, "async", "--limit", "10").finish()
    headers = interop.backend.raw_headers()
    assert len(headers) == len(doomed)
    check_symfony_stamps_only(headers)
    handled = "X-Message-Stamp-Symfony\\Component\\Messenger\\Stamp\\HandledStamp"
    assert all(handled in h for h in headers), headers
    php = interop.php_config(max_retries=3, delay=FIRST_DELAY, fail=doomed, below_retry=2)
    interop.php_worker(php, "--limit", str(len(doomed))).finish()
    interop.python_worker(settings, "async", "--limit", str(len(doomed))).finish()

    for order_id in doomed:
        assert _attempts(interop, order_id) == [
            ("python", "failed", 0),
            ("php", "failed", 1),
            ("python", "handled", 2),
        ]
    audits = Counter(r["orderId"] for r in interop.records() if r["outcome"] == "audited")
    assert audits == Counter(expected.keys()), "the audit handler ran once per message"
    check_handled(interop.records(), expected, whole_seconds=doomed)


def test_a_stamp_of_the_php_app_s_own_survives_a_python_retry(interop: Interop) -> None:
    expected = interop.php_produce("php", 10, trace=True)
    doomed = ["php-3", "php-6"]
    settings = interop.python_settings(max_retries=3, delay=FIRST_DELAY, fail=doomed, below_retry=1)
    interop.python_worker(settings, "async", "--limit", "10").finish()
    interop.php_worker(interop.php_config(), "--limit", str(len(doomed))).finish()

    records = check_handled(interop.records(), expected)
    for record in records:
        if record["side"] == "php":
            assert record["retryCount"] == 1, record
            assert record["traceId"] == f"trace-{record['orderId']}", record
    assert {r["orderId"] for r in records if r["side"] == "php"} == set(doomed)
