"""The plugin object: the hooks that put the encrypting serializer on every transport.

Installed, it is the ``encryption`` entry point of the ``messenger.plugins`` group and acts on
applications whose configuration has a ``[messenger.plugins.encryption]`` table. An
application that embeds the core passes ``EncryptionPlugin(settings)`` to
``Messenger(plugins=[...])`` instead (it then wins over the entry point's).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from messenger_core.hookspecs import hookimpl
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serializer import Serializer
from messenger_encryption.format_v1 import TYPE_NAME_V1, EncryptedMessageV1
from messenger_encryption.keyring import KeyRing, key_ring_of
from messenger_encryption.message import TYPE_NAME, DecryptedStamp, EncryptedMessage
from messenger_encryption.serializer import EncryptingSerializer
from messenger_encryption.settings import EncryptionSettings, settings_of

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.cli.command import Commands

__all__ = ["CONFIG_KEY", "EncryptionPlugin", "active_plugin", "plugin", "register_types"]

CONFIG_KEY = "encryption"
"""The plugin's table: ``[messenger.plugins.encryption]``."""


class EncryptionPlugin:
    """Encrypts the messages of the configured buses on every transport of an application.

    :param settings: the options (an :class:`EncryptionSettings` or a mapping like the
        configuration table); ``None`` reads each application's
        ``[messenger.plugins.encryption]`` table and leaves applications without one alone.
    :param keyring: a ready key ring (tests, or keys an embedding application holds itself);
        by default the keys are loaded from where the settings say, once per application.
    """

    def __init__(
        self,
        settings: EncryptionSettings | Mapping[str, Any] | None = None,
        *,
        keyring: KeyRing | None = None,
    ) -> None:
        self._settings = None if settings is None else settings_of(settings)
        self._keyring = keyring
        self._rings: weakref.WeakKeyDictionary[Messenger, KeyRing] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = "configured" if self._settings is None else repr(self._settings)
        return f"EncryptionPlugin({where})"

    def settings_for(self, messenger: Messenger) -> EncryptionSettings | None:
        """The settings this plugin applies to ``messenger``; ``None``: it is not active."""
        if self._settings is not None:
            return self._settings
        options = messenger.config.plugins.get(CONFIG_KEY)
        if options is None:
            return None
        return settings_of(options)

    def keyring_for(self, messenger: Messenger) -> KeyRing:
        """The application's key ring, loaded on first use (one secrets lookup per app)."""
        settings = self.settings_for(messenger)
        if settings is None:
            raise LookupError("the encryption plugin is not configured for this application")
        if self._keyring is not None:
            return self._keyring
        with self._lock:
            ring = self._rings.get(messenger)
            if ring is None:
                ring = key_ring_of(settings)
                self._rings[messenger] = ring
        return ring

    @hookimpl
    def messenger_configure(self, messenger: Messenger) -> None:
        """Where the plugin is active: check the options now, make :class:`EncryptedMessage`
        known by name, and add the encrypted buses the configuration lacks.

        Not ``messenger_register_types``: that hook does not say which application it is for,
        and an application without the plugin configured should not learn the type.
        """
        settings = self.settings_for(messenger)
        if settings is None:
            return
        register_types(messenger.registry)
        for bus in settings.buses:
            messenger.add_bus(bus)

    @hookimpl(wrapper=True)
    def messenger_transport_serializer(
        self, messenger: Messenger, transport_name: str, serializer: Serializer
    ) -> Generator[None, Serializer | None, Serializer | None]:
        """Wrap every transport's serializer (so no transport leaks an encrypted message).

        A hook wrapper, not an ordinary implementation: another plugin that replaces the
        serializer still does (the hook stops at its first result), and the encryption wraps
        what it returned, so no plugin can take the encryption off a transport by answering
        first.
        """
        replaced = yield
        inner = serializer if replaced is None else replaced
        settings = self.settings_for(messenger)
        if settings is None or isinstance(inner, EncryptingSerializer):
            return replaced  # not active here, or another instance of this plugin wrapped it
        return EncryptingSerializer(
            inner,
            transport_name,
            self.keyring_for(messenger),
            settings,
            failure_transport=transport_name in _failure_transports(messenger),
        )


class _EntryPointPlugin(EncryptionPlugin):
    """The installed plugin: configuration-driven, and it adds the commands."""

    @hookimpl
    def messenger_add_commands(self, commands: Commands) -> None:
        """``messenger encryption generate-key|rotate``."""
        # Imported here: the commands module imports this one, and the command line only.
        from messenger_encryption.commands import register  # noqa: PLC0415

        register(commands)


plugin = _EntryPointPlugin()
"""The ``messenger.plugins`` entry point."""


def register_types(registry: MessageTypeRegistry) -> None:
    """Make :class:`EncryptedMessage` (and its format-1 form, still read) and
    :class:`DecryptedStamp` known to ``registry``."""
    registry.register(EncryptedMessage, TYPE_NAME)
    registry.register(EncryptedMessageV1, TYPE_NAME_V1)
    registry.register_stamp(DecryptedStamp, "messenger_encryption.DecryptedStamp")


def _failure_transports(messenger: Messenger) -> set[str]:
    config = messenger.config
    names = {t.failure_transport for t in config.transports.values() if t.failure_transport}
    if config.failure_transport:
        names.add(config.failure_transport)
    return names


def active_plugin(messenger: Messenger) -> EncryptionPlugin | None:
    """The encryption plugin that wraps ``messenger``'s transports (the one pluggy calls
    first, as the hook is ``firstresult``), or ``None``."""
    for implementation in reversed(
        messenger.hooks.manager.hook.messenger_transport_serializer.get_hookimpls()
    ):
        candidate = implementation.plugin
        if isinstance(candidate, EncryptionPlugin) and candidate.settings_for(messenger):
            return candidate
    return None
