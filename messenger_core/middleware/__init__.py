"""Middleware: what happens to an envelope between ``dispatch`` and its handlers.

A middleware is any callable ``(envelope, next) -> Envelope`` (a plain function works) that
usually calls ``next(envelope)`` once and returns what it returned. A bus links its middleware
into a chain once, when it is built; dispatching is then plain function calls.

Three optional speed-ups, each a protocol a middleware may implement (the built-in middleware
do; :mod:`messenger_core._fast_path` says what each buys):

- :class:`BindableMiddleware`: ``bind(next)`` returns the chain step, called for every message
  instead of ``middleware(envelope, next)`` (one call less per dispatch);
- :class:`StampWrappingMiddleware`: ``wrap_stamps``, stamps the bus puts on a bare message as
  it wraps it (one envelope instead of two);
- :class:`BareDispatchAware`: ``noop_for_bare_messages``, true for a middleware the bus may
  leave out of the dispatch of a bare message without stamps.

One marker says a middleware lets ``await bus.dispatch_async(message)`` send without a thread
(:mod:`messenger_core.async_bus`): :class:`AsyncSendSafeMiddleware`, ``async_send_safe``.

Middleware published in the ``messenger.middleware`` entry-point group is a *factory*, not a
middleware: a callable taking a :class:`MiddlewareContext` (the bus name, the ``options`` table
of the bus's configuration entry, and the application's services) and returning a middleware;
usually the middleware class itself. It is called once per bus when the bus is built (on its first
dispatch, or for every bus when a worker is built); a :class:`ConfigurationError` it raises for
bad options stops the start, with the key path added. ``plugins/_middleware_template`` is a
copy-me example, and CONTRIBUTING.md ("Writing a middleware plugin") the full description.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from messenger_core._fast_path import build_chain, is_terminal
from messenger_core.envelope import Envelope
from messenger_core.stamps import Stamp

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.config import MessengerConfig
    from messenger_core.handlers import HandlerRegistry
    from messenger_core.hooks import Hooks
    from messenger_core.middleware.dispatch_after_current_bus import RootDispatch
    from messenger_core.routing import Router
    from messenger_core.transport import Transport

__all__ = [
    "AsyncSendSafeMiddleware",
    "BareDispatchAware",
    "BindableMiddleware",
    "Middleware",
    "MiddlewareContext",
    "MiddlewareFactory",
    "Next",
    "StampWrappingMiddleware",
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


@runtime_checkable
class BindableMiddleware(Protocol):
    """A middleware that links itself into the chain once, when the bus is built."""

    def bind(self, next: Next, /) -> Next:
        """The chain step: a callable ``(envelope) -> Envelope`` that does what calling the
        middleware with ``next`` does. Called once per bus; the step runs for every message."""
        ...


@runtime_checkable
class StampWrappingMiddleware(Protocol):
    """A middleware that adds the same stamps to every message (the bus name).

    The bus puts ``wrap_stamps`` on a bare message as it wraps it in its envelope, when the
    middleware heads the chain (after nothing but other such middleware), after any stamps
    given to ``dispatch``. The middleware must still add them to envelopes without them.
    """

    @property
    def wrap_stamps(self) -> tuple[Stamp, ...]:
        """The stamps, built once (an attribute or a property)."""
        ...


@runtime_checkable
class BareDispatchAware(Protocol):
    """A middleware that may say it does nothing to a bare message dispatched without stamps.

    True for one that only acts on stamps a transport adds (``ReceivedStamp``,
    ``TransportRedeliveredStamp``...), which no middleware adds to a message being dispatched,
    or that only adds its ``wrap_stamps`` (when the bus put them on, a middleware at the head of
    the chain): the bus then leaves it out of such dispatches.
    """

    @property
    def noop_for_bare_messages(self) -> bool:
        """Whether the bus may skip this middleware for a bare message without stamps (an
        attribute or a property)."""
        ...


@runtime_checkable
class AsyncSendSafeMiddleware(Protocol):
    """A middleware that lets ``await bus.dispatch_async(message)`` send on the event loop.

    ``dispatch_async`` sends a routed message with the transports' async clients, without a
    dispatch thread, only when every middleware ahead of the send step has
    ``async_send_safe`` true (the built-in ones, except ``logging``); see
    :mod:`messenger_core.async_bus`. It then runs the chain on the event loop with a send step
    that only records what to send, and sends once the chain returned. So a middleware may say
    true only if, for a message being dispatched:

    - it never blocks (no I/O, no lock held for long): it runs on the event loop;
    - it does not change where the message goes (no ``TransportNamesStamp`` or
      ``ReceivedStamp`` added or removed);
    - it does nothing after ``next`` returns that needs the message to be sent by then, or
      its send errors (a log line "sent", a metric, a ``try``/``except`` around ``next``),
      and returns what ``next`` returned, unchanged.

    A middleware without the attribute (or with it false) makes ``dispatch_async`` run the
    whole dispatch in a thread, as ``bus.dispatch`` would run it.
    """

    @property
    def async_send_safe(self) -> bool:
        """Whether the conditions above hold (an attribute or a property, read on each
        ``dispatch_async``)."""
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
