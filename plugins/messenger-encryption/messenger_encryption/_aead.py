"""What both key rings share: base64 fields, header checks, and the decryption errors (which
name key ids, transports and buses, never a key)."""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from messenger_core.errors import MessageDecodingError
from messenger_encryption.message import FORMAT_VERSION, TYPE_NAME, EncryptedMessage

NONCE_SIZE = 12
TAG_SIZE = 16


class Sealed(NamedTuple):
    """An encrypted message with its bytes as bytes: what the key rings produce and open
    inside, and what the outer message's writer and reader handle without base64 text in
    between (:class:`EncryptedMessage` is its form for the serializers)."""

    version: int
    algorithm: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    ephemeral_key: str
    """As base64 text: it is authenticated as written (public-key mode; empty otherwise)."""

    def to_message(self) -> EncryptedMessage:
        """The same, with its bytes as base64 text."""
        return EncryptedMessage(
            version=self.version,
            algorithm=self.algorithm,
            key_id=self.key_id,
            nonce=b64(self.nonce),
            ciphertext=b64(self.ciphertext),
            ephemeral_key=self.ephemeral_key,
        )


def new_sealed(fields: tuple[int, str, str, bytes, bytes, str]) -> Sealed:
    """A :class:`Sealed` of ``fields``, in their order, without the generated constructor
    (three times the cost: a message is sealed and opened once each)."""
    return _new_tuple(Sealed, fields)


_new_tuple = tuple.__new__


def from_message(message: EncryptedMessage) -> Sealed:
    """The bytes of ``message``; ``MessageDecodingError`` if a field is not base64."""
    return Sealed(
        message.version,
        message.algorithm,
        message.key_id,
        unb64(message.nonce, "nonce"),
        unb64(message.ciphertext, "ciphertext"),
        message.ephemeral_key,
    )


def b64(data: bytes) -> str:
    """``data`` as base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    """The bytes of base64 field ``what``; ``MessageDecodingError`` if it is not base64."""
    try:
        # Strict: anything but the base64 alphabet and its padding is refused (and this is
        # twice as fast as b64decode(validate=True), which runs a regular expression).
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError, TypeError):
        raise MessageDecodingError(f"the {what} is not base64", type_name=TYPE_NAME) from None


def check_header(message: EncryptedMessage | Sealed, algorithm: str) -> None:
    """Refuse a format version or an algorithm this key ring does not use."""
    if message.version != FORMAT_VERSION:
        raise MessageDecodingError(
            f"encryption format version {message.version!r} is not known here "
            f"(this plugin writes and reads version {FORMAT_VERSION})",
            type_name=TYPE_NAME,
        )
    if message.algorithm != algorithm:
        raise MessageDecodingError(
            f"algorithm {message.algorithm!r} is not the one this process's key ring uses "
            f"({algorithm}): producers and workers must use the same mode",
            type_name=TYPE_NAME,
        )


def failed(
    message: EncryptedMessage | Sealed, transport_name: str, bus_name: str
) -> MessageDecodingError:
    """The error for a ciphertext that does not authenticate (no detail helps an attacker)."""
    return MessageDecodingError(
        f"the ciphertext does not authenticate with key {message.key_id!r}: it was altered, "
        "encrypted with another key of that id, or moved from another transport or bus "
        f"(this is transport {transport_name!r}, bus {bus_name!r})",
        type_name=TYPE_NAME,
    )


def unknown_key(message: EncryptedMessage | Sealed, known: tuple[str, ...]) -> MessageDecodingError:
    """The error for a key id this process does not hold."""
    listed = ", ".join(known) or "none"
    return MessageDecodingError(
        f"encrypted with key {message.key_id!r}, which this process does not hold "
        f"(its keys: {listed}); add that key to decrypt it",
        type_name=TYPE_NAME,
    )
