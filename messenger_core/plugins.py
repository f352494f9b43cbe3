"""Finding transports, serializers and middleware by name: explicit registrations first, then
the ``messenger.*`` entry-point groups (through stevedore, which imports only what is asked for).

The core's own built-ins (``memory://``, ``in-memory://``, ``sync://``, the ``json`` serializer,
the default middleware) are declared as entry points of ``messenger-core`` like any plugin's,
and also listed in :data:`BUILTINS`: they load without reading any entry point, so an
embedding application works with entry points off (``autoload=False`` or
``MESSENGER_DISABLE_PLUGIN_AUTOLOAD=1``) and from a source tree with no installed metadata.

Two distributions claiming one name in one group (a third party declaring ``memory`` too) are
never resolved silently: loading that name is a :class:`ConfigurationError` naming both, and
``messenger plugins`` flags it. Pick one with ``MESSENGER_DISABLED_PLUGINS``, whose
comma-separated items are:

- ``NAME``: that name in every group, from every distribution;
- ``DISTRIBUTION:NAME``: only that distribution's claim of the name (the other claimant wins);
- ``DISTRIBUTION:*``: every entry point of that distribution.

stevedore is imported only when a third-party entry point is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import attrs

from messenger_core._requirements import normalize_name
from messenger_core._suggest import close_matches
from messenger_core._version import CORE_DISTRIBUTION, core_version
from messenger_core.errors import ConfigurationError
from messenger_core.middleware.stack import DEFAULT_STACK

if TYPE_CHECKING:
    from stevedore import DriverManager

__all__ = [
    "BUILTINS",
    "CORE_DISTRIBUTION",
    "DISABLED_PLUGINS_VARIABLE",
    "DISABLE_AUTOLOAD_VARIABLE",
    "MIDDLEWARE_GROUP",
    "PLUGINS_GROUP",
    "SERIALIZERS_GROUP",
    "TRANSPORTS_GROUP",
    "EntryPointInfo",
    "PluginRegistry",
    "autoload_enabled",
    "conflicts",
    "disabled_plugins",
    "discover_entry_points",
    "is_disabled",
    "load_hook_plugins",
]

logger = logging.getLogger("messenger.plugins")

TRANSPORTS_GROUP = "messenger.transports"
SERIALIZERS_GROUP = "messenger.serializers"
MIDDLEWARE_GROUP = "messenger.middleware"
PLUGINS_GROUP = "messenger.plugins"
GROUPS = (TRANSPORTS_GROUP, SERIALIZERS_GROUP, MIDDLEWARE_GROUP, PLUGINS_GROUP)

DISABLE_AUTOLOAD_VARIABLE = "MESSENGER_DISABLE_PLUGIN_AUTOLOAD"
DISABLED_PLUGINS_VARIABLE = "MESSENGER_DISABLED_PLUGINS"

BUILTINS: Mapping[str, Mapping[str, str]] = {
    TRANSPORTS_GROUP: {
        "memory": "messenger_core.transports.memory:MemoryTransportFactory",
        "in-memory": "messenger_core.transports.memory:MemoryTransportFactory",
        "sync": "messenger_core.transports.sync:SyncTransportFactory",
    },
    SERIALIZERS_GROUP: {"json": "messenger_core.serialization.json:JsonSerializerFactory"},
    MIDDLEWARE_GROUP: {
        **{step.name: step.entry_point for step in DEFAULT_STACK},
        "logging": "messenger_core.middleware.logging:LoggingMiddleware",
    },
    PLUGINS_GROUP: {},
}
"""The core's built-ins by group: the entry points ``messenger-core`` declares (a test keeps
the two equal). The default middleware's come from :mod:`messenger_core.middleware.stack`."""

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

_REGISTER_ARGUMENT = {
    TRANSPORTS_GROUP: "transports",
    SERIALIZERS_GROUP: "serializers",
    MIDDLEWARE_GROUP: "middleware",
    PLUGINS_GROUP: "plugins",
}


def autoload_enabled() -> bool:
    """False when ``MESSENGER_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value."""
    return os.environ.get(DISABLE_AUTOLOAD_VARIABLE, "").strip().lower() not in {"1", "true", "yes"}


