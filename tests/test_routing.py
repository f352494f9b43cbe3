"""Routing: which transports a message goes to, and the sync:// transport."""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from messenger_core import (
    ConfigurationError,
    Envelope,
    HandledStamp,
    Messenger,
    NoHandlerForMessageError,
    ReceivedStamp,
    SentStamp,
    TransportNamesStamp,
)
from messenger_core.dsn import Dsn
from messenger_core.routing import Router, route_names_of


@attrs.frozen(slots=False)
class Event:
    pass


@attrs.frozen(slots=False)
class UserRegistered(Event):
    name: str = "ada"


@attrs.frozen
class OrderPlaced:
    order_id: int = 1


@attrs.frozen
class Ping:
    pass


def name_of(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class ListSender:
    """A transport that only records what it was sent."""

    def __init__(self, dsn: Dsn) -> None:
        self.dsn = dsn
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope) -> Envelope:
        self.sent.append(envelope)
        return envelope

    def close(self) -> None:
        pass


class ListFactory:
    def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: object) -> ListSender:
        return ListSender(dsn)


def no_serializer(registry: object, options: object) -> None:
    return None


def make_messenger(routing: Mapping[Any, Any], **transports: str) -> Messenger:
    config = {
        "transports": transports or {"async": "list://async", "audit": "list://audit"},
        "routing": dict(routing),
    }
    return Messenger(
        config,
        autoload=False,
        transports={"list": ListFactory()},
        serializers={"json": no_serializer},
    )


def sent_to(messenger: Messenger, transport: str) -> list[Any]:
    sender = messenger.get_transport(transport)
    assert isinstance(sender, ListSender)
    return [envelope.message for envelope in sender.sent]


def test_a_routed_message_is_sent_with_a_sent_stamp_and_not_handled() -> None:
    messenger = make_messenger({name_of(OrderPlaced): "async"})
    handled: list[object] = []
    messenger.handler(handled.append, handles=OrderPlaced)

    envelope = messenger.bus.dispatch(OrderPlaced(3))

    assert sent_to(messenger, "async") == [OrderPlaced(3)]
    assert sent_to(messenger, "audit") == []
    assert envelope.all(SentStamp) == (SentStamp(sender_name="async"),)
    assert envelope.all(HandledStamp) == ()
    assert handled == []


def test_routes_of_the_class_and_its_base_classes_are_merged_most_specific_first() -> None:
    messenger = make_messenger({name_of(Event): "audit", name_of(UserRegistered): "async"})

    envelope = messenger.bus.dispatch(UserRegistered())

    assert envelope.all(SentStamp) == (
        SentStamp(sender_name="async"),
        SentStamp(sender_name="audit"),
    )
    assert sent_to(messenger, "async") == [UserRegistered()]
    assert sent_to(messenger, "audit") == [UserRegistered()]
    assert messenger.bus.dispatch(Event()).all(SentStamp) == (SentStamp(sender_name="audit"),)


def test_a_class_routed_to_several_transports_gets_a_sent_stamp_per_transport() -> None:
    messenger = make_messenger({name_of(OrderPlaced): ["audit", "async"]})

    envelope = messenger.bus.dispatch(OrderPlaced())

    assert [s.sender_name for s in envelope.all(SentStamp)] == ["audit", "async"]
    audit = messenger.get_transport("audit")
    assert isinstance(audit, ListSender)
    # Each transport receives the envelope stamped for itself.
    assert audit.sent[0].last(SentStamp) == SentStamp(sender_name="audit")


def test_star_is_used_only_when_nothing_more_specific_matched() -> None:
    messenger = make_messenger({"*": "audit", name_of(OrderPlaced): "async"})

    assert messenger.bus.dispatch(OrderPlaced()).all(SentStamp) == (SentStamp(sender_name="async"),)
    assert messenger.bus.dispatch(Ping()).all(SentStamp) == (SentStamp(sender_name="audit"),)
    assert sent_to(messenger, "audit") == [Ping()]


