"""Public-key mode: producers encrypt to the workers' X25519 public key, only workers decrypt.

Each message gets a one-time X25519 key pair; the agreement with the recipient's public key,
through HKDF-SHA256 salted with both public keys and bound to the key id, gives that
message's AES-256-GCM key. The one-time public key travels with the message, authenticated.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_encryption._aead import associated_data, check_header, failed, unknown_key
from messenger_encryption.keys import KeyList
from messenger_encryption.message import ALGORITHM_PUBLIC_KEY, TYPE_NAME
from messenger_encryption.sealed import (
    EPHEMERAL_KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    Sealed,
    associated_data_v2,
    from_bytes,
    header,
)

__all__ = ["PublicKeyRing"]

_HKDF_INFO = b"messenger-encryption v1 data key"


class PublicKeyRing:
    """X25519 keys by id: public ones to encrypt to, private ones (workers only) to decrypt.

    Each message gets a one-time X25519 key pair; the agreement with the recipient's public
    key, through HKDF-SHA256, gives that message's AES-256-GCM key. The one-time public key
    travels with the message and is authenticated.
    """

    def __init__(self, private: KeyList, public: KeyList) -> None:
        self._private = {
            key_id: X25519PrivateKey.from_private_bytes(key) for key_id, key in private
        }
        # Listed public keys first; a worker holding only private keys encrypts (retries,
        # the failure transport) to the public half of its newest one.
        recipients = [(key_id, X25519PublicKey.from_public_bytes(key)) for key_id, key in public]
        if not recipients:
            recipients = [(key_id, key.public_key()) for key_id, key in self._private.items()]
        if not recipients:
            raise ConfigurationError("public-key encryption needs a public or a private key")
        try:
            header(ALGORITHM_PUBLIC_KEY, recipients[0][0], bytes(EPHEMERAL_KEY_SIZE))
        except ValueError as error:
            raise ConfigurationError(f"an encryption key cannot be used: {error}") from None
        self._recipients = recipients
        self._ids = tuple(self._private)

    @property
    def encrypting_key_id(self) -> str:
        """The id of the public key new messages are encrypted to."""
        return self._recipients[0][0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the private keys held here (empty on a producer)."""
        return self._ids

    def seal(self, plaintext: bytes, *, transport_name: str, bus_name: str) -> bytes:
        """Encrypt to the newest public key."""
        key_id, recipient = self._recipients[0]
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes_raw()
        data_key = _data_key(ephemeral.exchange(recipient), ephemeral_public, recipient, key_id)
        nonce = os.urandom(NONCE_SIZE)
        sealed_header = header(ALGORITHM_PUBLIC_KEY, key_id, ephemeral_public)
        aad = associated_data_v2(sealed_header, transport_name, bus_name)
        return b"".join((sealed_header, nonce, AESGCM(data_key).encrypt(nonce, plaintext, aad)))

    def open(self, sealed: bytes | Sealed, *, transport_name: str, bus_name: str) -> bytes:
        """Decrypt with the private key ``sealed`` was encrypted to."""
        if isinstance(sealed, bytes):
            sealed = from_bytes(sealed)
        private = self._private_key(sealed)
        nonce, ciphertext, ephemeral_raw = sealed.nonce, sealed.ciphertext, sealed.ephemeral_key
        if (
            len(nonce) != NONCE_SIZE
            or len(ciphertext) < TAG_SIZE
            or len(ephemeral_raw) != EPHEMERAL_KEY_SIZE
        ):
            raise failed(sealed, transport_name, bus_name)
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
        except ValueError:  # a low-order point: an all-zero agreement is refused
            raise failed(sealed, transport_name, bus_name) from None
        data_key = _data_key(shared, ephemeral_raw, private.public_key(), sealed.key_id)
        aad = associated_data(sealed, transport_name, bus_name)
        try:
            return AESGCM(data_key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise failed(sealed, transport_name, bus_name) from None

    def _private_key(self, message: Sealed) -> X25519PrivateKey:
        """The private key ``message`` was encrypted to, once its version and algorithm are
        ours."""
        check_header(message, ALGORITHM_PUBLIC_KEY)
        private = self._private.get(message.key_id)
        if private is None:
            if not self._private:
                raise MessageDecodingError(
                    "this process holds no private key, so it cannot decrypt (public-key mode: "
                    "only workers given the private keys can)",
                    type_name=TYPE_NAME,
                )
            raise unknown_key(message, self._ids)
        return private

    def __repr__(self) -> str:
        return (
            f"PublicKeyRing(encrypts_to={self.encrypting_key_id!r}, "
            f"private_key_ids={list(self._ids)})"
        )


def _data_key(
    shared: bytes, ephemeral_public: bytes, recipient: X25519PublicKey, key_id: str
) -> bytes:
    """The message's AES key: HKDF over the agreement, bound to both public keys and the id."""
    salt = ephemeral_public + recipient.public_bytes_raw()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO + key_id.encode())
    return hkdf.derive(shared)
