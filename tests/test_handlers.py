"""Handlers: what can be registered, how the message type is found, lookup, options, failures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import attrs
import pytest

from messenger_core import (
    ANY_MESSAGE,
    ConfigurationError,
    Envelope,
    HandledStamp,
    HandlerFailedError,
    Messenger,
    NoHandlerForMessageError,
    ReceivedStamp,
    handler,
)
from messenger_core.handlers import HandlerOptions, HandlerRegistry

FIXTURES = Path(__file__).parent / "fixtures"


@attrs.frozen
class OrderPlaced:
    order_id: int = 1


@attrs.frozen
class OrderCancelled:
    order_id: int = 1


@attrs.frozen(slots=False)
class Event:
    pass


@attrs.frozen(slots=False)
class UserEvent(Event):
    pass


@attrs.frozen(slots=False)
class UserRegistered(UserEvent):
    name: str = "ada"


@attrs.frozen(slots=False)
class Auditable:
    pass


@attrs.frozen(slots=False)
class AuditedRegistration(UserRegistered, Auditable):
    pass


def handled_names(envelope: Envelope) -> list[str]:
    return [stamp.handler_name for stamp in envelope.all(HandledStamp)]


def results(envelope: Envelope) -> list[Any]:
    return [stamp.result for stamp in envelope.all(HandledStamp)]


@pytest.fixture
def messenger() -> Messenger:
    return Messenger(autoload=False)


# -- what can be a handler ---------------------------------------------------------------------


def test_a_decorated_function_is_registered_and_returned_unchanged(messenger: Messenger) -> None:
    @messenger.handler
    def on_placed(message: OrderPlaced) -> int:
        return message.order_id * 2

    envelope = messenger.bus.dispatch(OrderPlaced(21))

    assert on_placed(OrderPlaced(1)) == 2  # still the plain function
    assert envelope.all(HandledStamp) == (
        HandledStamp(handler_name=f"{__name__}.{on_placed.__qualname__}", result=42),
    )


def test_a_bound_method(messenger: Messenger) -> None:
    class Mailer:
        def __init__(self) -> None:
            self.sent: list[int] = []

        def on_placed(self, message: OrderPlaced) -> str:
            self.sent.append(message.order_id)
            return "mailed"

    mailer = Mailer()
    messenger.handler(mailer.on_placed)
    messenger.handler(priority=-1)(Mailer().on_placed)

    envelope = messenger.bus.dispatch(OrderPlaced(3))

    assert mailer.sent == [3]
    assert results(envelope) == ["mailed", "mailed"]
    assert handled_names(envelope)[0] == f"{__name__}.{Mailer.__qualname__}.on_placed"


def test_a_builtin_bound_method(messenger: Messenger) -> None:
    seen: list[object] = []

    messenger.handler(seen.append, handles=OrderPlaced)
    messenger.bus.dispatch(OrderPlaced(4))

    assert seen == [OrderPlaced(4)]


def test_a_decorated_callable_class_is_instantiated_once(messenger: Messenger) -> None:
    built: list[object] = []

    @messenger.handler
    class OnPlaced:
        def __init__(self) -> None:
            built.append(self)

        def __call__(self, message: OrderPlaced) -> str:
            return f"class {message.order_id}"

    first = messenger.bus.dispatch(OrderPlaced(1))
    second = messenger.bus.dispatch(OrderPlaced(2))

    assert len(built) == 1
    assert results(first) == ["class 1"]
    assert results(second) == ["class 2"]
    assert handled_names(first) == [f"{__name__}.{OnPlaced.__qualname__}.__call__"]


def test_a_callable_instance_including_a_frozen_one(messenger: Messenger) -> None:
    @attrs.frozen
    class Multiply:
        factor: int

        def __call__(self, message: OrderPlaced) -> int:
            return message.order_id * self.factor

    messenger.handler(Multiply(10))

    assert messenger.bus.query(OrderPlaced(4)) == 40


def test_handler_inside_a_class_body_only_marks(messenger: Messenger) -> None:
    class Shipping:
        def __init__(self, carrier: str = "post") -> None:
            self.carrier = carrier

        @messenger.handler
        def on_placed(self, message: OrderPlaced) -> str:
            return f"{self.carrier} ships {message.order_id}"

        @messenger.handler(priority=5)
        def on_cancelled(self, message: OrderCancelled) -> str:
            return f"{self.carrier} stops {message.order_id}"

        def not_a_handler(self, message: OrderPlaced) -> None:
            raise AssertionError("unmarked")

    assert len(messenger.handlers) == 0
    with pytest.raises(NoHandlerForMessageError):
        messenger.bus.dispatch(OrderPlaced(1))

    messenger.handler(Shipping)

    assert results(messenger.bus.dispatch(OrderPlaced(1))) == ["post ships 1"]
    assert results(messenger.bus.dispatch(OrderCancelled(2))) == ["post stops 2"]
    assert len(messenger.handlers) == 2


def test_register_handlers_takes_an_instance_built_with_dependencies(messenger: Messenger) -> None:
    class Shipping:
        def __init__(self, carrier: str) -> None:
            self.carrier = carrier

        @handler
        def on_placed(self, message: OrderPlaced) -> str:
            return self.carrier

    descriptors = messenger.register_handlers(Shipping("dhl"))

    assert [d.handles for d in descriptors] == [OrderPlaced]
    assert messenger.bus.query(OrderPlaced()) == "dhl"


def test_a_class_that_needs_arguments_is_a_clear_error(messenger: Messenger) -> None:
    class NeedsArguments:
        def __init__(self, carrier: str) -> None:
            self.carrier = carrier

        @handler
        def on_placed(self, message: OrderPlaced) -> None: ...

    with pytest.raises(ConfigurationError, match=r"without arguments.*build an instance"):
        messenger.handler(NeedsArguments)


def test_a_class_with_neither_marks_nor_call_is_an_error(messenger: Messenger) -> None:
    class Nothing:
        pass

    with pytest.raises(ConfigurationError, match="no @handler methods and no __call__"):
        messenger.handler(Nothing)


# -- scan() ------------------------------------------------------------------------------------


@pytest.fixture
def scanned_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``scanned_app`` fixture package, imported fresh for each test."""

    def forget() -> None:
        for name in [n for n in sys.modules if n == "scanned_app" or n.startswith("scanned_app.")]:
            del sys.modules[name]

    forget()
    monkeypatch.syspath_prepend(str(FIXTURES))
    import scanned_app._imports  # noqa: PLC0415

    yield scanned_app._imports
    forget()


