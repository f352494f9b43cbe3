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

import os
import secrets
import socket
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import attrs

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.transport_options import (
    parse_bool,
    parse_int,
    parse_milliseconds,
    parse_seconds,
    reject_unknown_options,
)

__all__ = ["KNOWN_OPTIONS", "RedisTransportOptions", "default_consumer_name", "parse_options"]

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
    fetch_size: int = 10
    """How many entries one ``get()`` reads at most: 10 reads about three times as fast as 1;
    100 is faster still. A consumer holds that many messages at once; on close it hands back
    those it did not handle (see the README's delivery guarantees). Use 1 for handlers that
    may run close to ``redeliver_timeout``."""
    dbindex: int = 0
    """The Redis database number (``SELECT``)."""
    sentinel_master: str | None = None
    """With Sentinel: the master's service name; the DSN's hosts are then the sentinels."""
    timeout: float = 5.0
    """Seconds to wait for a connection to be established (Symfony's ``timeout``)."""
    read_timeout: float = 10.0
    """Seconds to wait for a reply before the connection is considered dead."""
    reconnect_timeout: float = 10.0
    """Seconds an operation keeps reconnecting (with backoff and jitter) after a connection
    error before it gives up: ``send`` then raises ``RedisUnreachableError`` (a
    ``TransportError``), so does the first ``get()``; a consumer that has received before tries
    for at most half a second per ``get()``, returns nothing, and goes on trying (backing off)
    on its next calls until Redis is back."""
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


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"option {name!r} must be a non-empty string, got {value!r}")
    return value


def _cert_reqs(name: str, value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in _CERT_REQS:
        raise ConfigurationError(
            f"option {name!r} must be one of {', '.join(_CERT_REQS)}, got {value!r}"
        )
    return str(text)


# Each parser takes the option's name and its value.
_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "stream": _name,
    "group": _name,
    "consumer": _name,
    "auto_setup": parse_bool,
    "delete_after_ack": parse_bool,
    "delete_after_reject": parse_bool,
    "stream_max_entries": partial(parse_int, minimum=0),
    "redeliver_timeout": parse_seconds,
    "claim_interval": parse_milliseconds,
    "fetch_size": partial(parse_int, minimum=1, maximum=MAX_FETCH_SIZE),
    "dbindex": partial(parse_int, minimum=0),
    "sentinel_master": _name,
    "timeout": parse_seconds,
    "read_timeout": parse_seconds,
    "reconnect_timeout": partial(parse_seconds, allow_zero=True),
    "ssl_ca_certs": _name,
    "ssl_certfile": _name,
    "ssl_keyfile": _name,
    "ssl_cert_reqs": _cert_reqs,
}

KNOWN_OPTIONS: tuple[str, ...] = tuple(_PARSERS)
"""Every option the Redis transport accepts."""

_PATH_PARTS = ("stream", "group", "consumer")
_MIN_READ_TIMEOUT = 1.0  # a get() blocks up to 0.1 s on the socket: leave room


def parse_options(
    options: Mapping[str, Any], path: str = "", *, dsn: Dsn | None = None
) -> RedisTransportOptions:
    """Validate ``options``; ``path`` is the DSN's ``/<stream>[/<group>[/<consumer>]]``.

    A name given both in the path and as an option must be the same. Raises
    :class:`ConfigurationError` naming an unknown option (and the known ones, and ``dsn`` if
    given, its password masked) or a bad value.
    """
    reject_unknown_options(options, KNOWN_OPTIONS, transport="Redis", dsn=dsn)
    values: dict[str, Any] = {name: _PARSERS[name](name, value) for name, value in options.items()}
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
