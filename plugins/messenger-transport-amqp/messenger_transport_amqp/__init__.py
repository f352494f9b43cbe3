"""AMQP 0-9-1 (RabbitMQ) transport for messenger, in Symfony Messenger's topology and layout.

The Python counterpart of Symfony Messenger's AMQP transport, on the same exchanges, queues,
headers and delay queues, so that both can share them; it consumes with ``basic.consume``
instead of polling. See the README for DSNs, options and delivery guarantees.
"""

from __future__ import annotations

from messenger_transport_amqp.factory import AmqpTransportFactory
from messenger_transport_amqp.options import (
    KNOWN_OPTIONS,
    AmqpOptions,
    DelayOptions,
    ExchangeOptions,
    QueueOptions,
    parse_options,
)
from messenger_transport_amqp.reconnect import AmqpUnreachableError
from messenger_transport_amqp.stamps import AmqpReceivedStamp, AmqpStamp
from messenger_transport_amqp.transport import AmqpTransport

__all__ = [
    "KNOWN_OPTIONS",
    "AmqpOptions",
    "AmqpReceivedStamp",
    "AmqpStamp",
    "AmqpTransport",
    "AmqpTransportFactory",
    "AmqpUnreachableError",
    "DelayOptions",
    "ExchangeOptions",
    "QueueOptions",
    "parse_options",
]
