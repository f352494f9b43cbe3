"""Helpers of the encryption tests: one world per test (configuration, keys, storage) and
readers that look at the storage the way an attacker would, with the raw clients.

Storage (:mod:`raw_storage`): SQLite in ``tmp_path``; a table of the test's own on PostgreSQL
and MariaDB; streams of its own on Redis; exchanges and queues of its own on RabbitMQ. Each
is named by a ``MESSENGER_TEST_*_DSN`` variable (default: the local server); unreachable
services skip the test, or fail it under ``MESSENGER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from messenger_encryption.keys import encode_key, new_keypair, new_symmetric_key
from raw_storage import SQLITE_FILE, open_storage

from messenger_core import Messenger
from messenger_core.transport import ListableReceiver

TESTS_DIR = Path(__file__).parent
TRANSPORTS = ("async", "other", "failed")
RETRY_DELAY_MS = 1
"""The retry strategy's delay (multiplier 1: every retry waits as long)."""
DELAYED_MS = 1500
"""The delay the tests give a delayed message."""

CONFIG = """\
[messenger]
failure_transport = "failed"

[messenger.transports.async]
dsn = "{async_dsn}"
retry_strategy = {{ max_retries = {max_retries}, delay = {delay}, multiplier = 1, jitter = 0 }}

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
        self.db = root / SQLITE_FILE
        self.storage = open_storage(
            backend, root, self.name, TRANSPORTS, delays_ms=(RETRY_DELAY_MS, DELAYED_MS)
        )
        self.dsns = {t: self.storage.dsn(t) for t in TRANSPORTS}

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
                delay=RETRY_DELAY_MS,
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
        """Everything the storage holds for this world, as text (rows, entries, messages)."""
        return self.storage.raw()

    def cleanup(self) -> None:
        """Drop what this world stored on a shared server."""
        self.storage.cleanup()


def parked_messages(transport: object, timeout: float = 10.0) -> list[object]:
    """The messages a failure transport holds, read (so decrypted) through it.

    A transport that cannot list them (AMQP) receives them, then puts them back by closing:
    they stay in storage, for the test to read again."""
    if isinstance(transport, ListableReceiver):
        return [envelope.message for envelope in transport.all()]
    received: list[object] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = transport.get()  # type: ignore[attr-defined]
        received.extend(envelope.message for envelope in got)
        if received and not got:  # one empty round after the first: that is all
            break
    transport.close()  # type: ignore[attr-defined]
    return received


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
