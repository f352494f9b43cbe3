"""Fixtures of the Redis transport's tests: a stream of each test's own on the real Redis.

Redis is the one named by ``MESSENGER_TEST_REDIS_DSN`` (default: the local server); tests
skip when it is unreachable, or fail under ``MESSENGER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_test_support import RedisServer, Stream, own_redis_server, require_redis, unique_stream


@pytest.fixture
def stream() -> Iterator[Stream]:
    """A fresh stream on the test server, deleted afterwards."""
    require_redis()
    made = Stream(unique_stream())
    yield made
    made.close()


@pytest.fixture
def redis_client(stream: Stream) -> Iterator[Any]:
    """A plain redis-py client on the test server (typed loosely: redis-py's sync client is
    annotated as possibly asynchronous)."""
    client = stream.client()
    yield client
    client.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a spare port, persisting to ``tmp_path``."""
    yield from own_redis_server(tmp_path / "redis-server")
