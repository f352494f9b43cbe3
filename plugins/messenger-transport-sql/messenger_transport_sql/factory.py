"""The entry point: builds :class:`~messenger_transport_sql.transport.SqlTransport` from DSNs.

Published in the ``messenger.transports`` group under ``sqlite``, ``postgresql`` (and
``postgres``), ``mysql`` (and ``mariadb``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer
from messenger_transport_sql.engine import backend_of, create_engine
from messenger_transport_sql.options import parse_options
from messenger_transport_sql.transport import SqlTransport

__all__ = ["SqlTransportFactory"]


class SqlTransportFactory:
    """Builds SQL transports; see the package README for DSNs and options."""

    def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer) -> SqlTransport:
        """A transport for ``dsn``, with its own engine and connection.

        ``options`` are the DSN's query options overridden by the configuration's; unknown
        options, bad values, unsupported DSNs and missing drivers raise
        :class:`~messenger_core.errors.ConfigurationError`.
        """
        backend = backend_of(dsn)
        parsed = parse_options(dsn.with_options(options), backend)
        engine = create_engine(dsn, parsed)
        return SqlTransport(engine, serializer, parsed, description=str(dsn), dispose_engine=True)
