"""Helpers of the encryption tests: one world per test (configuration, keys, storage) and
readers that look at the storage the way an attacker would, with the raw clients.

Storage: SQLite in ``tmp_path``; PostgreSQL named by ``MESSENGER_TEST_POSTGRESQL_DSN``
(default: the local server), a table of the test's own; Redis named by
``MESSENGER_TEST_REDIS_DSN``, streams of the test's own. Unreachable services skip the test,
or fail it under ``MESSENGER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
import importlib
import json
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import redis
from messenger_encryption.keys import encode_key, new_keypair, new_symmetric_key

from messenger_core import Messenger
from messenger_core.testing.services import require_service, service_dsn

POSTGRESQL_DSN = service_dsn(
    "MESSENGER_TEST_POSTGRESQL_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_DSN = service_dsn("MESSENGER_TEST_REDIS_DSN", "redis://127.0.0.1:6379")
TESTS_DIR = Path(__file__).parent
BACKENDS = ["sqlite", "postgresql", "redis"]

CONFIG = """\
[messenger]
failure_transport = "failed"

[messenger.transports.async]
dsn = "{async_dsn}"
retry_strategy = {{ max_retries = {max_retries}, delay = 1, multiplier = 1, jitter = 0 }}

[messenger.transports.other]
dsn = "{other_dsn}"

[messenger.transports.failed]
dsn = "{failed_dsn}"

[messenger.routing]
"encryption_app.Confidential" = "async"
"encryption_app.Public" = "async"

[messenger.plugins.encryption]
{plugin_options}
"""


def symmetric_key(key_id: str) -> str:
    """A new ``id:base64`` symmetric key."""
    return f"{key_id}:{encode_key(new_symmetric_key())}"


PROVIDED: list[str] = []
"""What :func:`provide_keys` returns (a secrets manager for the tests)."""


def provide_keys() -> str:
    """A key provider: ``module:callable`` in the options."""
    return ",".join(PROVIDED)


def key_pair(key_id: str) -> tuple[str, str]:
    """A new X25519 pair as ``id:base64`` entries: (private, public)."""
    private, public = new_keypair()
    return f"{key_id}:{encode_key(private)}", f"{key_id}:{encode_key(public)}"


class World:
    """One test's configuration, storage and state directory."""

    def __init__(self, root: Path, backend: str, *, max_retries: int = 1) -> None:
        self.root = root
        self.backend = backend
        self.state = root / "state"
        self.state.mkdir(exist_ok=True)
        self.config = root / "messenger.toml"
        self.max_retries = max_retries
        self.plugin_options = ""
        self.name = f"enc_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            self.db = root / "messages.db"
            base = f"sqlite:///{self.db}"
            self.dsns = {q: f"{base}?queue_name={q}" for q in ("async", "other", "failed")}
        elif backend == "postgresql":
            base = POSTGRESQL_DSN.split("?", 1)[0]
            self.dsns = {
                q: f"{base}?table_name={self.name}&queue_name={q}"
                for q in ("async", "other", "failed")
            }
        else:
            base = REDIS_DSN.split("?", 1)[0].rstrip("/")
            self.dsns = {q: f"{base}/{self.name}-{q}" for q in ("async", "other", "failed")}

    def write_config(self, plugin_options: str | None = None) -> Path:
        """Write ``messenger.toml`` (with these plugin options) and return its path."""
        if plugin_options is not None:
            self.plugin_options = plugin_options
        self.config.write_text(
            CONFIG.format(
                async_dsn=self.dsns["async"],
                other_dsn=self.dsns["other"],
                failed_dsn=self.dsns["failed"],
                max_retries=self.max_retries,
                plugin_options=self.plugin_options,
            )
        )
        return self.config

    def environment(self, monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
        """Point ``encryption_app`` at this world; set (or, with ``""``, remove) variables."""
        monkeypatch.setenv("MESSENGER_ENCRYPTION_TEST_CONFIG", str(self.write_config()))
        monkeypatch.setenv("MESSENGER_ENCRYPTION_TEST_STATE", str(self.state))
        for name, value in variables.items():
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)

    def app(self) -> Messenger:
        """A new application instance for this world (the environment as it is now)."""
        return app_module().create_app()  # type: ignore[no-any-return]

    # -- what an attacker reads --------------------------------------------------------------
    def raw(self) -> str:
        """Everything the storage holds for this world, as text (rows, stream entries)."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.db) as connection:
                tables = [
                    row[0]
                    for row in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type='table'"
                    )
                ]
                rows = [list(connection.execute(f'SELECT * FROM "{t}"')) for t in tables]
            return repr(rows)
        if self.backend == "postgresql":
            with psycopg.connect(POSTGRESQL_DSN.split("?", 1)[0]) as connection:
                return repr(list(connection.execute(f'SELECT * FROM "{self.name}"')))
        return repr(list(redis_entries(self.name)))

    def cleanup(self) -> None:
        """Drop what this world stored on a shared server."""
        if self.backend == "postgresql":
            with psycopg.connect(POSTGRESQL_DSN.split("?", 1)[0], autocommit=True) as connection:
                connection.execute(f'DROP TABLE IF EXISTS "{self.name}"')
        elif self.backend == "redis":
            client = redis_client()
            for key in client.scan_iter(f"{self.name}*"):
                client.delete(key)
            client.close()


def redis_client() -> Any:
    """A plain redis-py client on the test server."""
    return redis.Redis.from_url(REDIS_DSN)


def redis_entries(prefix: str) -> Iterator[Any]:
    """Every stream entry and delay-queue member under keys starting with ``prefix``."""
    client = redis_client()
    try:
        for key in client.scan_iter(f"{prefix}*"):
            kind = client.type(key)
            if kind == b"stream":
                yield key, client.xrange(key)
            elif kind == b"zset":
                yield key, client.zrange(key, 0, -1, withscores=True)
            elif kind == b"hash":
                yield key, client.hgetall(key)
            elif kind == b"string":
                yield key, client.get(key)
            elif kind == b"list":
                yield key, client.lrange(key, 0, -1)
    finally:
        client.close()


def require_backend(backend: str) -> None:
    """Skip (or fail) the test if the backend's server is not reachable."""
    if backend == "postgresql":
        dsn = POSTGRESQL_DSN.split("?", 1)[0]
        require_service("PostgreSQL", dsn, lambda: psycopg.connect(dsn, connect_timeout=3).close())
    elif backend == "redis":
        require_service("Redis", REDIS_DSN, lambda: redis_client().ping())


def app_module() -> ModuleType:
    """``encryption_app``, imported from this directory."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    return importlib.import_module("encryption_app")


def keys_variable(*entries: str) -> str:
    """The value of a keys variable: entries newest first."""
    return ",".join(entries)


def sealed_bytes(body: str | bytes) -> bytes:
    """The sealed bytes (format 2) of a stored encrypted message's body."""
    return base64.b64decode(json.loads(body)["sealed"], validate=True)


def with_sealed_bytes(data: bytes) -> str:
    """A stored body holding ``data`` as its sealed bytes."""
    return json.dumps({"sealed": base64.b64encode(data).decode("ascii")})


def key_id_stored(body: str | bytes) -> str:
    """The key id a stored encrypted message names (in its sealed bytes' header)."""
    data = sealed_bytes(body)
    return data[3 : 3 + data[2]].decode("utf-8")
