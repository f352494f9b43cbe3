"""The plugin's options: ``[messenger.plugins.encryption]``, or given to ``EncryptionPlugin``.

The options name where keys come from (environment variables, a file, a callable), never the
keys themselves, so the configuration can be printed, logged and committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from messenger_core._suggest import close_matches
from messenger_core.errors import ConfigurationError

__all__ = [
    "DEFAULT_BUS",
    "DEFAULT_KEYS_ENV",
    "DEFAULT_PUBLIC_KEYS_ENV",
    "EncryptionSettings",
    "KeyProvider",
]

DEFAULT_BUS = "messenger.bus.encrypted"
DEFAULT_KEYS_ENV = "MESSENGER_ENCRYPTION_KEYS"
DEFAULT_PUBLIC_KEYS_ENV = "MESSENGER_ENCRYPTION_PUBLIC_KEYS"
WHERE = "messenger.plugins.encryption"

Mode = Literal["symmetric", "public-key"]
KeyProvider = Callable[[], Any]
"""A callable returning keys (a secrets manager): ``"id:base64,..."``, or ``(id, key)``
pairs or a mapping of id to key, newest first; a key is raw bytes or base64 text."""


def _tuple_of_str(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _require(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    return _tuple_of_str(value)


@attrs.frozen(kw_only=True)
class EncryptionSettings:
    """What the plugin encrypts and where its keys come from (no key material here)."""

    buses: tuple[str, ...] = attrs.field(default=(DEFAULT_BUS,), converter=_tuple_of_str)
    """The buses whose messages leave the process only encrypted."""
    mode: Mode = "symmetric"
    """``symmetric``: one secret key ring encrypts and decrypts; ``public-key``: producers
    hold X25519 public keys only, workers the private keys."""
    keys_env: str = DEFAULT_KEYS_ENV
    """The variable holding the secret keys (symmetric keys, or X25519 private keys)."""
    public_keys_env: str = DEFAULT_PUBLIC_KEYS_ENV
    """The variable holding X25519 public keys (public-key mode)."""
    key_file: str | None = None
    """A file holding the secret keys, instead of ``keys_env``."""
    public_key_file: str | None = None
    """A file holding the public keys, instead of ``public_keys_env``."""
    key_provider: str | KeyProvider | None = None
    """``module:callable`` (or the callable) returning the secret keys, instead of a file or
    variable: for a secrets manager."""
    require_encryption: bool | tuple[str, ...] = attrs.field(default=False, converter=_require)
    """Refuse plaintext (in and out) on every transport (``true``) or on these transports."""

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("symmetric", "public-key"):
            raise ConfigurationError(
                f"{WHERE}.mode: {self.mode!r} is not a mode; use 'symmetric' or 'public-key'"
            )
        if not self.buses:
            raise ConfigurationError(f"{WHERE}.buses: name at least one bus")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EncryptionSettings:
        """Settings from the ``[messenger.plugins.encryption]`` table; an unknown option is a
        :class:`ConfigurationError` saying what was probably meant (its value is never shown:
        it might be a key put in the wrong place)."""
        known = [field.name for field in attrs.fields(cls)]
        for name in options:
            if name not in known:
                close = close_matches(name, known)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(
                    f"{WHERE}: unknown option {name!r}{hint} (options: {', '.join(known)})"
                )
        try:
            return cls(**options)
        except ConfigurationError:
            raise
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"{WHERE}: {type(error).__name__}: {error}") from None

    def requires_encryption(self, transport_name: str) -> bool:
        """Whether plaintext is refused on ``transport_name``."""
        if isinstance(self.require_encryption, bool):
            return self.require_encryption
        return transport_name in self.require_encryption


def settings_of(value: object) -> EncryptionSettings:
    """``value`` as settings (a mapping is read like the configuration table)."""
    if isinstance(value, EncryptionSettings):
        return value
    if isinstance(value, Mapping):
        return EncryptionSettings.from_options(value)
    raise ConfigurationError(f"{WHERE}: expected a table of options, not {type(value).__name__}")
