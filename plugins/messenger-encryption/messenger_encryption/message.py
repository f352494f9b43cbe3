"""What an encrypted message looks like on the wire.

An encrypted envelope travels as an ordinary message of type :class:`EncryptedMessage`
(through whatever serializer the transport uses) with the public stamps the transport and the
worker need. Its one field is the sealed message (format 2, see :mod:`messenger_encryption.sealed`)
as base64 text: the message, its class and its other stamps are inside.
"""

from __future__ import annotations

import json
import struct
from typing import TypeVar

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
    "pack",
    "unpack",
]

FORMAT_VERSION = 2
"""The format this plugin writes; it still reads format 1 (see ``format_v1``)."""
ALGORITHM_SYMMETRIC = "A256GCM"
"""AES-256-GCM under a key of the ring, 12-byte random nonce, 16-byte tag."""
ALGORITHM_PUBLIC_KEY = "X25519-HKDF-SHA256-A256GCM"
"""An ephemeral X25519 agreement with the worker's public key, HKDF-SHA256 to a fresh
AES-256-GCM key per message."""
TYPE_NAME = "messenger_encryption.Encrypted"
"""The type name of :class:`EncryptedMessage` (format 2) in the transport's headers."""

try:  # the core's fast extra (messenger-core[fast]): a tenth of the cost for the headers
    import orjson  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the installation
    orjson = None  # type: ignore[assignment,unused-ignore]

_PACK_VERSION = b"\x01"
K = TypeVar("K")
V = TypeVar("V")
_SIZE = struct.Struct(">I")


@attrs.frozen
class EncryptedMessage:
    """An encrypted envelope, as the transport stores it: the sealed bytes (format version,
    algorithm, key id, one-time public key in public-key mode, nonce, ciphertext and GCM tag)
    as base64 text, so that any serializer (JSON ones included) can carry them."""

    sealed: str

    def __repr__(self) -> str:
        # The bytes say nothing to a reader and are long: their size is enough.
        return f"EncryptedMessage(<{len(self.sealed)} base64 characters>)"


@attrs.frozen(kw_only=True)
class DecryptedStamp(NonSendableStamp):
    """The message arrived encrypted and was decrypted here, with key ``key_id``."""

    key_id: str
    algorithm: str
    format_version: int = FORMAT_VERSION
    """The wire format it arrived in (``messenger encryption rotate`` rewrites older ones)."""


def pack(message: TransportMessage) -> bytes:
    """The inner serializer's output as one byte string: version, headers (JSON), body."""
    headers = message.headers
    try:
        key = tuple(headers.items())
        start = _packed_headers.get(key)
    except TypeError:  # a header that cannot be hashed: the inner serializer will say more
        key, start = None, None
    if start is None:
        as_dict = headers if type(headers) is dict else dict(headers)
        if orjson is not None:
            encoded: bytes = orjson.dumps(as_dict)
        else:
            encoded = json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False).encode()
        start = b"".join((_PACK_VERSION, _SIZE.pack(len(encoded)), encoded))
        if key is not None:
            _remember(_packed_headers, key, start)
    return start + bytes(message.body)


def unpack(data: bytes) -> TransportMessage:
    """The inverse of :func:`pack`; ``MessageDecodingError`` if ``data`` is not its output."""
    if len(data) < 5 or data[0] != 1:
        raise MessageDecodingError("the decrypted payload is not in a known layout")
    (size,) = _SIZE.unpack_from(data, 1)
    raw = data[5 : 5 + size]
    headers = _unpacked_headers.get(raw)
    if headers is None:
        try:
            headers = orjson.loads(raw) if orjson is not None else json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError):
            raise MessageDecodingError("the decrypted payload's headers cannot be read") from None
        # Authenticated, so written by a key holder: a cheap check suffices (the inner
        # serializer refuses headers that are not strings).
        if not isinstance(headers, dict):
            raise MessageDecodingError("the decrypted payload's headers are not a mapping")
        _remember(_unpacked_headers, raw, headers)
    # A copy: the caller may change its message's headers, never the cached ones.
    return TransportMessage(data[5 + size :], dict(headers))


# A message type's headers hardly change from one message to the next (its type name, its
# sensitive stamps): encoded and decoded once each, kept here (cleared when full).
_packed_headers: dict[tuple[tuple[str, str], ...], bytes] = {}
_unpacked_headers: dict[bytes, dict[str, str]] = {}


def _remember(cache: dict[K, V], key: K, value: V) -> None:
    if len(cache) >= 256:
        cache.clear()
    cache[key] = value
