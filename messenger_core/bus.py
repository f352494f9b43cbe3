"""The message bus: wraps a message in an envelope and runs it through the middleware chain."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, overload

from messenger_core import _fast_path, async_bus
from messenger_core.envelope import Envelope, new_envelope
from messenger_core.errors import MessengerError
from messenger_core.middleware import Middleware
from messenger_core.stamps import HandledStamp, Stamp

__all__ = ["DEFAULT_BUS", "MessageBus", "Query", "QueryError"]

DEFAULT_BUS = "messenger.bus.default"

R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

# What a type checker accepts for ``returns=float`` or ``complex`` (int is a float to it).
_PROMOTED: dict[Any, tuple[type[Any], ...]] = {
    float: (float, int),
    complex: (complex, float, int),
}


class QueryError(MessengerError):
    """``bus.query`` needs exactly one handler to have handled the message, and, with
    ``returns=``, a result of that type."""


class Query(Generic[R_co]):
    """Base class of a query message whose handler returns an ``R_co``: ``bus.query`` is then
    typed without a cast. It adds nothing at run time (no fields, no slots)::

        @attrs.frozen
        class GetPrice(Query[int]):
            sku: str

        price = bus.query(GetPrice(sku="apple"))   # a type checker infers int
    """

    __slots__ = ()


class MessageBus:
    """A named bus. Its middleware chain is linked once, here; ``dispatch`` only calls it."""

    def __init__(self, name: str, middleware: Sequence[Middleware]) -> None:
        self.name = name
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        # The full chain, the shorter one for a bare message without stamps, and the stamps a
        # bare message is wrapped with: see messenger_core._fast_path (mechanisms 2 and 3).
        self._chain, self._bare_chain, self._wrap_stamps = _fast_path.bus_chains(self.middleware)

    def dispatch(self, message: Any, *stamps: Stamp) -> Envelope:
        """Dispatch a message (or an envelope) with extra ``stamps``; return the final envelope.

        Raises :class:`~messenger_core.errors.HandlerFailedError` if a handler failed, or
        :class:`~messenger_core.errors.NoHandlerForMessageError` if the message was neither
        routed to a transport nor handled.
        """
        if type(message) is Envelope:
            return self._chain(message.with_(*stamps) if stamps else message)
        if stamps:
            return self._chain(new_envelope(message, stamps + self._wrap_stamps))
        return self._bare_chain(new_envelope(message, self._wrap_stamps))

    async def dispatch_async(self, message: Any, *stamps: Stamp) -> Envelope:
        """``await`` a :meth:`dispatch` from async code without blocking its event loop.

        A message routed to transports with async clients (Redis, PostgreSQL, RabbitMQ) is
        sent with them on the running loop; anything else runs in a dispatch thread (see
        :mod:`messenger_core.async_bus`). Either way the envelope and the errors are those
        :meth:`dispatch` gives.
        """
        return await async_bus.dispatch_async(self, message, *stamps)

    @overload
    async def query_async(self, message: Query[R_co], *stamps: Stamp) -> R_co: ...
    @overload
    async def query_async(self, message: Any, *stamps: Stamp, returns: type[T]) -> T: ...
    @overload
    async def query_async(self, message: Any, *stamps: Stamp) -> Any: ...
    async def query_async(
        self, message: Any, *stamps: Stamp, returns: type[Any] | None = None
    ) -> Any:
        """``await`` a :meth:`query` from async code without blocking its event loop."""
        return await async_bus.query_async(self, message, *stamps, returns=returns)

    @overload
    def query(self, message: Query[R_co], *stamps: Stamp) -> R_co: ...
    @overload
    def query(self, message: Any, *stamps: Stamp, returns: type[T]) -> T: ...
    @overload
    def query(self, message: Any, *stamps: Stamp) -> Any: ...
    def query(self, message: Any, *stamps: Stamp, returns: type[Any] | None = None) -> Any:
        """Dispatch ``message`` and return the result of the one handler that handled it.

        For queries ("what is the price of X?"): exactly one handler must handle the message
        synchronously, otherwise :class:`QueryError` says how many did.

        Typed two ways: a message class deriving from :class:`Query` ``[R]`` makes the result
        an ``R`` for a type checker; ``returns=SomeType`` makes it ``SomeType`` and checks the
        result at run time (a :class:`QueryError` if it is not one). Otherwise it is ``Any``.
        """
        envelope = self.dispatch(message, *stamps)
        handled = envelope.all(HandledStamp)
        if len(handled) != 1:
            kind = type(envelope.message).__qualname__
            names = ", ".join(h.handler_name for h in handled)
            detail = f" ({names})" if names else " (was it routed to a transport?)"
            raise QueryError(
                f"message {kind} was handled {len(handled)} times{detail}; "
                "query() needs exactly one handler"
            )
        result = handled[0].result
        if returns is not None:
            _check_result(envelope, result, returns)
        return result

    def __repr__(self) -> str:
        return f"MessageBus({self.name!r}, middleware={len(self.middleware)})"


def _check_result(envelope: Envelope, result: Any, returns: Any) -> None:
    if isinstance(result, _classes(returns)):
        return
    kind = type(envelope.message).__qualname__
    raise QueryError(
        f"query {kind} returned {type(result).__qualname__}, not {_name(returns)} as returns= "
        f"says; fix the handler ({envelope.all(HandledStamp)[0].handler_name}) or returns="
    )


def _classes(returns: Any) -> tuple[type[Any], ...]:
    """What ``isinstance`` checks for ``returns``: a parameterised alias (``list[int]``) by its
    class (its items are not checked), a union by its members, ``None`` as ``NoneType``."""
    if returns is None:
        return (type(None),)
    origin = typing.get_origin(returns)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(c for member in typing.get_args(returns) for c in _classes(member))
    expected = origin or returns
    if not isinstance(expected, type):
        raise TypeError(
            f"query(returns=...) takes a class such as int or list[str], got {returns!r}"
        )
    return _PROMOTED.get(expected, (expected,))


def _name(returns: Any) -> str:
    return returns.__qualname__ if isinstance(returns, type) else repr(returns)
