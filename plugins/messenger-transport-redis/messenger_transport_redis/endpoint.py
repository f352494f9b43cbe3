"""From a DSN to a redis-py client: one host, a unix socket, TLS, or Sentinel.

Nothing connects here: redis-py connects on the first command, and the transport decides how
long to retry. redis-py's own retries are switched off (the transport retries whole operations
itself, because it must know when a reply was lost), its replies are RESP2 and not decoded
(the transport parses stream replies itself, which is faster than redis-py's callbacks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_transport_redis.options import RedisTransportOptions

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["DEFAULT_PORT", "DEFAULT_SENTINEL_PORT", "RedisEndpoint", "describe", "endpoint_of"]

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
_SCHEMES = ("redis", "rediss")
_HEALTH_CHECK_INTERVAL = 15
"""Seconds of idleness after which a pooled connection is PINGed before reuse: a connection
that died silently (a restarted server, a firewall dropping idle flows) is replaced before a
command is lost on it."""
_RAW_REPLIES = ("XREADGROUP", "XAUTOCLAIM", "XRANGE", "XPENDING", "XCLAIM")


def describe(dsn: Dsn) -> str:
    """``dsn`` for logs and errors, with no secret in it.

    Like Symfony (and phpredis), a DSN with a user but no password (``redis://secret@host``)
    authenticates with that "user" as the password, so it is masked too.
    """
    if dsn.user is not None and dsn.password is None:
        dsn = attrs.evolve(dsn, user="***")
    return str(dsn)


@attrs.frozen(kw_only=True)
class RedisEndpoint:
    """Where and how to connect, as parsed from a DSN; :meth:`client` builds a client."""

    host: str | None = None
    """The server's host (``None`` for a unix socket or Sentinel)."""
    port: int = DEFAULT_PORT
    unix_socket: str | None = None
    """The path of the server's unix socket."""
    sentinels: tuple[tuple[str, int], ...] = ()
    """With ``sentinel_master``: the sentinels to ask for the master."""
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    where: str = ""
    """The DSN without secrets, for messages."""

    def client(self, options: RedisTransportOptions) -> redis.Redis:
        """A new client (with its own connection pool) for this endpoint."""
        common = self._common(options, Retry(NoBackoff(), 0))
        client: redis.Redis
        if self.sentinels:
            sentinel: Any = cast(Any, Sentinel)(
                list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(options), **common
            )
            client = sentinel.master_for(options.sentinel_master)
        elif self.unix_socket is not None:
            del common["socket_connect_timeout"], common["socket_keepalive"]
            client = redis.Redis(unix_socket_path=self.unix_socket, **common)
        else:
            client = redis.Redis(host=self.host or "127.0.0.1", port=self.port, **common)
        for command in _RAW_REPLIES:
            client.set_response_callback(command, _raw)
        return client

    def async_client(self, options: RedisTransportOptions) -> redis.asyncio.Redis:
        """A new ``redis.asyncio`` client for this endpoint, configured as :meth:`client`'s
        (bound to the event loop it is first used on). Used for sending only."""
        # Imported here: a worker, which never sends async, does not load redis.asyncio.
        import redis.asyncio  # noqa: PLC0415
        from redis.asyncio.retry import Retry as AsyncRetry  # noqa: PLC0415
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel  # noqa: PLC0415

        common = self._common(options, AsyncRetry(NoBackoff(), 0))
        if self.sentinels:
            sentinel: Any = cast(Any, AsyncSentinel)(
                list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(options), **common
            )
            client: redis.asyncio.Redis = sentinel.master_for(options.sentinel_master)
            return client
        if self.unix_socket is not None:
            del common["socket_connect_timeout"], common["socket_keepalive"]
            return redis.asyncio.Redis(unix_socket_path=self.unix_socket, **common)
        return redis.asyncio.Redis(host=self.host or "127.0.0.1", port=self.port, **common)

    def _common(self, options: RedisTransportOptions, retry: Any) -> dict[str, Any]:
        common: dict[str, Any] = {
            "db": options.dbindex,
            "username": self.username,
            "password": self.password,
            "socket_timeout": options.read_timeout,
            "socket_connect_timeout": options.timeout,
            "socket_keepalive": True,
            "health_check_interval": _HEALTH_CHECK_INTERVAL,
            "retry": retry,
            "protocol": 2,
        }
        if self.tls:
            common.update(
                ssl=True,
                ssl_ca_certs=options.ssl_ca_certs,
                ssl_certfile=options.ssl_certfile,
                ssl_keyfile=options.ssl_keyfile,
                ssl_cert_reqs=options.ssl_cert_reqs,
                ssl_check_hostname=options.ssl_cert_reqs == "required",
            )
        return common

    @staticmethod
    def _sentinel_kwargs(options: RedisTransportOptions) -> dict[str, Any]:
        assert options.sentinel_master is not None
        return {"socket_timeout": options.read_timeout, "socket_connect_timeout": options.timeout}


def _raw(response: Any, **options: Any) -> Any:
    return response


def endpoint_of(dsn: Dsn, options: RedisTransportOptions) -> RedisEndpoint:
    """The endpoint ``dsn`` names; :class:`ConfigurationError` for what cannot work.

    - ``redis://[user:pass@]host[:port]/…``, ``rediss://…`` for TLS;
    - ``redis:///path/to/redis.sock`` (no host: the path is the socket; the stream then comes
      from the ``stream`` option);
    - ``redis://host1:26379,host2:26379/…?sentinel_master=name`` for Sentinel.
    """
    where = describe(dsn)
    if dsn.scheme not in _SCHEMES or dsn.variant is not None:
        raise ConfigurationError(
            f"the Redis transport serves redis:// and rediss:// DSNs, not {dsn.full_scheme}:// "
            f"({where})"
        )
    tls = dsn.scheme == "rediss"
    username, password = dsn.user, dsn.password
    if password is None and username is not None:
        username, password = None, username  # redis://secret@host, as Symfony reads it
    if username == "":
        username = None
    credentials = _Credentials(username, password, where)
    tls_options = (options.ssl_ca_certs, options.ssl_certfile, options.ssl_keyfile)
    if not tls and (any(tls_options) or options.ssl_cert_reqs != "required"):
        raise ConfigurationError(f"ssl_* options need a rediss:// DSN ({where})")
    if options.sentinel_master is not None:
        if not dsn.hosts:
            raise ConfigurationError(
                f"sentinel_master needs the sentinels' host:port in the DSN ({where})"
            )
        sentinels = tuple((h.host, h.port or DEFAULT_SENTINEL_PORT) for h in dsn.hosts)
        return credentials.endpoint(sentinels=sentinels, tls=tls)
    if len(dsn.hosts) > 1:
        raise ConfigurationError(
            f"several hosts need sentinel_master=<master name> (Redis Sentinel); Redis Cluster "
            f"is not supported: a stream and its delay queue must live on one node ({where})"
        )
    if not dsn.hosts:
        if dsn.path in ("", "/"):
            return credentials.endpoint(host="127.0.0.1", tls=tls)
        if tls:
            raise ConfigurationError(f"TLS (rediss://) does not apply to a unix socket ({where})")
        return credentials.endpoint(unix_socket=dsn.path)
    host = dsn.hosts[0]
    return credentials.endpoint(host=host.host, port=host.port or DEFAULT_PORT, tls=tls)


@attrs.frozen
class _Credentials:
    username: str | None
    password: str | None = attrs.field(repr=False)
    where: str

    def endpoint(self, **where: Any) -> RedisEndpoint:
        return RedisEndpoint(
            username=self.username, password=self.password, where=self.where, **where
        )
