"""The message the transport benchmarks send, and the serializer that knows it."""

from __future__ import annotations

import attrs

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer


@attrs.frozen
class OrderPlaced:
    """The benchmark's message: a few fields, as a typical domain event."""

    order_id: int
    customer: str
    total_cents: int
    lines: tuple[str, ...]


def serializer() -> JsonSerializer:
    """The JSON serializer, knowing :class:`OrderPlaced` as ``bench.OrderPlaced``."""
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, "bench.OrderPlaced")
    return JsonSerializer(registry)


def envelope(number: int) -> Envelope:
    """Order ``number`` in an envelope."""
    return Envelope(OrderPlaced(number, "customer@example.com", 12_345, ("sku-1", "sku-2")))
