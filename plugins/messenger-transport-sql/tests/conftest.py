"""Fixtures of the SQL transport's tests: each database with a table of the test's own, and
the PostgreSQL and MariaDB servers of the tests' own that the restart tests stop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import MariaDbServer, PostgresServer
from sql_test_support import Database, open_database


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each backend in turn, with a fresh table."""
    database = open_database(request.param, tmp_path)
    yield database
    database.close()


@pytest.fixture
def database_factory(tmp_path: Path) -> Iterator[Callable[[str], Database]]:
    """Builds the :class:`Database` of a named backend, cleaned up after the test."""
    made: list[Database] = []

    def make(backend: str) -> Database:
        database = open_database(backend, tmp_path)
        made.append(database)
        return database

    yield make
    for database in made:
        database.close()


# One server of each kind for the whole session: starting one takes seconds, and the three
# modules that stop and restart them (test_sql_reconnect, test_sql_restart_contract,
# test_sql_restart_processes) each use unique tables. A test that stops a server starts it
# again (``ensure_started`` in the fixtures that hand it out).
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of the tests' own (``servers.py``), started once."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDbServer]:
    """A MariaDB of the tests' own (``servers.py``), started once."""
    server = MariaDbServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
