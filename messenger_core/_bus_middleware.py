"""The middleware chain of one bus of a :class:`~messenger_core.app.Messenger`.

The application decides *when* a bus is built (on first use, under its lock); these functions
say *which* middleware it gets: the configured ones by name, then the default stack with the
plugins' middleware, each factory getting a :class:`MiddlewareContext`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from messenger_core.middleware import Middleware, MiddlewareContext
from messenger_core.middleware.stack import build_stack
from messenger_core.wiring import named_middleware

if TYPE_CHECKING:
    from messenger_core.app import Messenger

__all__ = ["bus_middleware", "middleware_context"]


def bus_middleware(messenger: Messenger, bus_name: str) -> list[Middleware]:
    """The middleware of the bus ``bus_name``, in order."""
    bus_config = messenger.config.bus(bus_name)
    user = [
        named_middleware(
            messenger.factories, middleware_context(messenger, bus_name, m.options), index, m
        )
        for index, m in enumerate(bus_config.middleware)
    ]
    if not bus_config.default_middleware:
        return user
    plugged = messenger.hooks.bus_middleware(messenger, bus_name)
    return build_stack(middleware_context(messenger, bus_name), [*user, *plugged])


def middleware_context(
    messenger: Messenger, bus_name: str, options: Mapping[str, Any] | None = None
) -> MiddlewareContext:
    """What a middleware factory of ``bus_name`` gets (the bus's options for one entry)."""
    return MiddlewareContext(
        messenger=messenger,
        bus_name=bus_name,
        options=options if options is not None else {},
        config=messenger.config,
        handlers=messenger.handlers,
        router=messenger.router,
        transports=messenger.get_transport,
        hooks=messenger.hooks,
        root_dispatch=messenger.root_dispatch,
    )
