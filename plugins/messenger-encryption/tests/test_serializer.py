"""The encrypting serializer and its options, in one process (memory transports): what is
encrypted and what stays readable, refusing plaintext, the ways to give keys, and keys
never showing in reprs, errors, logs or ``messenger debug``."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import attrs
import pytest
from encryption_support import PROVIDED, symmetric_key
from messenger_encryption import (
    DecryptedStamp,
    EncryptedMessage,
    EncryptingSerializer,
    EncryptionPlugin,
    EncryptionSettings,
    PlaintextRefusedError,
    PublicKeyRing,
    SymmetricKeyRing,
    key_ring_of,
)
from messenger_encryption import message as message_module
from messenger_encryption.format_v1 import EncryptedMessageV1
from messenger_encryption.keys import new_keypair, parse_keys
from messenger_encryption.plugin import register_types
from messenger_encryption.sealed import from_bytes

from messenger_core import Messenger, hookimpl
from messenger_core.cli import main
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import (
    BusNameStamp,
    DelayStamp,
    ErrorDetailsStamp,
    HandledByStamp,
    Stamp,
)
from messenger_core.transport import TransportMessage, UndecodableMessage

ENCRYPTED = "messenger.bus.encrypted"
MARKER = "MARKER-unit-42"


@attrs.frozen
class Note:
    text: str


@attrs.frozen(kw_only=True)
class TenantStamp(Stamp):
    tenant: str


def json_serializer() -> JsonSerializer:
    """The JSON serializer, knowing this module's classes and the plugin's."""
    registry = MessageTypeRegistry()
    registry.register(Note)
    registry.register_stamp(TenantStamp)
    register_types(registry)
    return JsonSerializer(registry)


def serializer(key: str, transport: str = "async", **options: object) -> EncryptingSerializer:
    settings = EncryptionSettings.from_options(options)
    ring = SymmetricKeyRing(parse_keys(key, "test"))
    return EncryptingSerializer(json_serializer(), transport, ring, settings)


def test_the_message_its_type_and_its_sensitive_stamps_are_encrypted(key: str) -> None:
    wire = serializer(key)
    envelope = Envelope(
        Note(MARKER),
        [
            BusNameStamp(bus_name=ENCRYPTED),
            DelayStamp(delay_ms=5),
            HandledByStamp(handler_name="h"),
            TenantStamp(tenant="acme-tenant"),
            ErrorDetailsStamp(exception_class="E", message=f"failed on {MARKER}"),
        ],
    )

    sent = wire.encode(envelope)

    text = sent.body.decode() + repr(dict(sent.headers))
    for secret in (MARKER, "Note", "acme-tenant", "HandledByStamp", "ErrorDetails"):
        assert secret not in text
    assert "DelayStamp" in text  # the transport needs it
    assert sent.headers["type"] == "messenger_encryption.Encrypted"

    received = wire.decode(sent)
    assert received.message == Note(MARKER)
    assert received.last(TenantStamp) == TenantStamp(tenant="acme-tenant")
    assert received.last(HandledByStamp) == HandledByStamp(handler_name="h")
    assert received.last(DecryptedStamp) == DecryptedStamp(key_id="k1", algorithm="A256GCM")
    assert wire.decode_stamps(sent) == [BusNameStamp(bus_name=ENCRYPTED), DelayStamp(delay_ms=5)]


def test_two_encryptions_of_one_message_differ(key: str) -> None:
    wire = serializer(key)
    envelope = Envelope(Note(MARKER), [BusNameStamp(bus_name=ENCRYPTED)])
    assert wire.encode(envelope).body != wire.encode(envelope).body


def test_no_size_limit_beyond_the_transport(key: str) -> None:
    wire = serializer(key)
    big = Note("x" * 5_000_000)
    assert (
        wire.decode(wire.encode(Envelope(big, [BusNameStamp(bus_name=ENCRYPTED)]))).message == big
    )


def test_other_buses_stay_plaintext_and_undecodable_messages_pass_untouched(key: str) -> None:
    wire = serializer(key)
    plain = wire.encode(Envelope(Note(MARKER), [BusNameStamp(bus_name="messenger.bus.default")]))
    assert MARKER in plain.body.decode()
    assert wire.decode(plain).message == Note(MARKER)

    raw = UndecodableMessage(b"\x00ciphertext", {"type": "x"}, "reason")
    parked = wire.encode(Envelope(raw, [BusNameStamp(bus_name=ENCRYPTED)]))
    assert parked.body == b"\x00ciphertext"


def test_plaintext_on_an_encrypted_bus_is_refused(key: str) -> None:
    plain = json_serializer().encode(Envelope(Note("x"), [BusNameStamp(bus_name=ENCRYPTED)]))
    with pytest.raises(MessageDecodingError, match="plaintext message on encrypted bus"):
        serializer(key).decode(plain)


def test_require_encryption_refuses_plaintext_both_ways(key: str) -> None:
    wire = serializer(key, require_encryption=["async"])
    envelope = Envelope(Note("x"), [BusNameStamp(bus_name="messenger.bus.default")])
    with pytest.raises(PlaintextRefusedError, match="requires encryption"):
        wire.encode(envelope)
    with pytest.raises(MessageDecodingError, match="requires encryption"):
        wire.decode(json_serializer().encode(envelope))
    assert serializer(key, "other", require_encryption=["async"]).encode(envelope)


def test_moving_to_another_transport_is_detected(key: str) -> None:
    sent = serializer(key, "async").encode(Envelope(Note("x"), [BusNameStamp(bus_name=ENCRYPTED)]))
    with pytest.raises(MessageDecodingError, match="does not authenticate"):
        serializer(key, "other").decode(sent)


# -- options ------------------------------------------------------------------------------------
def test_an_unknown_option_says_what_was_meant_without_its_value() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'key_file'") as caught:
        EncryptionSettings.from_options({"keyfile": "sekrit-value"})
    assert "sekrit-value" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="'symmetric' or 'public-key'"):
        EncryptionSettings.from_options({"mode": "rsa"})


def test_an_application_without_a_key_is_told_how_to_make_one() -> None:
    messenger = Messenger(
        {"transports": {"async": "memory://"}, "plugins": {"encryption": {}}},
        autoload=False,
        plugins=[EncryptionPlugin()],
    )
    with pytest.raises(ConfigurationError, match="generate-key"):
        messenger.get_transport("async")


def test_keys_from_a_file_and_from_a_provider(tmp_path: Path, key: str) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# newest first\n{key}\n{symmetric_key('k0')}\n")
    assert key_ring_of(EncryptionSettings(key_file=str(path))).key_ids == ("k1", "k0")

    raw = base64.b64decode(key.split(":")[1])
    ring = key_ring_of(EncryptionSettings(key_provider=lambda: {"p2": raw, "p1": key[3:]}))
    assert ring.key_ids == ("p2", "p1")
    PROVIDED[:] = [key]
    ring = key_ring_of(EncryptionSettings(key_provider="encryption_support:provide_keys"))
    assert ring.key_ids == ("k1",)
    # A failing provider: its error class is named, not its message (it may quote a secret).
    with pytest.raises(ConfigurationError, match=r"failed: TypeError$"):
        key_ring_of(EncryptionSettings(key_provider="encryption_support:symmetric_key"))
    with pytest.raises(ConfigurationError, match="cannot load"):
        key_ring_of(EncryptionSettings(key_provider="encryption_support:nothing"))


def test_the_programmatic_plugin_with_autoload_off(key: str) -> None:
    seen: list[Note] = []
    messenger = Messenger(
        {"transports": {"async": "memory://?serialize=true"}, "routing": {Note: "async"}},
        autoload=False,
        plugins=[EncryptionPlugin({"buses": ["secret"]}, keyring=key_ring_of_text(key))],
    )
    messenger.handler(seen.append, bus="secret", handles=Note)
    messenger.buses["secret"].dispatch(Note(MARKER))
    messenger.worker(["async"]).run(limit=1, time_limit=5, sleep=0.01)
    assert seen == [Note(MARKER)]


def key_ring_of_text(text: str) -> SymmetricKeyRing:
    return SymmetricKeyRing(parse_keys(text, "test"))


# -- keys never show ----------------------------------------------------------------------------
def test_keys_appear_in_no_repr_error_log_or_debug_output(
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    encoded = key.split(":")[1]
    raw = base64.b64decode(encoded)
    forms = [encoded, repr(raw), raw.hex(), encoded[:16]]
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", key)
    caplog.set_level(logging.DEBUG)
    messenger = Messenger(
        {
            "transports": {"async": "memory://?serialize=true"},
            "routing": {Note: "async"},
            "plugins": {"encryption": {}},
        }
    )
    messenger.handler(lambda note: None, bus=ENCRYPTED, handles=Note)
    messenger.buses[ENCRYPTED].dispatch(Note(MARKER))
    messenger.worker(["async"]).run(limit=1, time_limit=5, sleep=0.01)
    wire = messenger.get_transport("async").serializer  # type: ignore[attr-defined]
    texts = [
        repr(wire),
        repr(wire.keyring),
        repr(EncryptionSettings()),
        repr(messenger),
        caplog.text,
    ]

    errors = []
    for bad in (f"k1:{encoded[:-4]}", f"k1:{encoded}!", f"{encoded}", f"k1:{encoded},k1:{encoded}"):
        with pytest.raises(ConfigurationError) as caught:
            parse_keys(bad, "MESSENGER_ENCRYPTION_KEYS")
        errors.append(caught.value)
    sent = wire.encode(Envelope(Note("x"), [BusNameStamp(bus_name=ENCRYPTED)]))
    with pytest.raises(MessageDecodingError) as tampered:
        serializer(symmetric_key("k1")).decode(sent)
    errors.append(tampered.value)
    texts += [f"{e!r} {e} {getattr(e, '__notes__', '')} {e.__cause__!r}" for e in errors]

    config = tmp_path / "messenger.toml"
    config.write_text(
        '[messenger.transports.async]\ndsn = "memory://"\n[messenger.plugins.encryption]\n'
    )
    assert main(["--config", str(config), "-v", "debug"]) == 0
    out, err = capsys.readouterr()
    texts.append(out + err)

    for text in texts:
        for form in forms:
            assert form not in text


def test_a_wrapper_message_repr_hides_the_ciphertext() -> None:
    assert "Y2lwaGVy" not in repr(EncryptedMessage("Y2lwaGVy"))
    legacy = EncryptedMessageV1(
        version=1, algorithm="A256GCM", key_id="k1", nonce="bm9uY2U=", ciphertext="Y2lwaGVy"
    )
    assert "Y2lwaGVy" not in repr(legacy)


def test_decoding_a_transport_message_that_is_not_json_fails_cleanly(key: str) -> None:
    with pytest.raises(MessageDecodingError):
        serializer(key).decode(TransportMessage(b"\xff", {"type": "x"}))


class Recording:
    """Another plugin's serializer wrapper: it records what it encodes."""

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner
        self.encoded: list[object] = []

    def encode(self, envelope: Envelope) -> TransportMessage:
        self.encoded.append(envelope.message)
        return self.inner.encode(envelope)

    def decode(self, message: TransportMessage) -> Envelope:
        return self.inner.decode(message)