def test_transport_names_stamp_overrides_routing_for_one_dispatch() -> None:
    messenger = make_messenger({name_of(OrderPlaced): "async"})

    overridden = messenger.bus.dispatch(
        OrderPlaced(1), TransportNamesStamp(transport_names=["audit"])
    )
    unrouted = messenger.bus.dispatch(Ping(), TransportNamesStamp(transport_names=("audit",)))
    normal = messenger.bus.dispatch(OrderPlaced(2))

    assert overridden.all(SentStamp) == (SentStamp(sender_name="audit"),)
    assert unrouted.all(SentStamp) == (SentStamp(sender_name="audit"),)
    assert normal.all(SentStamp) == (SentStamp(sender_name="async"),)
    assert sent_to(messenger, "audit") == [OrderPlaced(1), Ping()]
    assert sent_to(messenger, "async") == [OrderPlaced(2)]


def test_a_transport_names_stamp_naming_an_unknown_transport_is_an_error() -> None:
    messenger = make_messenger({})

    with pytest.raises(ConfigurationError, match="no transport named 'nope'"):
        messenger.bus.dispatch(Ping(), TransportNamesStamp(transport_names=["nope"]))


def test_a_message_without_route_is_handled_synchronously() -> None:
    messenger = make_messenger({name_of(OrderPlaced): "async"})
    messenger.handler(lambda m: "pong", handles=Ping)

    envelope = messenger.bus.dispatch(Ping())

    assert envelope.all(SentStamp) == ()
    assert envelope.last(HandledStamp) == HandledStamp(
        handler_name=envelope.all(HandledStamp)[0].handler_name, result="pong"
    )
    assert sent_to(messenger, "async") == []


def test_a_received_message_is_handled_not_sent_again() -> None:
    messenger = make_messenger({name_of(OrderPlaced): "async"})
    messenger.handler(lambda m: "handled", handles=OrderPlaced)

    envelope = messenger.bus.dispatch(
        Envelope(OrderPlaced(), [ReceivedStamp(transport_name="async")])
    )

    assert sent_to(messenger, "async") == []
    assert envelope.all(SentStamp) == ()
    assert [s.result for s in envelope.all(HandledStamp)] == ["handled"]


def test_route_adds_routes_at_run_time_even_after_dispatches() -> None:
    messenger = make_messenger({})
    messenger.handler(lambda m: None, handles=OrderPlaced)
    assert messenger.bus.dispatch(OrderPlaced()).all(SentStamp) == ()

    messenger.route(OrderPlaced, "async")
    messenger.route(name_of(OrderPlaced), "audit", "async")

    envelope = messenger.bus.dispatch(OrderPlaced())
    assert [s.sender_name for s in envelope.all(SentStamp)] == ["async", "audit"]
    assert messenger.router.routes == {name_of(OrderPlaced): ("async", "audit")}
    assert messenger.registry.resolve(name_of(OrderPlaced)) is OrderPlaced


def test_route_to_an_unknown_transport_is_an_error() -> None:
    messenger = make_messenger({})

    with pytest.raises(ConfigurationError, match="unknown transport 'asinc'"):
        messenger.route(OrderPlaced, "asinc")


def test_routing_by_name_never_imports_the_module() -> None:
    module = "messenger_tests_never_imported_module"
    router = Router({f"{module}.Thing": "async", "*": ["audit"]})

    assert router.transports_for(Ping) == ("audit",)
    assert module not in sys.modules
    assert router.transport_names() == {"async", "audit"}


def test_a_transport_added_as_an_object_can_be_routed_to() -> None:
    messenger = Messenger(autoload=False)
    sender = ListSender(Dsn.parse("list://x"))
    messenger.add_transport("mine", sender)  # type: ignore[arg-type]
    messenger.route(OrderPlaced, "mine")

    messenger.bus.dispatch(OrderPlaced())

    assert [e.message for e in sender.sent] == [OrderPlaced()]
    with pytest.raises(ConfigurationError, match="exists already"):
        messenger.add_transport("mine", sender)  # type: ignore[arg-type]


