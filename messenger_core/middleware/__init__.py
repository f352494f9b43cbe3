"""Middleware: what happens to an envelope between ``dispatch`` and its handlers.

A middleware is any callable ``(envelope, next) -> Envelope`` (a plain function works) that
usually calls ``next(envelope)`` once and returns what it returned. A bus links its middleware
into a chain once, when it is built; dispatching is then plain function calls.

Middleware that wants to avoid the one extra call per dispatch of the generic adapter may also
define ``bind(next) -> Callable[[Envelope], Envelope]``: the chain calls ``bind`` once and
then calls what it returned for every message. The built-in middleware do this.

A middleware that adds the same stamp to every message may list it in a ``wrap_stamps``
attribute: the bus then puts it on a bare message as it wraps it (one envelope instead of two).
The middleware must still add it to envelopes that arrive without it.

A middleware that does nothing to a bare message dispatched without stamps (one that only acts
on envelopes received from a transport, or only adds its ``wrap_stamps``) may set
``noop_for_bare_messages = True``: the bus leaves it out of such dispatches.

Middleware published in the ``messenger.middleware`` entry-point group is a *factory*, not a
middleware: a callable taking a :class:`MiddlewareContext` (the bus name, the ``options`` table
of the bus's configuration entry, and the application's services) and returning a middleware;
usually the middleware class itself. It is called once per bus when the bus is built (on its first
dispatch, or for every bus when a worker is built); a :class:`ConfigurationError` it raises for
bad options stops the start, with the key path added. ``plugins/_middleware_template`` is a
copy-me example, and CONTRIBUTING.md ("Writing a middleware plugin") the full description.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from messenger_core.envelope import Envelope

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.config import MessengerConfig
    from messenger_core.handlers import HandlerRegistry
    from messenger_core.hooks import Hooks
    from messenger_core.middleware.dispatch_after_current_bus import RootDispatch
    from messenger_core.routing import Router
    from messenger_core.transport import Transport

__all__ = [
    "Middleware",
    "MiddlewareContext",
    "MiddlewareFactory",
    "Next",
    "build_chain",
    "is_terminal",
]

Next = Callable[[Envelope], Envelope]
"""The rest of the chain: call it with the envelope to pass it on."""


class Middleware(Protocol):
    """A step in a bus's middleware chain."""

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        """Process ``envelope``; call ``next(envelope)`` to pass it on; return the result."""
        ...


@attrs.frozen(kw_only=True)
class MiddlewareContext:
    """What a middleware factory is given: the bus, its options, and the services it may need.

    Take the services (``handlers``, ``router``, ``transports``, ...) rather than the
    application: ``messenger`` is kept for factories written against older versions and is
    deprecated.
    """

    messenger: Messenger
    """Deprecated: the whole application; use the services below."""
    bus_name: str
    """The bus the middleware is built for."""
    options: Mapping[str, Any] = attrs.field(factory=dict)
    """The ``options`` table of the bus's configuration entry for this middleware."""
    # -- services (added for issue 10.3; owned by app-wiring) --
    # The application passes each; a context built by hand with only ``messenger`` (as before
    # they existed) takes them from it.
    config: MessengerConfig = attrs.field(default=attrs.Factory(lambda c: c.messenger.config, True))
    """The application's configuration (``config.bus(bus_name)`` for this bus's)."""
    handlers: HandlerRegistry = attrs.field(
        default=attrs.Factory(lambda c: c.messenger.handlers, True)
    )
    """The handlers of every bus."""
    router: Router = attrs.field(default=attrs.Factory(lambda c: c.messenger.router, True))
    """Which transports each message class is sent to."""
    transports: Callable[[str], Transport] = attrs.field(
        default=attrs.Factory(lambda c: c.messenger.get_transport, True)
    )
    """The transport of a name, connected on first use (a ``ConfigurationError`` if unknown)."""
    hooks: Hooks = attrs.field(default=attrs.Factory(lambda c: c.messenger.hooks, True))
    """The application's plugin hooks."""
    root_dispatch: RootDispatch = attrs.field(
        default=attrs.Factory(lambda c: c.messenger.root_dispatch, True)
    )
    """The application's record of outermost dispatches (shared by all its buses)."""


class MiddlewareFactory(Protocol):
    """Builds a middleware for one bus; the value of a ``messenger.middleware`` entry point."""

    def __call__(self, context: MiddlewareContext, /) -> Middleware:
        """A middleware for ``context.bus_name``."""
        ...


def _identity(envelope: Envelope) -> Envelope:
    return envelope


def is_terminal(next: Next) -> bool:
    """Whether ``next`` is the end of the chain (a middleware may return instead of calling it)."""
    return next is _identity


def _link(middleware: Middleware, next: Next) -> Next:
    def call(envelope: Envelope) -> Envelope:
        return middleware(envelope, next)

    return call


def build_chain(middleware: Sequence[Middleware], terminal: Next = _identity) -> Next:
    """Link ``middleware`` (outermost first) into one callable ending in ``terminal``."""
    call = terminal
    for each in reversed(middleware):
        bind = getattr(each, "bind", None)
        call = bind(call) if bind is not None else _link(each, call)
    return call
