"""The contract suite's broker-restart test, on a PostgreSQL and a MariaDB of the tests' own.

The rest of the contract runs on the shared services (``test_sql_contract.py``); these
classes keep only the restart test, since they restart their server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
import pytest
from messenger_transport_sql import SqlTransport, SqlTransportFactory
from servers import MariaDbServer, PostgresServer
from sql_test_support import unique_table

from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer
from messenger_core.testing import TransportContract, restart_test_only

pytestmark = pytest.mark.slow


class _RestartContract(TransportContract):
    redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 2}
    restart_wait = 60.0

    def _make(self, dsn: str, serializer: Serializer) -> Callable[..., SqlTransport]:
        parsed = Dsn.parse(dsn)
        options = {"table_name": unique_table(), "queue_name": "contract"}
        parsed = attrs.evolve(parsed, options=parsed.with_options(options))

        def make(**options: Any) -> SqlTransport:
            return SqlTransportFactory().create(parsed, options, serializer)

        return make


@restart_test_only
class TestPostgresqlRestart(_RestartContract):
    @pytest.fixture
    def make_transport(
        self, postgres_server: PostgresServer, contract_serializer: Serializer
    ) -> Callable[..., SqlTransport]:
        postgres_server.ensure_started()
        return self._make(postgres_server.dsn, contract_serializer)

    @pytest.fixture
    def restart_service(self, postgres_server: PostgresServer) -> Callable[[float], None]:
        return postgres_server.restart


@restart_test_only
class TestMariadbRestart(_RestartContract):
    @pytest.fixture
    def make_transport(
        self, mariadb_server: MariaDbServer, contract_serializer: Serializer
    ) -> Callable[..., SqlTransport]:
        mariadb_server.ensure_started()
        return self._make(mariadb_server.dsn, contract_serializer)

    @pytest.fixture
    def restart_service(self, mariadb_server: MariaDbServer) -> Callable[[float], None]:
        return mariadb_server.restart
