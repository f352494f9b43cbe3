"""A typed facade over the pluggy plugin manager: the core calls hooks through this only."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy
from pluggy import HookCaller

from messenger_core import hookspecs
from messenger_core._suggest import close_matches
from messenger_core.errors import ConfigurationError
from messenger_core.plugins import load_hook_plugins

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.cli.command import Commands
    from messenger_core.envelope import Envelope
    from messenger_core.message_types import MessageTypeRegistry
    from messenger_core.middleware import Middleware
    from messenger_core.serializer import Serializer
    from messenger_core.worker import Worker

__all__ = ["Hooks"]

logger = logging.getLogger("messenger.plugins")


class Hooks:
    """The application's plugins and typed calls to their hooks."""

    def __init__(
        self, plugins: Iterable[object] = (), *, autoload: bool, disabled: Iterable[str] = ()
    ) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        for name in disabled:
            self.manager.set_blocked(name)
        if autoload:
            # Not pluggy's load_setuptools_entrypoints: it silently keeps the first of two
            # distributions claiming one plugin id and knows no DISTRIBUTION:NAME blocking.
            for name, plugin in load_hook_plugins(disabled):
                if not self.manager.is_blocked(name):
                    self.manager.register(plugin, name)
        for plugin in plugins:
            self.manager.register(plugin)
        self.check()

    def register(self, plugin: object, name: str | None = None) -> None:
        """Add a plugin object (a module or an instance with ``@hookimpl`` methods).

        A hook implementation named like no hook is a :class:`ConfigurationError` (see
        :meth:`check`); the plugin is then not registered.
        """
        self.manager.register(plugin, name)
        try:
            self.check()
        except ConfigurationError:
            self.manager.unregister(plugin)
            raise

    def check(self) -> None:
        """Refuse a hook implementation that matches no hook specification (a misspelling).

        Pluggy's ``check_pending``; the error names the plugin, the hook, and the hook it
        probably meant. ``@hookimpl(optionalhook=True)`` lets an implementation through.
        """
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            raise ConfigurationError(self._unknown_hooks_of(error.plugin)) from error

    def _unknown_hooks_of(self, plugin: object) -> str:
        known = [name for name in vars(hookspecs) if name.startswith(f"{hookspecs.PROJECT_NAME}_")]
        unknown = [
            name
            for name, caller in vars(self.manager.hook).items()
            if isinstance(caller, HookCaller)
            and not caller.has_spec()
            and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
        ]
        lines = []
        for name in unknown:
            line = f"{_describe_plugin(self.manager.get_name(plugin), plugin)} implements {name}"
            line += f", which is not a {hookspecs.PROJECT_NAME} hook"
            close = _closest(name, known)
            if close:
                line += f"; did you mean {close}?"
            lines.append(line)
        return (
            "; ".join(lines)
            + f" (the hooks are documented in {hookspecs.__name__}; mark an implementation "
            "meant for another version @hookimpl(optionalhook=True))"
        )

    def unregister(self, plugin: object) -> None:
        """Remove a plugin object registered before."""
        self.manager.unregister(plugin)

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins."""
        # Blocked names are registered as None placeholders: they are not plugins.
        return [
            name for name, plugin in self.manager.list_name_plugin() if name and plugin is not None
        ]

    # registration hooks
    def register_types(self, registry: MessageTypeRegistry) -> None:
        """Let plugins register message and stamp types."""
        self.manager.hook.messenger_register_types(registry=registry)

    def configure(self, messenger: Messenger) -> None:
        """Let plugins configure the application."""
        self.manager.hook.messenger_configure(messenger=messenger)

    def bus_middleware(self, messenger: Messenger, bus_name: str) -> list[Middleware]:
        """Middleware plugins add to ``bus_name``."""
        results = self.manager.hook.messenger_bus_middleware(messenger=messenger, bus_name=bus_name)
        return [m for result in results if result for m in result]

    def transport_serializer(
        self, messenger: Messenger, transport_name: str, serializer: Serializer
    ) -> Serializer:
        """The serializer transport ``transport_name`` uses: a plugin's replacement, if any."""
        caller = self.manager.hook.messenger_transport_serializer
        if not caller.get_hookimpls():
            return serializer
        replaced = caller(messenger=messenger, transport_name=transport_name, serializer=serializer)
        return serializer if replaced is None else replaced

    def add_commands(self, commands: Commands) -> None:
        """Let plugins add command-line commands."""
        self.manager.hook.messenger_add_commands(commands=commands)

    def implemented(self, *hook_names: str) -> bool:
        """Whether any plugin implements one of these hooks."""
        return any(getattr(self.manager.hook, name).get_hookimpls() for name in hook_names)

    # worker events
    @staticmethod
    def _notify(caller: HookCaller, **arguments: Any) -> None:
        # Calling a hook that no plugin implements still costs about a microsecond, and the
        # worker announces several events per message.
        if caller.get_hookimpls():
            caller(**arguments)

    def worker_started(self, worker: Worker) -> None:
        """Announce that ``worker`` starts."""
        self._notify(self.manager.hook.messenger_worker_started, worker=worker)

    def message_received(self, envelope: Envelope, transport_name: str) -> None:
        """Announce a received message."""
        self._notify(
            self.manager.hook.messenger_message_received,
            envelope=envelope,
            transport_name=transport_name,
        )

    def message_handled(self, envelope: Envelope, transport_name: str) -> None:
        """Announce a handled message."""
        self._notify(
            self.manager.hook.messenger_message_handled,
            envelope=envelope,
            transport_name=transport_name,
        )

    def message_failed(
        self, envelope: Envelope, transport_name: str, error: BaseException, will_retry: bool
    ) -> None:
        """Announce a failed message."""
        self._notify(
            self.manager.hook.messenger_message_failed,
            envelope=envelope,
            transport_name=transport_name,
            error=error,
            will_retry=will_retry,
        )

    def message_retried(self, envelope: Envelope, transport_name: str, retry_count: int) -> None:
        """Announce a message re-sent for retry."""
        self._notify(
            self.manager.hook.messenger_message_retried,
            envelope=envelope,
            transport_name=transport_name,
            retry_count=retry_count,
        )

    def worker_idle(self, worker: Worker) -> None:
        """Announce an idle worker."""
        self._notify(self.manager.hook.messenger_worker_idle, worker=worker)

    def worker_stopped(self, worker: Worker) -> None:
        """Announce a stopped worker."""
        self._notify(self.manager.hook.messenger_worker_stopped, worker=worker)


def _describe_plugin(name: str | None, plugin: object) -> str:
    """``plugin 'name' (module.Class)``; pluggy names a plugin registered without a name by
    its ``id``, which says nothing."""
    kind = getattr(plugin, "__name__", None) if isinstance(plugin, ModuleType) else None
    what = kind or f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    if name and not name.isdigit():
        return f"plugin {name!r} ({what})"
    return f"plugin {what}"


def _closest(name: str, known: list[str]) -> str | None:
    # Compared without the common prefix, which would make every hook look alike.
    prefix = f"{hookspecs.PROJECT_NAME}_"
    tails = {hook.removeprefix(prefix): hook for hook in known}
    close = close_matches(name.removeprefix(prefix), list(tails))
    return tails[close[0]] if close else None
