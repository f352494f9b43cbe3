"""SQL transport for messenger: SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core.

The Python counterpart of Symfony Messenger's Doctrine transport, on the same
``messenger_messages`` table. See the README for DSNs, options, the transactional outbox,
transactional handling (``sql_transaction``) and delivery guarantees.
"""

from __future__ import annotations

from messenger_transport_sql._codec import BODY_ENCODING_HEADER
from messenger_transport_sql.factory import SqlTransportFactory
from messenger_transport_sql.options import SqlTransportOptions, parse_options
from messenger_transport_sql.outbox import outbox
from messenger_transport_sql.stop_signal import SqlStopSignal
from messenger_transport_sql.transaction import (
    NoTransactionError,
    SqlTransactionMiddleware,
    current_connection,
)
from messenger_transport_sql.transport import SqlTransport

__all__ = [
    "SqlStopSignal",
    "BODY_ENCODING_HEADER",
    "NoTransactionError",
    "SqlTransactionMiddleware",
    "SqlTransport",
    "SqlTransportFactory",
    "SqlTransportOptions",
    "current_connection",
    "outbox",
    "parse_options",
]