# -- sync:// ---------------------------------------------------------------------------------


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's entry points (sync://) are loaded as in a plain installation."""
    monkeypatch.delenv("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("MESSENGER_DISABLED_PLUGINS", raising=False)


@pytest.mark.usefixtures("autoload")
def test_sync_transport_handles_the_message_as_received_from_its_transport_name() -> None:
    messenger = Messenger(
        {"transports": {"now": {"dsn": "sync://"}}, "routing": {name_of(OrderPlaced): "now"}}
    )
    ran: list[str] = []
    messenger.handler(lambda m: ran.append("now"), handles=OrderPlaced, from_transport="now")
    messenger.handler(lambda m: ran.append("async"), handles=OrderPlaced, from_transport="async")
    messenger.handler(lambda m: ran.append("any"), handles=OrderPlaced, name="any")

    envelope = messenger.bus.dispatch(OrderPlaced())

    assert sorted(ran) == ["any", "now"]
    assert envelope.last(SentStamp) == SentStamp(sender_name="now")
    assert envelope.last(ReceivedStamp) == ReceivedStamp(transport_name="now")
    assert len(envelope.all(HandledStamp)) == 2


@pytest.mark.usefixtures("autoload")
def test_sync_transport_dispatches_again_on_the_bus_of_the_message() -> None:
    messenger = Messenger(
        {
            "buses": {"event.bus": {}},
            "transports": {"sync": "sync://"},
            "routing": {"*": "sync"},
        }
    )
    buses: list[str] = []
    messenger.handler(lambda m: buses.append("default"), handles=Ping, bus="messenger.bus.default")
    messenger.handler(lambda m: buses.append("event"), handles=Ping, bus="event.bus")

    messenger.buses["event.bus"].dispatch(Ping())

    assert buses == ["event"]


@pytest.mark.usefixtures("autoload")
def test_sync_transport_reports_handler_failures_and_missing_handlers() -> None:
    messenger = Messenger({"transports": {"sync": "sync://"}, "routing": {"*": "sync"}})

    with pytest.raises(NoHandlerForMessageError):
        messenger.bus.dispatch(Ping())


@pytest.mark.usefixtures("autoload")
def test_sync_transport_takes_no_options() -> None:
    messenger = Messenger({"transports": {"sync": {"dsn": "sync://?x=1"}}})

    with pytest.raises(ConfigurationError, match="takes no options"):
        messenger.get_transport("sync")


def test_the_configuration_may_route_the_class_object() -> None:
    messenger = make_messenger({OrderPlaced: "async", name_of(Ping): "audit"})

    assert messenger.bus.dispatch(OrderPlaced(7)).all(SentStamp) == (
        SentStamp(sender_name="async"),
    )
    assert sent_to(messenger, "async") == [OrderPlaced(7)]
    # Routed by class: it can come back from a transport, so the registry knows it.
    assert OrderPlaced in messenger.registry
    assert messenger.router.routes == {name_of(OrderPlaced): ("async",), name_of(Ping): ("audit",)}


def script_class(monkeypatch: pytest.MonkeyPatch, script: str) -> type[Any]:
    """A class as defined in a script run as ``python <script>`` (its module is __main__)."""
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", main)
    cls: type[Any] = attrs.frozen(type("Shipped", (), {"__module__": "__main__"}))
    return cls


def test_a_class_of_the_running_script_matches_its_main_and_its_module_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shipped = script_class(monkeypatch, "/srv/shop.py")
    assert route_names_of(shipped) == ("__main__.Shipped", "shop.Shipped")

    by_module = make_messenger({"shop.Shipped": "async"})
    assert by_module.bus.dispatch(shipped()).all(SentStamp) == (SentStamp(sender_name="async"),)
    by_main = make_messenger({"__main__.Shipped": "audit"})
    assert by_main.bus.dispatch(shipped()).all(SentStamp) == (SentStamp(sender_name="audit"),)
    # Another module's class of the same name is not matched.
    assert make_messenger({"other.Shipped": "async"}).router.transports_for(shipped) == ()


def test_python_dash_m_names_the_script_by_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = script_class(monkeypatch, "/srv/shop/cli.py")
    spec = types.SimpleNamespace(name="shop.cli")
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", spec)

    assert route_names_of(shipped) == ("__main__.Shipped", "shop.cli.Shipped")


def test_a_class_outside_a_script_has_one_route_name() -> None:
    assert route_names_of(OrderPlaced) == (name_of(OrderPlaced),)
