"""A table that both this transport's setup and Symfony's own ``setup-transports`` manage.

Symfony's setup runs for real: ``tests/symfony/doctrine_transport.php`` drives Symfony
Messenger's Doctrine transport (Debian's PHP packages). Without PHP these tests skip, or fail
under ``MESSENGER_REQUIRE_SERVICES=1``.

What Symfony's setup does to a table created here (Symfony 5.4, DBAL 3.6): it drops the index on
``(queue_name, available_at, id)``, the one index its schema lacks, and on PostgreSQL it
replaces ``notify_trigger`` (``AFTER INSERT``) with its own (``AFTER INSERT OR UPDATE``, same
function name, channel and payload). Columns are left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from messenger_transport_sql import SqlTransport
from messenger_transport_sql.schema import RESERVE_INDEX
from sql_test_support import Database, Order, open_database
from sql_worker_support import WorkerWorld

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.stamps import DelayStamp
from messenger_core.testing.services import service_unavailable

SCRIPT = Path(__file__).parent / "symfony" / "doctrine_transport.php"
PHP_CLASS = "MessengerTests\\Ping"
"""The script's message class; :class:`Order` here (fields ``id`` and ``text``)."""

_PHP_PACKAGES = (
    "php-cli php-pgsql php-mysql php-symfony-messenger php-symfony-doctrine-messenger "
    "php-symfony-serializer php-doctrine-dbal"
)
_PROBE = (
    "foreach (['Symfony/Component/Messenger/Bridge/Doctrine/autoload.php', "
    "'Symfony/Component/Serializer/autoload.php', 'Doctrine/DBAL/autoload.php'] as $f) "
    "{ if (!stream_resolve_include_path($f)) { echo $f; exit(1); } } "
    "foreach (['pdo_pgsql', 'pdo_mysql'] as $e) "
    "{ if (!extension_loaded($e)) { echo $e; exit(1); } }"
)
_php_checked: list[str] = []