def disabled_plugins() -> set[str]:
    """The items of ``MESSENGER_DISABLED_PLUGINS`` (comma separated; see the module)."""
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

    @property
    def is_core(self) -> bool:
        """Declared by ``messenger-core`` itself."""
        return normalize_name(self.distribution or "") == CORE_DISTRIBUTION

    def load(self) -> Any:
        """Import the object the entry point names."""
        return metadata.EntryPoint(name=self.name, value=self.value, group=self.group).load()


def is_disabled(info: EntryPointInfo, disabled: Iterable[str]) -> bool:
    """Whether ``MESSENGER_DISABLED_PLUGINS`` items ``disabled`` block this entry point."""
    distribution = normalize_name(info.distribution or "")
    for item in disabled:
        if item == info.name:
            return True
        owner, colon, name = item.rpartition(":")
        if colon and normalize_name(owner) == distribution and name in {info.name, "*"}:
            return True
    return False


def _builtin_infos(group: str) -> list[EntryPointInfo]:
    return [
        EntryPointInfo(group, name, value, CORE_DISTRIBUTION, core_version())
        for name, value in BUILTINS[group].items()
    ]


def discover_entry_points(group: str | None = None) -> list[EntryPointInfo]:
    """Every installed entry point of the ``messenger.*`` groups (nothing is imported).

    The core's built-ins are listed even when ``messenger-core`` is not installed (run from
    source): they are always available.
    """
    found = []
    for name in GROUPS if group is None else (group,):
        in_group = [
            EntryPointInfo(
                group=each.group,
                name=each.name,
                value=each.value,
                distribution=each.dist.name if each.dist else None,
                version=each.dist.version if each.dist else None,
            )
            for each in metadata.entry_points(group=name)
        ]
        if not any(info.is_core for info in in_group):
            in_group += _builtin_infos(name)
        found += in_group
    return _unique(found)


def _unique(infos: Iterable[EntryPointInfo]) -> list[EntryPointInfo]:
    # The same distribution can be visible twice (e.g. an editable install next to a build
    # directory); only different distributions claiming one name are a real conflict.
    seen: dict[tuple[str, str, str | None, str], EntryPointInfo] = {}
    for info in infos:
        seen.setdefault((info.group, info.name, info.distribution, info.value), info)
    return list(seen.values())


def conflicts(infos: Iterable[EntryPointInfo]) -> dict[tuple[str, str], list[EntryPointInfo]]:
    """The (group, name) pairs that more than one distribution claims, with their claims."""
    claims: dict[tuple[str, str], list[EntryPointInfo]] = {}
    for info in infos:
        claims.setdefault((info.group, info.name), []).append(info)
    return {
        key: each
        for key, each in claims.items()
        if len({normalize_name(i.distribution or "?") for i in each}) > 1
    }


def _describe_claims(claims: Iterable[EntryPointInfo]) -> str:
    return " and ".join(sorted(f"{i.distribution} ({i.value})" for i in claims))


def _conflict_error(group: str, name: str, claims: list[EntryPointInfo]) -> ConfigurationError:
    distributions = sorted({i.distribution or "?" for i in claims})
    picks = " or ".join(f"{DISABLED_PLUGINS_VARIABLE}={d}:{name}" for d in distributions)
    return ConfigurationError(
        f"{_KIND[group]} {name!r} is claimed by several installed distributions: "
        f"{_describe_claims(claims)}; uninstall one of them, or drop one claim with {picks} "
        f"(the other is then used), or register the one you want explicitly"
    )


def _reraise(_manager: object, _entry_point: object, error: BaseException) -> None:
    # stevedore's default is to log and carry on, which would turn a broken plugin into a
    # confusing "not found"; an import error must surface with its cause.
    raise error


def _load_with_stevedore(info: EntryPointInfo) -> Any:
    """Load one third-party entry point through a stevedore ``DriverManager``."""
    from stevedore import DriverManager  # noqa: PLC0415  (only when a plugin is loaded)

    entry_point = metadata.EntryPoint(name=info.name, value=info.value, group=info.group)

    class _OneEntryPoint(DriverManager[Any]):
        # The entry point was just found in the installed metadata; stevedore must load that
        # one, not what its own (process- and disk-wide) listing remembers of the group.
        def list_entry_points(self) -> list[metadata.EntryPoint]:
            return [entry_point]

    manager: DriverManager[Any] = _OneEntryPoint(
        namespace=info.group,
        name=info.name,
        invoke_on_load=False,
        on_load_failure_callback=_reraise,
    )
    return manager.driver


