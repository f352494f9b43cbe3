"""The Redis transport's options: parsed from the DSN (path and query) or typed configuration.

Options reach the factory merged (the DSN's query string overridden by the configuration), as
strings or as typed values. :func:`parse_options` validates them into
:class:`RedisTransportOptions`; an unknown option or a bad value is a
:class:`~messenger_core.errors.ConfigurationError` naming the option and what is allowed.

Names, units and defaults follow Symfony Messenger's Redis transport where it has the option
(``redeliver_timeout`` in seconds, ``claim_interval`` in milliseconds, the ``symfony`` group),
so one configuration reads the same in both. Two deliberate differences: the consumer name is
unique per transport object by default (Symfony's shared ``consumer`` lets two workers steal
each other's pending entries), and ``fetch_size`` exists.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from messenger_core.errors import ConfigurationError

__all__ = ["KNOWN_OPTIONS", "RedisTransportOptions", "default_consumer_name", "parse_options"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_CERT_REQS = ("required", "optional", "none")
MAX_FETCH_SIZE = 10_000


def default_consumer_name() -> str:
    """``<hostname>-<pid>-<random>``: unique per transport object, readable in ``XINFO``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@attrs.frozen(kw_only=True)
class RedisTransportOptions:
    """Validated options of one Redis transport."""

    stream: str = "messages"
    """The stream holding the messages; delayed ones wait in the sorted set
    ``<stream>__queue``."""
    group: str = "symfony"
    """The consumer group: consumers of one group share the messages (each is handled once).
    Symfony's default, so that both apps compete for the same messages out of the box."""
    consumer: str | None = None
    """This consumer's name in the group; ``None``: a unique name per transport object. Give a
    stable name per worker (never shared by two live workers) to get its unacknowledged
    messages back at once after a restart instead of after ``redeliver_timeout``."""
    auto_setup: bool = True
    """Create the stream and the group on first use (and again if Redis lost them)."""
    delete_after_ack: bool = True
    """Delete an entry from the stream when it is acknowledged (``XACK`` + ``XDEL``)."""
    delete_after_reject: bool = True
    """Delete an entry from the stream when it is rejected."""
    stream_max_entries: int = 0
    """Above 0: trim the stream to about this many entries on every add (``MAXLEN ~``).
    Trimming drops the oldest entries even if nobody consumed them."""
    redeliver_timeout: float = 3600.0
    """Seconds after which an entry a consumer received but neither acknowledged nor rejected
    is claimed by another consumer (its consumer is presumed dead)."""
    claim_interval: int = 60_000
    """Milliseconds between two looks for such abandoned entries (``XAUTOCLAIM``)."""
    fetch_size: int = 1
    """How many entries one ``get()`` reads at most. Raise it (e.g. 100) for throughput; a
    consumer then holds that many messages at once (see the README's delivery guarantees)."""
    dbindex: int = 0
    """The Redis database number (``SELECT``)."""
    sentinel_master: str | None = None
    """With Sentinel: the master's service name; the DSN's hosts are then the sentinels."""
    timeout: float = 5.0
    """Seconds to wait for a connection to be established (Symfony's ``timeout``)."""
    read_timeout: float = 10.0
    """Seconds to wait for a reply before the connection is considered dead."""
    reconnect_timeout: float = 10.0
    """Seconds an operation keeps reconnecting (with backoff) after a connection error before
    it gives up: ``send`` then raises ``TransportError``, so does the first use of the
    transport; a consumer that was connected before returns nothing and tries again on its
    next ``get()``."""
    ssl_ca_certs: str | None = None
    """``rediss://``: a file of CA certificates to verify the server with."""
    ssl_certfile: str | None = None
    """``rediss://``: this client's certificate (for servers that verify clients)."""
    ssl_keyfile: str | None = None
    """``rediss://``: the key of ``ssl_certfile``."""
    ssl_cert_reqs: str = "required"
    """``rediss://``: ``required`` (verify the server), ``optional`` or ``none``."""

    @property
    def queue(self) -> str:
        """The sorted set of delayed messages: ``<stream>__queue`` (Symfony's name)."""
        return f"{self.stream}__queue"


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(
        f"option {name!r} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}"
    )


