"""The PHP side alone: Symfony's producer, worker and failed commands as the interop tests run
them, so that a failure of an interop test points at the exchange, not at the harness."""

from __future__ import annotations

import json

from interop_support import Interop, check_handled

N = 50


def test_a_symfony_worker_handles_what_symfony_sends(interop: Interop) -> None:
    expected = interop.php_produce("php", N)
    worker = interop.php_worker(interop.php_config(), "--limit", str(N), "--time-limit", "60")
    worker.finish()
    check_handled(interop.records(), expected, side="php")


def test_symfony_parks_lists_and_retries_its_failed_messages(interop: Interop) -> None:
    expected = interop.php_produce("php", 10)
    doomed = ["php-2", "php-7"]
    config = interop.php_config(max_retries=1, fail=doomed)
    worker = interop.php_worker(config, "--limit", str(10 + len(doomed)), "--time-limit", "60")
    worker.finish()

    listed = [
        json.loads(line)
        for line in interop.php("failed.php", config, "interop:failed:list").splitlines()
    ]
    assert sorted(m["orderId"] for m in listed) == doomed
    for message in listed:
        assert message["class"] == "App\\Message\\OrderPlaced"
        assert message["originalReceiver"] == "async"
        assert message["errors"][-1]["exceptionClass"] == "RuntimeException"
        assert message["errors"][-1]["flattenException"]["class"] == "RuntimeException"
    table = interop.php("failed.php", config, "messenger:failed:show", stderr=True)
    assert all(m["id"] in table for m in listed)

    fixed = interop.php_config()
    interop.php(
        "failed.php", fixed, "messenger:failed:retry", *(m["id"] for m in listed), "--force", "-n"
    )
    assert interop.php("failed.php", fixed, "interop:failed:list") == ""
    check_handled(interop.records(), expected, side="php")
