"""The entry point: builds :class:`~messenger_transport_redis.transport.RedisTransport` from DSNs.

Published in the ``messenger.transports`` group under ``redis`` and ``rediss``. It also keeps
the "stop workers" signal in Redis (the ``stop_signal`` configuration key), see
:class:`~messenger_transport_redis.stop_signal.RedisStopSignal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer
from messenger_transport_redis.connection import endpoint_of
from messenger_transport_redis.options import parse_options
from messenger_transport_redis.stop_signal import RedisStopSignal
from messenger_transport_redis.transport import RedisTransport

__all__ = ["RedisTransportFactory"]


class RedisTransportFactory:
    """Builds Redis transports; see the package README for DSNs and options."""

    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> RedisTransport:
        """A transport for ``dsn``; it connects on first use.

        ``options`` (the configuration's) override the DSN's query options, merged here; unknown
        options, bad values and DSNs that cannot work raise
        :class:`~messenger_core.errors.ConfigurationError`. The DSN's path is
        ``/<stream>[/<group>[/<consumer>]]``, except for a unix socket (``redis:///path.sock``),
        whose path is the socket's.
        """
        parsed = parse_options(dsn.with_options(options), dsn.path if dsn.hosts else "", dsn=dsn)
        return RedisTransport(endpoint_of(dsn, parsed), parsed, serializer)

    def create_stop_signal(self, dsn: Dsn, options: Mapping[str, Any]) -> RedisStopSignal:
        """The "stop workers" signal on the Redis server ``dsn`` names, shared by every host.

        ``options`` override the DSN's query options: ``key`` (default
        ``messenger:stop-workers``) and the connection options (``dbindex``, ``timeout``,
        ``read_timeout``, ``sentinel_master``, ``ssl_*``); anything else raises
        :class:`~messenger_core.errors.ConfigurationError`. The DSN's path (a transport's
        stream) is ignored, except for a unix socket (``redis:///path.sock``), whose path it is.
        """
        return RedisStopSignal.from_dsn(dsn, options)