def _load(info: EntryPointInfo) -> Any:
    try:
        if info.is_core and BUILTINS[info.group].get(info.name) == info.value:
            return info.load()  # the core's own: a plain import
        return _load_with_stevedore(info)
    except Exception as error:
        raise ConfigurationError(
            f"{_KIND[info.group]} {info.name!r} from {info.distribution} failed to import: "
            f"{type(error).__name__}: {error}"
        ) from error


def load_hook_plugins(disabled: Iterable[str]) -> list[tuple[str, object]]:
    """The ``messenger.plugins`` entry points not disabled, imported: (name, plugin) pairs.

    A plugin id claimed by two distributions is a :class:`ConfigurationError` (pluggy would
    silently register the first one found).
    """
    disabled = set(disabled)
    infos = [i for i in discover_entry_points(PLUGINS_GROUP) if not is_disabled(i, disabled)]
    for (group, name), claims in conflicts(infos).items():
        raise _conflict_error(group, name, claims)
    return [(info.name, _load(info)) for info in infos]


class PluginRegistry:
    """Resolves names to factories for one application.

    Explicit registrations (``register_*``) win over entry points; the core's built-ins are
    always available; other entry points are looked up only when ``autoload`` is on, and
    never those ``MESSENGER_DISABLED_PLUGINS`` blocks.
    """

    def __init__(self, *, autoload: bool | None = None) -> None:
        self.autoload = autoload_enabled() if autoload is None else autoload
        self._autoload_off_because = (
            None
            if self.autoload
            else f"{DISABLE_AUTOLOAD_VARIABLE} is set"
            if autoload is None
            else "autoload=False was passed"
        )
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

    def _candidates(self, group: str) -> list[EntryPointInfo]:
        """The entry points this registry may use in ``group`` (disabled ones included)."""
        return discover_entry_points(group) if self.autoload else _builtin_infos(group)

    def names(self, group: str) -> list[str]:
        """Every name available in ``group``: explicit ones, then entry points."""
        names = dict.fromkeys(self._explicit[group])
        for info in self._candidates(group):
            if not is_disabled(info, self.disabled):
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
        claims = [i for i in self._candidates(group) if i.name == name]
        usable = [i for i in claims if not is_disabled(i, self.disabled)]
        if not usable and claims:
            raise ConfigurationError(
                f"{_KIND[group]} {name!r} ({_describe_claims(claims)}) is not used: it is "
                f"listed in {DISABLED_PLUGINS_VARIABLE}; register one explicitly "
                f"(Messenger({_REGISTER_ARGUMENT[group]}={{{name!r}: ...}})) or remove it there"
            )
        if not usable:
            raise ConfigurationError(self._not_found(group, name))
        if len({normalize_name(i.distribution or "?") for i in usable}) > 1:
            raise _conflict_error(group, name, usable)
        return _load(usable[0])

    def _not_found(self, group: str, name: str) -> str:
        known = self.names(group)
        close = close_matches(name, known)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(sorted(known)) or "none"
        if group == TRANSPORTS_GROUP:
            package = _PROJECT_TRANSPORTS.get(name, f"messenger-transport-{name}")
            text = (
                f"no transport for DSN scheme {name!r} (available: {listed}){hint or '.'} "
                f"If it comes from a plugin, install it: pip install {package}"
            )
        else:
            text = f"no {_KIND[group]} named {name!r} (available: {listed}){hint}"
        if self._autoload_off_because is not None:
            text += (
                f"; entry points of installed plugins are not loaded "
                f"({self._autoload_off_because}): register the factory explicitly "
                f"(Messenger({_REGISTER_ARGUMENT[group]}={{{name!r}: ...}}))"
            )
        return text

    def load_many(self, group: str, names: Iterable[str]) -> list[Any]:
        """Load several names in order (each error names the one that failed)."""
        return [self.load(group, name) for name in names]

    def items(self, group: str) -> Mapping[str, Callable[..., Any]]:
        """Explicitly registered factories of ``group``."""
        return dict(self._explicit[group])