EXPECTED_SCAN = {
    "scanned_app.handlers.on_created",
    "scanned_app.handlers.audit_cancelled",
    "scanned_app.sub.classes.OnShipped.__call__",
    "scanned_app.sub.classes.Billing.on_created",
    "scanned_app.sub.classes.Billing.on_cancelled",
}


def test_scan_registers_marked_functions_and_classes_of_a_package_once(
    messenger: Messenger, scanned_app: Any
) -> None:
    found = messenger.scan("scanned_app")

    assert sorted(d.name for d in found) == sorted(EXPECTED_SCAN)
    assert len(messenger.handlers) == len(EXPECTED_SCAN)
    # Each module was imported exactly once.
    assert sorted(scanned_app.LOADED) == sorted(set(scanned_app.LOADED))
    assert set(scanned_app.LOADED) == {
        "scanned_app",
        "scanned_app.messages",
        "scanned_app.handlers",
        "scanned_app.sub",
        "scanned_app.sub.classes",
        "scanned_app.sub.reexports",
    }

    from scanned_app.messages import Cancelled, Created, Shipped  # noqa: PLC0415

    assert results(messenger.bus.dispatch(Created(5))) == ["function 5", "billing 5"]
    assert results(messenger.bus.dispatch(Shipped(5))) == ["callable class"]
    assert results(messenger.bus.dispatch(Cancelled(5))) == ["billing refund"]


def test_scan_takes_modules_and_never_registers_one_twice(
    messenger: Messenger, scanned_app: Any
) -> None:
    import scanned_app as package  # noqa: PLC0415
    import scanned_app.sub  # noqa: PLC0415

    found = messenger.scan(package, scanned_app.sub, "scanned_app.handlers")

    assert sorted(d.name for d in found) == sorted(EXPECTED_SCAN)
    assert len(messenger.handlers) == len(EXPECTED_SCAN)


