"""Configuration: ``messenger.toml`` or ``[tool.messenger]`` in ``pyproject.toml``, or a dict.

Strings may use ``${VAR}`` and ``${VAR:-default}``; they are expanded from the environment
before the structure is checked. The structure is built by cattrs into the attrs classes below,
and every mistake is reported with the key path that holds it and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from messenger_core._suggest import close_matches
from messenger_core.bus import DEFAULT_BUS
from messenger_core.dsn import mask_dsn
from messenger_core.errors import ConfigurationError
from messenger_core.routing import RouteKey, route_key_name

__all__ = [
    "BusConfig",
    "MessengerConfig",
    "MiddlewareConfig",
    "RetryStrategyConfig",
    "TransportConfig",
    "expand_variables",
    "load_config",
    "read_config_table",
]


@attrs.frozen(kw_only=True)
class RetryStrategyConfig:
    """``retry_strategy`` of a transport. Delays are in milliseconds.

    ``service`` names a custom strategy (``module:attribute``) instead of the multiplier one.
    """

    max_retries: int = 3
    delay: int = 1000
    multiplier: float = 2.0
    max_delay: int = 0
    jitter: float = 0.1
    service: str | None = None


@attrs.frozen(kw_only=True)
class TransportConfig:
    """One entry of ``[messenger.transports]``; a bare string is taken as its ``dsn``."""

    dsn: str
    serializer: str | None = None
    options: dict[str, Any] = attrs.field(factory=dict)
    retry_strategy: RetryStrategyConfig = attrs.field(factory=RetryStrategyConfig)
    failure_transport: str | None = None

    def __repr__(self) -> str:
        return f"TransportConfig(dsn={mask_dsn(self.dsn)!r}, serializer={self.serializer!r})"


@attrs.frozen(kw_only=True)
class MiddlewareConfig:
    """A middleware named in a bus's ``middleware`` list; a bare string is its ``name``."""

    name: str
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class BusConfig:
    """One entry of ``[messenger.buses]``.

    ``default_middleware = false`` leaves only the listed middleware (name the built-ins you
    want); ``allow_no_handlers`` lets a message with no handler pass silently (event buses).
    """

    middleware: list[MiddlewareConfig] = attrs.field(factory=list)
    default_middleware: bool = True
    allow_no_handlers: bool = False


@attrs.frozen(kw_only=True)
class MessengerConfig:
    """The ``[messenger]`` table."""

    app: str | None = None
    default_bus: str = DEFAULT_BUS
    failure_transport: str | None = None
    serializer: str = "json"
    serializers: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Options of each serializer by name: ``[messenger.serializers.json]
    field_names = "camelCase"``. A transport naming that serializer gets it with them."""
    plugins: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Options of installed plugins by name: ``[messenger.plugins.encryption]``. The core does
    not read them; a plugin reads its own in its hooks (``messenger.config.plugins``)."""
    stop_signal: str | None = None
    """Where ``messenger stop-workers`` leaves its signal: ``file:///path``, or the DSN of a
    shared store whose transport plugin can hold one (Redis, SQL), to stop workers on several
    hosts. Default: a file in this host's temporary directory."""
    buses: dict[str, BusConfig] = attrs.field(factory=dict)
    transports: dict[str, TransportConfig] = attrs.field(factory=dict)
    routing: dict[RouteKey, list[str]] = attrs.field(factory=dict)
    """Message class (or its ``module.QualName``, or ``"*"``) to transport names. In code the
    key may be the class object itself: ``{"routing": {OrderPlaced: "async"}}``."""

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.failure_transport and self.failure_transport not in self.transports:
            problems.append(_unknown("failure_transport", self.failure_transport, self.transports))
        for name, transport in self.transports.items():
            if transport.failure_transport and transport.failure_transport not in self.transports:
                problems.append(
                    _unknown(
                        f"transports.{name}.failure_transport",
                        transport.failure_transport,
                        self.transports,
                    )
                )
        for message, names in self.routing.items():
            for name in names:
                if name not in self.transports:
                    problems.append(
                        _unknown(f"routing.{route_key_name(message)!r}", name, self.transports)
                    )
        if problems:
            # A DSN pasted where a transport name belongs must not show its password.
            raise ConfigurationError(mask_dsn("; ".join(problems)))

    @property
    def bus_names(self) -> list[str]:
        """Every configured bus, the default one first (it exists even if not configured)."""
        return [self.default_bus, *(name for name in self.buses if name != self.default_bus)]

    def bus(self, name: str) -> BusConfig:
        """The configuration of bus ``name`` (defaults if it has none)."""
        return self.buses.get(name) or BusConfig()


