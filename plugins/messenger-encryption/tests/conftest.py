"""Fixtures of the encryption tests: a world per test on each storage backend, with a key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from encryption_support import World, symmetric_key
from raw_storage import require_backend


@pytest.fixture(autouse=True)
def _no_outer_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys of the environment the suite runs in must not leak into a test."""
    for name in ("MESSENGER_ENCRYPTION_KEYS", "MESSENGER_ENCRYPTION_PUBLIC_KEYS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def key() -> str:
    """A fresh symmetric key entry, ``k1:base64``."""
    return symmetric_key("k1")


def make_world(tmp_path: Path, backend: str) -> Iterator[World]:
    """A world on ``backend``, cleaned up afterwards."""
    require_backend(backend)
    world = World(tmp_path, backend)
    try:
        yield world
    finally:
        world.cleanup()


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    """A world on SQLite."""
    yield from make_world(tmp_path, "sqlite")
