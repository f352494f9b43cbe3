"""The "stop workers" signal kept in Redis, shared by workers on every host.

``messenger stop-workers`` sets a key (``messenger:stop-workers`` by default) to the time of
the request, a Unix time in seconds as text; every worker reads it, at most once per
:attr:`RedisStopSignal.CHECK_INTERVAL`, and stops if the request came after the worker
started. Configured with the ``stop_signal`` key::

    [messenger]
    stop_signal = "redis://:password@redis.internal:6379"

The DSN reaches Redis exactly as a transport's does (TLS, unix socket, Sentinel, ``dbindex``);
its path, which names a transport's stream, is ignored. The request time comes from the
requesting host's clock and the worker's start time from the worker's: keep the hosts' clocks
synchronised (NTP).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import attrs
import redis

from messenger_core._suggest import close_matches
from messenger_core.dsn import Dsn, mask_dsn
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.stop_signal import PollingStopSignal
from messenger_transport_redis.endpoint import RedisEndpoint, describe, endpoint_of
from messenger_transport_redis.options import KNOWN_OPTIONS, RedisTransportOptions, parse_options

__all__ = [
    "CONNECTION_OPTIONS",
    "DEFAULT_KEY",
    "RedisStopSignal",
    "RedisStopSignalOptions",
    "parse_stop_signal_options",
]

logger = logging.getLogger("messenger.transport.redis")

T = TypeVar("T")

DEFAULT_KEY = "messenger:stop-workers"
"""The key holding the request time unless the ``key`` option names another."""
CONNECTION_OPTIONS: tuple[str, ...] = (
    "dbindex",
    "sentinel_master",
    "timeout",
    "read_timeout",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
)
"""The transport's options that say how to reach Redis; the stop signal takes them too."""
_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)
_READ_ERRORS: tuple[type[Exception], ...] = (*_ERRORS, ValueError)
"""ValueError: the key holds something that is not a time (a hand-made ``SET``)."""


@attrs.frozen(kw_only=True)
class RedisStopSignalOptions:
    """Validated options of a :class:`RedisStopSignal`."""

    key: str = DEFAULT_KEY
    """The key holding the request time: workers and ``stop-workers`` that use different keys
    do not see each other's requests (to stop one group of workers, not all)."""
    connection: RedisTransportOptions = attrs.field(factory=RedisTransportOptions)
    """How to reach Redis (:data:`CONNECTION_OPTIONS`; the other fields keep their defaults)."""


def parse_stop_signal_options(options: Mapping[str, Any]) -> RedisStopSignalOptions:
    """Validate ``options``: ``key`` and the :data:`CONNECTION_OPTIONS`.

    Raises :class:`ConfigurationError` for an unknown option, an option that belongs to the
    transport (``stream``...), or a bad value.
    """
    known = ("key", *CONNECTION_OPTIONS)
    for name in options:
        if name in known:
            continue
        if name in KNOWN_OPTIONS:
            raise ConfigurationError(
                f"option {name!r} is an option of the Redis transport, not of the Redis stop "
                f"signal; known options: {', '.join(known)}"
            )
        close = close_matches(name, known)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigurationError(
            f"unknown option {name!r} for the Redis stop signal{hint}; "
            f"known options: {', '.join(known)}"
        )
    key = options.get("key", DEFAULT_KEY)
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"option 'key' must be a non-empty string, got {key!r}")
    connection = parse_options({k: v for k, v in options.items() if k in CONNECTION_OPTIONS})
    return RedisStopSignalOptions(key=key, connection=connection)


class RedisStopSignal(PollingStopSignal):
    """A :class:`~messenger_core.stop_signal.StopSignal` kept in a Redis key.

    Build it with :meth:`from_dsn` (or through the ``stop_signal`` configuration key). Two
    objects built from the same DSN, in any processes on any hosts, share the signal. It
    connects on first use; reads are cached and failures tolerated as
    :class:`~messenger_core.stop_signal.PollingStopSignal` describes.
    """

    READ_ERRORS = _READ_ERRORS

    def __init__(
        self, endpoint: RedisEndpoint, options: RedisStopSignalOptions | None = None
    ) -> None:
        """A signal on the server ``endpoint`` names."""
        super().__init__()
        self._endpoint = endpoint
        self._options = options if options is not None else RedisStopSignalOptions()
        self._client: redis.Redis | None = None

    @classmethod
    def from_dsn(cls, dsn: Dsn, options: Mapping[str, Any] | None = None) -> RedisStopSignal:
        """A signal on the Redis server ``dsn`` names; ``options`` override the DSN's query.

        Raises :class:`ConfigurationError` for an unknown option, a bad value or a DSN that
        cannot work.
        """
        try:
            parsed = parse_stop_signal_options(dsn.with_options(options or {}))
        except ConfigurationError as error:
            raise ConfigurationError(f"{error} ({describe(dsn)})") from None
        return cls(endpoint_of(dsn, parsed.connection), parsed)

    def __repr__(self) -> str:
        return f"RedisStopSignal({self._endpoint.where!r}, key={self._options.key!r})"

    @property
    def options(self) -> RedisStopSignalOptions:
        """The signal's options."""
        return self._options

    def write_request_time(self, when: float) -> None:
        """Set the key to ``when``.

        Raises :class:`TransportError` (the password masked) if Redis cannot be reached or
        written.
        """
        try:
            self._call(lambda client: client.set(self._options.key, repr(when)))
        except _ERRORS as error:
            raise TransportError(f"{self!r}: cannot request the stop: {_reason(error)}") from error

    def close(self) -> None:
        """Close the signal's connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def read_request_time(self) -> float:
        """The time in the key (0 without one)."""
        value = self._call(lambda client: client.get(self._options.key))
        if value is None:
            return 0.0
        return float(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)

    def _call(self, command: Callable[[Any], T]) -> T:
        """Run ``command`` with the client; once more on a fresh connection if the pooled one
        turned out dead (a restarted server)."""
        if self._client is None:
            self._client = self._endpoint.client(self._options.connection)
        client = cast(Any, self._client)  # redis-py's sync client is typed as maybe async
        try:
            return command(client)
        except redis.ConnectionError:
            client.connection_pool.disconnect(inuse_connections=False)
            return command(client)


def _reason(error: BaseException) -> str:
    return mask_dsn(f"{type(error).__name__}: {error}")
