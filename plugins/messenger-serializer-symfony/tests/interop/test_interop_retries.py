"""A retry started on one side continues on the other: the retry count carries over.

The first worker fails some messages once and stops after its first attempts (their retries
wait 3 s); the second worker gets those retries, fails them again while their retry count is
below 2, and handles them on retry 2.
"""

from __future__ import annotations

import pytest
from interop_support import Interop, check_handled

pytestmark = pytest.mark.usefixtures("symfony_serializer")

N = 20
FIRST_DELAY = 3000


def _attempts(interop: Interop, order_id: str) -> list[tuple[str, str, int]]:
    return [
        (r["side"], r["outcome"], r["retryCount"])
        for r in interop.records()
        if r["orderId"] == order_id
    ]


def test_a_python_retry_is_read_by_php(interop: Interop) -> None:
    expected = interop.python_dispatch("py", N)
    doomed = [f"py-{i}" for i in range(0, N, 4)]
    first = interop.python_settings(max_retries=3, delay=FIRST_DELAY, fail=doomed)
    interop.python_worker(first, "async", "--limit", str(N)).finish()
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


def test_a_php_retry_is_read_by_python(interop: Interop) -> None:
    expected = interop.php_produce("php", N)
    doomed = [f"php-{i}" for i in range(0, N, 4)]
    first = interop.php_config(max_retries=3, delay=FIRST_DELAY, fail=doomed)
    interop.php_worker(first, "--limit", str(N)).finish()
    second = interop.python_settings(max_retries=3, fail=doomed, below_retry=2)
    interop.python_worker(second, "async", "--limit", str(2 * len(doomed))).finish()

    for order_id in doomed:
        assert _attempts(interop, order_id) == [
            ("php", "failed", 0),
            ("python", "failed", 1),
            ("python", "handled", 2),
        ]
    check_handled(interop.records(), expected)
