"""Fixtures of the messenger-http tests: a world per test (configuration, state, processes)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "app"))

from http_support import World, require_redis


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    """A world whose transports are queues of one SQLite file."""
    world = World(tmp_path, "sqlite")
    yield world
    world.close()


@pytest.fixture
def redis_world(tmp_path: Path) -> Iterator[World]:
    """A world whose transports are streams of their own on the test Redis."""
    require_redis()
    world = World(tmp_path, "redis")
    yield world
    world.close()


@pytest.fixture(params=["sqlite", "redis"])
def world(request: pytest.FixtureRequest) -> World:
    """Each backend in turn."""
    return request.getfixturevalue(f"{request.param}_world")  # type: ignore[no-any-return]
