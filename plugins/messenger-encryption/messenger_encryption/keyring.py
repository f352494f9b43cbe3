"""Key rings: the keys of one process, with the two operations the serializer needs.

:class:`SymmetricKeyRing` encrypts with its newest key and decrypts with any of its keys.
:class:`PublicKeyRing` encrypts to the newest X25519 public key with a one-time key
agreement, and decrypts only where it holds the matching private key.

No ``repr``, error or log line shows key material; key ids are not secret.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_encryption.keys import KeyList, load_public_keys, load_secret_keys
from messenger_encryption.message import (
    ALGORITHM_PUBLIC_KEY,
    ALGORITHM_SYMMETRIC,
    FORMAT_VERSION,
    TYPE_NAME,
    EncryptedMessage,
    associated_data,
)
from messenger_encryption.settings import EncryptionSettings

__all__ = ["KeyRing", "PublicKeyRing", "SymmetricKeyRing", "key_ring_of"]

NONCE_SIZE = 12
TAG_SIZE = 16
_HKDF_INFO = b"messenger-encryption v1 data key"
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise MessageDecodingError(f"the {what} is not base64", type_name=TYPE_NAME) from None


def _check_header(message: EncryptedMessage, algorithm: str) -> None:
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


def _failed(message: EncryptedMessage, transport_name: str, bus_name: str) -> MessageDecodingError:
    return MessageDecodingError(
        f"the ciphertext does not authenticate with key {message.key_id!r}: it was altered, "
        "encrypted with another key of that id, or moved from another transport or bus "
        f"(this is transport {transport_name!r}, bus {bus_name!r})",
        type_name=TYPE_NAME,
    )


def _unknown_key(message: EncryptedMessage, known: tuple[str, ...]) -> MessageDecodingError:
    listed = ", ".join(known) or "none"
    return MessageDecodingError(
        f"encrypted with key {message.key_id!r}, which this process does not hold "
        f"(its keys: {listed}); add that key to decrypt it",
        type_name=TYPE_NAME,
    )


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
                ephemeral_key=None,
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
        key_id = self._ids[0]
        nonce = os.urandom(NONCE_SIZE)
        aad = self._associated_data(key_id, transport_name, bus_name)
        ciphertext = self._ciphers[key_id].encrypt(nonce, plaintext, aad)
        return EncryptedMessage(
            version=FORMAT_VERSION,
            algorithm=ALGORITHM_SYMMETRIC,
            key_id=key_id,
            nonce=_b64(nonce),
            ciphertext=_b64(ciphertext),
        )

    def open(self, message: EncryptedMessage, *, transport_name: str, bus_name: str) -> bytes:
        """Decrypt with the key ``message`` names."""
        _check_header(message, ALGORITHM_SYMMETRIC)
        cipher = self._ciphers.get(message.key_id)
        if cipher is None:
            raise _unknown_key(message, self._ids)
        nonce = _unb64(message.nonce, "nonce")
        ciphertext = _unb64(message.ciphertext, "ciphertext")
        if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE or message.ephemeral_key:
            raise _failed(message, transport_name, bus_name)
        # Version and algorithm were checked above: they are the ones the cache holds.
        aad = self._associated_data(message.key_id, transport_name, bus_name)
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise _failed(message, transport_name, bus_name) from None

    def __repr__(self) -> str:
        return f"SymmetricKeyRing(key_ids={list(self._ids)})"


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

    def seal(self, plaintext: bytes, *, transport_name: str, bus_name: str) -> EncryptedMessage:
        """Encrypt to the newest public key."""
        key_id, recipient = self._recipients[0]
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes_raw()
        data_key = _data_key(ephemeral.exchange(recipient), ephemeral_public, recipient, key_id)
        nonce = os.urandom(NONCE_SIZE)
        encoded_ephemeral = _b64(ephemeral_public)
        aad = associated_data(
            version=FORMAT_VERSION,
            algorithm=ALGORITHM_PUBLIC_KEY,
            key_id=key_id,
            transport_name=transport_name,
            bus_name=bus_name,
            ephemeral_key=encoded_ephemeral,
        )
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        return EncryptedMessage(
            version=FORMAT_VERSION,
            algorithm=ALGORITHM_PUBLIC_KEY,
            key_id=key_id,
            nonce=_b64(nonce),
            ciphertext=_b64(ciphertext),
            ephemeral_key=encoded_ephemeral,
        )

    def open(self, message: EncryptedMessage, *, transport_name: str, bus_name: str) -> bytes:
        """Decrypt with the private key ``message`` was encrypted to."""
        _check_header(message, ALGORITHM_PUBLIC_KEY)
        private = self._private.get(message.key_id)
        if private is None:
            if not self._private:
                raise MessageDecodingError(
                    "this process holds no private key, so it cannot decrypt (public-key mode: "
                    "only workers given the private keys can)",
                    type_name=TYPE_NAME,
                )
            raise _unknown_key(message, self._ids)
        nonce = _unb64(message.nonce, "nonce")
        ciphertext = _unb64(message.ciphertext, "ciphertext")
        ephemeral_raw = _unb64(message.ephemeral_key or "", "ephemeral key")
        if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE or len(ephemeral_raw) != 32:
            raise _failed(message, transport_name, bus_name)
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
        except ValueError:  # a low-order point: an all-zero agreement is refused
            raise _failed(message, transport_name, bus_name) from None
        data_key = _data_key(shared, ephemeral_raw, private.public_key(), message.key_id)
        aad = associated_data(
            version=message.version,
            algorithm=message.algorithm,
            key_id=message.key_id,
            transport_name=transport_name,
            bus_name=bus_name,
            ephemeral_key=message.ephemeral_key,
        )
        try:
            return AESGCM(data_key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise _failed(message, transport_name, bus_name) from None

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
