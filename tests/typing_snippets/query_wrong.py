"""User code with a wrong type: ``mypy --strict`` must flag each marked line."""

from __future__ import annotations

import attrs

from messenger_core import Messenger, Query


@attrs.frozen
class GetPrice(Query[int]):
    sku: str


messenger = Messenger()


def name_of(sku: str) -> str:
    return messenger.bus.query(GetPrice(sku=sku))  # error: Query[int] gives an int


def count_of(sku: str) -> int:
    return messenger.bus.query(GetPrice(sku=sku), returns=str)  # error: returns=str gives a str
