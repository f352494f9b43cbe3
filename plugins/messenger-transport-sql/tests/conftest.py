"""Fixtures of the SQL transport's tests: each database with a table of the test's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
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
