"""The messenger application and the FastAPI app that dispatches through it.

``messenger`` is what the command line runs (``app = "orders.app:messenger"``); ``api`` is the
ASGI app (``uvicorn orders.app:api``). Routes never call ``bus.dispatch`` on the event loop:
they ``await bus.dispatch_async(...)`` / ``bus.query_async(...)``, which run the dispatch in
a thread, so one slow send or handler never holds up the other requests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from messenger_core import Messenger
from orders import handlers
from orders.messages import GetStock, PlaceOrder

HERE = Path(__file__).resolve().parent.parent

messenger = Messenger.from_config(os.environ.get("ORDERS_CONFIG", HERE / "messenger.toml"))
messenger.scan(handlers)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Close the transports' connections when the server stops."""
    yield
    messenger.close()


api = FastAPI(title="orders", lifespan=lifespan)


class OrderRequest(BaseModel):
    sku: str
    quantity: int = 1


@api.post("/orders", status_code=202)
async def place_order(request: OrderRequest) -> dict[str, str | int]:
    """Check the stock (a query, answered at once), then queue the order for a worker."""
    if await messenger.bus.query_async(GetStock(request.sku)) < request.quantity:
        raise HTTPException(status_code=409, detail=f"{request.sku} is out of stock")
    order = PlaceOrder(str(uuid.uuid4()), request.sku, request.quantity)
    await messenger.bus.dispatch_async(order)
    return attrs.asdict(order) | {"status": "queued"}


@api.get("/stock/{sku}")
async def stock(sku: str) -> dict[str, int]:
    """How many of ``sku`` are in stock."""
    return {sku: await messenger.bus.query_async(GetStock(sku))}
