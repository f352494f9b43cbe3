"""The entry point: builds :class:`~messenger_transport_amqp.transport.AmqpTransport` from DSNs.

Published in the ``messenger.transports`` group under ``amqp`` and ``amqps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer
from messenger_transport_amqp.options import parse_options
from messenger_transport_amqp.transport import AmqpTransport

__all__ = ["AmqpTransportFactory"]


class AmqpTransportFactory:
    """Builds AMQP transports; see the package README for DSNs and options."""

    def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer) -> AmqpTransport:
        """A transport for ``dsn`` (``amqp://user:pass@host:5672/<vhost>/<exchange>``); it
        connects on first use.

        ``options`` (the configuration's) override the DSN's query options; unknown options
        and bad values raise :class:`~messenger_core.errors.ConfigurationError`.
        """
        return AmqpTransport(parse_options(dsn, options), serializer)
