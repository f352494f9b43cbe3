"""Key rings: the keys of one process, with the two operations the serializer needs.

:class:`SymmetricKeyRing` encrypts with its newest key and decrypts with any of its keys.
:class:`~messenger_encryption.public_key.PublicKeyRing` encrypts to the newest X25519
public key with a one-time key agreement, and decrypts only where it holds the matching
private key.

No ``repr``, error or log line shows key material; key ids are not secret.
"""

from __future__ import annotations

import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from messenger_core.errors import ConfigurationError
from messenger_encryption._aead import (
    NONCE_SIZE,
    TAG_SIZE,
    Sealed,
    check_header,
    failed,
    from_message,
    new_sealed,
    unknown_key,
)
from messenger_encryption.keys import KeyList, load_public_keys, load_secret_keys
from messenger_encryption.message import (
    ALGORITHM_SYMMETRIC,
    FORMAT_VERSION,
    EncryptedMessage,
    associated_data,
)
from messenger_encryption.public_key import PublicKeyRing
from messenger_encryption.settings import EncryptionSettings

__all__ = ["KeyRing", "PublicKeyRing", "SymmetricKeyRing", "key_ring_of"]

_AAD_CACHE_SIZE = 1024


class KeyRing(Protocol):
    """What the encrypting serializer needs from the keys of a process."""

    @property
    def encrypting_key_id(self) -> str | None:
        """The id of the key new messages are encrypted with (``None``: cannot encrypt)."""
        ...

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids this ring can decrypt, newest first."""
        ...

    def seal(self, plaintext: bytes, *, transport_name: str, bus_name: str) -> EncryptedMessage:
        """``plaintext`` encrypted and bound to this transport and bus."""
        ...

    def open(self, message: EncryptedMessage, *, transport_name: str, bus_name: str) -> bytes:
        """The plaintext of ``message``; ``MessageDecodingError`` saying why not."""
        ...


class SymmetricKeyRing:
    """AES-256-GCM keys by id; the first encrypts, all decrypt."""

    def __init__(self, keys: KeyList) -> None:
        if not keys:
            raise ConfigurationError("an encryption key ring needs at least one key")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self._ids = tuple(key_id for key_id, _ in keys)
        # (key id, transport, bus) -> associated data: a handful of combinations per
        # process, and building it costs as much as encrypting a kilobyte.
        self._aad: dict[tuple[str, str, str], bytes] = {}

    def _associated_data(self, key_id: str, transport_name: str, bus_name: str) -> bytes:
        cache_key = (key_id, transport_name, bus_name)
        aad = self._aad.get(cache_key)
        if aad is None:
            aad = associated_data(
                version=FORMAT_VERSION,
                algorithm=ALGORITHM_SYMMETRIC,
                key_id=key_id,
                transport_name=transport_name,
                bus_name=bus_name,
                ephemeral_key="",
            )
            if len(self._aad) >= _AAD_CACHE_SIZE:
                self._aad.clear()
            self._aad[cache_key] = aad
        return aad

    @property
    def encrypting_key_id(self) -> str:
        """The newest key's id."""
        return self._ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, newest first."""
        return self._ids

    def seal(self, plaintext: bytes, *, transport_name: str, bus_name: str) -> EncryptedMessage:
        """Encrypt with the newest key and a fresh random nonce."""
        return self.seal_bytes(
            plaintext, transport_name=transport_name, bus_name=bus_name
        ).to_message()

    def seal_bytes(self, plaintext: bytes, *, transport_name: str, bus_name: str) -> Sealed:
        """:meth:`seal`, its result with bytes rather than base64 text."""
        key_id = self._ids[0]
        nonce = os.urandom(NONCE_SIZE)
        aad = self._aad.get((key_id, transport_name, bus_name)) or self._associated_data(
            key_id, transport_name, bus_name
        )
        ciphertext = self._ciphers[key_id].encrypt(nonce, plaintext, aad)
        return new_sealed((FORMAT_VERSION, ALGORITHM_SYMMETRIC, key_id, nonce, ciphertext, ""))

    def open(self, message: EncryptedMessage, *, transport_name: str, bus_name: str) -> bytes:
        """Decrypt with the key ``message`` names."""
        self._cipher(message)  # a wrong version or key is reported before a field's base64
        return self.open_bytes(
            from_message(message), transport_name=transport_name, bus_name=bus_name
        )

    def open_bytes(self, sealed: Sealed, *, transport_name: str, bus_name: str) -> bytes:
        """:meth:`open` for a message whose bytes were already read."""
        version, algorithm, key_id, nonce, ciphertext, ephemeral_key = sealed
        cipher = self._ciphers.get(key_id)
        if version != FORMAT_VERSION or algorithm != ALGORITHM_SYMMETRIC or cipher is None:
            cipher = self._cipher(sealed)  # raises, saying which
        if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE or ephemeral_key:
            raise failed(sealed, transport_name, bus_name)
        # Version and algorithm were checked: they are the ones the cache holds.
        aad = self._aad.get((key_id, transport_name, bus_name)) or self._associated_data(
            key_id, transport_name, bus_name
        )
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise failed(sealed, transport_name, bus_name) from None

    def _cipher(self, message: EncryptedMessage | Sealed) -> AESGCM:
        """The cipher of the key ``message`` names, once its version and algorithm are ours."""
        check_header(message, ALGORITHM_SYMMETRIC)
        cipher = self._ciphers.get(message.key_id)
        if cipher is None:
            raise unknown_key(message, self._ids)
        return cipher

    def __repr__(self) -> str:
        return f"SymmetricKeyRing(key_ids={list(self._ids)})"


def key_ring_of(settings: EncryptionSettings) -> KeyRing:
    """The key ring ``settings`` describe, loaded now; ``ConfigurationError`` if no key is
    configured (the message says where keys are looked for)."""
    secret = load_secret_keys(settings)
    if settings.mode == "symmetric":
        if not secret:
            raise ConfigurationError(
                f"messenger.plugins.encryption: no encryption key: set {settings.keys_env} "
                "(or key_file, or key_provider) to 'id:base64,...'; "
                "`messenger encryption generate-key` makes one"
            )
        return SymmetricKeyRing(secret)
    public = load_public_keys(settings)
    if not secret and not public:
        raise ConfigurationError(
            f"messenger.plugins.encryption (public-key mode): no key: set "
            f"{settings.public_keys_env} on producers and {settings.keys_env} on workers; "
            "`messenger encryption generate-key --public-key` makes a pair"
        )
    try:
        return PublicKeyRing(secret, public)
    except ValueError:
        raise ConfigurationError(
            "messenger.plugins.encryption: an X25519 key cannot be used (a wrong key?)"
        ) from None
