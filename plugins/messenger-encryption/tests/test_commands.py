"""The command line: ``encryption generate-key``, ``encryption rotate`` (rotation with
messages in flight), and ``failed show`` / ``failed retry`` on encrypted messages."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from encryption_support import World, app_module, key_id_stored, symmetric_key
from messenger_encryption.format_v1 import TYPE_NAME_V1, associated_data_v1
from messenger_encryption.sealed import Sealed, associated_data_v2, from_bytes, header

from messenger_core.cli import main

MARKER = "MARKER-cli-31c7"
APP = ["--app", "encryption_app:create_app"]
ENCRYPTED_BUS = "messenger.bus.encrypted"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def key_ids_stored(world: World, queue: str) -> list[str]:
    with sqlite3.connect(world.db) as connection:
        bodies = connection.execute(
            "SELECT body FROM messenger_messages WHERE queue_name = ? ORDER BY id", (queue,)
        )
        return [key_id_stored(body) for (body,) in bodies]


# -- generate-key -----------------------------------------------------------------------------
def test_generate_key_prints_an_id_and_a_32_byte_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "-q", "encryption", "generate-key", "--id", "k7")
    assert code == 0
    key_id, _, encoded = out.strip().partition(":")
    assert key_id == "k7"
    assert len(base64.b64decode(encoded)) == 32

    code, out = run(capsys, "encryption", "generate-key", "--id", "no:colons")
    assert code == 2
    assert "cannot be a key id" in out

    code, out = run(capsys, "encryption", "generate-key")
    assert code == 0
    assert "MESSENGER_ENCRYPTION_KEYS" in out


def test_generate_key_public_key_prints_the_two_halves_and_where_each_goes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run(capsys, "encryption", "generate-key", "--public-key", "--id", "w1")
    assert code == 0
    lines = out.splitlines()
    private = lines[lines.index(next(x for x in lines if "workers" in x)) + 1]
    public = lines[lines.index(next(x for x in lines if "producers" in x)) + 1]
    assert "MESSENGER_ENCRYPTION_PUBLIC_KEYS" in out
    assert 'mode = "public-key"' in out
    pair = X25519PrivateKey.from_private_bytes(base64.b64decode(private.split(":")[1]))
    assert pair.public_key().public_bytes_raw() == base64.b64decode(public.split(":")[1])


# -- rotate -----------------------------------------------------------------------------------
def test_rotation_with_messages_in_flight(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = sqlite_world
    old, new = symmetric_key("k1"), symmetric_key("k2")
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=old)
    app = app_module()
    before = world.app()
    for text in ("a", "b"):
        before.buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(f"{MARKER}-{text}"))
    before.close()

    # The new key first, the old one still there: old messages still decrypt.
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", f"{new},{old}")
    during = world.app()
    during.buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(f"{MARKER}-c"))
    assert key_ids_stored(world, "async") == ["k1", "k1", "k2"]
    during.worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)
    assert app.handled() == [f"confidential {MARKER}-a"]
    during.close()

    code, out = run(capsys, *APP, "encryption", "rotate", "async", "failed")
    assert code == 0, out
    assert "async: 1 re-encrypted with key 'k2', 1 already on it, 0 not encrypted" in out
    assert "failed: 0 re-encrypted" in out
    assert key_ids_stored(world, "async") == ["k2", "k2"]

    # The old key can go now.
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", new)
    after = world.app()
    after.worker(["async"]).run(limit=2, time_limit=10, sleep=0.05)
    assert sorted(app.handled()[1:]) == [f"confidential {MARKER}-b", f"confidential {MARKER}-c"]
    assert MARKER not in world.raw()
    after.close()


def _rewrite_in_format_1(world: World, key: str) -> None:
    """Turn the stored encrypted messages into what an earlier version of the plugin wrote."""
    key_id, _, encoded = key.partition(":")
    cipher = AESGCM(base64.b64decode(encoded))
    with sqlite3.connect(world.db) as connection:
        rows = connection.execute("SELECT id, body, headers FROM messenger_messages").fetchall()
        for id, body, headers_text in rows:
            sealed = from_bytes(base64.b64decode(json.loads(body)["sealed"]))
            aad = associated_data_v2(header(sealed.algorithm, key_id), "async", ENCRYPTED_BUS)
            plaintext = cipher.decrypt(sealed.nonce, sealed.ciphertext, aad)
            old = Sealed(1, sealed.algorithm, key_id, sealed.nonce, b"", b"")
            ciphertext = cipher.encrypt(
                sealed.nonce, plaintext, associated_data_v1(old, "async", ENCRYPTED_BUS)
            )
            b64 = base64.b64encode
            body_v1 = {
                "version": 1,
                "algorithm": sealed.algorithm,
                "key_id": key_id,
                "nonce": b64(sealed.nonce).decode(),
                "ciphertext": b64(ciphertext).decode(),
                "ephemeral_key": "",
            }
            headers = json.loads(headers_text)
            headers["type"] = TYPE_NAME_V1
            connection.execute(
                "UPDATE messenger_messages SET body = ?, headers = ? WHERE id = ?",
                (json.dumps(body_v1), json.dumps(headers), id),
            )


def test_rotate_rewrites_messages_of_format_1_in_the_current_format(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = symmetric_key("k1")
    sqlite_world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=key)
    app = app_module()
    messenger = sqlite_world.app()
    messenger.buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(f"{MARKER}-old"))
    messenger.close()
    _rewrite_in_format_1(sqlite_world, key)
    assert TYPE_NAME_V1 in sqlite_world.raw()

    code, out = run(capsys, *APP, "encryption", "rotate", "async")

    assert code == 0, out
    assert "async: 1 re-encrypted with key 'k1', 0 already on it" in out
    assert TYPE_NAME_V1 not in sqlite_world.raw()
    assert MARKER not in sqlite_world.raw()
    messenger = sqlite_world.app()
    messenger.worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)
    assert app.handled() == [f"confidential {MARKER}-old"]
    messenger.close()


def test_rotate_names_a_transport_that_cannot_list(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite_world.dsns["other"] = "sync://"
    sqlite_world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=symmetric_key("k1"))
    code, out = run(capsys, *APP, "encryption", "rotate")
    assert code == 0, out
    assert "other: cannot list its messages, so nothing was re-encrypted" in out
    assert "async: 0 re-encrypted" in out


# -- failed show / retry ------------------------------------------------------------------------
def park_one(world: World, monkeypatch: pytest.MonkeyPatch, key: str) -> str:
    """Dispatch a confidential message whose handler fails until it is parked; its id in
    the failure transport."""
    world.max_retries = 0
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=key)
    app = app_module()
    (world.state / "broken").touch()
    messenger = world.app()
    messenger.buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(MARKER))
    messenger.worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)
    messenger.close()
    with sqlite3.connect(world.db) as connection:
        [(id,)] = connection.execute("SELECT id FROM messenger_messages WHERE queue_name='failed'")
    return str(id)


def test_failed_show_with_the_key_shows_the_content_and_that_it_was_encrypted(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    id = park_one(sqlite_world, monkeypatch, symmetric_key("k1"))

    code, out = run(capsys, *APP, "failed", "show", id)
    assert code == 0, out
    assert MARKER in out
    assert "DecryptedStamp(key_id='k1', algorithm='A256GCM', format_version=2)" in out
    assert f"cannot process {MARKER}" in out  # the error history, decrypted

    code, out = run(capsys, *APP, "failed", "show")
    assert code == 0
    assert "Confidential" in out


def test_failed_show_without_the_key_shows_that_it_is_encrypted_and_nothing_more(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    id = park_one(sqlite_world, monkeypatch, symmetric_key("k1"))
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", symmetric_key("k9"))

    code, out = run(capsys, *APP, "-v", "failed", "show", id)
    assert code == 0, out
    assert "messenger_encryption.Encrypted (could not be decoded)" in out
    assert "encrypted with key 'k1', which this process does not hold" in out
    assert MARKER not in out
    assert "cannot process" not in out


def test_failed_retry_keeps_the_message_encrypted_and_handles_it_once_fixed(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = sqlite_world
    park_one(world, monkeypatch, symmetric_key("k1"))
    app = app_module()

    code, out = run(capsys, *APP, "failed", "retry", "--all", "--force")
    assert code == 1
    assert "failed again" in out
    assert MARKER not in world.raw()  # back in the failure transport, still encrypted

    (world.state / "broken").unlink()
    code, out = run(capsys, *APP, "failed", "retry", "--all", "--force")
    assert code == 0, out
    assert app.handled() == [f"confidential {MARKER}"]
    assert "Confidential" not in world.raw()


def test_a_message_parked_for_a_missing_key_is_read_and_retried_once_the_key_is_there(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = sqlite_world
    key = symmetric_key("k1")
    world.environment(monkeypatch, MESSENGER_ENCRYPTION_KEYS=key)
    app = app_module()
    world.app().buses[app.ENCRYPTED_BUS].dispatch(app.Confidential(MARKER))
    # A worker deployed without the new key: it cannot decrypt, so it parks the message raw.
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", symmetric_key("k0"))
    world.app().worker(["async"]).run(limit=1, time_limit=10, sleep=0.05)
    assert app.handled() == []
    with sqlite3.connect(world.db) as connection:
        [(id,)] = connection.execute("SELECT id FROM messenger_messages WHERE queue_name='failed'")

    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", key)
    code, out = run(capsys, *APP, "failed", "show", str(id))
    assert code == 0, out
    assert MARKER in out  # still bound to 'async', where it was sent: it decrypts
    code, out = run(capsys, *APP, "failed", "retry", str(id), "--force")
    assert code == 0, out
    assert app.handled() == [f"confidential {MARKER}"]