def _unknown(key: str, value: str, known: Mapping[str, Any]) -> str:
    close = close_matches(value, list(known))
    hint = f"; did you mean {close[0]!r}?" if close else ""
    names = ", ".join(repr(k) for k in known) or "none"
    return f"messenger.{key}: no transport named {value!r} (configured: {names}){hint}"


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def expand_variables(value: Any, environ: Mapping[str, str] | None = None, path: str = "") -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` expanded in every string inside it."""
    environ = os.environ if environ is None else environ
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and (environ[name] or default is None):
                return environ[name]
            if default is not None:
                return default
            raise ConfigurationError(
                f"{path or 'configuration'}: environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)"
            )

        return _VARIABLE.sub(replace, value)
    if isinstance(value, Mapping):
        return {
            k: expand_variables(v, environ, f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_variables(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)

    # cattrs' defaults convert anything (bool("false") is True, str([...]) is a string): check
    # instead. Strings that spell a value are accepted, since ${VAR} expansion yields strings.
    def strict_str(value: Any, _: type[Any]) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value

    def strict_bool(value: Any, _: type[Any]) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        raise TypeError(f"expected true or false, got {value!r}")

    def strict_int(value: Any, _: type[Any]) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(f"expected a whole number, got {value!r}")
        return int(value)

    converter.register_structure_hook(str, strict_str)
    converter.register_structure_hook(bool, strict_bool)
    converter.register_structure_hook(int, strict_int)

    def string_or(cls: type[Any], field: str, what: str) -> Any:
        hook = converter.gen_structure_attrs_fromdict(cls)

        def structure(value: Any, _: type[Any]) -> Any:
            if isinstance(value, str):
                return cls(**{field: value})
            if not isinstance(value, Mapping):
                raise TypeError(f"expected {what} or a table, got {type(value).__name__}")
            return hook(value, cls)

        return structure

    converter.register_structure_hook(TransportConfig, string_or(TransportConfig, "dsn", "a DSN"))
    converter.register_structure_hook(
        MiddlewareConfig, string_or(MiddlewareConfig, "name", "a middleware name")
    )

    def routes(value: Any, _: type[Any]) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise TypeError(f"expected a transport name or a list of them, got {value!r}")

    converter.register_structure_hook_func(lambda t: t == list[str], routes)

    def route_key(value: Any, _: type[Any]) -> RouteKey:
        if isinstance(value, str | type):
            return value
        raise TypeError(f"expected a message class or its name, got {value!r}")

    converter.register_structure_hook_func(lambda t: t == RouteKey, route_key)
    return converter


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLEANS.update({"false": False, "0": False, "no": False, "off": False})

_converter = _make_converter()


def structure_config(data: Mapping[str, Any], source: str = "configuration") -> MessengerConfig:
    """Check and build a :class:`MessengerConfig` from a dict shaped like ``[messenger]``."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            f"{source}: expected a table of settings, got {type(data).__name__}"
        )
    expanded = expand_variables(dict(data), path="messenger")
    try:
        return _converter.structure(expanded, MessengerConfig)
    except ConfigurationError as error:
        raise ConfigurationError(f"{source}: {error}") from None
    except (ClassValidationError, IterableValidationError) as error:
        raise ConfigurationError(f"{source}: {_describe(error)}") from None


def _describe(error: BaseException) -> str:
    messages = []
    for line in cattrs.transform_error(error, path="messenger", format_exception=_format_leaf):
        messages.append(mask_dsn(line))
    return "; ".join(messages)


def _format_leaf(exception: BaseException, type_: type[Any] | None) -> str:
    if isinstance(exception, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exception.cl)] if attrs.has(exception.cl) else []
        parts = []
        for key in sorted(exception.extra_fields):
            close = close_matches(key, known)
            parts.append(
                f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        return "; ".join(parts) + (f"; expected one of: {', '.join(known)}" if known else "")
    if isinstance(exception, KeyError):
        return "required key missing"
    if isinstance(exception, ConfigurationError) or str(exception).startswith("expected "):
        return str(exception)
    expected = getattr(type_, "__name__", None) or str(type_)
    return f"expected {expected}: {exception}"


def load_config(path: str | os.PathLike[str]) -> MessengerConfig:
    """Read a ``messenger.toml`` (table ``[messenger]``) or a ``pyproject.toml``
    (table ``[tool.messenger]``)."""
    return structure_config(read_config_table(path), source=str(path))


def read_config_table(path: str | os.PathLike[str]) -> Any:
    """The raw ``[messenger]`` table of a ``messenger.toml`` (``[tool.messenger]`` of a
    ``pyproject.toml``), unchecked; a :class:`ConfigurationError` if there is none."""
    import tomllib  # noqa: PLC0415 - only when a file is read: an embedded app never needs it

    file = Path(path)
    try:
        with file.open("rb") as stream:
            document = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigurationError(f"configuration file {file} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{file}: not valid TOML: {error}") from None
    if file.name == "pyproject.toml":
        table = document.get("tool", {}).get("messenger")
        where = "[tool.messenger]"
    else:
        table = document.get("messenger")
        where = "[messenger]"
    if table is None:
        raise ConfigurationError(f"{file}: no {where} table")
    return table  # not checked here: structure_config says what is wrong with it
