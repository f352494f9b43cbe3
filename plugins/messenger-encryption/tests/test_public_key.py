"""Public-key mode in real processes: a producer holding only the workers' public key sends;
it cannot read what it sent (nor anything else on the queue); a worker process holding the
private key decrypts and handles."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from encryption_support import (
    TESTS_DIR,
    World,
    app_module,
    key_pair,
    sealed_bytes,
    symmetric_key,
)
from messenger_encryption.message import ALGORITHM_PUBLIC_KEY
from messenger_encryption.sealed import from_bytes

from messenger_core.testing.processes import messenger_environment
from messenger_core.transport import UndecodableMessage

pytestmark = pytest.mark.slow

MARKER = "MARKER-public-key-88aa"
DEADLINE = 60


_KEY_VARIABLES = ("MESSENGER_ENCRYPTION_KEYS", "MESSENGER_ENCRYPTION_PUBLIC_KEYS")


def process_environment(world: World, **keys: str) -> dict[str, str]:
    """The environment of a process of this world, with these key variables only."""
    environment = messenger_environment(
        [TESTS_DIR],
        world.root / "stop-workers",
        MESSENGER_ENCRYPTION_TEST_CONFIG=str(world.config),
        MESSENGER_ENCRYPTION_TEST_STATE=str(world.state),
    )
    for name in _KEY_VARIABLES:
        environment.pop(name, None)
    environment.update(keys)
    return environment


def run_process(arguments: list[str], environment: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_a_producer_with_only_the_public_key_sends_and_only_the_worker_reads(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = sqlite_world
    world.plugin_options = 'mode = "public-key"'
    private, public = key_pair("w1")
    world.environment(monkeypatch)
    app = app_module()

    producer = process_environment(world, MESSENGER_ENCRYPTION_PUBLIC_KEYS=public)
    run_process(["-m", "encryption_dispatch", "confidential", MARKER], producer)

    assert MARKER not in world.raw()
    with sqlite3.connect(world.db) as connection:
        [(body,)] = connection.execute("SELECT body FROM messenger_messages")
    assert from_bytes(sealed_bytes(body)).algorithm == ALGORITHM_PUBLIC_KEY

    # What the producer's keys can do with the queue: nothing but see that it is encrypted.
    monkeypatch.setenv("MESSENGER_ENCRYPTION_PUBLIC_KEYS", public)
    as_producer = world.app()
    [seen] = as_producer.get_transport("async").all()  # type: ignore[attr-defined]
    assert isinstance(seen.message, UndecodableMessage)
    assert "holds no private key" in seen.message.reason
    as_producer.close()

    worker = process_environment(world, MESSENGER_ENCRYPTION_KEYS=private)
    output = run_process(
        [
            "-m",
            "messenger_core",
            "--app",
            "encryption_app:create_app",
            "consume",
            "async",
            "--limit",
            "1",
            "--time-limit",
            "30",
            "--sleep",
            "0.1",
        ],
        worker,
    )
    assert app.handled() == [f"confidential {MARKER}"], output
    assert "w1:" not in output  # no key in the worker's output


def test_a_worker_holding_only_private_keys_encrypts_its_retries_to_itself(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = sqlite_world
    world.plugin_options = 'mode = "public-key"'
    private, public = key_pair("w1")
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_PUBLIC_KEYS=public)
    app = app_module()
    world.app().buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(MARKER))

    (world.state / "broken").touch()
    monkeypatch.delenv("MESSENGER_ENCRYPTION_PUBLIC_KEYS")
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", private)
    messenger = world.app()
    messenger.worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)  # a retry copy
    assert MARKER not in world.raw()
    (world.state / "broken").unlink()
    messenger.worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)
    assert app.handled() == [f"confidential {MARKER}"]


def test_symmetric_and_public_key_processes_do_not_mix(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = sqlite_world
    world.plugin_options = 'mode = "public-key"'
    _, public = key_pair("w1")
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_PUBLIC_KEYS=public)
    app = app_module()
    world.app().buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(MARKER))

    world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=symmetric_key("w1"))
    world.write_config("")
    [seen] = world.app().get_transport("async").all()  # type: ignore[attr-defined]
    assert isinstance(seen.message, UndecodableMessage)
    assert "producers and workers must use the same mode" in seen.message.reason


def test_the_producer_process_holds_no_private_key(tmp_path: Path) -> None:
    """The environment the producer test builds really lacks the private key variable."""
    world = World(tmp_path, "sqlite")
    world.write_config("")
    environment = process_environment(world, MESSENGER_ENCRYPTION_PUBLIC_KEYS="x")
    assert "MESSENGER_ENCRYPTION_KEYS" not in environment
