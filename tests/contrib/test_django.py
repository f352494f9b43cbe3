"""The Django app, through Django's own test client, call_command and manage.py's entry.

Django's settings are process-wide: this module configures them and runs in the ``django`` tox
environment (it is skipped where Django is not installed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["messenger_core.contrib.django"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": ":memory:",
                "ATOMIC_REQUESTS": True,  # every view runs in a transaction
            }
        },
        MESSENGER={
            "transports": {"async": "memory://", "failed": "memory://"},
            "failure_transport": "failed",
            "routing": {f"{__name__}.OrderPlaced": "async"},
        },
        MESSENGER_SCAN=[__name__],
    )
    django.setup()

from django.core.management import ManagementUtility, call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402

from messenger_core import handler  # noqa: E402
from messenger_core.contrib.django import (  # noqa: E402
    dispatch_on_commit,
    get_messenger,
    reset_messenger,
)
from messenger_core.transports.memory import MemoryTransport  # noqa: E402


@attrs.frozen
class OrderPlaced:
    order_id: int


@attrs.frozen
class Audit:
    """Not routed: handled during dispatch."""

    what: str


SEEN: dict[str, Any] = {}


@handler
def ship(message: OrderPlaced) -> None:
    # A worker handles it after the commit: the order's row is there to read.
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM orders WHERE id = %s", [message.order_id])
        SEEN.setdefault("shipped", []).append((message.order_id, cursor.fetchone() is not None))


@handler
def audit(message: Audit) -> None:
    SEEN.setdefault("audited", []).append(message.what)


def place(request: HttpRequest, order_id: int) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders (id) VALUES (%s)", [order_id])
    get_messenger().bus.dispatch(OrderPlaced(order_id))
    get_messenger().bus.dispatch(Audit(f"order {order_id}"))
    SEEN["sent during the request"] = len(queue().sent)
    SEEN["audited during the request"] = list(SEEN.get("audited", []))
    if request.GET.get("fail"):
        raise RuntimeError("payment refused")
    return HttpResponse("placed", status=201)


urlpatterns = [path("orders/<int:order_id>", place)]


def queue(name: str = "async") -> MemoryTransport:
    transport = get_messenger().get_transport(name)
    assert isinstance(transport, MemoryTransport)
    return transport


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    reset_messenger()
    SEEN.clear()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS orders (id integer PRIMARY KEY)")
        cursor.execute("DELETE FROM orders")
    yield
    reset_messenger()


def test_a_view_sends_its_message_when_its_transaction_commits() -> None:
    response = Client().post("/orders/1")

    assert response.status_code == 201
    assert SEEN["sent during the request"] == 0  # deferred until the commit
    assert SEEN["audited during the request"] == ["order 1"]  # unrouted: handled at once
    assert [e.message for e in queue().sent] == [OrderPlaced(1)]

    call_command("messenger_consume", "async", "--limit", "1")

    assert SEEN["shipped"] == [(1, True)]
    assert len(queue().acknowledged) == 1


def test_a_rolled_back_view_sends_nothing() -> None:
    response = Client(raise_request_exception=False).post("/orders/2?fail=1")

    assert response.status_code == 500
    assert SEEN["sent during the request"] == 0
    assert queue().sent == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orders")
        assert cursor.fetchone() == (0,)


def test_outside_a_transaction_and_dispatch_on_commit() -> None:
    get_messenger().bus.dispatch(OrderPlaced(3))  # autocommit: sent at once
    assert len(queue().sent) == 1
    with transaction.atomic():
        dispatch_on_commit(OrderPlaced(4))
        assert len(queue().sent) == 1
    assert [e.message for e in queue().sent] == [OrderPlaced(3), OrderPlaced(4)]


def test_manage_py_passes_arguments_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    get_messenger().bus.dispatch(OrderPlaced(5))

    ManagementUtility(["manage.py", "messenger_stats", "--format", "json"]).execute()

    counts = json.loads(capsys.readouterr().out)
    assert json.dumps(counts).count('"async"') == 1
    ManagementUtility(
        ["manage.py", "messenger", "consume", "async", "--limit", "1", "-q"]
    ).execute()
    assert SEEN["shipped"] == [(5, False)]  # dispatched without inserting the row


def test_a_failing_command_is_a_command_error_with_its_exit_code() -> None:
    with pytest.raises(CommandError) as raised:
        call_command("messenger_consume", "nowhere")
    assert raised.value.returncode == 2
