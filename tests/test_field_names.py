"""Field names on the wire: the json serializer's field_names option, @field_names, wire_name."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import attrs
import pytest

from messenger_core import Messenger
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer, JsonSerializerFactory
from messenger_core.serialization.naming import camel_case, field_names, wire_name
from messenger_core.stamps import RedeliveryStamp
from messenger_core.transport import TransportMessage


@attrs.frozen
class Line:
    unit_price: int


@attrs.frozen
class OrderPlaced:
    order_id: str
    order_lines: list[Line]
    placed_at: datetime | None = None


@field_names("camelCase")
@attrs.frozen
class CamelOrder:
    order_id: str
    customer_email: str = attrs.field(metadata=wire_name("email"))


@dataclasses.dataclass
class DataclassOrder:
    order_id: str = dataclasses.field(metadata=wire_name("ID"))
    total_amount: int = 0


def _body(serializer: JsonSerializer, message: object) -> dict[str, object]:
    return json.loads(serializer.encode(Envelope(message)).body)  # type: ignore[no-any-return]


def _round_trip(serializer: JsonSerializer, message: object) -> object:
    return serializer.decode(serializer.encode(Envelope(message))).message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("order_id", "orderId"),
        ("placed_at_utc", "placedAtUtc"),
        ("amount", "amount"),
        ("_hidden_value", "_hiddenValue"),
        ("user_2fa", "user2fa"),
    ],
)
def test_camel_case(name: str, expected: str) -> None:
    assert camel_case(name) == expected


def test_json_keeps_python_names_by_default() -> None:
    serializer = JsonSerializerFactory()(MessageTypeRegistry(), {})

    assert _body(serializer, OrderPlaced("o-1", [Line(5)])) == {
        "order_id": "o-1",
        "order_lines": [{"unit_price": 5}],
        "placed_at": None,
    }


def test_camel_case_option_renames_message_and_nested_fields_both_ways() -> None:
    serializer = JsonSerializerFactory()(MessageTypeRegistry(), {"field_names": "camelCase"})
    message = OrderPlaced("o-1", [Line(5)], datetime(2026, 1, 2, tzinfo=UTC))

    assert _body(serializer, message) == {
        "orderId": "o-1",
        "orderLines": [{"unitPrice": 5}],
        "placedAt": "2026-01-02T00:00:00+00:00",
    }
    assert _round_trip(serializer, message) == message


def test_camel_case_option_reads_only_the_wire_names() -> None:
    registry = MessageTypeRegistry()
    serializer = JsonSerializerFactory()(registry, {"field_names": "camelCase"})
    name = registry.name_of(OrderPlaced)
    snake = TransportMessage(b'{"order_id": "o-1", "order_lines": []}', {"type": name})

    with pytest.raises(MessageDecodingError, match="required field missing"):
        serializer.decode(snake)


def test_stamps_keep_their_names_under_the_camel_case_option() -> None:
    serializer = JsonSerializerFactory()(MessageTypeRegistry(), {"field_names": "camelCase"})
    encoded = serializer.encode(Envelope(Line(1), [RedeliveryStamp(retry_count=2)]))

    [header] = [value for name, value in encoded.headers.items() if "Redelivery" in name]
    assert json.loads(header) == [{"retry_count": 2, "redelivered_at": None}]


def test_class_decorator_and_field_metadata_win_over_the_serializer_option() -> None:
    serializer = JsonSerializer(MessageTypeRegistry())  # as_is
    message = CamelOrder("o-1", "a@example.org")

    assert _body(serializer, message) == {"orderId": "o-1", "email": "a@example.org"}
    assert _round_trip(serializer, message) == message


def test_dataclass_field_metadata_renames_one_field() -> None:
    serializer = JsonSerializer(MessageTypeRegistry())
    message = DataclassOrder("o-1", 3)

    assert _body(serializer, message) == {"ID": "o-1", "total_amount": 3}
    assert _round_trip(serializer, message) == message


def test_two_fields_with_one_wire_name_are_refused() -> None:
    @attrs.frozen
    class Clash:
        order_id: str
        other: str = attrs.field(metadata=wire_name("orderId"))

    serializer = JsonSerializerFactory()(MessageTypeRegistry(), {"field_names": "camelCase"})

    with pytest.raises(ConfigurationError, match="both have the wire name 'orderId'"):
        serializer.encode(Envelope(Clash("a", "b")))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"field_names": "kebab"}, "unknown field name style 'kebab'"),
        ({"fieldnames": "camelCase"}, "unknown option.*'fieldnames'"),
    ],
)
def test_bad_json_options_are_configuration_errors(options: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        JsonSerializerFactory()(MessageTypeRegistry(), options)


def test_bad_style_in_the_decorator_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown field name style"):
        field_names("Camel")  # type: ignore[arg-type]


def test_serializer_options_come_from_the_configuration() -> None:
    messenger = Messenger({"serializers": {"json": {"field_names": "camelCase"}}})

    assert _body(messenger.serializer("json"), Line(3)) == {"unitPrice": 3}  # type: ignore[arg-type]