def test_scan_registers_handled_classes_for_decoding(
    messenger: Messenger, scanned_app: Any
) -> None:
    messenger.scan("scanned_app.handlers")

    from scanned_app.messages import Cancelled, Created  # noqa: PLC0415

    assert messenger.registry.resolve("scanned_app.messages.Created") is Created
    assert messenger.registry.resolve("scanned_app.messages.Cancelled") is Cancelled


def test_scan_of_a_missing_module_fails_loudly(messenger: Messenger) -> None:
    with pytest.raises(ModuleNotFoundError):
        messenger.scan("no_such_package_for_messenger_tests")


# -- the message type --------------------------------------------------------------------------


def test_a_union_annotation_registers_each_member(messenger: Messenger) -> None:
    @messenger.handler
    def on_order(message: OrderPlaced | OrderCancelled) -> str:
        return type(message).__name__

    @messenger.handler
    def old_style(message: Union[OrderPlaced, None]) -> str:  # noqa: UP007
        return "optional"

    assert results(messenger.bus.dispatch(OrderPlaced())) == ["OrderPlaced", "optional"]
    assert results(messenger.bus.dispatch(OrderCancelled())) == ["OrderCancelled"]


def test_a_handler_matching_a_message_twice_runs_once(messenger: Messenger) -> None:
    calls: list[object] = []

    @messenger.handler
    def on_either(message: UserRegistered | Auditable) -> None:
        calls.append(message)

    envelope = messenger.bus.dispatch(AuditedRegistration())

    assert calls == [AuditedRegistration()]
    assert len(envelope.all(HandledStamp)) == 1


def test_handles_overrides_the_annotation(messenger: Messenger) -> None:
    def untyped(message):  # type: ignore[no-untyped-def]
        return "untyped"

    def annotated(message: OrderPlaced) -> str:
        return "overridden"

    messenger.handler(untyped, handles=OrderCancelled)
    messenger.handler(annotated, handles=[OrderCancelled, UserRegistered])

    assert results(messenger.bus.dispatch(OrderCancelled())) == ["untyped", "overridden"]
    assert results(messenger.bus.dispatch(UserRegistered())) == ["overridden"]
    with pytest.raises(NoHandlerForMessageError):
        messenger.bus.dispatch(OrderPlaced())


def test_a_star_handler_gets_every_message_after_the_specific_ones(messenger: Messenger) -> None:
    @messenger.handler(handles=ANY_MESSAGE)
    def everything(message: object) -> str:
        return "star"

    @messenger.handler
    def specific(message: OrderPlaced) -> str:
        return "specific"

    assert results(messenger.bus.dispatch(OrderPlaced())) == ["specific", "star"]
    assert results(messenger.bus.dispatch(OrderCancelled())) == ["star"]


def test_lookup_walks_the_message_class_mro(messenger: Messenger) -> None:
    @messenger.handler
    def on_event(message: Event) -> str:
        return "event"

    @messenger.handler
    def on_registered(message: UserRegistered) -> str:
        return "registered"

    @messenger.handler
    def on_user_event(message: UserEvent) -> str:
        return "user event"

    assert results(messenger.bus.dispatch(UserRegistered())) == [
        "registered",
        "user event",
        "event",
    ]
    assert results(messenger.bus.dispatch(UserEvent())) == ["user event", "event"]
    assert results(messenger.bus.dispatch(Event())) == ["event"]


def test_higher_priority_runs_first_and_equal_priorities_keep_registration_order(
    messenger: Messenger,
) -> None:
    order: list[str] = []
    messenger.handler(lambda m: order.append("low"), handles=OrderPlaced, priority=-5, name="low")
    messenger.handler(lambda m: order.append("a"), handles=OrderPlaced, name="a")
    messenger.handler(lambda m: order.append("high"), handles=OrderPlaced, priority=9, name="high")
    messenger.handler(lambda m: order.append("b"), handles=OrderPlaced, name="b")
    messenger.handler(lambda m: order.append("base"), handles=Event, priority=10, name="base")

    envelope = messenger.bus.dispatch(OrderPlaced())

    assert order == ["high", "a", "b", "low"]
    assert handled_names(envelope) == ["high", "a", "b", "low"]
    order.clear()
    messenger.handler(lambda m: order.append("sub"), handles=UserEvent, name="sub")
    messenger.bus.dispatch(UserEvent())
    assert order == ["base", "sub"]  # priority beats specificity


