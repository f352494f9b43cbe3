"""The FastAPI integration, through FastAPI's own test client (which runs the lifespan)."""

from __future__ import annotations

from typing import Annotated, Any

import attrs
import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi import Depends, FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from messenger_core import Messenger  # noqa: E402
from messenger_core.contrib.fastapi import Bus, MessengerLifespan, get_messenger  # noqa: E402
from messenger_core.errors import ConfigurationError  # noqa: E402


@attrs.frozen
class OrderPlaced:
    order_id: str


def _api(lifespan: Any) -> FastAPI:
    api = FastAPI(lifespan=lifespan)

    @api.post("/orders/{order_id}", status_code=202)
    async def place(order_id: str, bus: Bus) -> dict[str, str]:
        envelope = await bus.dispatch_async(OrderPlaced(order_id))
        return {"sent": type(envelope.message).__name__}

    @api.get("/queued")
    async def queued(messenger: Annotated[Messenger, Depends(get_messenger)]) -> dict[str, int]:
        return {"count": messenger.get_transport("async").message_count()}  # type: ignore[attr-defined]

    return api


CONFIG = {"transports": {"async": "memory://"}, "routing": {OrderPlaced: "async"}}


def test_the_lifespan_builds_the_application_and_routes_dispatch_through_it() -> None:
    lifespan = MessengerLifespan(config=CONFIG)

    with TestClient(_api(lifespan)) as client:
        assert lifespan.messenger is not None
        assert client.post("/orders/o-1").json() == {"sent": "OrderPlaced"}
        assert client.post("/orders/o-2").status_code == 202
        assert client.get("/queued").json() == {"count": 2}

    assert lifespan.messenger is None  # built by the lifespan, dropped with it


class ClosingMessenger(Messenger):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


@pytest.mark.parametrize("close", [True, False])
def test_a_given_application_is_used_and_closed_unless_told_not_to(close: bool) -> None:
    messenger = ClosingMessenger(CONFIG)
    lifespan = MessengerLifespan(messenger=messenger, close=close)

    with TestClient(_api(lifespan)) as client:
        client.post("/orders/o-1")
        assert not messenger.closed
        received = messenger.get_transport("async").get()
        assert [e.message for e in received] == [OrderPlaced("o-1")]

    assert messenger.closed is close


def test_without_the_lifespan_the_dependency_says_what_is_missing() -> None:
    api = _api(None)

    with (
        TestClient(api, raise_server_exceptions=True) as client,
        pytest.raises(ConfigurationError, match="lifespan=MessengerLifespan"),
    ):
        client.post("/orders/o-1")


def test_messenger_and_settings_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        MessengerLifespan(messenger=Messenger(), config=CONFIG)
