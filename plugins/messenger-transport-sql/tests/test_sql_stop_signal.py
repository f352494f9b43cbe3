"""The "stop workers" signal in a SQL database: shared by every host, on each backend.

Each signal object stands for a process on its own host: two objects built from one DSN share
nothing but the database. The last test runs real ``messenger`` processes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from messenger_transport_sql import SqlTransportFactory
from messenger_transport_sql.stop_signal import DEFAULT_TABLE_NAME, SqlStopSignal
from sql_test_support import Database

from messenger_core import ConfigurationError
from messenger_core.dsn import Dsn
from messenger_core.errors import TransportError
from messenger_core.testing.stop_workers import StopSignalContract

DEADLINE = 60.0
"""Seconds any one wait on a process may take before the test fails (a loaded machine)."""

MakeSignal = Callable[..., SqlStopSignal]


@pytest.fixture
def signal_dsn(database: Database) -> Iterator[str]:
    """The DSN (password included) of a stop-signal table of the test's own."""
    table = f"ms_{uuid.uuid4().hex[:16]}"
    parsed = Dsn.parse(database.base_dsn)
    dsn = attrs.evolve(parsed, options={**parsed.options, "table_name": table})
    yield dsn.to_url(mask_password=False)
    if database.backend != "sqlite":  # SQLite's file goes with tmp_path
        database.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture
def make_signal(signal_dsn: str) -> Iterator[MakeSignal]:
    """Builds signals on ``signal_dsn`` (one per "host") that look at every call."""
    made: list[SqlStopSignal] = []

    def make(**options: str) -> SqlStopSignal:
        signal = SqlTransportFactory().create_stop_signal(Dsn.parse(signal_dsn), options)
        signal.CHECK_INTERVAL = 0.0  # look now, not within a second
        made.append(signal)
        return signal

    yield make
    for signal in made:
        signal.close()


class TestSqlStopSignalContract(StopSignalContract):
    """The core's stop-signal contract, on the ``signal_dsn`` fixture above."""


def test_signals_with_different_names_stop_different_workers(make_signal: MakeSignal) -> None:
    billing, shipping = make_signal(name="billing"), make_signal(name="shipping")
    started = time.time()

    make_signal(name="billing").request()

    assert billing.requested_since(started)
    assert not shipping.requested_since(started)


def test_an_operator_can_request_the_stop_with_sql(
    make_signal: MakeSignal, database: Database, signal_dsn: str
) -> None:
    worker_host = make_signal()
    started = time.time()
    assert not worker_host.requested_since(started)  # creates the table
    table = Dsn.parse(signal_dsn).options["table_name"]

    database.execute(
        f"INSERT INTO {table} (name, requested_at) VALUES ('default', :now)",
        {"now": time.time()},
    )

    assert worker_host.requested_since(started)


# -- an unreachable database -------------------------------------------------------------------

UNREACHABLE = [
    "postgresql://app:s3cret@127.0.0.1:1/test",
    "mysql://app:s3cret@127.0.0.1:1/test",
]


@pytest.mark.parametrize("dsn", UNREACHABLE)
def test_a_worker_carries_on_when_the_database_is_down(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    signal = SqlStopSignal.from_dsn(Dsn.parse(dsn))
    signal.CHECK_INTERVAL = signal.FAILURE_INTERVAL = 0.0
    try:
        with caplog.at_level(logging.DEBUG, logger="messenger.transport.sql"):
            assert not signal.requested_since(0.0)
            assert not signal.requested_since(0.0)
    finally:
        signal.close()

    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, "one warning per outage, not one per look"
    assert "cannot read the stop signal" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text
    assert "***" in warnings[0].getMessage()


@pytest.mark.parametrize("dsn", UNREACHABLE)
def test_requesting_a_stop_when_the_database_is_down_is_a_clear_error(dsn: str) -> None:
    signal = SqlStopSignal.from_dsn(Dsn.parse(dsn))
    try:
        with pytest.raises(TransportError, match=r"cannot request the stop") as raised:
            signal.request()
    finally:
        signal.close()
    assert "s3cret" not in str(raised.value)
    assert "app:***@127.0.0.1:1" in str(raised.value)


# -- configuration -----------------------------------------------------------------------------


def test_defaults_and_driver_options() -> None:
    signal = SqlTransportFactory().create_stop_signal(
        Dsn.parse("postgresql://app@db.internal/app?sslmode=require"), {"connect_timeout": 3}
    )
    try:
        assert signal.options.table_name == DEFAULT_TABLE_NAME == "messenger_stop_signal"
        assert signal.options.name == "default"
        assert signal.options.driver_options == {"sslmode": "require", "connect_timeout": "3"}
    finally:
        signal.close()
    mysql = SqlStopSignal.from_dsn(Dsn.parse("mysql://app@db.internal/app"))
    try:
        # A worker asks after every message: an unreachable server must not hold it for minutes.
        assert mysql.options.driver_options == {"connect_timeout": "5"}
    finally:
        mysql.close()


@pytest.mark.parametrize(
    ("dsn", "options", "message"),
    [
        ("sqlite:///{tmp}/s.db", {"nme": "x"}, r"option 'nme' is unknown to the SQL stop signal"),
        (
            "sqlite:///{tmp}/s.db?queue_name=async",
            {},
            r"'queue_name' is an option of the SQL transport, not of the SQL stop signal",
        ),
        ("sqlite:///{tmp}/s.db", {"table_name": "drop table"}, r"'table_name' must be an SQL"),
        ("sqlite:///{tmp}/s.db", {"name": ""}, r"'name' must be a non-empty string"),
        ("sqlite:///:memory:", {}, r"in-memory SQLite database reaches no other process"),
        ("mysql://root@db/app", {"sslmode": "require"}, r"'sslmode' is unknown"),
    ],
)
def test_bad_configuration_is_refused(
    tmp_path: Path, dsn: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SqlTransportFactory().create_stop_signal(Dsn.parse(dsn.format(tmp=tmp_path)), options)
