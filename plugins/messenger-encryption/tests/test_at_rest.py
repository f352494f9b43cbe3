"""Looking where an attacker would: the raw rows, entries and queued messages of SQLite,
PostgreSQL, MariaDB, Redis and RabbitMQ hold no trace of an encrypted bus's message, before
handling, in a retry, once parked in the failure transport and while delayed; a plaintext bus
of the same application stays plaintext (which shows each reader sees the storage)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_world
from encryption_support import DELAYED_MS, World, app_module, parked_messages
from raw_storage import BACKENDS

from messenger_core.stamps import DelayStamp

MARKER = "MARKER-7f3c-card-4111111111111111"
PLAIN = "PLAIN-visible-9d2e"
ENCRYPTED_TYPE = "messenger_encryption.Encrypted"
"""The type an encrypted message is stored under: seeing it shows the reader found it."""


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, request.param)


def test_the_marker_appears_nowhere_in_storage_and_plaintext_stays_plaintext(
    world: World, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=key)
    app = app_module()
    messenger = world.app()

    messenger.buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(MARKER))
    messenger.bus.dispatch(app.Public(PLAIN))

    raw = world.raw()
    assert PLAIN in raw  # the reader sees plaintext where there is some
    assert MARKER not in raw
    assert "Confidential" not in raw  # the message's type is hidden too
    assert ENCRYPTED_TYPE in raw

    messenger.worker(["async"]).run(limit=2, time_limit=10, sleep=0.05)
    assert sorted(app.handled()) == [f"confidential {MARKER}", f"public {PLAIN}"]
    messenger.close()


def test_a_retried_then_parked_message_stays_encrypted_and_so_does_its_error(
    world: World, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=key)
    app = app_module()
    (world.state / "broken").touch()  # the handler fails with an error quoting the message
    messenger = world.app()
    messenger.buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(MARKER))

    messenger.worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)  # a retry copy is sent
    # The worker stops: on AMQP, what its consumer had prefetched goes back to the queue, where
    # a reader can see it (the retry copy, back from its short delay).
    messenger.close()
    raw = world.raw()
    assert MARKER not in raw
    assert "cannot process" not in raw
    assert ENCRYPTED_TYPE in raw  # the retry copy, found

    messenger = world.app()
    messenger.worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)  # second attempt: parked
    parked = parked_messages(messenger.get_transport("failed"))
    assert parked == [app.Confidential(MARKER)]  # readable with the key
    raw = world.raw()
    assert MARKER not in raw
    assert "cannot process" not in raw  # the handler's error text is encrypted too
    assert "RuntimeError" not in raw
    assert ENCRYPTED_TYPE in raw  # the parked message, found
    messenger.close()


def test_a_delayed_message_waits_encrypted_then_is_handled(
    world: World, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=key)
    app = app_module()
    messenger = world.app()
    messenger.buses[app.ENCRYPTED_BUS].dispatch(
        app.Confidential(MARKER), DelayStamp(delay_ms=DELAYED_MS)
    )

    raw = world.raw()
    assert MARKER not in raw
    assert ENCRYPTED_TYPE in raw  # found where it waits (Redis: a sorted set; AMQP: a queue)
    worker = messenger.worker(["async"])
    worker.run(limit=1, time_limit=0.5, sleep=0.05)
    assert app.handled() == []  # the delay, readable to the transport, is honoured
    worker.run(limit=1, time_limit=10, sleep=0.05)
    assert app.handled() == [f"confidential {MARKER}"]
    messenger.close()
