"""Fixtures of the Redis transport's tests: a stream of each test's own on the real Redis.

Redis is the one named by ``MESSENGER_TEST_REDIS_DSN`` (default: the local server); tests
skip when it is unreachable, or fail under ``MESSENGER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis_test_support import Stream, require_redis, unique_stream


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
