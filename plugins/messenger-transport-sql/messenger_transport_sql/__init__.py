"""SQL transport for messenger: SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core.

The Python counterpart of Symfony Messenger's Doctrine transport, on the same
``messenger_messages`` table. See the README for DSNs, options, the transactional outbox and
delivery guarantees.
"""

from __future__ import annotations

from messenger_transport_sql._codec import BODY_ENCODING_HEADER
from messenger_transport_sql.factory import SqlTransportFactory
from messenger_transport_sql.options import SqlTransportOptions, parse_options
from messenger_transport_sql.outbox import outbox
from messenger_transport_sql.stop_signal import SqlStopSignal
from messenger_transport_sql.transport import SqlTransport

__all__ = [
    "SqlStopSignal",
    "BODY_ENCODING_HEADER",
    "SqlTransport",
    "SqlTransportFactory",
    "SqlTransportOptions",
    "outbox",
    "parse_options",
]
