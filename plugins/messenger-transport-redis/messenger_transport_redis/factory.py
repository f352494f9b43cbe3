"""The entry point: builds :class:`~messenger_transport_redis.transport.RedisTransport` from DSNs.

Published in the ``messenger.transports`` group under ``redis`` and ``rediss``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer
from messenger_transport_redis.connection import endpoint_of
from messenger_transport_redis.options import parse_options
from messenger_transport_redis.transport import RedisTransport

__all__ = ["RedisTransportFactory"]


class RedisTransportFactory:
    """Builds Redis transports; see the package README for DSNs and options."""

    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> RedisTransport:
        """A transport for ``dsn``; it connects on first use.

        ``options`` are the DSN's query options overridden by the configuration's; unknown
        options, bad values and DSNs that cannot work raise
        :class:`~messenger_core.errors.ConfigurationError`. The DSN's path is
        ``/<stream>[/<group>[/<consumer>]]``, except for a unix socket (``redis:///path.sock``),
        whose path is the socket's.
        """
        parsed = parse_options(dsn.with_options(options), dsn.path if dsn.hosts else "")
        return RedisTransport(endpoint_of(dsn, parsed), parsed, serializer)
