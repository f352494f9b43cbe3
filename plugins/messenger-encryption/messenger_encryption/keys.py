"""Key material: parsing ``id:base64`` lists, loading them from where the settings say, and
making new keys.

Nothing here ever puts a key in an exception message, a note or a ``repr``: errors name the
source and the key id only, and base64 errors are raised ``from None`` so that no decoder's
message (which may quote its input) rides along.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import os
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from messenger_core.errors import ConfigurationError
from messenger_encryption.settings import EncryptionSettings

__all__ = [
    "KEY_SIZE",
    "KeyList",
    "encode_key",
    "is_key_id",
    "load_public_keys",
    "load_secret_keys",
    "new_key_id",
    "new_keypair",
    "new_symmetric_key",
    "parse_keys",
]

KEY_SIZE = 32
"""Bytes of every key: AES-256 and X25519 alike."""
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

KeyList = list[tuple[str, bytes]]
"""Key ids and raw keys, newest (the one that encrypts) first."""


def encode_key(key: bytes) -> str:
    """A key as standard base64 text."""
    return base64.b64encode(key).decode("ascii")


def _decode_key(text: str, key_id: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"key {key_id!r} in {source} is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise ConfigurationError(
            f"key {key_id!r} in {source} is {len(key)} bytes; keys are {KEY_SIZE} bytes "
            "(`messenger encryption generate-key` makes one)"
        )
    return key


def is_key_id(text: str) -> bool:
    """Whether ``text`` can be a key id: 1 to 64 letters, digits, '.', '_' or '-'."""
    return _KEY_ID.match(text) is not None


def _check_id(key_id: str, source: str) -> str:
    if not is_key_id(key_id):
        raise ConfigurationError(
            f"a key id in {source} is not valid: ids are 1 to 64 letters, digits, '.', '_' "
            "or '-' (the list is 'id:base64,id:base64', newest first)"
        )
    return key_id


def parse_keys(text: str, source: str) -> KeyList:
    """``id:base64`` entries separated by commas, whitespace or new lines (``#`` starts a
    comment), newest first; ``source`` names where they come from in errors."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    entries = [entry for entry in re.split(r"[,\s]+", " ".join(lines)) if entry]
    keys: KeyList = []
    for entry in entries:
        key_id, colon, encoded = entry.partition(":")
        if not colon:
            raise ConfigurationError(
                f"an entry in {source} has no key id: the list is 'id:base64,id:base64'"
            )
        keys.append((_check_id(key_id, source), _decode_key(encoded, key_id, source)))
    return _unique(keys, source)


def _unique(keys: KeyList, source: str) -> KeyList:
    seen: set[str] = set()
    for key_id, _ in keys:
        if key_id in seen:
            raise ConfigurationError(f"key id {key_id!r} appears twice in {source}")
        seen.add(key_id)
    return keys


def _from_provided(value: Any, source: str) -> KeyList:
    """What a key provider returned, as a key list."""
    if isinstance(value, str):
        return parse_keys(value, source)
    pairs = value.items() if isinstance(value, Mapping) else value
    keys: KeyList = []
    try:
        for key_id, key in pairs:
            _check_id(str(key_id), source)
            if isinstance(key, str):
                raw = _decode_key(key, key_id, source)
            elif isinstance(key, bytes | bytearray) and len(key) == KEY_SIZE:
                raw = bytes(key)
            else:
                raise ConfigurationError(
                    f"key {key_id!r} from {source} is not {KEY_SIZE} bytes nor base64 text"
                )
            keys.append((str(key_id), raw))
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{source} returned a {type(value).__name__}; expected 'id:base64,...' text, "
            "(id, key) pairs or a mapping of id to key"
        ) from None
    return _unique(keys, source)


def _call_provider(provider: Any) -> tuple[Any, str]:
    if isinstance(provider, str):
        module_name, colon, attribute = provider.partition(":")
        if not colon or not module_name or not attribute:
            raise ConfigurationError(
                f"messenger.plugins.encryption.key_provider: {provider!r} is not 'module:callable'"
            )
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as error:
            raise ConfigurationError(
                f"messenger.plugins.encryption.key_provider: cannot load {provider!r}: "
                f"{type(error).__name__}: {error}"
            ) from None
        source = f"key provider {provider}"
    else:
        target = provider
        source = f"key provider {getattr(provider, '__qualname__', type(provider).__name__)}"
    try:
        value = target()
    except Exception as error:
        # The provider's own message is not repeated: a secrets manager's error may quote
        # what it returned.
        raise ConfigurationError(f"{source} failed: {type(error).__name__}") from None
    return value, source


def load_secret_keys(settings: EncryptionSettings) -> KeyList:
    """The secret keys (symmetric keys, or X25519 private keys in public-key mode): from the
    key provider, else the key file, else the environment variable; empty if none is set."""
    if settings.key_provider is not None:
        value, source = _call_provider(settings.key_provider)
        return _from_provided(value, source)
    if settings.key_file is not None:
        return parse_keys(_read(settings.key_file), f"key file {settings.key_file}")
    return parse_keys(os.environ.get(settings.keys_env, ""), settings.keys_env)


def load_public_keys(settings: EncryptionSettings) -> KeyList:
    """The X25519 public keys (public-key mode): from the public key file, else the
    environment variable; empty if neither is set."""
    if settings.public_key_file is not None:
        return parse_keys(_read(settings.public_key_file), f"key file {settings.public_key_file}")
    return parse_keys(os.environ.get(settings.public_keys_env, ""), settings.public_keys_env)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(
            f"cannot read encryption key file {path}: {error.strerror or error}"
        ) from None


def new_key_id() -> str:
    """A fresh key id that sorts by creation time: ``k20261127T201502``."""
    return datetime.now(UTC).strftime("k%Y%m%dT%H%M%S")


def new_symmetric_key() -> bytes:
    """32 random bytes: an AES-256 key."""
    return secrets.token_bytes(KEY_SIZE)


def new_keypair() -> tuple[bytes, bytes]:
    """A new X25519 key pair as raw bytes: (private, public)."""
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()
