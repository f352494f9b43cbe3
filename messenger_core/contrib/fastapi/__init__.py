"""FastAPI (and Starlette): a lifespan that builds the application and closes it, and
dependencies that give it and its buses to a route.

::

    from fastapi import FastAPI
    from messenger_core.contrib.fastapi import Bus, MessengerLifespan

    api = FastAPI(lifespan=MessengerLifespan(app="shop.messaging:messenger"))

    @api.post("/orders", status_code=202)
    async def place_order(order: OrderIn, bus: Bus) -> None:
        await bus.dispatch_async(OrderPlaced(order.id))

Routes dispatch with ``await bus.dispatch_async(...)``, which never blocks the event loop.
Only this module imports Starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import Request

from messenger_core.app import Messenger
from messenger_core.bus import MessageBus
from messenger_core.contrib._building import build_messenger
from messenger_core.errors import ConfigurationError

__all__ = ["Bus", "MessengerLifespan", "get_bus", "get_messenger"]

_STATE_KEY = "messenger"


class MessengerLifespan:
    """The lifespan of an ASGI app that uses messenger: builds the application when the server
    starts (from ``app``, ``config`` or ``config_file``, as ``build_messenger`` takes them,
    or uses ``messenger``), puts it in the app's state, and closes it (its transports'
    connections) when the server stops.

    :param close: close a ``messenger`` that was given (one the lifespan built is always
        closed).
    """

    def __init__(
        self,
        *,
        messenger: Messenger | None = None,
        app: str | None = None,
        config: Mapping[str, Any] | None = None,
        config_file: str | None = None,
        scan: Iterable[str] = (),
        close: bool = True,
    ) -> None:
        if messenger is not None and (app or config is not None or config_file):
            raise ConfigurationError(
                "MessengerLifespan: give messenger, or app/config/config_file, not both"
            )
        self._given = messenger
        self._app, self._config, self._config_file = app, config, config_file
        self._scan = tuple(scan)
        self._close = close
        self.messenger: Messenger | None = messenger
        """The application while the server runs."""

    @asynccontextmanager
    async def __call__(self, _app: Any) -> AsyncIterator[dict[str, Any]]:
        """The lifespan context: Starlette calls it with the ASGI app."""
        messenger = self._given or build_messenger(
            where="MessengerLifespan",
            app=self._app,
            config=self._config,
            config_file=self._config_file,
            scan=self._scan,
        )
        self.messenger = messenger
        try:
            yield {_STATE_KEY: messenger}
        finally:
            if self._given is None or self._close:
                messenger.close()
            if self._given is None:
                self.messenger = None


def get_messenger(request: Request) -> Messenger:
    """Dependency: the application the lifespan built."""
    messenger = getattr(request.state, _STATE_KEY, None)
    if not isinstance(messenger, Messenger):
        raise ConfigurationError(
            "no messenger application in the app's state: pass lifespan=MessengerLifespan(...) "
            "to FastAPI (or Starlette)"
        )
    return messenger


def get_bus(request: Request) -> MessageBus:
    """Dependency: the application's default bus."""
    return get_messenger(request).bus


Bus = Annotated[MessageBus, Depends(get_bus)]
"""A route parameter typed ``Bus`` receives the default bus."""
