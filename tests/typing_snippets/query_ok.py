"""User code that ``mypy --strict`` must accept without a cast: both typed forms of query."""

from __future__ import annotations

import attrs

from messenger_core import Messenger, Query


@attrs.frozen
class GetPrice(Query[int]):
    sku: str


@attrs.frozen
class GetStock:
    sku: str


messenger = Messenger()


@messenger.handler
def price(message: GetPrice) -> int:
    return len(message.sku)


@messenger.handler
def stock(message: GetStock) -> list[str]:
    return [message.sku]


def total(skus: list[str]) -> int:
    # Query[int]: the result is an int for the type checker, no cast needed.
    return sum(messenger.bus.query(GetPrice(sku=sku)) for sku in skus)


def stock_of(sku: str) -> list[str]:
    # returns=: the result is a list[str], checked (as a list) at run time.
    return messenger.bus.query(GetStock(sku=sku), returns=list[str])


def untyped(sku: str) -> int:
    # The untyped form still works: Any, as before.
    return len(messenger.bus.query(GetStock(sku=sku)))
