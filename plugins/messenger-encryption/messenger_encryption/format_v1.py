"""Format 1, read but no longer written: messages stored by earlier versions of the plugin
still decrypt, and ``messenger encryption rotate`` rewrites them in the current format.

A format-1 message was an :class:`EncryptedMessageV1` with named fields, each binary one in
base64 on its own, and authenticated a length-prefixed encoding of those fields (the one-time
public key as its base64 text).
"""

from __future__ import annotations

import binascii
import struct

import attrs

from messenger_core.errors import MessageDecodingError
from messenger_encryption.sealed import Sealed

__all__ = ["TYPE_NAME_V1", "EncryptedMessageV1", "associated_data_v1", "from_v1"]

TYPE_NAME_V1 = "messenger_encryption.EncryptedMessage"
_AD_LABEL = b"messenger-encryption\x00"
_LENGTH = struct.Struct(">I")


@attrs.frozen(kw_only=True)
class EncryptedMessageV1:
    """An encrypted envelope in format 1 (bytes as base64 text; the GCM tag is the last 16
    bytes of ``ciphertext``)."""

    version: int
    algorithm: str
    key_id: str
    nonce: str
    ciphertext: str
    ephemeral_key: str = ""

    def __repr__(self) -> str:
        return (
            f"EncryptedMessageV1(algorithm={self.algorithm!r}, key_id={self.key_id!r}, "
            f"ciphertext=<{len(self.ciphertext)} base64 characters>)"
        )


def from_v1(message: EncryptedMessageV1) -> Sealed:
    """The parts of ``message``; ``MessageDecodingError`` if a field is not base64."""
    return Sealed(
        message.version,
        message.algorithm,
        message.key_id,
        _unb64(message.nonce, "nonce"),
        _unb64(message.ciphertext, "ciphertext"),
        _unb64(message.ephemeral_key, "ephemeral key"),
    )


def associated_data_v1(sealed: Sealed, transport_name: str, bus_name: str) -> bytes:
    """What a format-1 message authenticated besides its ciphertext."""
    ephemeral = binascii.b2a_base64(sealed.ephemeral_key, newline=False).decode("ascii")
    parts = [_AD_LABEL]
    fields = (str(sealed.version), sealed.algorithm, sealed.key_id, transport_name, bus_name)
    for field in (*fields, ephemeral if sealed.ephemeral_key else ""):
        data = field.encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _unb64(text: str, what: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError, TypeError):
        raise MessageDecodingError(f"the {what} is not base64", type_name=TYPE_NAME_V1) from None
