"""The SQL transport and stop signal implement the core's optional-capability Protocols, so
the worker and the application find them (renaming a method breaks this test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from messenger_transport_sql import SqlStopSignal, SqlTransport, SqlTransportFactory
from sql_test_support import make_serializer

from messenger_core.dsn import Dsn
from messenger_core.stop_signal import ClosableStopSignal
from messenger_core.transport import FlushingReceiver, ReleasingReceiver, WaitingReceiver


@pytest.fixture
def transport(tmp_path: Path) -> Iterator[SqlTransport]:
    dsn = Dsn.parse(f"sqlite:///{tmp_path / 'messages.db'}")
    transport = SqlTransportFactory().create(dsn, {}, make_serializer())
    yield transport
    transport.close()


def test_the_transport_flushes_and_says_whether_it_waits(transport: SqlTransport) -> None:
    assert isinstance(transport, FlushingReceiver)
    assert isinstance(transport, WaitingReceiver)
    assert transport.waits_for_messages is False  # SQLite has no notifications
    assert not isinstance(transport, ReleasingReceiver)


def test_the_stop_signal_is_closable() -> None:
    assert issubclass(SqlStopSignal, ClosableStopSignal)