def _require_php() -> None:
    if _php_checked:
        return
    if shutil.which("php") is None:
        service_unavailable(f"PHP is not installed (Debian packages: {_PHP_PACKAGES})")
    probe = subprocess.run(["php", "-r", _PROBE], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        service_unavailable(
            f"PHP lacks {probe.stdout or probe.stderr.strip()} (Debian packages: {_PHP_PACKAGES})"
        )
    _php_checked.append("ok")


@pytest.fixture(params=["postgresql", "mysql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """PostgreSQL, then MariaDB/MySQL, with a table of the test's own and PHP at hand."""
    database = open_database(request.param, tmp_path)
    try:
        _require_php()
        yield database
    finally:
        database.close()


def _serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Order, PHP_CLASS)
    return JsonSerializer(registry)


# -- Symfony's side ----------------------------------------------------------------------------
def _php_command(database: Database, command: str, *arguments: str) -> list[str]:
    return ["php", str(SCRIPT), database.base_dsn, database.table_name, command, *arguments]


def symfony(database: Database, command: str, *arguments: str) -> list[str]:
    """Run the script's ``command`` to its end; its output lines (the test fails on an error)."""
    result = subprocess.run(
        _php_command(database, command, *arguments),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TZ": "UTC"},
    )
    assert result.returncode == 0, f"php {command}: {result.stdout}{result.stderr}"
    return result.stdout.splitlines()


def _symfony_round_trip(database: Database) -> None:
    symfony(database, "send", "3")
    lines = symfony(database, "receive", "3", "use_notify=false")
    assert lines == [
        f'{{"class":"MessengerTests\\\\Ping","id":{n},"text":"from PHP {n}"}}' for n in range(3)
    ]


def _symfony_wakes_up_on_notify(database: Database) -> None:
    """A Symfony worker waiting on LISTEN gets a message Python sends, without polling."""
    worker = subprocess.Popen(
        _php_command(
            database,
            "wait",
            "1",
            "get_notify_timeout=500",
            "check_delayed_interval=600000",
            "timeout=20",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TZ": "UTC"},
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "listening\n"
        sender = database.transport(_serializer())
        sender.send(Envelope(Order(7, "from Python")))
        sent = time.monotonic()
        line = worker.stdout.readline()
        waited = time.monotonic() - sent
        if not line:
            pytest.fail(f"the Symfony worker stopped: {worker.communicate()[1]}")
        assert line == '{"class":"MessengerTests\\\\Ping","id":7,"text":"from Python"}\n'
        # Polling would take check_delayed_interval (600 s): the notification woke it up.
        assert waited < 5
        assert worker.wait(timeout=10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()


# -- the table ---------------------------------------------------------------------------------
def _indexes(database: Database) -> set[tuple[str, ...]]:
    engine = database.engine()
    try:
        with engine.connect() as connection:
            indexes = sa.inspect(connection).get_indexes(database.table_name)
    finally:
        engine.dispose()
    return {tuple(str(name) for name in index["column_names"]) for index in indexes}


def _triggers(database: Database) -> list[str]:
    """The table's triggers, as ``name: timing events`` (PostgreSQL)."""
    rows = database.execute(
        "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
        "WHERE tgrelid = to_regclass(:table) AND NOT tgisinternal ORDER BY tgname",
        {"table": database.table_name},
    )
    return [
        f"{name}: {definition.split(' ON ')[0].split(name)[1].strip()}" for name, definition in rows
    ]


SYMFONY_TRIGGER = ["notify_trigger: AFTER INSERT OR UPDATE"]
OUR_TRIGGER = ["notify_trigger: AFTER INSERT"]
SYMFONY_INDEXES = {("queue_name",), ("available_at",), ("delivered_at",)}


# -- this transport's side ---------------------------------------------------------------------
def _receive(transport: SqlTransport, count: int, timeout: float = 10) -> list[Envelope]:
    received: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        received.extend(transport.get())
    return received


def _ids(envelopes: list[Envelope]) -> list[int]:
    return [envelope.message.id for envelope in envelopes]


def _python_round_trip(database: Database) -> None:
    """Send (one, a batch, a delayed one), receive, ack, reject: the table ends up empty."""
    transport = database.transport(_serializer(), fetch_size=5)
    transport.send_batch([Envelope(Order(1)), Envelope(Order(2))])
    transport.send(Envelope(Order(3)))
    transport.send(Envelope(Order(4), [DelayStamp(delay_ms=1500)]))
    received = _receive(transport, 3)
    assert sorted(_ids(received)) == [1, 2, 3]
    transport.ack(received[0])
    transport.ack(received[1])
    transport.reject(received[2])
    delayed = _receive(transport, 1)
    assert _ids(delayed) == [4]
    transport.ack(delayed[0])
    transport.close()
    # (Symfony's MySQL transport acknowledges by marking rows for deletion: ignore those.)
    left = "SELECT id FROM {table} WHERE delivered_at IS NULL OR delivered_at < '9000-01-01'"
    assert database.execute(left) == []


def _python_receives_from_symfony(database: Database) -> None:
    symfony(database, "send", "2", "delay=1000")
    transport = database.transport(_serializer())
    received = _receive(transport, 2)
    assert [attrs.astuple(envelope.message) for envelope in received] == [
        (0, "from PHP 0"),
        (1, "from PHP 1"),
    ]
    for envelope in received:
        transport.ack(envelope)
    transport.close()


def _python_wakes_up_on_notify(database: Database) -> None:
    """An idle consumer's get() returns as soon as a message comes (PostgreSQL)."""
    # Without a notification this get() would wait the full 20 s and return nothing.
    consumer = database.transport(
        _serializer(), get_notify_timeout=20_000, check_delayed_interval=600_000
    )
    received: list[Envelope] = []
    thread = threading.Thread(target=lambda: received.extend(consumer.get()))
    thread.start()
    time.sleep(0.5)  # (its first query found nothing; it waits on LISTEN now)
    symfony(database, "send", "1")
    sent = time.monotonic()
    thread.join(timeout=15)
    assert _ids(received) == [0], "get() did not wake up for Symfony's message"
    assert time.monotonic() - sent < 5
    consumer.ack(received[0])
    consumer.close()


def _both_sides_work(database: Database) -> None:
    _python_round_trip(database)
    _python_receives_from_symfony(database)
    _symfony_round_trip(database)
    if database.backend == "postgresql":
        _python_wakes_up_on_notify(database)
        _symfony_wakes_up_on_notify(database)


# -- the scenarios -----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_table_set_up_here_then_by_symfony(shared: Database, tmp_path: Path) -> None:
    postgresql = shared.backend == "postgresql"
    shared.transport().setup()
    assert _indexes(shared) == {*SYMFONY_INDEXES, RESERVE_INDEX}
    if postgresql:
        assert _triggers(shared) == OUR_TRIGGER

    symfony(shared, "setup")
    # What Symfony's setup does: the extra index goes, its own trigger replaces ours.
    assert _indexes(shared) == SYMFONY_INDEXES
    if postgresql:
        assert _triggers(shared) == SYMFONY_TRIGGER
    _both_sides_work(shared)

    # messenger setup-transports restores the index and keeps Symfony's trigger.
    world = WorkerWorld(shared, tmp_path)
    result = world.run("setup-transports")
    assert result.returncode == 0, result.stderr
    assert _indexes(shared) == {*SYMFONY_INDEXES, RESERVE_INDEX}
    if postgresql:
        assert _triggers(shared) == SYMFONY_TRIGGER
    _both_sides_work(shared)

    # Symfony's setup again drops the index again, and nothing else.
    symfony(shared, "setup")
    assert _indexes(shared) == SYMFONY_INDEXES
    if postgresql:
        assert _triggers(shared) == SYMFONY_TRIGGER
    _both_sides_work(shared)


@pytest.mark.slow
def test_a_table_symfony_created_then_set_up_here(shared: Database) -> None:
    postgresql = shared.backend == "postgresql"
    symfony(shared, "setup")
    assert _indexes(shared) == SYMFONY_INDEXES
    _both_sides_work(shared)

    for _ in range(2):  # (twice: the second changes nothing)
        shared.transport().setup()
        assert _indexes(shared) == {*SYMFONY_INDEXES, RESERVE_INDEX}
        if postgresql:
            assert _triggers(shared) == SYMFONY_TRIGGER
    _both_sides_work(shared)

    symfony(shared, "setup")
    assert _indexes(shared) == SYMFONY_INDEXES
    _both_sides_work(shared)


# -- the same without PHP ----------------------------------------------------------------------
def _drop_reserve_index(database: Database) -> None:
    engine = database.engine()
    try:
        with engine.begin() as connection:
            for index in database.table.indexes:
                if tuple(column.name for column in index.columns) == RESERVE_INDEX:
                    index.drop(connection)
    finally:
        engine.dispose()


def test_setup_restores_a_dropped_reserve_index(database: Database) -> None:
    transport = database.transport()
    transport.setup()
    _drop_reserve_index(database)
    assert RESERVE_INDEX not in _indexes(database)
    transport.setup()
    transport.setup()
    assert RESERVE_INDEX in _indexes(database)


def test_a_consumer_creating_the_trigger_leaves_the_indexes_alone(database_factory: Any) -> None:
    database = database_factory("postgresql")
    database.transport(use_notify=False).setup()
    _drop_reserve_index(database)
    consumer = database.transport(get_notify_timeout=100)
    assert consumer.get() == []  # (auto_setup: it creates the missing trigger)
    assert _triggers(database) == OUR_TRIGGER
    assert RESERVE_INDEX not in _indexes(database)


_SYMFONY_LIKE_TRIGGER = [
    "CREATE FUNCTION notify_{table}() RETURNS TRIGGER AS $$ BEGIN "
    "PERFORM pg_notify('{table}', NEW.queue_name::text); RETURN NEW; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER notify_trigger AFTER INSERT OR UPDATE ON {table} "
    "FOR EACH ROW EXECUTE PROCEDURE notify_{table}()",
]


def test_setup_keeps_a_trigger_that_also_fires_on_updates(database_factory: Any) -> None:
    database = database_factory("postgresql")
    database.transport(use_notify=False).setup()
    for statement in _SYMFONY_LIKE_TRIGGER:
        database.execute(statement)
    database.transport().setup()
    assert _triggers(database) == SYMFONY_TRIGGER


@pytest.mark.parametrize(
    "definition",
    [
        "BEFORE INSERT ON {table} FOR EACH ROW",  # (a BEFORE trigger may drop the row)
        "AFTER UPDATE ON {table} FOR EACH ROW",
        "AFTER INSERT ON {table} FOR EACH STATEMENT",  # (NEW is null)
    ],
)
def test_setup_replaces_a_trigger_that_does_not_notify_inserts(
    database_factory: Any, definition: str
) -> None:
    database = database_factory("postgresql")
    database.transport(use_notify=False).setup()
    database.execute(_SYMFONY_LIKE_TRIGGER[0])
    database.execute(
        f"CREATE TRIGGER notify_trigger {definition} EXECUTE PROCEDURE notify_{{table}}()"
    )
    database.transport().setup()
    assert _triggers(database) == OUR_TRIGGER
