"""Helpers of the SQL transport's tests: the databases, a test message, a serializer.

SQLite runs in a temporary directory. PostgreSQL and MariaDB/MySQL are the real local services
(``MESSENGER_TEST_POSTGRESQL_DSN``, ``MESSENGER_TEST_MYSQL_DSN``); their tests skip when the
service is unreachable, or fail under ``MESSENGER_REQUIRE_SERVICES=1``. Every test gets its own
table, dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa
from messenger_transport_sql import SqlTransport, SqlTransportFactory
from messenger_transport_sql.engine import create_engine
from messenger_transport_sql.options import parse_options
from messenger_transport_sql.schema import build_table

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.testing.services import require_service, service_dsn

POSTGRESQL_DSN = service_dsn(
    "MESSENGER_TEST_POSTGRESQL_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_DSN = service_dsn("MESSENGER_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")


@attrs.frozen
class Order:
    """A message for these tests."""

    id: int
    text: str = ""


def make_serializer() -> JsonSerializer:
    """The JSON serializer, knowing :class:`Order`."""
    registry = MessageTypeRegistry()
    registry.register(Order, "tests.Order")
    return JsonSerializer(registry)


def order(number: int, text: str = "", *stamps: Any) -> Envelope:
    """An envelope holding ``Order(number, text)``."""
    return Envelope(Order(number, text), stamps)


def _probe(dsn: str) -> None:
    parsed = Dsn.parse(dsn)
    backend = "postgresql" if parsed.scheme.startswith("postgres") else "mysql"
    engine = create_engine(parsed, parse_options({"connect_timeout": "3"}, backend))
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()


_reachable: set[str] = set()


def require(name: str, dsn: str) -> None:
    """Skip (or fail) the test when the service at ``dsn`` is not reachable."""
    if dsn not in _reachable:
        require_service(name, dsn, lambda: _probe(dsn))
        _reachable.add(dsn)


@attrs.define
class Database:
    """One database backend with a table of its own for the running test."""

    backend: str
    base_dsn: str
    table_name: str
    _created: list[SqlTransport] = attrs.field(factory=list)

    def dsn(self, **query: Any) -> Dsn:
        """The DSN of the test's table (and ``query`` options)."""
        parsed = Dsn.parse(self.base_dsn)
        options = {"table_name": self.table_name, **parsed.options, **query}
        return attrs.evolve(parsed, options={k: str(v) for k, v in options.items()})

    def transport(self, serializer: Any = None, **options: Any) -> SqlTransport:
        """A new transport (a new consumer) on the test's table, closed after the test."""
        transport = SqlTransportFactory().create(
            self.dsn(), options, serializer if serializer is not None else make_serializer()
        )
        self._created.append(transport)
        return transport

    def engine(self) -> sa.Engine:
        """A plain SQLAlchemy engine on the test's database (the caller disposes of it)."""
        dsn = self.dsn()
        return create_engine(dsn, parse_options({}, self.backend))

    @property
    def table(self) -> sa.Table:
        """The test's messages table, for Core statements."""
        return build_table(self.table_name)

    def run(self, statement: sa.Executable) -> list[Any]:
        """Run a Core ``statement`` (typed: datetimes come back as datetimes); its rows."""
        engine = self.engine()
        try:
            with engine.connect() as connection, connection.begin():
                result = connection.execute(statement)
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run ``sql`` (``{table}`` stands for the test's table) and return its rows."""
        engine = self.engine()
        try:
            with engine.connect() as connection, connection.begin():
                result = connection.execute(
                    sa.text(sql.format(table=self.table_name)), params or {}
                )
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def close(self) -> None:
        for transport in self._created:
            transport.close()
        if self.backend == "sqlite":
            return
        engine = self.engine()
        try:
            with engine.connect() as connection, connection.begin():
                # A connection a failed test left in a transaction on the table would make the
                # drop wait for ever: fail the teardown instead (the table stays behind).
                if self.backend == "postgresql":
                    connection.exec_driver_sql("SET LOCAL lock_timeout = '30s'")
                else:
                    connection.exec_driver_sql("SET SESSION lock_wait_timeout = 30")
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {self.table_name}")
                if self.backend == "postgresql":
                    connection.exec_driver_sql(
                        f'DROP FUNCTION IF EXISTS "notify_{self.table_name}"()'
                    )
        finally:
            engine.dispose()


def unique_table() -> str:
    """A table name no other test uses."""
    return f"mt_{uuid.uuid4().hex[:16]}"


def open_database(backend: str, tmp_path: Path) -> Database:
    """The :class:`Database` of ``backend`` (skipping the test if its server is unreachable)."""
    if backend == "postgresql":
        require("PostgreSQL", POSTGRESQL_DSN)
        return Database("postgresql", POSTGRESQL_DSN, unique_table())
    if backend == "mysql":
        require("MySQL/MariaDB", MYSQL_DSN)
        return Database("mysql", MYSQL_DSN, unique_table())
    return Database("sqlite", f"sqlite:///{tmp_path / 'messages.db'}", "messenger_messages")