def test_bus_restricts_a_handler_to_one_bus() -> None:
    messenger = Messenger({"buses": {"event.bus": {"allow_no_handlers": True}}}, autoload=False)
    messenger.handler(lambda m: "command", handles=OrderPlaced, bus="messenger.bus.default")
    messenger.handler(lambda m: "event", handles=OrderPlaced, bus="event.bus", name="ev")
    messenger.handler(lambda m: "both", handles=OrderPlaced, name="both")

    assert results(messenger.bus.dispatch(OrderPlaced())) == ["command", "both"]
    assert results(messenger.buses["event.bus"].dispatch(OrderPlaced())) == ["event", "both"]


def test_from_transport_runs_only_for_messages_received_from_that_transport(
    messenger: Messenger,
) -> None:
    messenger.handler(lambda m: "async", handles=OrderPlaced, from_transport="async", name="a")
    messenger.handler(lambda m: "other", handles=OrderPlaced, from_transport="other", name="o")
    messenger.handler(lambda m: "any", handles=OrderPlaced, name="any")

    received = Envelope(OrderPlaced(), [ReceivedStamp(transport_name="async")])

    assert handled_names(messenger.bus.dispatch(received)) == ["a", "any"]
    # Handled synchronously (never received): every handler runs, as in Symfony.
    assert handled_names(messenger.bus.dispatch(OrderPlaced())) == ["a", "o", "any"]


def test_from_transport_alone_runs_for_a_synchronous_dispatch(messenger: Messenger) -> None:
    messenger.handler(lambda m: "async", handles=OrderPlaced, from_transport="async")

    assert messenger.bus.query(OrderPlaced()) == "async"


def test_a_received_message_no_handler_accepts_is_not_silently_dropped(
    messenger: Messenger,
) -> None:
    messenger.handler(lambda m: "async", handles=OrderPlaced, from_transport="async")
    received = Envelope(OrderPlaced(), [ReceivedStamp(transport_name="other")])

    with pytest.raises(NoHandlerForMessageError, match="OrderPlaced"):
        messenger.bus.dispatch(received)


# -- failures and retries ----------------------------------------------------------------------


def test_every_handler_runs_when_some_fail(messenger: Messenger) -> None:
    ran: list[str] = []

    def first(message: OrderPlaced) -> str:
        ran.append("first")
        raise ValueError("first broke")

    def second(message: OrderPlaced) -> str:
        ran.append("second")
        return "fine"

    def third(message: OrderPlaced) -> str:
        ran.append("third")
        raise KeyError("third broke")

    for each in (first, second, third):
        messenger.handler(each, name=each.__name__)

    with pytest.raises(HandlerFailedError) as caught:
        messenger.bus.dispatch(OrderPlaced())

    error = caught.value
    assert ran == ["first", "second", "third"]
    assert [name for name, _ in error.exceptions] == ["first", "third"]
    assert [type(e) for e in error.wrapped_exceptions] == [ValueError, KeyError]
    assert error.envelope.all(HandledStamp) == (HandledStamp(handler_name="second", result="fine"),)
    assert "first broke" in str(error)
    assert "and 1 more" in str(error)
    assert error.__cause__ is error.wrapped_exceptions[0]


def test_a_single_failing_handler(messenger: Messenger) -> None:
    @messenger.handler
    def broken(message: OrderPlaced) -> None:
        raise RuntimeError("boom")

    with pytest.raises(
        HandlerFailedError, match=r"OrderPlaced failed in .*broken: RuntimeError: boom"
    ):
        messenger.bus.dispatch(OrderPlaced())


def test_a_retried_envelope_skips_handlers_that_already_succeeded(messenger: Messenger) -> None:
    ran: list[str] = []
    messenger.handler(lambda m: ran.append("mail"), handles=OrderPlaced, name="mail")
    messenger.handler(lambda m: ran.append("stock"), handles=OrderPlaced, name="stock")
    retried = Envelope(
        OrderPlaced(),
        [ReceivedStamp(transport_name="async"), HandledStamp(handler_name="mail")],
    )

    envelope = messenger.bus.dispatch(retried)

    assert ran == ["stock"]
    assert handled_names(envelope) == ["mail", "stock"]


def test_a_retry_after_every_handler_succeeded_is_not_an_error(messenger: Messenger) -> None:
    messenger.handler(lambda m: "x", handles=OrderPlaced, name="only")
    retried = Envelope(OrderPlaced(), [HandledStamp(handler_name="only")])

    assert handled_names(messenger.bus.dispatch(retried)) == ["only"]


