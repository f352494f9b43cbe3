"""The registry of message and stamp classes: names, aliases, conflicts, and never importing."""

from __future__ import annotations

import sys

import attrs
import pytest

from messenger_core import (
    BusNameStamp,
    ConfigurationError,
    DelayStamp,
    MessageTypeRegistry,
    Messenger,
    Stamp,
)
from messenger_core.message_types import type_name_of
from messenger_core.stamps import BUILTIN_STAMPS


@attrs.frozen
class OrderPlaced:
    order_id: int = 1


@attrs.frozen
class OrderCancelled:
    order_id: int = 1


@attrs.frozen(kw_only=True)
class TraceStamp(Stamp):
    trace_id: str


PHP_NAME = "App\\Message\\OrderPlaced"


def test_the_default_name_is_module_and_qualified_name() -> None:
    registry = MessageTypeRegistry()

    registry.register(OrderPlaced)

    name = f"{__name__}.OrderPlaced"
    assert type_name_of(OrderPlaced) == name
    assert registry.name_of(OrderPlaced) == name
    assert registry.resolve(name) is OrderPlaced
    assert OrderPlaced in registry
    assert OrderCancelled not in registry


def test_a_custom_name_and_aliases() -> None:
    registry = MessageTypeRegistry()

    returned = registry.register(OrderPlaced, "order.placed", PHP_NAME)
    registry.alias("order_placed_v1", OrderPlaced)

    assert returned is OrderPlaced
    assert registry.name_of(OrderPlaced) == "order.placed"  # what encoders write
    for name in ("order.placed", PHP_NAME, "order_placed_v1"):
        assert registry.resolve(name) is OrderPlaced
    assert registry.resolve(type_name_of(OrderPlaced)) is None
    assert registry.message_types() == {
        "order.placed": OrderPlaced,
        PHP_NAME: OrderPlaced,
        "order_placed_v1": OrderPlaced,
    }


def test_registering_again_is_harmless() -> None:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, "order.placed", PHP_NAME)

    registry.register(OrderPlaced)
    registry.register(OrderPlaced, "order.placed")
    registry.register(OrderPlaced, None, PHP_NAME)

    assert registry.name_of(OrderPlaced) == "order.placed"
    assert registry.resolve(PHP_NAME) is OrderPlaced


def test_a_name_taken_by_another_class_is_an_error_naming_both() -> None:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, "order", PHP_NAME)

    with pytest.raises(ConfigurationError) as caught:
        registry.register(OrderCancelled, "order")
    text = str(caught.value)
    assert "'order' is taken by" in text
    assert type_name_of(OrderPlaced) in text
    assert type_name_of(OrderCancelled) in text

    with pytest.raises(ConfigurationError, match="is taken by"):
        registry.alias(PHP_NAME, OrderCancelled)
    with pytest.raises(ConfigurationError, match="is taken by"):
        registry.register(OrderCancelled, "order.cancelled", "order")
    # A failed registration changes nothing.
    assert OrderCancelled not in registry
    assert registry.resolve("order.cancelled") is None
    assert registry.resolve("order") is OrderPlaced


def test_a_second_canonical_name_is_an_error_suggesting_an_alias() -> None:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, "order.placed")

    with pytest.raises(ConfigurationError, match=r"already registered as 'order\.placed'.*alias"):
        registry.register(OrderPlaced, "order.created")


def test_name_of_registers_implicitly_so_what_is_sent_can_be_read() -> None:
    registry = MessageTypeRegistry()

    name = registry.name_of(OrderCancelled)

    assert registry.resolve(name) is OrderCancelled


def test_an_implicit_default_name_can_still_be_replaced_by_an_explicit_one() -> None:
    # Registering a handler or a route registers the class under its default name; naming it
    # afterwards (for example after the PHP class) must work, whatever the order.
    messenger = Messenger(autoload=False)
    messenger.handler(lambda m: None, handles=OrderPlaced)

    messenger.register_message(OrderPlaced, PHP_NAME)

    assert messenger.registry.name_of(OrderPlaced) == PHP_NAME
    assert messenger.registry.resolve(PHP_NAME) is OrderPlaced
    # Messages written under the default name before keep decoding.
    assert messenger.registry.resolve(type_name_of(OrderPlaced)) is OrderPlaced
    # Once named explicitly, another canonical name is a conflict again.
    with pytest.raises(ConfigurationError, match="alias"):
        messenger.register_message(OrderPlaced, "order.placed")


def test_messages_and_stamps_have_separate_namespaces() -> None:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, "same")
    registry.register_stamp(TraceStamp, "same")

    assert registry.resolve("same") is OrderPlaced
    assert registry.resolve_stamp("same") is TraceStamp


def test_the_built_in_stamps_are_registered_from_the_start() -> None:
    registry = MessageTypeRegistry()

    for stamp in BUILTIN_STAMPS:
        assert registry.resolve_stamp(type_name_of(stamp)) is stamp
        assert registry.stamp_name_of(stamp) == type_name_of(stamp)
    assert registry.resolve_stamp(type_name_of(BusNameStamp)) is BusNameStamp
    assert registry.resolve(type_name_of(DelayStamp)) is None  # not a message


def test_stamp_names_and_aliases() -> None:
    registry = MessageTypeRegistry()

    registry.register_stamp(TraceStamp, "trace", "Symfony\\Stamp\\TraceStamp")

    assert registry.stamp_name_of(TraceStamp) == "trace"
    assert registry.resolve_stamp("Symfony\\Stamp\\TraceStamp") is TraceStamp
    with pytest.raises(ConfigurationError, match="stamp type name 'trace' is taken"):
        registry.register_stamp(DelayStamp, "trace")


def test_an_unregistered_stamp_gets_its_default_name() -> None:
    registry = MessageTypeRegistry()

    @attrs.frozen(kw_only=True)
    class LocalStamp(Stamp):
        pass

    assert registry.resolve_stamp(type_name_of(LocalStamp)) is None
    assert registry.stamp_name_of(LocalStamp) == type_name_of(LocalStamp)
    assert registry.resolve_stamp(type_name_of(LocalStamp)) is LocalStamp


def test_resolving_never_imports_anything() -> None:
    registry = MessageTypeRegistry()
    module = "messenger_tests_never_imported_module"

    assert registry.resolve(f"{module}.Evil") is None
    assert registry.resolve_stamp(f"{module}.EvilStamp") is None
    assert registry.resolve("os.system") is None
    assert registry.resolve("subprocess.Popen") is None
    assert registry.resolve(type_name_of(OrderPlaced)) is None  # importable, yet unknown
    assert module not in sys.modules


def test_message_types_is_a_copy() -> None:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced)

    registry.message_types().clear()

    assert registry.resolve(type_name_of(OrderPlaced)) is OrderPlaced


def test_the_application_registers_what_its_handlers_and_routes_handle() -> None:
    messenger = Messenger(
        {"transports": {"async": "memory://"}}, autoload=False, transports={"memory": object()}
    )

    messenger.handler(lambda m: None, handles=[OrderPlaced, "*"])
    messenger.route(OrderCancelled, "async")

    assert messenger.registry.resolve(type_name_of(OrderPlaced)) is OrderPlaced
    assert messenger.registry.resolve(type_name_of(OrderCancelled)) is OrderCancelled
    assert messenger.registry.resolve("*") is None
