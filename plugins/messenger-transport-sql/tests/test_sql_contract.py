"""The core's transport contract suite, on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from messenger_transport_sql import SqlTransport, SqlTransportFactory
from sql_test_support import Database, open_database

from messenger_core.serializer import Serializer
from messenger_core.testing import TransportContract

MakeTransport = Callable[..., SqlTransport]


class _SqlContract(TransportContract):
    redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 1}
    redelivery_wait = 5.0
    receive_timeout = 5.0
    backend = ""

    @pytest.fixture
    def make_transport(
        self, contract_serializer: Serializer, tmp_path: Path
    ) -> Iterator[MakeTransport]:
        database: Database = open_database(self.backend, tmp_path)
        dsn = database.dsn(queue_name="contract")

        def make(**options: Any) -> SqlTransport:
            return SqlTransportFactory().create(dsn, options, contract_serializer)

        yield make
        database.close()


class TestSqliteContract(_SqlContract):
    backend = "sqlite"


class TestPostgresqlContract(_SqlContract):
    backend = "postgresql"


class TestMysqlContract(_SqlContract):
    backend = "mysql"
