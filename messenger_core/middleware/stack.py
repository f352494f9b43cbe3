"""The default middleware stack of a bus, defined once.

Every bus with ``default_middleware = true`` (the default) runs, in this order::

    add bus name -> reject redelivered -> dispatch after current bus
    -> failed-message processing -> user middleware (then plugins') -> send -> handle

:data:`BEFORE_USER` and :data:`AFTER_USER` list these steps with the factory that builds each
and the name it has in the ``messenger.middleware`` entry-point group. The application builds
a bus's stack from them (:func:`build_stack`), and the core's entry points
(:data:`messenger_core.plugins.BUILTINS`, equal to ``pyproject.toml``'s, which a test checks)
are derived from them, so a bus configured with ``default_middleware = false`` and the
built-ins listed by name gets the very same middleware.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from messenger_core.middleware import Middleware, MiddlewareContext, MiddlewareFactory
from messenger_core.middleware.add_bus_name import AddBusNameStampMiddleware
from messenger_core.middleware.dispatch_after_current_bus import (
    DispatchAfterCurrentBusMiddleware,
)
from messenger_core.middleware.failed_message_processing import FailedMessageProcessingMiddleware
from messenger_core.middleware.handle import HandleMessageMiddleware
from messenger_core.middleware.reject_redelivered import RejectRedeliveredMessageMiddleware
from messenger_core.middleware.send import SendMessageMiddleware

__all__ = ["AFTER_USER", "BEFORE_USER", "DEFAULT_STACK", "DefaultMiddleware", "build_stack"]


@attrs.frozen
class DefaultMiddleware:
    """One step of the default stack: its entry-point name and its factory."""

    name: str
    """Its name in the ``messenger.middleware`` entry-point group (and in bus configuration)."""
    factory: MiddlewareFactory
    """Builds it for one bus; the object its entry point names."""

    @property
    def entry_point(self) -> str:
        """The entry point's value, ``module:qualified.name`` of :attr:`factory`."""
        # A class or a (class)method: both have these, which the Protocol does not declare.
        named: Any = self.factory
        return f"{named.__module__}:{named.__qualname__}"


BEFORE_USER: tuple[DefaultMiddleware, ...] = (
    DefaultMiddleware("add_bus_name_stamp", AddBusNameStampMiddleware.from_context),
    DefaultMiddleware("reject_redelivered", RejectRedeliveredMessageMiddleware),
    DefaultMiddleware("dispatch_after_current_bus", DispatchAfterCurrentBusMiddleware),
    DefaultMiddleware("failed_message_processing", FailedMessageProcessingMiddleware),
)
"""The default steps before the user's middleware, outermost first."""

AFTER_USER: tuple[DefaultMiddleware, ...] = (
    DefaultMiddleware("send_message", SendMessageMiddleware.from_context),
    DefaultMiddleware("handle_message", HandleMessageMiddleware.from_context),
)
"""The default steps after the user's (and plugins') middleware; handling is the last."""

DEFAULT_STACK: tuple[DefaultMiddleware, ...] = (*BEFORE_USER, *AFTER_USER)
"""Every default step, in chain order."""


def build_stack(context: MiddlewareContext, user: Iterable[Middleware]) -> list[Middleware]:
    """The default stack for ``context.bus_name`` with ``user`` middleware in its place."""
    return [
        *(step.factory(context) for step in BEFORE_USER),
        *user,
        *(step.factory(context) for step in AFTER_USER),
    ]
