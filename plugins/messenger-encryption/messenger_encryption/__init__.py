"""messenger-encryption: the bus for sensitive data.

Messages dispatched on the encrypted buses (``messenger.bus.encrypted`` by default) leave the
process only encrypted with AES-256-GCM, whatever transport and serializer carry them. See
the README for the threat model, the set-up and key rotation.
"""

from __future__ import annotations

from messenger_encryption.keyring import KeyRing, PublicKeyRing, SymmetricKeyRing, key_ring_of
from messenger_encryption.message import DecryptedStamp, EncryptedMessage
from messenger_encryption.plugin import EncryptionPlugin
from messenger_encryption.serializer import (
    PUBLIC_STAMPS,
    EncryptingSerializer,
    PlaintextRefusedError,
)
from messenger_encryption.settings import EncryptionSettings

__all__ = [
    "PUBLIC_STAMPS",
    "DecryptedStamp",
    "EncryptedMessage",
    "EncryptingSerializer",
    "EncryptionPlugin",
    "EncryptionSettings",
    "KeyRing",
    "PlaintextRefusedError",
    "PublicKeyRing",
    "SymmetricKeyRing",
    "key_ring_of",
]
