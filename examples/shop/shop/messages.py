"""The shop's messages: plain frozen attrs classes (the JSON serializer writes their fields)."""

from __future__ import annotations

import attrs


@attrs.frozen
class OrderPlaced:
    """A customer placed an order; everything else happens in handlers, later, in a worker."""

    order_id: int
    customer: str
    email: str
    sku: str
    quantity: int
    total_cents: int
