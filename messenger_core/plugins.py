"""Finding transports, serializers and middleware by name: explicit registrations first, then
the ``messenger.*`` entry-point groups (through stevedore, which imports only what is asked for).

An embedding application can hand every factory to :class:`PluginRegistry` explicitly and turn
entry points off (``autoload=False`` or ``MESSENGER_DISABLE_PLUGIN_AUTOLOAD=1``); the core's own
built-ins (the entry points of the ``messenger-core`` distribution) are then still available.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

import attrs
from stevedore import DriverManager, ExtensionManager
from stevedore.exception import MultipleMatches, NoMatches

from messenger_core.errors import ConfigurationError

__all__ = [
    "DISABLED_PLUGINS_VARIABLE",
    "DISABLE_AUTOLOAD_VARIABLE",
    "MIDDLEWARE_GROUP",
    "PLUGINS_GROUP",
    "SERIALIZERS_GROUP",
    "TRANSPORTS_GROUP",
    "EntryPointInfo",
    "PluginRegistry",
    "autoload_enabled",
    "disabled_plugins",
    "discover_entry_points",
]

logger = logging.getLogger("messenger.plugins")

TRANSPORTS_GROUP = "messenger.transports"
SERIALIZERS_GROUP = "messenger.serializers"
MIDDLEWARE_GROUP = "messenger.middleware"
PLUGINS_GROUP = "messenger.plugins"
GROUPS = (TRANSPORTS_GROUP, SERIALIZERS_GROUP, MIDDLEWARE_GROUP, PLUGINS_GROUP)

DISABLE_AUTOLOAD_VARIABLE = "MESSENGER_DISABLE_PLUGIN_AUTOLOAD"
DISABLED_PLUGINS_VARIABLE = "MESSENGER_DISABLED_PLUGINS"

# Schemes served by this project's own plugins, whose distribution is not named after them.
_PROJECT_TRANSPORTS = {
    **dict.fromkeys(
        ("sqlite", "postgresql", "postgres", "mysql", "mariadb"), "messenger-transport-sql"
    ),
    **dict.fromkeys(("redis", "rediss"), "messenger-transport-redis"),
    **dict.fromkeys(("amqp", "amqps"), "messenger-transport-amqp"),
}

_KIND = {
    TRANSPORTS_GROUP: "transport (DSN scheme)",
    SERIALIZERS_GROUP: "serializer",
    MIDDLEWARE_GROUP: "middleware",
    PLUGINS_GROUP: "plugin",
}


def autoload_enabled() -> bool:
    """False when ``MESSENGER_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value."""
    return os.environ.get(DISABLE_AUTOLOAD_VARIABLE, "").strip().lower() not in {"1", "true", "yes"}


def disabled_plugins() -> set[str]:
    """Entry-point names listed in ``MESSENGER_DISABLED_PLUGINS`` (comma separated)."""
    value = os.environ.get(DISABLED_PLUGINS_VARIABLE, "")
    return {name.strip() for name in value.split(",") if name.strip()}


@attrs.frozen
class EntryPointInfo:
    """An installed entry point, as ``messenger plugins`` lists it."""

    group: str
    name: str
    value: str
    distribution: str | None
    version: str | None


def discover_entry_points(group: str | None = None) -> list[EntryPointInfo]:
    """Every installed entry point of the ``messenger.*`` groups (nothing is imported)."""
    found = []
    for each in (
        entry_point
        for name in (GROUPS if group is None else (group,))
        for entry_point in metadata.entry_points(group=name)
    ):
        dist = each.dist
        found.append(
            EntryPointInfo(
                group=each.group,
                name=each.name,
                value=each.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
        )
    return _unique(found)


def _unique(infos: Iterable[EntryPointInfo]) -> list[EntryPointInfo]:
    # The same distribution can be visible twice (e.g. an editable install next to a build
    # directory); only different distributions claiming one name are a real conflict.
    seen: dict[tuple[str, str, str | None, str], EntryPointInfo] = {}
    for info in infos:
        seen.setdefault((info.group, info.name, info.distribution, info.value), info)
    return list(seen.values())


def _reraise(_manager: object, _entry_point: object, error: BaseException) -> None:
    # stevedore's default is to log and carry on, which would turn a broken plugin into a
    # confusing "not found"; an import error must surface with its cause.
    raise error


CORE_DISTRIBUTION = "messenger-core"


def _core_entry_points(group: str) -> list[EntryPointInfo]:
    """The entry points the core itself declares in ``group`` (its built-ins)."""
    return [
        info
        for info in discover_entry_points(group)
        if info.distribution is not None
        and info.distribution.replace("_", "-").lower() == CORE_DISTRIBUTION
    ]


def _load_core(info: EntryPointInfo) -> Any:
    try:
        return metadata.EntryPoint(name=info.name, value=info.value, group=info.group).load()
    except Exception as error:
        raise ConfigurationError(
            f"{_KIND[info.group]} {info.name!r} from {info.distribution} failed to import: "
            f"{type(error).__name__}: {error}"
        ) from error


class PluginRegistry:
    """Resolves names to factories for one application.

    Explicit registrations (``register_*``) win over entry points; entry points are looked up
    only when ``autoload`` is on, and never for names in ``MESSENGER_DISABLED_PLUGINS``.
    """

    def __init__(self, *, autoload: bool | None = None) -> None:
        self.autoload = autoload_enabled() if autoload is None else autoload
        self.disabled = disabled_plugins()
        self._explicit: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
        self._loaded: dict[tuple[str, str], Any] = {}

    def register(self, group: str, name: str, factory: Any) -> None:
        """Register ``factory`` under ``name`` in ``group`` (no entry point needed)."""
        if group not in self._explicit:
            raise ConfigurationError(f"unknown plugin group {group!r}; expected one of {GROUPS}")
        self._explicit[group][name] = factory

    def register_transport(self, scheme: str, factory: Any) -> None:
        """Serve DSNs with ``scheme`` through ``factory`` (a TransportFactory)."""
        self.register(TRANSPORTS_GROUP, scheme, factory)

    def register_serializer(self, name: str, factory: Any) -> None:
        """Make serializer ``name`` available (a SerializerFactory)."""
        self.register(SERIALIZERS_GROUP, name, factory)

    def register_middleware(self, name: str, factory: Any) -> None:
        """Make middleware ``name`` available to bus configurations (a MiddlewareFactory)."""
        self.register(MIDDLEWARE_GROUP, name, factory)

    def names(self, group: str) -> list[str]:
        """Every name available in ``group``: explicit ones, then installed entry points."""
        names = dict.fromkeys(self._explicit[group])
        for info in discover_entry_points(group) if self.autoload else _core_entry_points(group):
            if info.name not in self.disabled:
                names.setdefault(info.name)
        return list(names)

    def load(self, group: str, name: str) -> Any:
        """The factory registered as ``name`` in ``group``; a clear error if there is none."""
        explicit = self._explicit[group].get(name)
        if explicit is not None:
            return explicit
        key = (group, name)
        if key not in self._loaded:
            self._loaded[key] = self._load_entry_point(group, name)
        return self._loaded[key]

    def _load_entry_point(self, group: str, name: str) -> Any:
        if not self.autoload and name not in self.disabled:
            # Autoload off blocks third-party plugins; the core's own built-ins stay available.
            for info in _core_entry_points(group):
                if info.name == name:
                    return _load_core(info)
        if not self.autoload or name in self.disabled:
            reason = (
                f"{DISABLE_AUTOLOAD_VARIABLE} is set"
                if not self.autoload
                else f"it is listed in {DISABLED_PLUGINS_VARIABLE}"
            )
            raise ConfigurationError(
                f"{_KIND[group]} {name!r} is not registered and entry points are not loaded "
                f"for it ({reason}); register it explicitly"
            )
        claims = [i for i in discover_entry_points(group) if i.name == name]
        distributions = sorted({f"{i.distribution} ({i.value})" for i in claims})
        if len(distributions) > 1:
            raise ConfigurationError(
                f"{_KIND[group]} {name!r} is claimed by several installed distributions: "
                f"{' and '.join(distributions)}; uninstall one of them, or set "
                f"{DISABLED_PLUGINS_VARIABLE} and register the one you want explicitly"
            )
        if not claims:
            raise ConfigurationError(self._not_found(group, name))
        # stevedore keeps each group's entry points for the life of the process; load from
        # what was just discovered (a plugin installed or put on sys.path since then).
        ExtensionManager.ENTRY_POINT_CACHE.pop(group, None)
        try:
            manager: DriverManager[Any] = DriverManager(
                namespace=group,
                name=name,
                invoke_on_load=False,
                on_load_failure_callback=_reraise,
            )
        except (NoMatches, MultipleMatches, RuntimeError) as error:
            raise ConfigurationError(f"{_KIND[group]} {name!r}: {error}") from None
        except Exception as error:
            raise ConfigurationError(
                f"{_KIND[group]} {name!r} from {distributions[0]} failed to import: "
                f"{type(error).__name__}: {error}"
            ) from error
        return manager.driver

    def _not_found(self, group: str, name: str) -> str:
        known = self.names(group)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(sorted(known)) or "none"
        if group == TRANSPORTS_GROUP:
            package = _PROJECT_TRANSPORTS.get(name, f"messenger-transport-{name}")
            return (
                f"no transport for DSN scheme {name!r} (installed: {listed}){hint or '.'} "
                f"If it comes from a plugin, install it: pip install {package}"
            )
        return f"no {_KIND[group]} named {name!r} (installed: {listed}){hint}"

    def load_many(self, group: str, names: Iterable[str]) -> list[Any]:
        """Load several names in order (each error names the one that failed)."""
        return [self.load(group, name) for name in names]

    def items(self, group: str) -> Mapping[str, Callable[..., Any]]:
        """Explicitly registered factories of ``group``."""
        return dict(self._explicit[group])
