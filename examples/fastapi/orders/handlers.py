"""The example's handlers: one runs in the worker, one answers queries in the web process."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from messenger_core import handler
from orders.messages import GetStock, PlaceOrder

STOCK = {"apple": 12, "pear": 0}


def _placed_log() -> Path:
    return Path(os.environ.get("ORDERS_PLACED_LOG", "var/placed.jsonl"))


@handler
async def place_order(message: PlaceOrder) -> None:
    """Run by ``messenger consume orders``: an async handler, on the worker's event loop."""
    await asyncio.sleep(0.01)  # say, a call to a payment service
    line = json.dumps({"order_id": message.order_id, "pid": os.getpid()})
    with _placed_log().open("a", encoding="utf-8") as log:
        log.write(line + "\n")


@handler
def stock(message: GetStock) -> int:
    """A synchronous query handler: blocking code, run in a dispatch thread."""
    return STOCK.get(message.sku, 0)
