"""The outer message, written and read by the plugin itself for the json serializer: the very
bytes the serializer writes, messages of format 1 still read, and every body the plugin reads
itself read as the serializer would read it (anything else left to it)."""

from __future__ import annotations

import binascii
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from messenger_encryption import (
    DecryptedStamp,
    EncryptedMessage,
    EncryptingSerializer,
    EncryptionSettings,
    PublicKeyRing,
    SymmetricKeyRing,
)
from messenger_encryption import outer as outer_module
from messenger_encryption.keyring import KeyRing
from messenger_encryption.keys import new_keypair
from messenger_encryption.plugin import register_types

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer, make_converter
from messenger_core.serialization.naming import FieldNameStyle
from messenger_core.stamps import BusNameStamp, DelayStamp, HandledByStamp, Stamp
from messenger_core.transport import TransportMessage

ENCRYPTED = "messenger.bus.encrypted"
KEY = bytes(range(32))

# Written in format 1 by an earlier version of the plugin, with KEY as key "k1" on transport
# "async".
PREVIOUS_BODY = (
    b'{"version":1,"algorithm":"A256GCM","key_id":"k1","nonce":"W7O13hJmTOi+KFqe","ciphertext"'
    b':"0PYNNLZmy4A9oVD7oYcaMBg8v7n2AqehuzHsCd2tYsaxQVXLcUOU78C1lf20IRh7nfsqeU0Tq2RXU0A3WcIdTc5'
    b"0P4W7yN4FwChNUlSyZd8cPCQ2iqjqmYbqCUktKJ1GUQJfXegRHXW62UkpeGsKcoDHNx45Y3NfEQJ9q4PiAhSnoXrnG"
    b"WjHPF5g0sX4/EPJiG71rZ0vXc0F1RgDkDakKapgtarSe8hroo4ClNOv+i9WQ9N1mL+apSg0U9apR9Tpm89gxsqf1j"
    b'f37Q==","ephemeral_key":""}'
)
STAMP = "X-Message-Stamp-messenger_core.stamps."
PREVIOUS_HEADERS = {
    "type": "messenger_encryption.EncryptedMessage",
    "Content-Type": "application/json",
    STAMP + "BusNameStamp": '[{"bus_name":"messenger.bus.encrypted"}]',
    STAMP + "DelayStamp": '[{"delay_ms":5}]',
}


@attrs.frozen
class Note:
    text: str


def json_serializer(field_names: FieldNameStyle = "as_is") -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Note, "tests.Note")
    register_types(registry)
    return JsonSerializer(registry, converter=make_converter(field_names))


class Unknown:
    """A serializer the plugin does not know (it wraps the json one): it runs twice per
    encrypted message, as every serializer did before the outer message was written here."""

    def __init__(self, inner: JsonSerializer) -> None:
        self.inner = inner

    def encode(self, envelope: Envelope) -> TransportMessage:
        return self.inner.encode(envelope)

    def decode(self, message: TransportMessage) -> Envelope:
        return self.inner.decode(message)

    def decode_stamps(self, message: TransportMessage) -> list[Stamp]:
        return self.inner.decode_stamps(message)


def symmetric() -> KeyRing:
    return SymmetricKeyRing([("k1", KEY)])


def public_key() -> KeyRing:
    private, _ = new_keypair()
    return PublicKeyRing([("w1", private)], [])


RINGS: dict[str, Callable[[], KeyRing]] = {"symmetric": symmetric, "public-key": public_key}


def wire(ring: KeyRing, inner: Any = None) -> EncryptingSerializer:
    return EncryptingSerializer(inner or json_serializer(), "async", ring, EncryptionSettings())


def two_pass(fast: EncryptingSerializer) -> EncryptingSerializer:
    """``fast``'s keys and transport, with the outer message left to the serializer."""
    return wire(fast.keyring, Unknown(json_serializer()))


def counting(monkeypatch: pytest.MonkeyPatch, serializer: JsonSerializer) -> dict[str, int]:
    """Counts of the serializer's encode and decode calls (its class stays the same)."""
    calls = {"encode": 0, "decode": 0}
    for name in calls:
        method = getattr(serializer, name)

        def count(argument: Any, name: str = name, method: Any = method) -> Any:
            calls[name] += 1
            return method(argument)

        monkeypatch.setattr(serializer, name, count)
    return calls


