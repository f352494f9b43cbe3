"""Redis transport for messenger: Redis Streams with consumer groups, in Symfony Messenger's layout.

The Python counterpart of Symfony Messenger's Redis transport, on the same stream entries, so
that both can share a stream. See the README for DSNs, options, delivery guarantees and
transactional handling (``redis_transaction``).
"""

from __future__ import annotations

from messenger_transport_redis.connection import RedisEndpoint, describe, endpoint_of
from messenger_transport_redis.entry import BODY_ENCODING_HEADER
from messenger_transport_redis.factory import RedisTransportFactory
from messenger_transport_redis.options import (
    KNOWN_OPTIONS,
    RedisTransportOptions,
    parse_options,
)
from messenger_transport_redis.reconnect import RedisUnreachableError
from messenger_transport_redis.stop_signal import RedisStopSignal
from messenger_transport_redis.transaction import (
    NoPipelineError,
    RedisTransactionMiddleware,
    current_pipeline,
)
from messenger_transport_redis.transport import RedisTransport

__all__ = [
    "RedisStopSignal",
    "BODY_ENCODING_HEADER",
    "KNOWN_OPTIONS",
    "NoPipelineError",
    "RedisEndpoint",
    "RedisTransactionMiddleware",
    "RedisTransport",
    "RedisTransportFactory",
    "RedisTransportOptions",
    "RedisUnreachableError",
    "current_pipeline",
    "describe",
    "endpoint_of",
    "parse_options",
]
