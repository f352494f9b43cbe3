"""The sealed message, format 2: what a key ring produces and opens, as one byte string.

Layout (the first part, up to the nonce, is the *header*; it is authenticated)::

    version (1 byte: 2) | algorithm (1 byte) | key id length (1 byte) | key id (UTF-8)
    | one-time X25519 public key (32 bytes, public-key mode only)
    | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)

Format 1 wrote these as the named fields of a JSON object, each in base64 on its own; format
2 is about 150 bytes shorter per message once a text store has escaped it, which the stores
pay for on every message (see the README's performance section).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from messenger_core.errors import MessageDecodingError
from messenger_encryption.message import (
    ALGORITHM_PUBLIC_KEY,
    ALGORITHM_SYMMETRIC,
    FORMAT_VERSION,
    TYPE_NAME,
)

__all__ = [
    "EPHEMERAL_KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "Sealed",
    "associated_data_v2",
    "from_bytes",
    "header",
]

NONCE_SIZE = 12
TAG_SIZE = 16
EPHEMERAL_KEY_SIZE = 32

_ALGORITHM_IDS = {ALGORITHM_SYMMETRIC: 1, ALGORITHM_PUBLIC_KEY: 2}
_ALGORITHMS = {number: name for name, number in _ALGORITHM_IDS.items()}
_AD_LABEL = b"messenger-encryption v2\x00"
_LENGTH = struct.Struct(">I")


class Sealed(NamedTuple):
    """An encrypted message, its parts as the key rings use them (either format)."""

    version: int
    algorithm: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    """The encrypted bytes followed by the 16-byte GCM tag."""
    ephemeral_key: bytes
    """The producer's one-time X25519 public key (public-key mode; empty otherwise)."""


def header(algorithm: str, key_id: str, ephemeral_key: bytes = b"") -> bytes:
    """The authenticated start of a format-2 message, up to its nonce; ``ValueError`` for an
    algorithm this format has no number for, or a key id over 255 bytes."""
    encoded_id = key_id.encode("utf-8")
    if len(encoded_id) > 255:
        raise ValueError(f"key id {key_id!r} is longer than 255 bytes")
    return (
        b"".join((bytes((FORMAT_VERSION, _ALGORITHM_IDS[algorithm], len(encoded_id))), encoded_id))
        + ephemeral_key
    )


def from_bytes(data: bytes) -> Sealed:
    """The parts of a format-2 message; ``MessageDecodingError`` saying what is wrong.

    Only the layout is checked here; whether the parts authenticate is the key ring's part.
    """
    if len(data) < 3:
        raise _error("it is shorter than its header")
    if data[0] != FORMAT_VERSION:
        raise MessageDecodingError(
            f"encryption format version {data[0]} is not known here (this plugin writes "
            f"version {FORMAT_VERSION} and reads versions 1 and {FORMAT_VERSION})",
            type_name=TYPE_NAME,
        )
    algorithm = _ALGORITHMS.get(data[1])
    if algorithm is None:
        raise MessageDecodingError(
            f"algorithm number {data[1]} is not known here", type_name=TYPE_NAME
        )
    id_end = 3 + data[2]
    nonce_at = id_end + (EPHEMERAL_KEY_SIZE if algorithm == ALGORITHM_PUBLIC_KEY else 0)
    if len(data) < nonce_at + NONCE_SIZE + TAG_SIZE:
        raise _error("it is cut short")
    try:
        key_id = data[3:id_end].decode("utf-8")
    except UnicodeDecodeError:
        raise _error("its key id is not UTF-8") from None
    return Sealed(
        FORMAT_VERSION,
        algorithm,
        key_id,
        data[nonce_at : nonce_at + NONCE_SIZE],
        data[nonce_at + NONCE_SIZE :],
        data[id_end:nonce_at],
    )


def associated_data_v2(sealed_header: bytes, transport_name: str, bus_name: str) -> bytes:
    """What a format-2 message authenticates besides its ciphertext: its header, and the
    transport and bus it was sent to (length-prefixed, so no two contexts encode alike).
    Moving a ciphertext to another transport or bus, or editing its header, fails
    authentication."""
    parts = [_AD_LABEL, sealed_header]
    for name in (transport_name, bus_name):
        data = name.encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _error(reason: str) -> MessageDecodingError:
    return MessageDecodingError(
        f"the encrypted message is malformed: {reason}", type_name=TYPE_NAME
    )
