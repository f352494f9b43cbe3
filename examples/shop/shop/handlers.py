"""What happens when an order is placed: three handlers for one message.

Each runs in the worker. When one fails, the message is retried later and the handlers that
already succeeded are skipped: the stock is not reserved twice, the e-mail not sent twice.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

from messenger_core import handler
from shop.messages import OrderPlaced

VAR = Path(__file__).resolve().parent.parent / "var"
INVENTORY = VAR / "inventory.db"
OUTBOX = VAR / "outbox.txt"
WAREHOUSE_LOG = VAR / "warehouse.log"
WAREHOUSE_FIXED = VAR / "warehouse-fixed"
"""Create this file to "repair" the warehouse, then retry the failed messages."""


@handler(priority=10)  # runs first
def reserve_stock(order: OrderPlaced) -> None:
    """Reserve the ordered quantity. Idempotent: a message may arrive twice (at-least-once)."""
    with sqlite3.connect(INVENTORY) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS reservations "
            "(order_id INTEGER PRIMARY KEY, sku TEXT NOT NULL, quantity INTEGER NOT NULL)"
        )
        db.execute(
            "INSERT OR IGNORE INTO reservations VALUES (?, ?, ?)",
            (order.order_id, order.sku, order.quantity),
        )


@handler
def send_confirmation(order: OrderPlaced) -> None:
    """ "Send" the confirmation e-mail: append it to var/outbox.txt."""
    with OUTBOX.open("a", encoding="utf-8") as outbox:
        outbox.write(
            f"To: {order.customer} <{order.email}>\n"
            f"Subject: Your order #{order.order_id} is confirmed\n\n"
            f"Thank you! {order.quantity} x {order.sku}, "
            f"{order.total_cents / 100:.2f} EUR in total.\n---\n"
        )


_attempts: Counter[int] = Counter()


@handler(priority=-10)  # runs last
def notify_warehouse(order: OrderPlaced) -> None:
    """Tell the warehouse to ship. Its API is unreliable, in a reproducible way.

    Each order draws one number from a generator seeded with its id, so every run of the demo
    fails the same orders: most never, some on the first attempt or two (a retry fixes them),
    and a few always, until ``var/warehouse-fixed`` exists (they end in the failure transport).
    """
    _attempts[order.order_id] += 1
    attempt = _attempts[order.order_id]
    roll = random.Random(order.order_id).random()
    try:
        if roll < 0.02:
            if not WAREHOUSE_FIXED.exists():
                raise ConnectionError(
                    f"warehouse has no bin for {order.sku} (order {order.order_id})"
                )
        elif roll < 0.08 and attempt <= 1 + order.order_id % 2:
            raise TimeoutError(f"warehouse API timed out (order {order.order_id}, try {attempt})")
    except Exception as error:
        _log(order, attempt, f"failed: {error}")
        raise
    _log(order, attempt, "shipped")


def _log(order: OrderPlaced, attempt: int, outcome: str) -> None:
    with WAREHOUSE_LOG.open("a", encoding="utf-8") as log:
        log.write(f"order {order.order_id} try {attempt}: {outcome}\n")