class OtherWrapper:
    """A plugin answering the firstresult hook with its own serializer."""

    def __init__(self) -> None:
        self.made: list[Recording] = []

    @hookimpl
    def messenger_transport_serializer(self, serializer: Serializer) -> Serializer:
        self.made.append(Recording(serializer))
        return self.made[-1]


def test_another_plugin_replacing_the_serializer_cannot_take_the_encryption_off(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", key)
    other = OtherWrapper()
    # Registered after the encryption plugin: pluggy calls it first, and it answers.
    messenger = Messenger(
        {
            "transports": {"async": "memory://?serialize=true"},
            "routing": {Note: "async"},
            "plugins": {"encryption": {}},
        },
        plugins=[other],
    )
    messenger.buses[ENCRYPTED].dispatch(Note(MARKER))

    transport = messenger.get_transport("async")
    wire = transport.serializer  # type: ignore[attr-defined]
    assert isinstance(wire, EncryptingSerializer)
    assert wire.inner is other.made[0]
    assert [type(m) for m in other.made[0].encoded] == [Note, EncryptedMessage]


def test_the_plugin_given_twice_encrypts_once(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", key)
    messenger = Messenger(
        {"transports": {"async": "memory://?serialize=true"}, "plugins": {"encryption": {}}},
        plugins=[EncryptionPlugin()],
    )
    wire = messenger.get_transport("async").serializer  # type: ignore[attr-defined]
    assert isinstance(wire, EncryptingSerializer)
    assert not isinstance(wire.inner, EncryptingSerializer)


@pytest.mark.parametrize("serializer_name", ["json", "symfony"])
def test_any_serializer_carries_the_encrypted_message(
    serializer_name: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if serializer_name == "symfony":
        pytest.importorskip("messenger_serializer_symfony")
    monkeypatch.setenv("MESSENGER_ENCRYPTION_KEYS", key)
    seen: list[Note] = []
    messenger = Messenger(
        {
            "transports": {
                "async": {"dsn": "memory://?serialize=true", "serializer": serializer_name}
            },
            "routing": {Note: "async"},
            "plugins": {"encryption": {}},
        }
    )
    messenger.handler(seen.append, bus=ENCRYPTED, handles=Note)
    wire = messenger.get_transport("async").serializer  # type: ignore[attr-defined]
    sent = wire.encode(Envelope(Note(MARKER), [BusNameStamp(bus_name=ENCRYPTED)]))
    assert MARKER not in sent.body.decode() + repr(dict(sent.headers))

    messenger.buses[ENCRYPTED].dispatch(Note(MARKER))
    messenger.worker(["async"]).run(limit=1, time_limit=5, sleep=0.01)
    assert seen == [Note(MARKER)]


def test_the_packing_works_without_orjson(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message_module, "orjson", None)
    monkeypatch.setattr(message_module, "_packed_headers", {})  # nothing packed with orjson
    monkeypatch.setattr(message_module, "_unpacked_headers", {})
    wire = serializer(key)
    envelope = Envelope(Note("é " + MARKER), [BusNameStamp(bus_name=ENCRYPTED)])
    assert wire.decode(wire.encode(envelope)).message == envelope.message


@pytest.mark.parametrize("field", ["ephemeral_key", "nonce", "ciphertext", "key_id"])
def test_public_key_mode_detects_tampering_of_every_field(field: str) -> None:
    private, public = new_keypair()
    worker = PublicKeyRing([("w1", private)], [])
    producer = PublicKeyRing([], [("w1", public)])
    sealed = from_bytes(producer.seal(b"secret", transport_name="async", bus_name=ENCRYPTED))
    assert worker.open(sealed, transport_name="async", bus_name=ENCRYPTED) == b"secret"

    value = getattr(sealed, field)
    if field == "key_id":
        changed: object = "w0"
    else:
        changed = bytes((value[0] ^ 1,)) + value[1:]
    with pytest.raises(MessageDecodingError):
        worker.open(sealed._replace(**{field: changed}), transport_name="async", bus_name=ENCRYPTED)
    with pytest.raises(MessageDecodingError, match="holds no private key"):
        producer.open(sealed, transport_name="async", bus_name=ENCRYPTED)


def test_unpacked_headers_are_a_copy_so_changing_them_changes_no_later_message() -> None:
    packed = message_module.pack(TransportMessage(b"x", {"k": "v"}))
    first = message_module.unpack(packed)
    first.headers["k"] = "changed"  # type: ignore[index]
    assert message_module.unpack(packed) == TransportMessage(b"x", {"k": "v"})
