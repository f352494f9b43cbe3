"""Each side lists and retries the messages the other parked in the failure transport:
``messenger failed show / retry`` on Symfony's, ``messenger:failed:show / retry`` on ours."""

from __future__ import annotations

import json
from typing import Any

import pytest
from interop_support import Interop, check_handled, check_symfony_stamps_only

pytestmark = pytest.mark.usefixtures("symfony_serializer")

N = 10
DOOMED = (2, 5, 7)


def _listed(interop: Interop) -> list[dict[str, Any]]:
    """The failure transport as Symfony lists it (``ListableReceiverInterface::all()``)."""
    output = interop.php("failed.php", interop.php_config(), "interop:failed:list")
    return [json.loads(line) for line in output.splitlines()]


def test_python_shows_and_retries_what_symfony_parked(interop: Interop) -> None:
    expected = interop.php_produce("php", N)
    doomed = [f"php-{i}" for i in DOOMED]
    config = interop.php_config(max_retries=1, fail=doomed)
    interop.php_worker(config, "--limit", str(N + len(doomed))).finish()
    ids = {m["orderId"]: m["id"] for m in _listed(interop)}
    assert sorted(ids) == sorted(doomed)

    settings = interop.python_settings()
    table = interop.messenger(settings, "failed", "show")
    assert f"{len(doomed)} messages in failure transport 'failed'" in table, table
    for order_id, message_id in ids.items():
        line = next(
            (x for x in table.splitlines() if x.split()[:2] == [message_id, "OrderPlaced"]), None
        )
        assert line is not None, table
        assert f"order {order_id} refused by PHP" in line, table
    detail = interop.messenger(settings, "failed", "show", ids[doomed[0]])
    assert "Original transport  async" in detail, detail
    assert f"order_id = '{doomed[0]}'" in detail, detail
    assert "RuntimeException" in detail, detail

    # The first still fails in Python: it goes back to the failure transport (after the failure
    # transport's retry delay, 1 s, during which Symfony does not list it), where Symfony finds
    # it with both errors, and retries it.
    still = doomed[0]
    interop.messenger(
        interop.python_settings(fail=[still]), "failed", "retry", "--all", "--force", check=False
    )
    interop.wait_for(lambda: len(_listed(interop)) == 1, "the message back in Symfony's list")
    [again] = _listed(interop)
    assert again["orderId"] == still
    assert again["originalReceiver"] == "async"
    errors = [(e["exceptionClass"], e["exceptionMessage"]) for e in again["errors"]]
    assert errors[0] == ("RuntimeException", f"order {still} refused by PHP"), errors
    assert errors[-1] == ("builtins.RuntimeError", f"order {still} refused by Python"), errors
    check_symfony_stamps_only(interop.backend.raw_headers("failed"))
    php = interop.php_config()
    interop.php("failed.php", php, "messenger:failed:retry", str(again["id"]), "--force", "-n")
    assert "No messages" in interop.messenger(settings, "failed", "show")
    assert _listed(interop) == []
    records = check_handled(interop.records(), expected)
    assert {r["orderId"] for r in records if r["side"] == "python"} == set(doomed[1:])


def test_symfony_shows_and_retries_what_python_parked(interop: Interop) -> None:
    expected = interop.python_dispatch("py", N)
    doomed = [f"py-{i}" for i in DOOMED]
    settings = interop.python_settings(max_retries=1, fail=doomed)
    interop.python_worker(settings, "async", "--limit", str(N + len(doomed))).finish()
    check_symfony_stamps_only(interop.backend.raw_headers("failed"))

    # Symfony lists only the rows due by its own clock, to the whole second (a table Doctrine
    # made keeps no fractions): give it that second.
    interop.wait_for(lambda: len(_listed(interop)) == len(doomed), "Symfony to list them")
    listed = _listed(interop)
    assert sorted(m["orderId"] for m in listed) == sorted(doomed)
    for message in listed:
        assert message["class"] == "App\\Message\\OrderPlaced"
        assert message["originalReceiver"] == "async"
        errors = message["errors"]
        assert isinstance(errors, list), message
        assert errors, message
        assert f"order {message['orderId']} refused by Python" in errors[-1]["exceptionMessage"]
        assert errors[-1]["exceptionClass"] == "builtins.RuntimeError"
    config = interop.php_config()
    table = interop.php("failed.php", config, "messenger:failed:show", stderr=True)
    for message in listed:
        assert f" {message['id']} " in table, table
    assert "App\\Message\\OrderPlaced" in table, table
    detail = interop.php(
        "failed.php", config, "messenger:failed:show", str(listed[0]["id"]), "-vv", stderr=True
    )
    assert str(listed[0]["orderId"]) in detail, detail
    assert "refused by Python" in detail, detail

    ids = [str(m["id"]) for m in listed]
    interop.php("failed.php", config, "messenger:failed:retry", *ids, "--force", "-n")
    assert _listed(interop) == []
    records = check_handled(interop.records(), expected)
    assert {r["orderId"] for r in records if r["side"] == "php"} == set(doomed)
