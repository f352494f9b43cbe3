"""A Symfony worker and a Python worker on one queue: each message handled once overall."""

from __future__ import annotations

import signal

import pytest
from interop_support import Interop, check_handled

pytestmark = pytest.mark.usefixtures("symfony_serializer")

N = 50


def test_php_and_python_workers_share_a_queue(interop: Interop) -> None:
    stop_file = interop.root / "php-stop"
    # Handlers take 10 ms: one worker alone cannot empty the queue before the other polls.
    php = interop.php_worker(interop.php_config(sleep_ms=10), "--stop-file", str(stop_file))
    python = interop.python_worker(
        interop.python_settings(sleep_ms=10), "async", "--time-limit", "120", "--sleep", "0.1"
    )
    interop.wait_for(lambda: "worker started" in php.text(), "the PHP worker", php)
    interop.wait_for(lambda: "worker consuming" in python.text(), "the Python worker", python)
    expected = interop.php_produce("php", N)
    expected |= interop.python_dispatch("py", N)
    interop.wait_for(lambda: interop.handled_ids() >= expected.keys(), "every message", php, python)
    stop_file.touch()
    python.popen.send_signal(signal.SIGTERM)
    php.finish()
    python.finish()

    records = check_handled(interop.records(), expected)
    assert interop.backend.waiting() == 0
    sides = {r["side"] for r in records}
    assert sides == {"php", "python"}, f"only {sides} handled messages"
