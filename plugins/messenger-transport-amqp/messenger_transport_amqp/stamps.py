"""The AMQP transport's stamps: what to publish with, and where a message came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from messenger_core.stamps import NonSendableStamp

__all__ = ["PROPERTY_NAMES", "AmqpReceivedStamp", "AmqpStamp"]

PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
)
"""The AMQP basic properties an :class:`AmqpStamp` may set (Symfony's attribute names)."""


@attrs.frozen(kw_only=True)
class AmqpStamp(NonSendableStamp):
    """Publish this message with ``routing_key`` and these AMQP properties (Symfony's
    ``AmqpStamp``): ``Envelope(message, [AmqpStamp(routing_key="orders.eu")])``.

    ``attributes`` names properties as :data:`PROPERTY_NAMES` does; ``headers`` are added to
    the serializer's (which win). Unset: the exchange's ``default_publish_routing_key``,
    ``delivery_mode`` 2 and the current ``timestamp``.
    """

    routing_key: str | None = None
    attributes: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        unknown = sorted(set(self.attributes) - set(PROPERTY_NAMES))
        if unknown:
            raise ValueError(
                f"unknown AMQP propert{'ies' if len(unknown) > 1 else 'y'} {unknown}; "
                f"known: {', '.join(PROPERTY_NAMES)}"
            )


@attrs.frozen(kw_only=True)
class AmqpReceivedStamp(NonSendableStamp):
    """Added to a received envelope: the queue it came from, its routing key, whether RabbitMQ
    delivered it before, and its delivery (valid on the channel that received it only)."""

    queue_name: str
    routing_key: str
    redelivered: bool
    delivery_tag: int = attrs.field(repr=False)
    generation: int = attrs.field(repr=False)
    """The connection it came on: after a reconnect, its delivery tag means nothing."""
