"""The AMQP transport's options, from the DSN and the configuration, as Symfony names them.

``amqp://user:pass@host:5672/<vhost>/<exchange>?options`` (``amqps://`` for TLS, port 5671).
The virtual host is the first path segment, percent-decoded (``%2f`` is ``/``; no path: ``/``);
the exchange the second (default ``messages``). As in Symfony, leading and trailing slashes
of the path are ignored, so ``//messages`` names the virtual host ``messages``.

Options reach the factory merged (the DSN's query overridden by the configuration), flat with
brackets (``exchange[name]=orders``, ``queues[q][binding_keys][]=a``) or nested (TOML tables);
:func:`parse_options` validates them into :class:`AmqpOptions`. An unknown option, at any
level, is a :class:`~messenger_core.errors.ConfigurationError` with "did you mean".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import quote, unquote

import attrs

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.transport_options import (
    parse_bool,
    parse_int,
    parse_seconds,
    reject_unknown_options,
)
from messenger_transport_amqp._nested import as_list, nest

__all__ = [
    "DEFAULT_PREFETCH_COUNT",
    "KNOWN_OPTIONS",
    "AmqpOptions",
    "DelayOptions",
    "ExchangeOptions",
    "QueueOptions",
    "parse_options",
]

DEFAULT_PREFETCH_COUNT = 50
"""Messages RabbitMQ pushes to a consumer ahead of its acknowledgements (see the README)."""

# Queue arguments RabbitMQ wants as integers; a DSN gives them as strings (Symfony's list).
_INTEGER_ARGUMENTS = (
    "x-delay",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
)
_EXCHANGE_TYPES = ("fanout", "direct", "topic", "headers")


@attrs.frozen(kw_only=True)
class ExchangeOptions:
    """``exchange[...]``: the exchange messages are published to."""

    name: str = "messages"
    type: str = "fanout"
    default_publish_routing_key: str | None = None
    """The routing key of a message sent without an ``AmqpStamp`` routing key."""
    arguments: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class QueueOptions:
    """``queues[<name>][...]``: one queue bound to the exchange."""

    binding_keys: tuple[str | None, ...] = (None,)
    """The keys the queue is bound with (``None``: bound without one, for ``fanout``)."""
    binding_arguments: Mapping[str, Any] = attrs.field(factory=dict)
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    """Declaration arguments: ``x-queue-type: quorum``, ``x-max-priority``…"""


@attrs.frozen(kw_only=True)
class DelayOptions:
    """``delay[...]``: where delayed and retried messages wait."""

    exchange_name: str = "delays"
    queue_name_pattern: str = "delay_%exchange_name%_%routing_key%_%delay%"


@attrs.frozen(kw_only=True)
class AmqpOptions:
    """Validated options of one AMQP transport."""

    host: str = "localhost"
    port: int = 5672
    vhost: str = "/"
    user: str = "guest"
    password: str = attrs.field(default="guest", repr=False)
    tls: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True
    exchange: ExchangeOptions = ExchangeOptions()
    queues: Mapping[str, QueueOptions] = attrs.field(factory=lambda: {"messages": QueueOptions()})
    delay: DelayOptions = DelayOptions()
    auto_setup: bool = True
    persistent: bool = False
    """Accepted for Symfony configurations (PHP's persistent connections); a Python process
    keeps its connection open anyway."""
    heartbeat: int | None = None
    """Seconds between heartbeats (0: none); ``None``: what the server proposes (60)."""
    connect_timeout: float = 10.0
    confirm_timeout: float | None = None
    """With a value, publisher confirms: a send returns once RabbitMQ confirmed it."""
    prefetch_count: int = DEFAULT_PREFETCH_COUNT
    connection_name: str | None = None
    frame_max: int | None = None
    channel_max: int | None = None
    reconnect_timeout: float = 10.0
    """Seconds a send (or the first receive) keeps reconnecting before it raises."""

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The transport's queues, in configuration order."""
        return tuple(self.queues)

    @property
    def where(self) -> str:
        """``host:port/vhost`` for messages (no credentials)."""
        return f"{self.host}:{self.port}/{quote(self.vhost, safe='')}"


def _text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigurationError(f"option {name!r} must be a string, got {value!r}")


def _name(name: str, value: Any) -> str:
    text = _text(name, value)
    if not text:
        raise ConfigurationError(f"option {name!r} must not be empty")
    return text


def _table(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"option {name!r} must be a table of name = value, got {value!r}")
    return {str(key): each for key, each in value.items()}


def _arguments(name: str, value: Any) -> dict[str, Any]:
    arguments = _table(name, value)
    for key in _INTEGER_ARGUMENTS:
        if key in arguments:
            arguments[key] = parse_int(f"{name}[{key}]", arguments[key])
    return arguments


def _optional_seconds(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    return parse_seconds(name, value)


_CONNECTION: dict[str, Callable[[str, Any], Any]] = {
    "host": _name,
    "port": partial(parse_int, minimum=1, maximum=65535),
    "vhost": _name,
    "user": _text,
    "login": _text,
    "password": _text,
    "cacert": _name,
    "cert": _name,
    "key": _name,
    "verify": parse_bool,
    "auto_setup": parse_bool,
    "persistent": parse_bool,
    "heartbeat": partial(parse_int, minimum=0),
    "connect_timeout": parse_seconds,
    "confirm_timeout": _optional_seconds,
    "prefetch_count": partial(parse_int, minimum=1, maximum=65535),
    "connection_name": _name,
    "frame_max": partial(parse_int, minimum=4096),
    "channel_max": partial(parse_int, minimum=1, maximum=65535),
    "reconnect_timeout": partial(parse_seconds, allow_zero=True),
}
_NESTED = ("exchange", "queues", "delay")
KNOWN_OPTIONS: tuple[str, ...] = (*_CONNECTION, *_NESTED)
"""Every top-level option the AMQP transport accepts."""
_EXCHANGE_KNOWN = ("name", "type", "default_publish_routing_key", "arguments")
_QUEUE_KNOWN = ("binding_keys", "binding_arguments", "arguments")
_DELAY_KNOWN = ("exchange_name", "queue_name_pattern")


def parse_options(dsn: Dsn, options: Mapping[str, Any]) -> AmqpOptions:
    """Validate the DSN and ``options`` (the configuration's, unmerged: they win over the
    DSN's query). Raises :class:`ConfigurationError` naming what is wrong."""
    if dsn.scheme not in ("amqp", "amqps"):
        raise ConfigurationError(f"the AMQP transport serves amqp:// and amqps://, not {dsn}")
    values = nest(dsn.with_options(options))
    reject_unknown_options(values, KNOWN_OPTIONS, transport="AMQP", dsn=dsn)
    vhost, exchange_name = _path_parts(dsn)
    tls = dsn.scheme == "amqps"
    found: dict[str, Any] = {
        "tls": tls,
        "host": dsn.host or "localhost",
        "port": dsn.port or (5671 if tls else 5672),
        "vhost": vhost,
    }
    if dsn.user is not None:
        found["user"] = dsn.user
    if dsn.password is not None:
        found["password"] = dsn.password
    for name, parser in _CONNECTION.items():
        if name in values:
            found["user" if name == "login" else name] = parser(name, values[name])
    if not tls:
        for name in ("cacert", "cert", "key", "verify"):  # as Symfony: TLS options need amqps
            found.pop(name, None)
    exchange = _exchange(values.get("exchange", {}), exchange_name)
    found["exchange"] = exchange
    # As Symfony: without queues, one queue named after the DSN's exchange segment.
    found["queues"] = (
        _queues(values["queues"]) if "queues" in values else {exchange_name: QueueOptions()}
    )
    found["delay"] = _delay(values.get("delay", {}))
    return AmqpOptions(**found)


def _path_parts(dsn: Dsn) -> tuple[str, str]:
    """The virtual host and the exchange named by the DSN's path (Symfony's reading)."""
    raw = dsn.raw_path or quote(dsn.path, safe="/")
    if not raw:
        return "/", "messages"
    parts = raw.strip("/").split("/")
    if len(parts) > 2:
        raise ConfigurationError(
            f"the DSN path {raw!r} has too many parts: expected /<vhost>[/<exchange>] "
            "(write a '/' in the virtual host as %2f)"
        )
    vhost = unquote(parts[0]) or "/"
    exchange = parts[1] if len(parts) > 1 and parts[1] else "messages"
    return vhost, exchange


def _exchange(value: Any, default_name: str) -> ExchangeOptions:
    table = _table("exchange", value)
    _reject(table, _EXCHANGE_KNOWN, "exchange")
    found: dict[str, Any] = {"name": default_name}
    if "name" in table:
        found["name"] = _name("exchange[name]", table["name"])
    if "type" in table:
        kind = _name("exchange[type]", table["type"]).lower()
        if kind not in _EXCHANGE_TYPES and not kind.startswith("x-"):
            raise ConfigurationError(
                f"option 'exchange[type]' must be one of {', '.join(_EXCHANGE_TYPES)} (or a "
                f"plugin's x-... type), got {table['type']!r}"
            )
        found["type"] = kind
    if table.get("default_publish_routing_key") not in (None, ""):
        found["default_publish_routing_key"] = _text(
            "exchange[default_publish_routing_key]", table["default_publish_routing_key"]
        )
    if "arguments" in table:
        found["arguments"] = _arguments("exchange[arguments]", table["arguments"])
    return ExchangeOptions(**found)


def _queues(value: Any) -> dict[str, QueueOptions]:
    table = _table("queues", value)
    if not table:
        raise ConfigurationError("option 'queues' must name at least one queue")
    return {name: _queue(name, each) for name, each in table.items()}


def _queue(name: str, value: Any) -> QueueOptions:
    where = f"queues[{name}]"
    table = {} if value in (None, "") else _table(where, value)
    _reject(table, _QUEUE_KNOWN, where)
    found: dict[str, Any] = {}
    if "binding_keys" in table:
        keys = as_list(f"{where}[binding_keys]", table["binding_keys"])
        found["binding_keys"] = tuple(_text(f"{where}[binding_keys]", key) for key in keys) or (
            None,
        )
    if "binding_arguments" in table:
        found["binding_arguments"] = _table(
            f"{where}[binding_arguments]", table["binding_arguments"]
        )
    if "arguments" in table:
        found["arguments"] = _arguments(f"{where}[arguments]", table["arguments"])
    return QueueOptions(**found)


def _delay(value: Any) -> DelayOptions:
    table = _table("delay", value)
    _reject(table, _DELAY_KNOWN, "delay")
    found = {name: _name(f"delay[{name}]", table[name]) for name in _DELAY_KNOWN if name in table}
    pattern = found.get("queue_name_pattern")
    if pattern is not None and "%delay%" not in pattern:
        raise ConfigurationError(
            "option 'delay[queue_name_pattern]' must contain %delay% (one queue per delay), "
            f"got {pattern!r}"
        )
    return DelayOptions(**found)


def _reject(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    try:
        reject_unknown_options(table, known, transport="AMQP")
    except ConfigurationError as error:
        raise ConfigurationError(f"in {where!r}: {error}") from None
