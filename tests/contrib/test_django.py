"""The Django app, through Django's own test client, call_command and manage.py's entry.

Django's settings are process-wide: this module configures them and runs in the ``django`` tox
environment (it is skipped where Django is not installed).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

from messenger_core.testing.services import require_service, service_dsn  # noqa: E402

# The outbox's databases: a SQLite file and the local PostgreSQL, each shared by Django and a
# SQL transport.
SHOP_FILE = Path(tempfile.mkdtemp(prefix="messenger-django-")) / "shop.db"
POSTGRESQL_DSN = service_dsn(
    "MESSENGER_TEST_POSTGRESQL_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
_pg = urlsplit(POSTGRESQL_DSN)

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
            },
            "shop_file": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(SHOP_FILE)},
            "shop_pg": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": _pg.path.lstrip("/"),
                "USER": _pg.username or "",
                "PASSWORD": _pg.password or "",
                "HOST": _pg.hostname or "",
                "PORT": str(_pg.port or ""),
            },
        },
        MESSENGER={
            "transports": {
                "async": "memory://",
                "failed": "memory://",
                "file_outbox": f"sqlite:///{SHOP_FILE}?table_name=messenger_outbox",
                "pg_outbox": f"{POSTGRESQL_DSN}?table_name=messenger_django_outbox",
            },
            "failure_transport": "failed",
            "routing": {
                f"{__name__}.OrderPlaced": "async",
                f"{__name__}.StoredOrder": ["file_outbox"],
            },
        },
        MESSENGER_SCAN=[__name__],
    )
    django.setup()

from django.core.management import ManagementUtility, call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402

from messenger_core import TransportNamesStamp, handler  # noqa: E402
from messenger_core.contrib.django import (  # noqa: E402
    dispatch_on_commit,
    get_messenger,
    outbox,
    reset_messenger,
)
from messenger_core.errors import ConfigurationError  # noqa: E402
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


@attrs.frozen
class StoredOrder:
    """Sent through the outbox (to file_outbox, or to pg_outbox with a TransportNamesStamp)."""

    order_id: int


@handler
def stored(message: StoredOrder) -> None:
    SEEN.setdefault("stored", []).append(message.order_id)


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


# -- the outbox ---------------------------------------------------------------------------------
def _outbox_round_trip(alias: str, transport: str) -> None:
    call_command("messenger_setup_transports", transport)
    with connections[alias].cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS shop_orders (id integer PRIMARY KEY)")
        cursor.execute("DELETE FROM shop_orders")
        table = "messenger_outbox" if transport == "file_outbox" else "messenger_django_outbox"
        cursor.execute(f"DELETE FROM {table}")  # left by an earlier run
    stamp = TransportNamesStamp(transport_names=(transport,))
    sql = get_messenger().get_transport(transport)

    with transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("INSERT INTO shop_orders (id) VALUES (1)")
        with outbox(using=alias):
            get_messenger().bus.dispatch(StoredOrder(1), stamp)
        assert sql.message_count() == 0  # type: ignore[attr-defined]  # not committed yet

    assert sql.message_count() == 1  # type: ignore[attr-defined]
    call_command("messenger_consume", transport, "--limit", "1")
    assert SEEN["stored"] == [1]

    def place_and_fail() -> None:
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("INSERT INTO shop_orders (id) VALUES (2)")
            with outbox(using=alias):
                get_messenger().bus.dispatch(StoredOrder(2), stamp)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        place_and_fail()
    assert sql.message_count() == 0  # type: ignore[attr-defined]  # gone with the order


def test_the_outbox_commits_messages_with_the_data_on_sqlite() -> None:
    _outbox_round_trip("shop_file", "file_outbox")


def test_the_outbox_commits_messages_with_the_data_on_postgresql() -> None:
    require_service("PostgreSQL", POSTGRESQL_DSN, connections["shop_pg"].ensure_connection)
    _outbox_round_trip("shop_pg", "pg_outbox")


def test_the_outbox_needs_a_transaction_and_a_shareable_database() -> None:
    with pytest.raises(ConfigurationError, match=r"inside transaction.atomic\(\)"), outbox():
        pass
    with (
        pytest.raises(ConfigurationError, match="in memory"),
        transaction.atomic(),
        outbox(),
    ):
        pass