def test_a_handler_registered_after_the_first_dispatch_is_seen(messenger: Messenger) -> None:
    messenger.handler(lambda m: "first", handles=OrderPlaced, name="first")
    # Twice: the second dispatch takes the bus's fast path for a class with one handler.
    assert handled_names(messenger.bus.dispatch(OrderPlaced())) == ["first"]
    assert handled_names(messenger.bus.dispatch(OrderPlaced())) == ["first"]
    with pytest.raises(NoHandlerForMessageError):
        messenger.bus.dispatch(OrderCancelled())

    messenger.handler(lambda m: "second", handles=OrderPlaced, name="second")
    messenger.handler(lambda m: "late", handles=OrderCancelled, name="late")

    assert handled_names(messenger.bus.dispatch(OrderPlaced())) == ["first", "second"]
    assert handled_names(messenger.bus.dispatch(OrderCancelled())) == ["late"]


def test_the_fast_path_records_results_and_failures_like_the_general_one(
    messenger: Messenger,
) -> None:
    outcomes = iter(["a result", None, ValueError("boom")])

    def flaky(message: OrderPlaced) -> object:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    messenger.handler(flaky, name="flaky")
    first = messenger.bus.dispatch(OrderPlaced())  # the general path, which learns the class
    second = messenger.bus.dispatch(OrderPlaced())  # the fast path
    assert [s.result for s in first.all(HandledStamp)] == ["a result"]
    assert [(s.handler_name, s.result) for s in second.all(HandledStamp)] == [("flaky", None)]
    with pytest.raises(HandlerFailedError) as failed:
        messenger.bus.dispatch(OrderPlaced())
    assert [name for name, _ in failed.value.exceptions] == ["flaky"]
    assert failed.value.envelope.all(HandledStamp) == ()


# -- registration errors -----------------------------------------------------------------------


def test_a_handler_without_annotation_is_a_clear_error(messenger: Messenger) -> None:
    def untyped(message):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(ConfigurationError, match=r"no type annotation.*'message'.*handles="):
        messenger.handler(untyped)


def test_a_handler_annotated_with_something_that_is_not_a_class_is_a_clear_error(
    messenger: Messenger,
) -> None:
    def generic(message: list[int]) -> None: ...

    def text(message: Any) -> None: ...

    with pytest.raises(ConfigurationError, match=r"list\[int\].*not a class"):
        messenger.handler(generic)
    with pytest.raises(ConfigurationError, match="not a class"):
        messenger.handler(text)
    with pytest.raises(ConfigurationError, match="not a class"):
        messenger.handler(lambda m: None, handles="orders.OrderPlaced")
    assert len(messenger.handlers) == 0


def test_a_handler_without_parameters_or_with_an_unresolvable_annotation(
    messenger: Messenger,
) -> None:
    def nothing() -> None: ...

    def unresolvable(message: NoSuchClass) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ConfigurationError, match="must take the message"):
        messenger.handler(nothing)
    with pytest.raises(ConfigurationError, match=r"cannot resolve.*NoSuchClass"):
        messenger.handler(unresolvable)


def test_something_not_callable_is_an_error(messenger: Messenger) -> None:
    with pytest.raises(ConfigurationError, match="must be callable"):
        messenger.handlers.add(42)  # type: ignore[arg-type]


def test_a_lookup_racing_a_registration_does_not_cache_a_stale_answer() -> None:
    registry = HandlerRegistry()

    def first(message: OrderPlaced) -> None: ...
    def second(message: OrderPlaced) -> None: ...

    registry.add(first, HandlerOptions(name="first"))
    lookup = registry._lookup

    def lookup_while_another_thread_registers(bus: str, cls: type) -> tuple[Any, ...]:
        found = lookup(bus, cls)
        registry.add(second, HandlerOptions(name="second"))  # between lookup and caching
        return found

    registry._lookup = lookup_while_another_thread_registers  # type: ignore[method-assign]
    assert [d.name for d in registry.for_class("bus", OrderPlaced)] == ["first"]
    registry._lookup = lookup  # type: ignore[method-assign]

    assert [d.name for d in registry.for_class("bus", OrderPlaced)] == ["first", "second"]
