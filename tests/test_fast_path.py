"""The dispatch fast path (messenger_core._fast_path) gives what the general path gives.

Each case dispatches the same thing three times through a bus built normally (the first
dispatch learns, the later ones take the unrolled paths) and three times through a bus built
inside ``general_path()`` (none of the speed-ups), and compares the envelopes (message, stamps
in order, handler results), the errors and the handler calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from messenger_core import (
    DEFAULT_BUS,
    BusNameStamp,
    DelayStamp,
    Envelope,
    HandledStamp,
    MessageBus,
    Messenger,
    ReceivedStamp,
    Stamp,
    TransportMessageIdStamp,
)
from messenger_core._fast_path import general_path
from messenger_core.errors import HandlerFailedError
from messenger_core.middleware import Next


@attrs.frozen
class Order:
    order_id: int


@attrs.frozen(kw_only=True)
class MarkStamp(Stamp):
    mark: str


Calls = list[str]


def _handler(name: str, behaviour: str, calls: Calls) -> Callable[[Order], Any]:
    """A handler named ``name`` that records its calls and returns or raises per ``behaviour``."""
    if behaviour == "async-value":

        async def async_handler(message: Order) -> Any:
            calls.append(name)
            return f"{name} {message.order_id}"

        return async_handler
    if behaviour == "async-none":

        async def async_none(message: Order) -> None:
            calls.append(name)

        return async_none

    def handler(message: Order) -> Any:
        calls.append(name)
        if behaviour == "raise":
            raise ValueError(f"{name} failed on {message.order_id}")
        if behaviour == "value":
            return {"order": message.order_id, "by": name}
        if behaviour == "awaitable":
            return _later(message.order_id)
        return None

    return handler


async def _later(value: int) -> int:
    return value * 10


# name -> [(behaviour, from_transport)], one entry per handler
HANDLERS: dict[str, list[tuple[str, str | None]]] = {
    "none": [],
    "one returning None": [("none", None)],
    "one returning a value": [("value", None)],
    "one raising": [("raise", None)],
    "one async returning a value": [("async-value", None)],
    "one async returning None": [("async-none", None)],
    "one returning an awaitable": [("awaitable", None)],
    "one only from transport other": [("none", "other")],
    "one only from transport async": [("value", "async")],
    "two returning None and a value": [("none", None), ("value", None)],
    "two, the second raising": [("value", None), ("raise", None)],
    "two, the first from transport other": [("value", "other"), ("none", None)],
}

# name -> (message or envelope, extra stamps)
DISPATCHES: dict[str, tuple[Any, tuple[Stamp, ...]]] = {
    "bare message": (Order(1), ()),
    "bare message with stamps": (Order(2), (DelayStamp(delay_ms=0), MarkStamp(mark="given"))),
    "envelope": (Envelope(Order(3)), ()),
    "envelope with stamps": (Envelope(Order(4), [MarkStamp(mark="in")]), (MarkStamp(mark="x"),)),
    "envelope with its bus name": (Envelope(Order(5), [BusNameStamp(bus_name=DEFAULT_BUS)]), ()),
    "received envelope": (
        Envelope(
            Order(6), [BusNameStamp(bus_name=DEFAULT_BUS), ReceivedStamp(transport_name="async")]
        ),
        (),
    ),
    "envelope handled before (a retry)": (
        Envelope(Order(7), [HandledStamp(handler_name="h0", result=None)]),
        (),
    ),
}


def _mark(envelope: Envelope, next: Next, /) -> Envelope:
    """A plain function middleware (no bind) in the chain."""
    return next(envelope.with_(MarkStamp(mark="middleware")))


def _comparable(envelope: Envelope) -> tuple[Any, ...]:
    # A transport's message id differs per send; everything else must be equal.
    stamps = tuple(
        ("id", type(s.id)) if type(s) is TransportMessageIdStamp else s for s in envelope.stamps
    )
    return envelope.message, stamps


def _outcome(dispatch: Callable[[], Envelope]) -> tuple[Any, ...]:
    try:
        return ("returned", _comparable(dispatch()))
    except Exception as error:
        described: tuple[Any, ...] = (type(error), str(error))
        cause = error.__cause__
        if cause is not None:
            described += (type(cause), cause.args)
        if isinstance(error, HandlerFailedError):
            described += (
                _comparable(error.envelope),
                tuple((name, type(e), e.args) for name, e in error.exceptions),
            )
        return ("raised", *described)


def _run(bus: MessageBus, subject: Any, stamps: tuple[Stamp, ...], calls: Calls) -> list[Any]:
    results = []
    for _ in range(3):
        results.append((_outcome(lambda: bus.dispatch(subject, *stamps)), list(calls)))
        calls.clear()
    return results


def _messenger(handlers: list[tuple[str, str | None]], routed: bool, calls: Calls) -> Messenger:
    messenger = Messenger(autoload=False)
    messenger.add_transport("async", "memory://")
    for index, (behaviour, from_transport) in enumerate(handlers):
        messenger.handler(
            _handler(f"h{index}", behaviour, calls),
            handles=Order,
            name=f"h{index}",
            from_transport=from_transport,
        )
    if routed:
        messenger.route(Order, "async")
    return messenger


def _with_plain_middleware(middleware: tuple[Any, ...], where: str) -> list[Any]:
    if where == "first":  # ahead of the bus name (a bus without the default middleware)
        return [_mark, *middleware]
    if where == "before sending":  # where a user's middleware goes in the default stack
        return [*middleware[:-2], _mark, *middleware[-2:]]
    return list(middleware)


CASES = list(
    itertools.product(
        HANDLERS, DISPATCHES, ["routed", "not routed"], ["", "first", "before sending"]
    )
)


@pytest.mark.parametrize(
    ("handlers", "dispatch", "route", "plain_middleware"),
    CASES,
    ids=[
        f"{h}-{d}-{r}{f'-plain middleware {p}' if p else ''}".replace(" ", "_")
        for h, d, r, p in CASES
    ],
)
def test_the_fast_and_the_general_path_give_the_same_envelopes(
    handlers: str, dispatch: str, route: str, plain_middleware: str
) -> None:
    calls: Calls = []
    messenger = _messenger(HANDLERS[handlers], route == "routed", calls)
    with messenger:
        middleware = _with_plain_middleware(messenger.bus.middleware, plain_middleware)
        subject, stamps = DISPATCHES[dispatch]

        fast = _run(MessageBus(DEFAULT_BUS, middleware), subject, stamps, calls)
        with general_path():
            general = _run(MessageBus(DEFAULT_BUS, middleware), subject, stamps, calls)

    assert fast == general
    assert fast[0] == fast[1] == fast[2]


def test_handlers_registered_between_dispatches_are_seen_on_both_paths() -> None:
    calls: Calls = []
    messenger = Messenger(autoload=False)
    fast = messenger.bus
    with general_path():
        general = MessageBus(DEFAULT_BUS, fast.middleware)
    outcomes: list[tuple[Any, Any]] = []

    def both() -> None:
        first = _outcome(lambda: fast.dispatch(Order(1)))
        fast_calls = list(calls)
        calls.clear()
        with general_path():
            second = _outcome(lambda: general.dispatch(Order(1)))
        outcomes.append((first, fast_calls))
        assert (first, fast_calls) == (second, calls)
        calls.clear()

    both()  # no handler: both raise
    messenger.handler(_handler("h0", "none", calls), handles=Order, name="h0")
    both()
    both()  # the sole handler, unrolled
    messenger.handler(_handler("h1", "value", calls), handles=Order, name="h1")
    both()  # two handlers: the unrolled path must not keep calling h0 alone
    both()
    messenger.handler(_handler("h2", "none", calls), handles=Order, name="h2", priority=5)
    both()

    assert outcomes[0][0][1].__name__ == "NoHandlerForMessageError"
    assert [c for _, c in outcomes[1:]] == [
        ["h0"],
        ["h0"],
        ["h0", "h1"],
        ["h0", "h1"],
        ["h2", "h0", "h1"],
    ]


def test_the_general_path_is_really_general() -> None:
    """Guards the test above against comparing the fast path with itself."""
    messenger = Messenger(autoload=False)
    messenger.handler(lambda message: None, handles=Order, name="h0")
    middleware = messenger.bus.middleware

    fast = MessageBus(DEFAULT_BUS, middleware)
    with general_path():
        general = MessageBus(DEFAULT_BUS, middleware)

    assert fast._wrap_stamps == (BusNameStamp(bus_name=DEFAULT_BUS),)
    assert fast._bare_chain is not fast._chain
    assert general._wrap_stamps == ()
    assert general._bare_chain is general._chain

    sole = messenger.handlers.scratch_cache(f"sole handler on {DEFAULT_BUS}")
    with general_path():
        general.dispatch(Order(1))
    assert Order not in sole
    fast.dispatch(Order(1))
    assert sole[Order][1] == "h0"
