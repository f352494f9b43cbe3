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
from messenger_encryption._aead import associated_data, check_header, failed, unknown_key
from messenger_encryption.keys import KeyList, load_public_keys, load_secret_keys
from messenger_encryption.message import ALGORITHM_SYMMETRIC, FORMAT_VERSION
from messenger_encryption.public_key import PublicKeyRing
from messenger_encryption.sealed import (
    NONCE_SIZE,
    TAG_SIZE,
    Sealed,
    associated_data_v2,
    from_bytes,
    header,
)
from messenger_encryption.settings import EncryptionSettings

__all__ = ["KeyRing", "PublicKeyRing", "SymmetricKeyRing", "key_ring_of"]

_CACHE_SIZE = 1024


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

    def seal(self, plaintext: bytes, *, transport_name: str, bus_name: str) -> bytes:
        """``plaintext`` encrypted and bound to this transport and bus: the sealed bytes, in
        the current format (:mod:`messenger_encryption.sealed`)."""
        ...

    def open(self, sealed: bytes | Sealed, *, transport_name: str, bus_name: str) -> bytes:
        """The plaintext of ``sealed`` (the sealed bytes, or the parts of a message of either
        format); ``MessageDecodingError`` saying why not."""
        ...


class SymmetricKeyRing:
    """AES-256-GCM keys by id; the first encrypts, all decrypt."""

    def __init__(self, keys: KeyList) -> None:
        if not keys:
            raise ConfigurationError("an encryption key ring needs at least one key")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self._ids = tuple(key_id for key_id, _ in keys)
        try:
            # The format-2 header of each key's messages -> that key: the header of a message
            # sealed here is one of these, so opening one starts with a lookup, not a parse.
            self._by_header = {
                header(ALGORITHM_SYMMETRIC, key_id): (key_id, self._ciphers[key_id])
                for key_id in self._ids
            }
        except ValueError as error:
            raise ConfigurationError(f"an encryption key cannot be used: {error}") from None
        self._header = header(ALGORITHM_SYMMETRIC, self._ids[0])
        # (format, key id, transport, bus) -> associated data: a handful of combinations per
        # process, and building it costs as much as encrypting a kilobyte.
        self._aad: dict[tuple[int, str, str, str], bytes] = {}

    @property
    def encrypting_key_id(self) -> str:
        """The newest key's id."""
        return self._ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, newest first."""
        return self._ids

    def seal(self, plaintext: bytes, *, transport_name: str, bus_name: str) -> bytes:
        """Encrypt with the newest key and a fresh random nonce."""
        key_id = self._ids[0]
        nonce = os.urandom(NONCE_SIZE)
        aad = self._aad.get((FORMAT_VERSION, key_id, transport_name, bus_name))
        if aad is None:
            aad = associated_data_v2(self._header, transport_name, bus_name)
            self._remember((FORMAT_VERSION, key_id, transport_name, bus_name), aad)
        ciphertext = self._ciphers[key_id].encrypt(nonce, plaintext, aad)
        return b"".join((self._header, nonce, ciphertext))

    def open(self, sealed: bytes | Sealed, *, transport_name: str, bus_name: str) -> bytes:
        """Decrypt with the key ``sealed`` names."""
        if isinstance(sealed, bytes):
            data = sealed
            nonce_at = 3 + data[2] if len(data) > 2 else 0
            known = self._by_header.get(data[:nonce_at])
            if known is None or len(data) < nonce_at + NONCE_SIZE + TAG_SIZE:
                sealed = from_bytes(data)  # anything else: parsed, and refused below if it must
            else:  # sealed with a key of this ring: no parsing
                cache_key = (FORMAT_VERSION, known[0], transport_name, bus_name)
                aad = self._aad.get(cache_key)
                if aad is None:
                    aad = associated_data_v2(data[:nonce_at], transport_name, bus_name)
                    self._remember(cache_key, aad)
                nonce_end = nonce_at + NONCE_SIZE
                try:
                    return known[1].decrypt(data[nonce_at:nonce_end], data[nonce_end:], aad)
                except InvalidTag:
                    raise failed(from_bytes(data), transport_name, bus_name) from None
        version, algorithm, key_id, nonce, ciphertext, ephemeral_key = sealed
        cipher = self._ciphers.get(key_id)
        if algorithm != ALGORITHM_SYMMETRIC or cipher is None:
            cipher = self._cipher(sealed)  # raises, saying which
        if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE or ephemeral_key:
            raise failed(sealed, transport_name, bus_name)
        cache_key = (version, key_id, transport_name, bus_name)
        aad = self._aad.get(cache_key)
        if aad is None:
            check_header(sealed, ALGORITHM_SYMMETRIC)  # a version this plugin reads
            aad = associated_data(sealed, transport_name, bus_name)
            self._remember(cache_key, aad)
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise failed(sealed, transport_name, bus_name) from None

    def _cipher(self, sealed: Sealed) -> AESGCM:
        """The cipher of the key ``sealed`` names, once its version and algorithm are ours."""
        check_header(sealed, ALGORITHM_SYMMETRIC)
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise unknown_key(sealed, self._ids)
        return cipher

    def _remember(self, cache_key: tuple[int, str, str, str], aad: bytes) -> None:
        if len(self._aad) >= _CACHE_SIZE:
            self._aad.clear()
        self._aad[cache_key] = aad

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
