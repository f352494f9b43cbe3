"""The cross-process receiver locks on their real stores: a second holder is refused until the
first releases; which lock each DSN gets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from http_support import REDIS_DSN, redis_client, require_redis
from messenger_http.locks import FileLock, TransportLock, transport_lock
from messenger_http.locks_redis import RedisLock
from messenger_http.locks_sql import SessionLock

from messenger_core import Messenger
from messenger_core.testing.services import require_service, service_dsn

POSTGRESQL_DSN = service_dsn(
    "MESSENGER_TEST_POSTGRESQL_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_DSN = service_dsn("MESSENGER_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")


def locks_of(dsn: str, **options: Any) -> tuple[TransportLock | None, TransportLock | None]:
    """The locks of two applications (two processes, in effect) on one transport."""
    config = {"transports": {"async": {"dsn": dsn, "options": options}}}
    return (
        transport_lock(Messenger(config=config), "async"),
        transport_lock(Messenger(config=config), "async"),
    )


def assert_exclusive(first: TransportLock, second: TransportLock) -> None:
    try:
        assert first.acquire()
        assert not second.acquire()
        first.release()
        assert second.acquire()
        assert not first.acquire()
        second.release()
    finally:
        first.close()
        second.close()


def test_sqlite_files_get_a_file_lock_beside_the_database(tmp_path: Path) -> None:
    first, second = locks_of(f"sqlite:///{tmp_path}/messages.db?queue_name=async")
    assert isinstance(first, FileLock)
    assert first.path == tmp_path / "messages.db-messenger-http-messenger_messages-async.lock"
    assert isinstance(second, FileLock)
    assert_exclusive(first, second)


def test_in_memory_stores_get_no_cross_process_lock() -> None:
    assert locks_of("sqlite:///:memory:") == (None, None)
    assert locks_of("memory://") == (None, None)


def test_redis_lock_on_the_stream_and_group() -> None:
    require_redis()
    stream = f"messenger-http-tests-{uuid.uuid4().hex[:12]}"
    first, second = locks_of(REDIS_DSN, stream=stream, group="g")
    assert isinstance(first, RedisLock)
    assert first.key == f"messenger:http-consume:{stream}:g"
    assert isinstance(second, RedisLock)
    assert_exclusive(first, second)
    client = redis_client()
    assert client.exists(first.key) == 0
    client.close()


@pytest.fixture
def short_redis_lock() -> Iterator[tuple[RedisLock, Any]]:
    require_redis()
    client = redis_client()
    key = f"messenger:http-consume:tests-{uuid.uuid4().hex[:12]}"
    lock = RedisLock(redis_client, key, time_to_live=0.3)
    yield lock, client
    lock.close()
    client.delete(key)
    client.close()


def test_a_redis_lock_is_renewed_while_held(short_redis_lock: tuple[RedisLock, Any]) -> None:
    lock, client = short_redis_lock
    assert lock.acquire()
    time.sleep(1.0)  # more than three times its time to live
    assert client.exists(lock.key) == 1
    lock.release()
    assert client.exists(lock.key) == 0


def test_a_redis_lock_deletes_only_its_own_key(short_redis_lock: tuple[RedisLock, Any]) -> None:
    lock, client = short_redis_lock
    assert lock.acquire()
    client.set(lock.key, "someone else's")  # as if it had expired and been taken
    lock.release()
    assert client.get(lock.key) == b"someone else's"


def _probe(dsn: str) -> None:
    url = dsn.replace("postgresql://", "postgresql+psycopg://").replace(
        "mysql://", "mysql+pymysql://"
    )
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("name", "dsn", "function"),
    [
        ("PostgreSQL", POSTGRESQL_DSN, "pg_try_advisory_lock"),
        ("MariaDB", MYSQL_DSN, "GET_LOCK"),
    ],
)
def test_sql_servers_get_a_session_lock(name: str, dsn: str, function: str) -> None:
    require_service(name, dsn, lambda: _probe(dsn))
    queue = f"q{uuid.uuid4().hex[:10]}"
    first, second = locks_of(dsn, queue_name=queue)
    assert isinstance(first, SessionLock)
    assert isinstance(second, SessionLock)
    assert function in str(first._acquire)
    assert_exclusive(first, second)
    # Another queue of the same table is another lock.
    other, _ = locks_of(dsn, queue_name=f"{queue}-other")
    third, _ = locks_of(dsn, queue_name=queue)
    assert other is not None
    assert third is not None
    try:
        assert third.acquire()
        assert other.acquire()
    finally:
        third.close()
        other.close()
