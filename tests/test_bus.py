"""Buses: dispatch, named buses, query, missing handlers and the middleware chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from messenger_core import (
    DEFAULT_BUS,
    BusNameStamp,
    ConfigurationError,
    DelayStamp,
    Envelope,
    HandledStamp,
    MessageBus,
    Messenger,
    NoHandlerForMessageError,
    Query,
    QueryError,
    SentStamp,
    hookimpl,
)
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.middleware.add_bus_name import AddBusNameStampMiddleware
from messenger_core.middleware.handle import HandleMessageMiddleware
from messenger_core.serialization.json import JsonSerializer


@attrs.frozen
class CreateOrder:
    order_id: int


@attrs.frozen
class PriceQuery:
    sku: str


@attrs.frozen
class Unhandled:
    pass


def test_dispatch_returns_the_envelope_with_the_bus_name_and_a_handled_stamp_per_handler() -> None:
    messenger = Messenger(autoload=False)

    @messenger.handler
    def create(message: CreateOrder) -> str:
        return f"created {message.order_id}"

    @messenger.handler
    def audit(message: CreateOrder) -> None:
        return None

    envelope = messenger.bus.dispatch(CreateOrder(7))

    assert isinstance(envelope, Envelope)
    assert envelope.message == CreateOrder(7)
    assert envelope.all(BusNameStamp) == (BusNameStamp(bus_name=DEFAULT_BUS),)
    assert envelope.all(HandledStamp) == (
        HandledStamp(handler_name=f"{__name__}.{create.__qualname__}", result="created 7"),
        HandledStamp(handler_name=f"{__name__}.{audit.__qualname__}", result=None),
    )


def test_dispatching_an_envelope_keeps_its_stamps_and_adds_the_extra_ones() -> None:
    messenger = Messenger(autoload=False)
    messenger.handler(lambda m: None, handles=CreateOrder)
    original = Envelope(CreateOrder(1), [DelayStamp(delay_ms=5)])

    envelope = messenger.bus.dispatch(original, DelayStamp(delay_ms=9))

    assert envelope.all(DelayStamp) == (DelayStamp(delay_ms=5), DelayStamp(delay_ms=9))
    assert envelope.last(BusNameStamp) == BusNameStamp(bus_name=DEFAULT_BUS)
    assert len(envelope.all(HandledStamp)) == 1


def test_an_envelope_that_already_names_its_bus_keeps_that_name() -> None:
    # A worker re-dispatches on the bus the message was first dispatched on.
    messenger = Messenger(autoload=False)
    messenger.handler(lambda m: None, handles=CreateOrder)

    envelope = messenger.bus.dispatch(Envelope(CreateOrder(1), [BusNameStamp(bus_name="x")]))

    assert envelope.all(BusNameStamp) == (BusNameStamp(bus_name="x"),)


def test_several_named_buses_from_configuration() -> None:
    messenger = Messenger(
        {
            "buses": {
                "command.bus": {},
                "event.bus": {"allow_no_handlers": True},
            }
        },
        autoload=False,
    )

    assert list(messenger.buses) == [DEFAULT_BUS, "command.bus", "event.bus"]
    assert len(messenger.buses) == 3
    assert messenger.bus is messenger.buses[DEFAULT_BUS]
    assert messenger.bus.name == DEFAULT_BUS
    assert messenger.buses["event.bus"] is messenger.get_bus("event.bus")
    assert messenger.buses["event.bus"].name == "event.bus"
    assert "command.bus" in messenger.buses
    assert "nope" not in messenger.buses

    envelope = messenger.buses["event.bus"].dispatch(Unhandled())
    assert envelope.last(BusNameStamp) == BusNameStamp(bus_name="event.bus")
    assert envelope.all(HandledStamp) == ()


def test_the_default_bus_can_have_another_name() -> None:
    messenger = Messenger(
        {"default_bus": "command.bus", "buses": {"event.bus": {}}}, autoload=False
    )
    messenger.handler(lambda m: "ok", handles=CreateOrder)

    assert list(messenger.buses) == ["command.bus", "event.bus"]
    assert messenger.bus.name == "command.bus"
    envelope = messenger.bus.dispatch(CreateOrder(1))
    assert envelope.last(BusNameStamp) == BusNameStamp(bus_name="command.bus")


def test_an_unknown_bus_is_an_error_naming_the_configured_ones() -> None:
    messenger = Messenger({"buses": {"event.bus": {}}}, autoload=False)

    with pytest.raises(ConfigurationError, match=r"no bus named 'evnt\.bus'.*event\.bus"):
        messenger.get_bus("evnt.bus")
    with pytest.raises(KeyError):
        messenger.buses["evnt.bus"]


def test_query_returns_the_result_of_the_one_handler() -> None:
    messenger = Messenger(autoload=False)

    @messenger.handler
    def price(message: PriceQuery) -> int:
        return {"apple": 3}[message.sku]

    assert messenger.bus.query(PriceQuery("apple")) == 3


def test_query_with_no_handler_is_a_clear_error() -> None:
    messenger = Messenger({"buses": {DEFAULT_BUS: {"allow_no_handlers": True}}}, autoload=False)

    with pytest.raises(QueryError, match=r"PriceQuery was handled 0 times.*exactly one handler"):
        messenger.bus.query(PriceQuery("apple"))


def test_query_with_two_handlers_is_a_clear_error_naming_them() -> None:
    messenger = Messenger(autoload=False)

    @messenger.handler
    def first(message: PriceQuery) -> int:
        return 1

    @messenger.handler
    def second(message: PriceQuery) -> int:
        return 2

    with pytest.raises(QueryError) as caught:
        messenger.bus.query(PriceQuery("apple"))

    text = str(caught.value)
    assert "handled 2 times" in text
    assert first.__qualname__ in text
    assert second.__qualname__ in text


def test_query_of_a_routed_message_says_it_was_not_handled_here() -> None:
    sent: list[Envelope] = []

    class ListSender:
        def send(self, envelope: Envelope) -> Envelope:
            sent.append(envelope)
            return envelope

    messenger = Messenger(autoload=False)
    messenger.add_transport("async", ListSender())  # type: ignore[arg-type]
    messenger.route(PriceQuery, "async")
    messenger.handler(lambda m: 1, handles=PriceQuery)

    with pytest.raises(QueryError, match="routed to a transport"):
        messenger.bus.query(PriceQuery("apple"))
    assert len(sent) == 1


@attrs.frozen
class GetPrice(Query[int]):
    sku: str


@attrs.frozen
class GetTags(Query[list[str]]):
    sku: str


def test_a_query_class_is_an_ordinary_message_at_run_time() -> None:
    messenger = Messenger(autoload=False)

    @messenger.handler
    def price(message: GetPrice) -> int:
        return len(message.sku)

    @messenger.handler
    def tags(message: GetTags) -> list[str]:
        return [message.sku]

    assert messenger.bus.query(GetPrice(sku="apple")) == 5
    assert messenger.bus.query(GetTags(sku="apple")) == ["apple"]
    assert not hasattr(GetPrice(sku="x"), "__dict__")  # Query adds no instance dict to slots
    # It travels through the json serializer like any message.
    messenger.registry.register(GetPrice)
    serializer = JsonSerializer(messenger.registry)
    decoded = serializer.decode(serializer.encode(Envelope(GetPrice(sku="pear"), [])))
    assert decoded.message == GetPrice(sku="pear")


def test_query_returns_checks_the_result_type_at_run_time() -> None:
    messenger = Messenger(autoload=False)
    results: dict[str, Any] = {"apple": 3, "pear": "3", "fig": True, "kiwi": None}

    @messenger.handler
    def price(message: PriceQuery) -> Any:
        return results[message.sku]

    assert messenger.bus.query(PriceQuery("apple"), returns=int) == 3
    assert messenger.bus.query(PriceQuery("apple"), returns=float) == 3  # int is a float too
    assert messenger.bus.query(PriceQuery("pear"), returns=str) == "3"
    assert messenger.bus.query(PriceQuery("kiwi"), returns=type(None)) is None
    assert messenger.bus.query(PriceQuery("kiwi"), returns=int | None) is None  # type: ignore[arg-type]
    with pytest.raises(
        QueryError,
        match=r"query PriceQuery returned str, not int as returns= says; fix the handler "
        r"\(.*price\) or returns=",
    ):
        messenger.bus.query(PriceQuery("pear"), returns=int)
    with pytest.raises(QueryError, match="returned NoneType, not int"):
        messenger.bus.query(PriceQuery("kiwi"), returns=int)


def test_query_returns_checks_a_parameterised_type_by_its_class() -> None:
    messenger = Messenger(autoload=False)
    messenger.handler(lambda m: ["a"], handles=PriceQuery, name="tags")

    assert messenger.bus.query(PriceQuery("x"), returns=list[str]) == ["a"]
    with pytest.raises(QueryError, match="returned list, not dict"):
        messenger.bus.query(PriceQuery("x"), returns=dict[str, int])
    with pytest.raises(TypeError, match=r"returns=\.\.\.\) takes a class such as int"):
        messenger.bus.query(PriceQuery("x"), returns="int")  # type: ignore[call-overload]


def test_a_message_without_handler_raises_unless_the_bus_allows_it() -> None:
    messenger = Messenger({"buses": {"event.bus": {"allow_no_handlers": True}}}, autoload=False)

    with pytest.raises(NoHandlerForMessageError, match=r"Unhandled.*messenger\.bus\.default"):
        messenger.bus.dispatch(Unhandled())
    envelope = messenger.buses["event.bus"].dispatch(Unhandled())
    assert envelope.message == Unhandled()
    assert envelope.all(HandledStamp) == ()


# -- middleware ------------------------------------------------------------------------------


class Recorder:
    """A class-based middleware that records what it saw on the way in and out."""

    def __init__(self, name: str, log: list[Any]) -> None:
        self.name = name
        self.log = log

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        self.log.append((f"{self.name} in", _kinds(envelope)))
        result = next(envelope)
        self.log.append((f"{self.name} out", _kinds(result)))
        return result


def _kinds(envelope: Envelope) -> list[str]:
    return [type(s).__name__ for s in envelope.stamps]


def test_user_middleware_runs_in_configured_order_between_the_defaults_and_the_handlers() -> None:
    log: list[Any] = []
    contexts: list[MiddlewareContext] = []

    def recorder_factory(context: MiddlewareContext) -> Recorder:
        contexts.append(context)
        return Recorder(str(context.options.get("label", "recorder")), log)

    def plain_factory(context: MiddlewareContext) -> Callable[[Envelope, Next], Envelope]:
        def plain(envelope: Envelope, next: Next) -> Envelope:
            log.append(("plain in", _kinds(envelope)))
            return next(envelope)

        return plain

    messenger = Messenger(
        {
            "buses": {
                DEFAULT_BUS: {
                    "middleware": [{"name": "recorder", "options": {"label": "A"}}, "plain"],
                }
            }
        },
        autoload=False,
        middleware={"recorder": recorder_factory, "plain": plain_factory},
    )
    messenger.handler(lambda m: log.append(("handler", [])), handles=CreateOrder)

    messenger.bus.dispatch(CreateOrder(1))

    assert log == [
        ("A in", ["BusNameStamp"]),
        ("plain in", ["BusNameStamp"]),
        ("handler", []),
        ("A out", ["BusNameStamp", "HandledStamp"]),
    ]
    assert len(contexts) == 1
    assert contexts[0].bus_name == DEFAULT_BUS
    assert contexts[0].messenger is messenger
    assert contexts[0].options == {"label": "A"}


def test_the_same_middleware_factory_builds_one_middleware_per_bus() -> None:
    built: list[str] = []

    def factory(context: MiddlewareContext) -> Callable[[Envelope, Next], Envelope]:
        built.append(context.bus_name)
        return lambda envelope, next: next(envelope)

    messenger = Messenger(
        {"buses": {DEFAULT_BUS: {"middleware": ["m"]}, "other": {"middleware": ["m"]}}},
        autoload=False,
        middleware={"m": factory},
    )
    other = messenger.buses["other"]
    default = messenger.bus

    assert built == ["other", DEFAULT_BUS]
    assert messenger.bus is default  # built once
    assert messenger.buses["other"] is other
    assert built == ["other", DEFAULT_BUS]


def test_plugin_middleware_runs_after_the_users() -> None:
    log: list[Any] = []

    class Plugin:
        @hookimpl
        def messenger_bus_middleware(self, bus_name: str) -> list[Any]:
            return [Recorder(f"plugin:{bus_name}", log)]

    messenger = Messenger(
        {"buses": {DEFAULT_BUS: {"middleware": ["user"]}}},
        autoload=False,
        plugins=[Plugin()],
        middleware={"user": lambda context: Recorder("user", log)},
    )
    messenger.handler(lambda m: None, handles=CreateOrder)

    messenger.bus.dispatch(CreateOrder(1))

    assert [entry for entry, _ in log] == [
        "user in",
        f"plugin:{DEFAULT_BUS} in",
        f"plugin:{DEFAULT_BUS} out",
        "user out",
    ]


def test_default_middleware_false_leaves_only_the_listed_middleware() -> None:
    log: list[Any] = []
    messenger = Messenger(
        {"buses": {DEFAULT_BUS: {"default_middleware": False, "middleware": ["only"]}}},
        autoload=False,
        middleware={"only": lambda context: Recorder("only", log)},
    )
    handled: list[object] = []
    messenger.handler(handled.append, handles=CreateOrder)

    envelope = messenger.bus.dispatch(CreateOrder(1))

    assert log == [("only in", []), ("only out", [])]
    assert envelope.stamps == ()  # no bus name, nothing handled: the defaults are gone
    assert handled == []
    assert len(messenger.bus.middleware) == 1


def test_default_middleware_false_with_the_builtins_named_in_config() -> None:
    messenger = Messenger(
        {
            "buses": {
                DEFAULT_BUS: {
                    "default_middleware": False,
                    "middleware": ["add_bus_name_stamp", "handle_message"],
                }
            }
        },
        autoload=False,
        middleware={
            "add_bus_name_stamp": AddBusNameStampMiddleware.from_context,
            "handle_message": HandleMessageMiddleware.from_context,
        },
    )
    messenger.handler(lambda m: "done", handles=CreateOrder)

    envelope = messenger.bus.dispatch(CreateOrder(1))

    assert envelope.last(BusNameStamp) == BusNameStamp(bus_name=DEFAULT_BUS)
    assert envelope.last(HandledStamp) is not None
    assert envelope.last(HandledStamp).result == "done"  # type: ignore[union-attr]


def test_a_middleware_factory_that_fails_is_a_configuration_error_naming_it() -> None:
    def broken(context: MiddlewareContext) -> Any:
        raise ValueError("needs a 'level' option")

    messenger = Messenger(
        {"buses": {DEFAULT_BUS: {"middleware": ["broken"]}}},
        autoload=False,
        middleware={"broken": broken},
    )

    with pytest.raises(
        ConfigurationError, match=r"middleware 'broken' of bus 'messenger\.bus\.default'.*level"
    ):
        messenger.get_bus(DEFAULT_BUS)


def test_a_middleware_may_stop_the_chain() -> None:
    def block(envelope: Envelope, next: Next) -> Envelope:
        return envelope.with_(SentStamp(sender_name="nowhere"))

    messenger = Messenger(
        {"buses": {DEFAULT_BUS: {"middleware": ["block"]}}},
        autoload=False,
        middleware={"block": lambda context: block},
    )
    handled: list[object] = []
    messenger.handler(handled.append, handles=CreateOrder)

    envelope = messenger.bus.dispatch(CreateOrder(1))

    assert handled == []
    assert envelope.last(SentStamp) == SentStamp(sender_name="nowhere")


def test_a_bus_built_directly_from_plain_functions() -> None:
    order: list[str] = []

    def outer(envelope: Envelope, next: Next) -> Envelope:
        order.append("outer")
        return next(envelope.with_(DelayStamp(delay_ms=1)))

    def inner(envelope: Envelope, next: Next) -> Envelope:
        order.append("inner")
        return next(envelope)

    bus = MessageBus("plain", [outer, inner])

    envelope = bus.dispatch(CreateOrder(1), BusNameStamp(bus_name="plain"))

    assert order == ["outer", "inner"]
    assert envelope.stamps == (BusNameStamp(bus_name="plain"), DelayStamp(delay_ms=1))
    assert repr(bus) == "MessageBus('plain', middleware=2)"