def _as_number(name: str, value: Any, *, integer: bool, minimum: float) -> float:
    number: float = math.nan
    if isinstance(value, bool):
        pass
    elif isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = int(value.strip()) if integer else float(value.strip())
    kind = "an integer" if integer else "a number"
    if not math.isfinite(number) or (integer and number != int(number)) or number < minimum:
        bound = int(minimum) if integer else minimum
        raise ConfigurationError(f"option {name!r} must be {kind} >= {bound}, got {value!r}")
    return number


def _integer(name: str, minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = int(_as_number(name, value, integer=True, minimum=minimum))
        if maximum is not None and number > maximum:
            raise ConfigurationError(f"option {name!r} must be at most {maximum}, got {value!r}")
        return number

    return parse


def _seconds(name: str, *, allow_zero: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        seconds = _as_number(name, value, integer=False, minimum=0)
        if seconds == 0 and not allow_zero:
            raise ConfigurationError(
                f"option {name!r} must be a number of seconds > 0, got {value!r}"
            )
        return seconds

    return parse


def _name(name: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"option {name!r} must be a non-empty string, got {value!r}")
        return value

    return parse


def _boolean(name: str) -> Callable[[Any], bool]:
    return lambda value: _as_bool(name, value)


def _cert_reqs(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in _CERT_REQS:
        raise ConfigurationError(
            f"option 'ssl_cert_reqs' must be one of {', '.join(_CERT_REQS)}, got {value!r}"
        )
    return str(text)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "stream": _name("stream"),
    "group": _name("group"),
    "consumer": _name("consumer"),
    "auto_setup": _boolean("auto_setup"),
    "delete_after_ack": _boolean("delete_after_ack"),
    "delete_after_reject": _boolean("delete_after_reject"),
    "stream_max_entries": _integer("stream_max_entries", 0),
    "redeliver_timeout": _seconds("redeliver_timeout"),
    "claim_interval": _integer("claim_interval", 0),
    "fetch_size": _integer("fetch_size", 1, MAX_FETCH_SIZE),
    "dbindex": _integer("dbindex", 0),
    "sentinel_master": _name("sentinel_master"),
    "timeout": _seconds("timeout"),
    "read_timeout": _seconds("read_timeout"),
    "reconnect_timeout": _seconds("reconnect_timeout", allow_zero=True),
    "ssl_ca_certs": _name("ssl_ca_certs"),
    "ssl_certfile": _name("ssl_certfile"),
    "ssl_keyfile": _name("ssl_keyfile"),
    "ssl_cert_reqs": _cert_reqs,
}

KNOWN_OPTIONS: tuple[str, ...] = tuple(_PARSERS)
"""Every option the Redis transport accepts."""

_PATH_PARTS = ("stream", "group", "consumer")
_MIN_READ_TIMEOUT = 1.0  # a get() blocks up to 0.1 s on the socket: leave room


def parse_options(options: Mapping[str, Any], path: str = "") -> RedisTransportOptions:
    """Validate ``options``; ``path`` is the DSN's ``/<stream>[/<group>[/<consumer>]]``.

    A name given both in the path and as an option must be the same. Raises
    :class:`ConfigurationError` naming an unknown option (and the known ones) or a bad value.
    """
    values: dict[str, Any] = {}
    for name, value in options.items():
        parser = _PARSERS.get(name)
        if parser is None:
            close = difflib.get_close_matches(name, KNOWN_OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(
                f"unknown option {name!r} for the Redis transport{hint}; "
                f"known options: {', '.join(KNOWN_OPTIONS)}"
            )
        values[name] = parser(value)
    parts = path.strip("/").split("/") if path.strip("/") else []
    if len(parts) > len(_PATH_PARTS):
        raise ConfigurationError(
            f"the DSN path {path!r} has too many parts: expected /<stream>[/<group>[/<consumer>]]"
        )
    for name, part in zip(_PATH_PARTS, parts, strict=False):
        if not part:
            raise ConfigurationError(
                f"the DSN path {path!r} has an empty {name}: "
                "expected /<stream>[/<group>[/<consumer>]]"
            )
        if name in values and values[name] != part:
            raise ConfigurationError(
                f"{name} is given twice, differently: {part!r} in the DSN path and "
                f"{values[name]!r} as an option; keep one"
            )
        values[name] = part
    if values.get("read_timeout", _MIN_READ_TIMEOUT) < _MIN_READ_TIMEOUT:
        raise ConfigurationError(
            f"option 'read_timeout' must be at least {_MIN_READ_TIMEOUT:g} s, "
            f"got {values['read_timeout']!r}"
        )
    return RedisTransportOptions(**values)
