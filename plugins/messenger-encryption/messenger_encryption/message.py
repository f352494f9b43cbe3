"""What an encrypted message looks like on the wire, and what is authenticated with it.

An encrypted envelope travels as an ordinary message of type :class:`EncryptedMessage`
(through whatever serializer the transport uses) with the public stamps the transport and the
worker need. The message, its class and its other stamps are inside ``ciphertext``.
"""

from __future__ import annotations

import json
import struct

import attrs

from messenger_core.errors import MessageDecodingError
from messenger_core.stamps import NonSendableStamp
from messenger_core.transport import TransportMessage

__all__ = [
    "ALGORITHM_PUBLIC_KEY",
    "ALGORITHM_SYMMETRIC",
    "FORMAT_VERSION",
    "TYPE_NAME",
    "DecryptedStamp",
    "EncryptedMessage",
    "associated_data",
    "pack",
    "unpack",
]

FORMAT_VERSION = 1
ALGORITHM_SYMMETRIC = "A256GCM"
"""AES-256-GCM under a key of the ring, 12-byte random nonce, 16-byte tag."""
ALGORITHM_PUBLIC_KEY = "X25519-HKDF-SHA256-A256GCM"
"""An ephemeral X25519 agreement with the worker's public key, HKDF-SHA256 to a fresh
AES-256-GCM key per message."""
TYPE_NAME = "messenger_encryption.EncryptedMessage"

try:  # the core's fast extra (messenger-core[fast]): a tenth of the cost for the headers
    import orjson  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the installation
    orjson = None  # type: ignore[assignment,unused-ignore]

_AD_LABEL = b"messenger-encryption\x00"
_PACK_VERSION = b"\x01"
_SIZE = struct.Struct(">I")


@attrs.frozen(kw_only=True)
class EncryptedMessage:
    """An encrypted envelope, as the transport stores it.

    Bytes are base64 text so that any serializer (JSON ones included) can carry them. The
    GCM tag is the last 16 bytes of ``ciphertext``.
    """

    version: int
    algorithm: str
    key_id: str
    nonce: str
    ciphertext: str
    ephemeral_key: str = ""
    """The producer's one-time X25519 public key (public-key mode; empty otherwise).

    Empty rather than ``None``: a JSON ``null`` sends the core's fast (orjson) encoder back
    to the standard library, which doubles what encoding this message costs."""

    def __repr__(self) -> str:
        # The ciphertext says nothing to a reader and is long: its size is enough.
        return (
            f"EncryptedMessage(version={self.version}, algorithm={self.algorithm!r}, "
            f"key_id={self.key_id!r}, ciphertext=<{len(self.ciphertext)} base64 characters>)"
        )


@attrs.frozen(kw_only=True)
class DecryptedStamp(NonSendableStamp):
    """The message arrived encrypted and was decrypted here, with key ``key_id``."""

    key_id: str
    algorithm: str


def associated_data(
    *,
    version: int,
    algorithm: str,
    key_id: str,
    transport_name: str,
    bus_name: str,
    ephemeral_key: str,
) -> bytes:
    """The authenticated, unencrypted context of a message, in one canonical encoding.

    Each field is length-prefixed, so no two different contexts encode alike. Moving a
    ciphertext to another transport or bus, or editing these headers, fails authentication.
    """
    parts = [_AD_LABEL]
    for field in (str(version), algorithm, key_id, transport_name, bus_name, ephemeral_key):
        data = field.encode("utf-8")
        parts.append(struct.pack(">I", len(data)))
        parts.append(data)
    return b"".join(parts)


def pack(message: TransportMessage) -> bytes:
    """The inner serializer's output as one byte string: version, headers (JSON), body."""
    headers = message.headers
    if type(headers) is not dict:
        headers = dict(headers)
    if orjson is not None:
        encoded: bytes = orjson.dumps(headers)
    else:
        encoded = json.dumps(headers, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"".join((_PACK_VERSION, _SIZE.pack(len(encoded)), encoded, bytes(message.body)))


def unpack(data: bytes) -> TransportMessage:
    """The inverse of :func:`pack`; ``MessageDecodingError`` if ``data`` is not its output."""
    if len(data) < 5 or data[:1] != _PACK_VERSION:
        raise MessageDecodingError("the decrypted payload is not in a known layout")
    (size,) = _SIZE.unpack_from(data, 1)
    try:
        raw = data[5 : 5 + size]
        headers = orjson.loads(raw) if orjson is not None else json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MessageDecodingError("the decrypted payload's headers cannot be read") from None
    # Authenticated, so written by a key holder: a cheap check suffices (the inner
    # serializer refuses headers that are not strings).
    if not isinstance(headers, dict):
        raise MessageDecodingError("the decrypted payload's headers are not a mapping")
    return TransportMessage(data[5 + size :], headers)
