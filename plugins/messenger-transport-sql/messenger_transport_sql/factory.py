"""The entry point: builds :class:`~messenger_transport_sql.transport.SqlTransport` from DSNs.

Published in the ``messenger.transports`` group under ``sqlite``, ``postgresql`` (and
``postgres``), ``mysql`` (and ``mariadb``). It also keeps the "stop workers" signal in a
database (the ``stop_signal`` configuration key), see
:class:`~messenger_transport_sql.stop_signal.SqlStopSignal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer
from messenger_transport_sql.engine import backend_of, create_engine
from messenger_transport_sql.options import parse_options
from messenger_transport_sql.stop_signal import SqlStopSignal
from messenger_transport_sql.transport import SqlTransport

__all__ = ["SqlTransportFactory"]


class SqlTransportFactory:
    """Builds SQL transports; see the package README for DSNs and options."""

    def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer) -> SqlTransport:
        """A transport for ``dsn``, with its own engine and connection.

        ``options`` (the configuration's) override the DSN's query options, merged here; unknown
        options, bad values, unsupported DSNs and missing drivers raise
        :class:`~messenger_core.errors.ConfigurationError`.
        """
        backend = backend_of(dsn)
        parsed = parse_options(dsn.with_options(options), backend, dsn=dsn)
        engine = create_engine(dsn, parsed)
        return SqlTransport(engine, serializer, parsed, description=str(dsn), dispose_engine=True)

    def create_stop_signal(self, dsn: Dsn, options: Mapping[str, Any]) -> SqlStopSignal:
        """The "stop workers" signal in the database ``dsn`` names, shared by every host.

        ``options`` override the DSN's query options: ``table_name`` (default
        ``messenger_stop_signal``), ``name`` (default ``default``) and the driver's connection
        options; anything else raises :class:`~messenger_core.errors.ConfigurationError`.
        """
        return SqlStopSignal.from_dsn(dsn, options)
