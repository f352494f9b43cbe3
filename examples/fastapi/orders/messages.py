"""The example's messages."""

from __future__ import annotations

import attrs

from messenger_core import Query


@attrs.frozen
class PlaceOrder:
    """Sent to the ``orders`` transport: a worker handles it later."""

    order_id: str
    sku: str
    quantity: int


@attrs.frozen
class GetStock(Query[int]):
    """Handled at once, in the web process: how many of ``sku`` are in stock."""

    sku: str