@pytest.mark.parametrize("field_names", ["as_is", "camelCase"])
@pytest.mark.parametrize("ring", list(RINGS))
def test_the_plugin_writes_and_reads_the_outer_message_as_the_serializer_does(
    ring: str, field_names: FieldNameStyle, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = json_serializer(field_names)
    fast = wire(RINGS[ring](), inner)
    envelope = Envelope(Note("hello"), [BusNameStamp(bus_name=ENCRYPTED), DelayStamp(delay_ms=5)])
    fast.decode(fast.encode(envelope))  # the first of these stamps: the serializer writes it
    calls = counting(monkeypatch, inner)

    sent = fast.encode(envelope)
    received = fast.decode(sent)

    assert calls == {"encode": 1, "decode": 1}  # only the message inside, either way
    assert received.message == Note("hello")
    assert received.last(DelayStamp) == DelayStamp(delay_ms=5)
    outer = inner.decode(sent)
    assert isinstance(outer.message, EncryptedMessage)
    assert sent.body == b'{"sealed":"' + outer.message.sealed.encode() + b'"}'
    assert sent.headers["type"] == "messenger_encryption.Encrypted"
    rewritten = inner.encode(outer)
    assert rewritten.body == sent.body
    assert dict(rewritten.headers) == dict(sent.headers)


def test_a_message_written_in_format_1_still_decrypts() -> None:
    fast = wire(symmetric())
    for reader in (fast, fast, two_pass(fast)):
        received = reader.decode(TransportMessage(PREVIOUS_BODY, PREVIOUS_HEADERS))
        assert received.message == Note("written by the previous version")
        assert received.last(HandledByStamp) == HandledByStamp(handler_name="h")
        assert received.last(DelayStamp) == DelayStamp(delay_ms=5)
        assert received.last(DecryptedStamp) == DecryptedStamp(
            key_id="k1", algorithm="A256GCM", format_version=1
        )


def test_a_format_1_message_moved_to_another_transport_does_not_decrypt() -> None:
    moved = EncryptingSerializer(json_serializer(), "other", symmetric(), EncryptionSettings())
    with pytest.raises(MessageDecodingError, match="does not authenticate"):
        moved.decode(TransportMessage(PREVIOUS_BODY, PREVIOUS_HEADERS))


@pytest.mark.parametrize("ring", list(RINGS))
def test_what_the_plugin_writes_is_read_where_the_serializer_reads_it(ring: str) -> None:
    fast = wire(RINGS[ring]())
    envelope = Envelope(Note("both ways"), [BusNameStamp(bus_name=ENCRYPTED)])
    for _ in range(2):
        assert two_pass(fast).decode(fast.encode(envelope)).message == Note("both ways")
        assert fast.decode(two_pass(fast).encode(envelope)).message == Note("both ways")


@pytest.mark.parametrize("key_id", ['k"1', "k\\1", "clé", "k 1", "k" * 255])
def test_any_key_id_of_up_to_255_bytes_travels_inside_the_sealed_bytes(key_id: str) -> None:
    fast = wire(SymmetricKeyRing([(key_id, KEY)]))
    envelope = Envelope(Note("any id"), [BusNameStamp(bus_name=ENCRYPTED)])
    for reader in (fast, fast, two_pass(fast)):
        received = reader.decode(fast.encode(envelope))
        assert received.message == Note("any id")
        assert received.last(DecryptedStamp) == DecryptedStamp(key_id=key_id, algorithm="A256GCM")


@pytest.mark.parametrize("ring", [SymmetricKeyRing, PublicKeyRing])
def test_a_key_id_longer_than_255_bytes_is_refused_when_the_ring_is_made(ring: Any) -> None:
    keys = [("é" * 128, KEY)]
    with pytest.raises(ConfigurationError, match="longer than 255 bytes"):
        ring(keys) if ring is SymmetricKeyRing else ring(keys, [])


def _outcome(serializer: EncryptingSerializer, message: TransportMessage) -> object:
    try:
        envelope = serializer.decode(message)
    except MessageDecodingError as error:
        return str(error)
    return envelope.message, envelope.stamps


def _altered(body: bytes) -> Iterator[bytes]:
    """``body`` with each byte replaced by others (quotes, escapes, spaces, base64
    characters, padding, a NUL, nothing), and with a space put before each byte."""
    for index in range(len(body)):
        for replacement in (b"A", b"/", b"=", b"0", b'"', b"\\", b" ", b"\x00", b"\xc3", b""):
            yield body[:index] + replacement + body[index + 1 :]
        yield body[:index] + b" " + body[index:]


@pytest.mark.parametrize("ring", list(RINGS))
def test_every_altered_body_reads_as_the_serializer_reads_it(ring: str) -> None:
    fast = wire(RINGS[ring]())
    slow = two_pass(fast)
    sent = fast.encode(Envelope(Note("x"), [BusNameStamp(bus_name=ENCRYPTED)]))
    fast.decode(sent)  # its headers are known now: every body below is first read by the plugin

    outcomes = set()
    for body in set(_altered(bytes(sent.body))):
        altered = TransportMessage(body, sent.headers)
        outcome = _outcome(fast, altered)
        assert outcome == _outcome(slow, altered), body
        outcomes.add(outcome if isinstance(outcome, str) else "decrypted")

    # The alterations reached every check: the JSON, the base64, each part of the sealed
    # bytes' header, and the tag.
    reasons = ("not JSON", "not base64", "version", "algorithm", "does not hold", "malformed")
    for reason in (*reasons, "does not authenticate"):
        assert any(reason in text for text in outcomes), reason


def test_the_fast_base64_accepts_nothing_the_standard_one_refuses() -> None:
    texts = [
        bytes(letters) for n in range(7) for letters in itertools.product(b"AQg/+=\n", repeat=n)
    ]
    texts += [b"QQ==QQ==", b"QUJDQUJD", b"QUJDQQ==", b"QUJD=", b"QUJD==", b"QUJDQ===", b"QUJD\x00"]
    for text in texts:
        try:
            fast = outer_module.decode64(text)
        except (binascii.Error, ValueError):
            continue
        assert binascii.a2b_base64(text, strict_mode=True) == fast, text
