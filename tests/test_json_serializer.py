"""The default ``json`` serializer: wire format, round trips, stamps, errors, properties."""

import dataclasses
import enum
import json
import sys
from collections.abc import Mapping, MutableSequence, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from json_backends import json_backend  # noqa: F401 - the fixture, used below

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import (
    CONTENT_TYPE,
    DECODING_ERROR_HEADER,
    STAMP_HEADER_PREFIX,
    JsonSerializer,
    JsonSerializerFactory,
    make_converter,
)
from messenger_core.serializer import Serializer, decode_or_quarantine
from messenger_core.stamps import (
    BusNameStamp,
    ConsumedByWorkerStamp,
    DelayStamp,
    DispatchAfterCurrentBusStamp,
    ErrorDetailsStamp,
    HandledByStamp,
    HandledStamp,
    ReceivedStamp,
    RedeliveryStamp,
    SentStamp,
    SentToFailureTransportStamp,
    Stamp,
    TransportMessageIdStamp,
    TransportNamesStamp,
    UnknownStampsStamp,
)
from messenger_core.transport import TransportMessage, UndecodableMessage

# Every test here runs with each JSON backend (the standard library, orjson).
pytestmark = pytest.mark.usefixtures("json_backend")

# -- message classes -----------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Item:
    sku: str
    price: Decimal
    quantity: int = 1


@attrs.frozen
class Card:
    number: str
    expires: date


@attrs.frozen
class Cash:
    amount: Decimal


@dataclasses.dataclass(frozen=True)
class BankTransfer:
    iban: str
    reference: UUID | None = None


@attrs.frozen
class OrderPlaced:
    order_id: UUID
    customer: str
    items: list[Item]
    placed_at: datetime
    payment: Card | Cash | BankTransfer | None = None
    note: str | None = None


@attrs.frozen
class Small:
    order_id: int
    customer: str
    amount: float


@dataclasses.dataclass
class DataclassMessage:
    name: str
    tags: list[str] = dataclasses.field(default_factory=list)
    nested: Item | None = None


@attrs.frozen
class StringAnnotated:
    # Written as strings, as under ``from __future__ import annotations``.
    items: "list[Item]"
    when: "datetime | None" = None


@attrs.frozen(kw_only=True)
class AuditStamp(Stamp):
    user: str
    at: datetime


@attrs.frozen(kw_only=True)
class ListStamp(Stamp):
    values: list[int]


class Outer:
    @attrs.frozen
    class Point:
        x: int


@attrs.frozen
class Point:
    x: int
    y: int = 0


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def registry() -> MessageTypeRegistry:
    registry = MessageTypeRegistry()
    for cls in (OrderPlaced, Small, DataclassMessage, StringAnnotated):
        registry.register(cls)
    registry.register_stamp(AuditStamp)
    registry.register_stamp(ListStamp)
    return registry


@pytest.fixture
def serializer(registry: MessageTypeRegistry) -> JsonSerializer:
    return JsonSerializer(registry)


def round_trip(serializer: JsonSerializer, envelope: Envelope) -> Envelope:
    return serializer.decode(serializer.encode(envelope))


def holder(annotation: Any, *, dataclass: bool = False) -> type[Any]:
    """A one-field message class ``Holder(value: annotation)``."""
    if dataclass:
        return dataclasses.make_dataclass("DataHolder", [("value", annotation)], frozen=True)
    return attrs.make_class("Holder", {"value": attrs.field(type=annotation)}, frozen=True)


def decode_body(serializer: JsonSerializer, cls: type[Any], body: Any) -> Envelope:
    name = serializer._registry.name_of(cls)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return serializer.decode(TransportMessage(raw, {"type": name, "Content-Type": CONTENT_TYPE}))


def decoding_error(serializer: JsonSerializer, message: TransportMessage) -> MessageDecodingError:
    with pytest.raises(MessageDecodingError) as caught:
        serializer.decode(message)
    return caught.value


# -- wire format ---------------------------------------------------------------------------------


def test_encodes_a_message_as_compact_utf8_json_with_type_and_content_type(
    serializer: JsonSerializer,
) -> None:
    message = serializer.encode(Envelope(Small(order_id=7, customer="Zoë", amount=2.5)))

    assert message.body == '{"order_id":7,"customer":"Zoë","amount":2.5}'.encode()
    assert message.headers == {"type": f"{__name__}.Small", "Content-Type": "application/json"}
    assert message.id is None


def test_type_header_is_the_registered_name(registry: MessageTypeRegistry) -> None:
    @attrs.frozen
    class Renamed:
        x: int

    registry.register(Renamed, "shop.renamed", "Old\\Name")
    serializer = JsonSerializer(registry)

    assert serializer.encode(Envelope(Renamed(1))).headers["type"] == "shop.renamed"


def test_values_are_written_in_their_documented_json_form(serializer: JsonSerializer) -> None:
    order = OrderPlaced(
        order_id=UUID("12345678-1234-5678-1234-567812345678"),
        customer="c",
        items=[Item("a", Decimal("0.10"))],
        placed_at=datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        payment=Cash(Decimal("1E+3")),
    )

    body = json.loads(serializer.encode(Envelope(order)).body)

    assert body == {
        "order_id": "12345678-1234-5678-1234-567812345678",
        "customer": "c",
        "items": [{"sku": "a", "price": "0.10", "quantity": 1}],
        "placed_at": "2024-05-01T12:30:00+02:00",
        "payment": {"amount": "1E+3", "_type": "Cash"},
        "note": None,
    }


@pytest.mark.parametrize(
    ("annotation", "value", "wire"),
    [
        (bytes, b"\x00\xffhi", "AP9oaQ=="),
        (
            Decimal,
            Decimal("3.14159265358979323846264338327950288"),
            "3.14159265358979323846264338327950288",
        ),
        (date, date(2024, 2, 29), "2024-02-29"),
        (time, time(23, 59, 1, 5), "23:59:01.000005"),
        (datetime, datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (Color, Color.BLUE, "blue"),
        (Priority, Priority.HIGH, 2),
        (frozenset[int], frozenset({3}), [3]),
        (tuple[int, str], (1, "a"), [1, "a"]),
        (dict[int, str], {1: "a", -2: "b"}, {"1": "a", "-2": "b"}),
        (dict[Priority, int], {Priority.LOW: 5}, {"1": 5}),
        (dict[Color, int], {Color.RED: 5}, {"red": 5}),
    ],
)
def test_wire_form_of_values(
    serializer: JsonSerializer, annotation: Any, value: Any, wire: Any
) -> None:
    cls = holder(annotation)

    message = serializer.encode(Envelope(cls(value)))

    assert json.loads(message.body) == {"value": wire}
    assert serializer.decode(message).message == cls(value)


# -- round trips for every supported type --------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")

ROUND_TRIPS: list[tuple[Any, Any]] = [
    (str, 'héllo ✓ \u2028 "quoted"'),
    (int, -(2**70)),
    (float, 0.1),
    (float, -0.0),
    (bool, False),
    (Item, Item("x", Decimal("9.99"), 3)),
    (list[Item], [Item("a", Decimal("1")), Item("b", Decimal("-0.000"))]),
    (list[list[int]], [[1, 2], [], [3]]),
    (Sequence[int], [1, 2, 3]),
    (MutableSequence[str], ["a"]),
    (tuple[int, ...], (1, 2, 3)),
    (tuple[int, str, Item], (1, "x", Item("i", Decimal("2")))),
    (tuple[()], ()),
    (dict[str, Item], {"a": Item("a", Decimal("1")), "": Item("b", Decimal("2"))}),
    (dict[int, list[str]], {0: ["a"], -5: []}),
    (dict[UUID, int], {UUID(int=1): 1, UUID(int=2**128 - 1): 2}),
    (dict[date, str], {date(2020, 1, 1): "new year"}),
    (Mapping[str, Decimal], {"a": Decimal("1.5")}),
    (dict[str, dict[str, list[int]]], {"a": {"b": [1]}}),
    (set[str], {"a", "b"}),
    (frozenset[UUID], frozenset({UUID(int=3)})),
    (AbstractSet[int], frozenset({1, 2})),
    (int | None, None),
    (int | None, 5),
    (Item | None, Item("a", Decimal("1"))),
    (int | str, "5"),
    (int | str, 5),
    (int | float, 2),
    (int | float, 2.5),
    (str | list[str] | None, ["a"]),
    (str | list[str] | None, "a"),
    (bool | int, True),
    (bool | int, 1),
    (Card | Cash, Cash(Decimal("10"))),
    (Card | Cash, Card("4111", date(2030, 1, 1))),
    (Card | Cash | BankTransfer | None, BankTransfer("DE00", UUID(int=7))),
    (list[Card | Cash], [Card("1", date(2030, 1, 1)), Cash(Decimal("2"))]),
    (Point | Outer.Point, Outer.Point(1)),
    (Point | Outer.Point, Point(1, 2)),
    (Literal["auto"] | int, "auto"),
    (Literal["auto"] | int, 4),
    (Literal[Color.RED] | None, Color.RED),
    (Color, Color.RED),
    (Priority, Priority.LOW),
    (datetime, datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
    (datetime, datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))),
    (datetime, datetime(2024, 7, 1, 10, 0, tzinfo=BERLIN)),
    (datetime, datetime(2024, 3, 1, 10, 0)),
    (date, date(1, 1, 1)),
    (time, time(12, 0, tzinfo=timezone(timedelta(hours=1)))),
    (UUID, UUID("12345678-1234-5678-1234-567812345678")),
    (Decimal, Decimal("-0.00000000000000000000000001")),
    (Decimal, Decimal("1E+30")),
    (Decimal, Decimal("Infinity")),
    (bytes, b""),
    (bytes, bytes(range(256))),
    (Any, {"free": [1, "form", None]}),
    (list[Any], [1, "a", {"b": None}]),
]


@pytest.mark.parametrize(("annotation", "value"), ROUND_TRIPS, ids=repr)
@pytest.mark.parametrize("dataclass", [False, True], ids=["attrs", "dataclass"])
def test_round_trip(
    serializer: JsonSerializer, annotation: Any, value: Any, dataclass: bool
) -> None:
    cls = holder(annotation, dataclass=dataclass)

    decoded = round_trip(serializer, Envelope(cls(value))).message

    assert decoded == cls(value)
    assert type(decoded.value) is type(value)


def test_aware_datetime_keeps_instant_and_offset(serializer: JsonSerializer) -> None:
    cls = holder(datetime)
    summer = datetime(2024, 7, 1, 10, 0, tzinfo=BERLIN)

    decoded = round_trip(serializer, Envelope(cls(summer))).message.value

    assert decoded == summer
    assert decoded.utcoffset() == timedelta(hours=2)
    assert decoded.tzinfo == timezone(timedelta(hours=2))


def test_naive_datetime_stays_naive(serializer: JsonSerializer) -> None:
    cls = holder(datetime)
    naive = datetime(2024, 3, 1, 10, 0)

    message = serializer.encode(Envelope(cls(naive)))

    assert json.loads(message.body) == {"value": "2024-03-01T10:00:00"}
    assert serializer.decode(message).message.value.tzinfo is None


def test_z_suffix_is_read_as_utc(serializer: JsonSerializer) -> None:
    cls = holder(datetime)

    decoded = decode_body(serializer, cls, {"value": "2024-03-01T10:00:00Z"}).message

    assert decoded.value == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def test_sequence_fields_are_read_back_as_lists(serializer: JsonSerializer) -> None:
    cls = holder(Sequence[int])

    decoded = round_trip(serializer, Envelope(cls((1, 2)))).message

    assert decoded.value == [1, 2]


@pytest.mark.parametrize("annotation", [int, int | str, int | None, int | float])
def test_a_bool_held_by_an_int_field_reads_back(
    serializer: JsonSerializer, annotation: Any
) -> None:
    cls = holder(annotation)

    decoded = round_trip(serializer, Envelope(cls(True))).message

    assert decoded.value is True


def test_float_field_accepts_a_json_integer(serializer: JsonSerializer) -> None:
    cls = holder(float)

    value = decode_body(serializer, cls, {"value": 3}).message.value

    assert value == 3.0
    assert type(value) is float


def test_nested_messages_and_dataclasses_round_trip(serializer: JsonSerializer) -> None:
    order = OrderPlaced(
        order_id=UUID(int=42),
        customer="Ann",
        items=[Item("a", Decimal("1.10")), Item("b", Decimal("2"), 5)],
        placed_at=datetime(2024, 1, 1, tzinfo=UTC),
        payment=BankTransfer("DE89", None),
        note="leave at door",
    )
    data = DataclassMessage("n", ["t"], Item("i", Decimal("0")))

    assert round_trip(serializer, Envelope(order)).message == order
    assert round_trip(serializer, Envelope(data)).message == data


def test_string_annotations_are_resolved(serializer: JsonSerializer) -> None:
    message = StringAnnotated([Item("a", Decimal("1"))], datetime(2024, 1, 1, tzinfo=UTC))

    assert round_trip(serializer, Envelope(message)).message == message


def test_unknown_body_fields_are_ignored(serializer: JsonSerializer) -> None:
    body = {"order_id": 1, "customer": "c", "amount": 1.5, "added_later": [1, 2]}

    assert decode_body(serializer, Small, body).message == Small(1, "c", 1.5)


def test_union_tag_uses_the_full_name_when_two_members_share_a_name(
    serializer: JsonSerializer,
) -> None:
    cls = holder(Point | Outer.Point)

    body = json.loads(serializer.encode(Envelope(cls(Outer.Point(3)))).body)

    assert body == {"value": {"x": 3, "_type": f"{__name__}.Outer.Point"}}


def test_subclass_of_a_union_member_is_written_as_the_member(serializer: JsonSerializer) -> None:
    @attrs.frozen
    class SpecialCash(Cash):
        bonus: int = 0

    cls = holder(Card | Cash)

    decoded = round_trip(serializer, Envelope(cls(SpecialCash(Decimal("1"), 5)))).message

    assert decoded.value == Cash(Decimal("1"))


# -- stamps --------------------------------------------------------------------------------------

SENDABLE_STAMPS: list[Stamp] = [
    BusNameStamp(bus_name="messenger.bus.default"),
    DelayStamp(delay_ms=1500),
    RedeliveryStamp(retry_count=2, redelivered_at=datetime(2024, 1, 1, 8, tzinfo=UTC)),
    RedeliveryStamp(retry_count=3),
    ErrorDetailsStamp(exception_class="ValueError", message="bad", code=12, traceback="tb"),
    ErrorDetailsStamp(exception_class="KeyError", message="k", code="E_KEY"),
    SentToFailureTransportStamp(original_receiver_name="async"),
    HandledByStamp(handler_name="send_confirmation"),
    TransportNamesStamp(transport_names=("async", "audit")),
    AuditStamp(user="ann", at=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=9)))),
]

NON_SENDABLE_STAMPS: list[Stamp] = [
    HandledStamp(handler_name="h", result=object()),
    ReceivedStamp(transport_name="async"),
    SentStamp(sender_name="async"),
    TransportMessageIdStamp(id="17"),
    DispatchAfterCurrentBusStamp(),
    ConsumedByWorkerStamp(),
]


def test_sendable_stamps_round_trip_in_order(serializer: JsonSerializer) -> None:
    envelope = Envelope(Small(1, "c", 1.0), SENDABLE_STAMPS)

    decoded = round_trip(serializer, envelope)

    # Stamps come back grouped by class (header order), each class in its original order.
    assert decoded.stamps == envelope.stamps
    assert decoded.all(RedeliveryStamp) == tuple(SENDABLE_STAMPS[2:4])
    assert decoded.last(ErrorDetailsStamp) == SENDABLE_STAMPS[5]


def test_one_header_per_stamp_class_holding_a_json_list(serializer: JsonSerializer) -> None:
    envelope = Envelope(
        Small(1, "c", 1.0),
        [DelayStamp(delay_ms=1), BusNameStamp(bus_name="b"), DelayStamp(delay_ms=2)],
    )

    headers = serializer.encode(envelope).headers

    assert headers == {
        "type": f"{__name__}.Small",
        "Content-Type": "application/json",
        "X-Message-Stamp-messenger_core.stamps.DelayStamp": '[{"delay_ms":1},{"delay_ms":2}]',
        "X-Message-Stamp-messenger_core.stamps.BusNameStamp": '[{"bus_name":"b"}]',
    }
    assert serializer.decode(serializer.encode(envelope)).stamps == (
        DelayStamp(delay_ms=1),
        DelayStamp(delay_ms=2),
        BusNameStamp(bus_name="b"),
    )


def test_stamp_header_uses_the_registered_stamp_name(registry: MessageTypeRegistry) -> None:
    @attrs.frozen(kw_only=True)
    class TenantStamp(Stamp):
        tenant: str

    registry.register_stamp(TenantStamp, "tenant")
    serializer = JsonSerializer(registry)
    envelope = Envelope(Small(1, "c", 1.0), [TenantStamp(tenant="acme")])

    message = serializer.encode(envelope)

    assert message.headers["X-Message-Stamp-tenant"] == '[{"tenant":"acme"}]'
    assert serializer.decode(message).stamps == (TenantStamp(tenant="acme"),)


def test_non_sendable_stamps_are_dropped(serializer: JsonSerializer) -> None:
    envelope = Envelope(Small(1, "c", 1.0), [*NON_SENDABLE_STAMPS, BusNameStamp(bus_name="b")])

    message = serializer.encode(envelope)

    assert [h for h in message.headers if h.startswith(STAMP_HEADER_PREFIX)] == [
        "X-Message-Stamp-messenger_core.stamps.BusNameStamp"
    ]
    assert serializer.decode(message).stamps == (BusNameStamp(bus_name="b"),)


def test_header_naming_a_non_sendable_stamp_is_ignored(serializer: JsonSerializer) -> None:
    headers = {
        "type": f"{__name__}.Small",
        "X-Message-Stamp-messenger_core.stamps.HandledStamp": '[{"handler_name":"h"}]',
    }
    body = b'{"order_id":1,"customer":"c","amount":1.0}'

    decoded = serializer.decode(TransportMessage(body, headers))

    assert decoded.stamps == ()


def test_unknown_stamp_headers_survive_a_round_trip(serializer: JsonSerializer) -> None:
    unknown = {
        "X-Message-Stamp-App\\Stamp\\TraceStamp": '[{"traceId":"abc"}]',
        "X-Message-Stamp-other.Stamp": "not even json",
    }
    headers = {
        "type": f"{__name__}.Small",
        "Content-Type": CONTENT_TYPE,
        "X-Message-Stamp-messenger_core.stamps.BusNameStamp": '[{"bus_name":"b"}]',
        **unknown,
        "X-Other": "ignored",
    }
    body = b'{"order_id":1,"customer":"c","amount":1.0}'

    decoded = serializer.decode(TransportMessage(body, headers))

    assert decoded.stamps == (BusNameStamp(bus_name="b"), UnknownStampsStamp(headers=unknown))
    re_encoded = serializer.encode(decoded.with_(DelayStamp(delay_ms=5)))
    for name, value in unknown.items():
        assert re_encoded.headers[name] == value
    assert "X-Other" not in re_encoded.headers
    assert serializer.decode(re_encoded).all(UnknownStampsStamp) == (
        UnknownStampsStamp(headers=unknown),
    )


def test_a_known_stamp_wins_over_a_verbatim_header_of_the_same_name(
    serializer: JsonSerializer,
) -> None:
    header = "X-Message-Stamp-messenger_core.stamps.BusNameStamp"
    envelope = Envelope(
        Small(1, "c", 1.0),
        [UnknownStampsStamp(headers={header: "stale", "type": "evil"}), BusNameStamp(bus_name="b")],
    )

    headers = serializer.encode(envelope).headers

    assert headers[header] == '[{"bus_name":"b"}]'
    assert headers["type"] == f"{__name__}.Small"


def test_a_reused_stamp_object_is_encoded_the_same_each_time(serializer: JsonSerializer) -> None:
    bus = BusNameStamp(bus_name="b")
    first = serializer.encode(Envelope(Small(1, "c", 1.0), [bus]))
    second = serializer.encode(Envelope(Small(2, "d", 2.0), [bus, DelayStamp(delay_ms=3)]))

    assert (
        first.headers[STAMP_HEADER_PREFIX + "messenger_core.stamps.BusNameStamp"]
        == (second.headers[STAMP_HEADER_PREFIX + "messenger_core.stamps.BusNameStamp"])
    )
    assert serializer.decode(second).stamps == (bus, DelayStamp(delay_ms=3))


def test_equal_stamps_keep_their_own_representation(serializer: JsonSerializer) -> None:
    # Equal values (same instant, or 1.0 == 1.00) must not share a cached encoding.
    header = STAMP_HEADER_PREFIX + "messenger_core.stamps.RedeliveryStamp"
    utc = RedeliveryStamp(retry_count=1, redelivered_at=datetime(2024, 1, 1, 12, tzinfo=UTC))
    tokyo = RedeliveryStamp(
        retry_count=1, redelivered_at=datetime(2024, 1, 1, 21, tzinfo=timezone(timedelta(hours=9)))
    )
    assert utc == tokyo

    first = serializer.encode(Envelope(Small(1, "c", 1.0), [utc]))
    second = serializer.encode(Envelope(Small(1, "c", 1.0), [tokyo]))

    assert "+00:00" in first.headers[header]
    assert "+09:00" in second.headers[header]
    decoded = serializer.decode(second).last(RedeliveryStamp)
    assert decoded is not None
    assert decoded.redelivered_at is not None
    assert decoded.redelivered_at.utcoffset() == timedelta(hours=9)


def test_a_mutated_mutable_stamp_is_encoded_afresh(serializer: JsonSerializer) -> None:
    stamp = ListStamp(values=[1])
    header = STAMP_HEADER_PREFIX + f"{__name__}.ListStamp"
    first = serializer.encode(Envelope(Small(1, "c", 1.0), [stamp]))

    stamp.values.append(2)
    second = serializer.encode(Envelope(Small(1, "c", 1.0), [stamp]))

    assert first.headers[header] == '[{"values":[1]}]'
    assert second.headers[header] == '[{"values":[1,2]}]'


def test_mutable_decoded_stamps_are_not_shared_between_envelopes(
    serializer: JsonSerializer,
) -> None:
    message = serializer.encode(Envelope(Small(1, "c", 1.0), [ListStamp(values=[1])]))

    first = serializer.decode(message).stamps[0]
    second = serializer.decode(message).stamps[0]

    assert first == second == ListStamp(values=[1])
    assert first is not second


# -- aliases and unregistered types --------------------------------------------------------------


def test_an_alias_decodes_to_the_registered_class(registry: MessageTypeRegistry) -> None:
    registry.alias("App\\Message\\OrderPlaced", Small)
    serializer = JsonSerializer(registry)
    raw = TransportMessage(
        b'{"order_id":1,"customer":"c","amount":1.5}',
        {"type": "App\\Message\\OrderPlaced", "Content-Type": "application/json"},
    )

    decoded = serializer.decode(raw)

    assert decoded.message == Small(1, "c", 1.5)
    assert serializer.encode(decoded).headers["type"] == f"{__name__}.Small"


def test_a_type_header_is_never_imported(
    serializer: JsonSerializer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "bait_module_for_json_tests.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass Bait:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    for name in ("bait_module_for_json_tests.Bait", "os.system", "builtins.eval"):
        error = decoding_error(serializer, TransportMessage(b"{}", {"type": name}))
        assert name in str(error)
        assert "not registered" in str(error)
        assert error.type_name == name

    assert "bait_module_for_json_tests" not in sys.modules
    assert not marker.exists()


def test_a_class_encoded_elsewhere_is_not_decodable_unless_registered() -> None:
    sender = JsonSerializer(MessageTypeRegistry())
    receiver = JsonSerializer(MessageTypeRegistry())
    message = sender.encode(Envelope(Small(1, "c", 1.0)))

    error = decoding_error(receiver, message)

    assert error.type_name == f"{__name__}.Small"


# -- decoding errors -----------------------------------------------------------------------------


def small(body: bytes, **headers: str) -> TransportMessage:
    return TransportMessage(body, {"type": f"{__name__}.Small", **headers})


def test_missing_type_header(serializer: JsonSerializer) -> None:
    error = decoding_error(serializer, TransportMessage(b"{}", {"Content-Type": CONTENT_TYPE}))

    assert "'type' header is missing" in str(error)


def test_type_header_in_another_case_is_accepted(serializer: JsonSerializer) -> None:
    raw = TransportMessage(
        b'{"order_id":1,"customer":"c","amount":1.0}', {"Type": f"{__name__}.Small"}
    )

    assert serializer.decode(raw).message == Small(1, "c", 1.0)


def test_body_not_utf8(serializer: JsonSerializer) -> None:
    error = decoding_error(serializer, small(b'{"customer":"\xff"}'))

    assert "not UTF-8" in str(error)
    assert f"{__name__}.Small" in str(error)


@pytest.mark.parametrize(
    "body", [b"", b"{", b'{"a":1} trailing', b"\xef\xbb\xbf{}", b'{"amount": NaN}', b"[" * 100_000]
)
def test_body_not_json(serializer: JsonSerializer, body: bytes) -> None:
    error = decoding_error(serializer, small(body))

    assert "not JSON" in str(error)
    assert error.type_name == f"{__name__}.Small"


def test_a_bytearray_or_memoryview_body_is_read(serializer: JsonSerializer) -> None:
    body = b'{"order_id":1,"customer":"c","amount":1.0}'

    assert serializer.decode(small(bytearray(body))).message == Small(1, "c", 1.0)  # type: ignore[arg-type]
    assert serializer.decode(small(memoryview(body))).message == Small(1, "c", 1.0)  # type: ignore[arg-type]


def test_body_with_surrounding_whitespace_is_json(serializer: JsonSerializer) -> None:
    decoded = serializer.decode(small(b'  {"order_id":1,"customer":"c","amount":1.0}\n'))

    assert decoded.message == Small(1, "c", 1.0)


def test_body_that_is_not_an_object(serializer: JsonSerializer) -> None:
    error = decoding_error(serializer, small(b"[1, 2]"))

    assert "expected a JSON object, got a JSON array" in str(error)
    assert error.field is None


def test_missing_field(serializer: JsonSerializer) -> None:
    error = decoding_error(serializer, small(b'{"order_id":1,"amount":1.0}'))

    assert error.field == "customer"
    assert "required field missing" in str(error)
    assert f"message type '{__name__}.Small'" in str(error)
    assert "field 'customer'" in str(error)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b'{"order_id":"1","customer":"c","amount":1.0}', "order_id", "expected an integer"),
        (b'{"order_id":1,"customer":5,"amount":1.0}', "customer", "expected a string"),
        (b'{"order_id":1,"customer":"c","amount":"1.0"}', "amount", "expected a number"),
        (b'{"order_id":1.5,"customer":"c","amount":1.0}', "order_id", "got a JSON number"),
    ],
)
def test_wrong_scalar_type(
    serializer: JsonSerializer, body: bytes, field: str, reason: str
) -> None:
    error = decoding_error(serializer, small(body))

    assert error.field == field
    assert reason in str(error)


def order_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": str(UUID(int=1)),
        "customer": "c",
        "items": [
            {"sku": "a", "price": "1"},
            {"sku": "b", "price": "2"},
            {"sku": "c", "price": "3"},
        ],
        "placed_at": "2024-01-01T00:00:00+00:00",
        "payment": None,
    }
    body.update(changes)
    return body


def order_error(serializer: JsonSerializer, body: dict[str, Any]) -> MessageDecodingError:
    with pytest.raises(MessageDecodingError) as caught:
        decode_body(serializer, OrderPlaced, body)
    assert caught.value.type_name == f"{__name__}.OrderPlaced"
    assert f"message type '{__name__}.OrderPlaced'" in str(caught.value)
    return caught.value


def test_the_body_helper_decodes(serializer: JsonSerializer) -> None:
    assert decode_body(serializer, OrderPlaced, order_body()).message.items[2].price == 3


def test_nested_field_path_in_a_list(serializer: JsonSerializer) -> None:
    body = order_body()
    body["items"][2]["price"] = 3.5

    error = order_error(serializer, body)

    assert error.field == "items[2].price"
    assert "field 'items[2].price'" in str(error)
    assert "expected a decimal string, got a JSON number" in str(error)


def test_several_errors_are_all_listed(serializer: JsonSerializer) -> None:
    body = order_body(customer=None)
    del body["items"][0]["sku"]
    body["items"][1]["price"] = "not a number"

    error = order_error(serializer, body)

    assert error.field == "customer"
    assert "items[0].sku: required field missing" in str(error)
    assert "items[1].price: expected a decimal string, got 'not a number'" in str(error)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"order_id": "not-a-uuid"}, "order_id", "expected a UUID string"),
        ({"placed_at": "yesterday"}, "placed_at", "expected an ISO 8601 datetime"),
        ({"items": "abc"}, "items", "expected a JSON array, got a JSON string"),
        ({"items": {"sku": "a"}}, "items", "expected a JSON array, got a JSON object"),
        ({"items": [[]]}, "items[0]", "expected a JSON object, got a JSON array"),
        ({"payment": {"amount": "1"}}, "payment", "union tag '_type' is missing"),
        ({"payment": {"_type": "Crypto"}}, "payment", "'Crypto'; expected one of"),
        ({"payment": {"_type": "Card", "number": "1"}}, "payment.expires", "required field"),
        ({"payment": "cash"}, "payment", "got a JSON string"),
    ],
)
def test_field_errors(
    serializer: JsonSerializer, changes: dict[str, Any], field: str, reason: str
) -> None:
    error = order_error(serializer, order_body(**changes))

    assert error.field == field
    assert reason in str(error)


@pytest.mark.parametrize(
    ("annotation", "value", "field", "reason"),
    [
        (dict[str, int], {"a": 1, "b": "2"}, "value['b']", "expected an integer"),
        (dict[int, str], {"1": "a", "x": "b"}, "value['x']", "expected an integer key"),
        (dict[UUID, str], {"nope": "a"}, "value['nope']", "expected a UUID string"),
        (dict[str, int], [1], "value", "expected a JSON object"),
        (tuple[int, str], [1], "value", "expected a JSON array of 2, got 1 items"),
        (tuple[int, str], [1, 2], "value[1]", "expected a string"),
        (set[int], [1, "2"], "value[1]", "expected an integer"),
        (Color, "green", "value", "'green' is not a valid Color"),
        (bytes, "not base64!", "value", "expected a base64 string"),
        (date, "2024-13-01", "value", "expected an ISO 8601 date"),
        (time, 12, "value", "expected an ISO 8601 time, got a JSON number"),
        (bool, 1, "value", "expected a boolean, got a JSON number"),
        (str | None, True, "value", "expected a string, got a JSON boolean"),
        (Decimal, "1,5", "value", "expected a decimal string"),
        (int | str, None, "value", "expected a number or a string, got null"),
        (Literal["a"] | int, "b", "value", "expected 'a' or a number"),
        (Item | None, 5, "value", "expected a JSON object"),
    ],
)
def test_value_errors(
    serializer: JsonSerializer, annotation: Any, value: Any, field: str, reason: str
) -> None:
    cls = holder(annotation)

    with pytest.raises(MessageDecodingError) as caught:
        decode_body(serializer, cls, {"value": value})

    assert caught.value.field == field
    assert reason in str(caught.value)


def test_decimal_accepts_a_json_integer(serializer: JsonSerializer) -> None:
    assert decode_body(serializer, holder(Decimal), {"value": 12}).message.value == Decimal(12)


def test_attrs_validator_failure_is_a_decoding_error(serializer: JsonSerializer) -> None:
    @attrs.frozen
    class Positive:
        value: int = attrs.field(validator=attrs.validators.gt(0))

    error = decoding_error(
        serializer,
        TransportMessage(b'{"value":-1}', {"type": serializer._registry.name_of(Positive)}),
    )

    assert "value" in str(error)
    assert "-1" in str(error)


def test_content_type_other_than_json_is_refused(serializer: JsonSerializer) -> None:
    body = b'{"order_id":1,"customer":"c","amount":1.0}'
    error = decoding_error(serializer, small(body, **{"Content-Type": "application/x-php"}))

    assert "application/x-php" in str(error)
    assert serializer.decode(small(body, **{"Content-Type": "application/json; charset=utf-8"}))
    assert serializer.decode(small(body, **{"Content-Type": "application/vnd.shop+json"}))
    assert serializer.decode(small(body))


STAMP = STAMP_HEADER_PREFIX + "messenger_core.stamps.RedeliveryStamp"
VALID_BODY = b'{"order_id":1,"customer":"c","amount":1.0}'


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ("not json", STAMP, "the stamp header is not JSON"),
        ('{"retry_count":1}', STAMP, "holds a JSON object, expected a JSON array"),
        (
            '[{"retry_count":1},{"retry_count":"2"}]',
            f"{STAMP}[1].retry_count",
            "expected an integer",
        ),
        ("[{}]", f"{STAMP}[0].retry_count", "required field missing"),
        ('[{"retry_count":1,"redelivered_at":"now"}]', f"{STAMP}[0].redelivered_at", "ISO 8601"),
        ("[5]", f"{STAMP}[0]", "expected a JSON object"),
    ],
)
def test_undecodable_header_of_a_known_stamp(
    serializer: JsonSerializer, value: str, field: str, reason: str
) -> None:
    error = decoding_error(serializer, small(VALID_BODY, **{STAMP: value}))

    assert error.field == field
    assert error.type_name == f"{__name__}.Small"
    assert reason in str(error)


# -- undecodable messages ------------------------------------------------------------------------


def test_undecodable_message_is_encoded_back_to_its_raw_form(serializer: JsonSerializer) -> None:
    raw = TransportMessage(
        b"\x00 not json",
        {
            "type": "Unknown\\Thing",
            "X-Custom": "kept",
            STAMP_HEADER_PREFIX + "messenger_core.stamps.ErrorDetailsStamp": (
                '[{"exception_class":"A","message":"first"}]'
            ),
        },
        id="5",
    )
    quarantined = decode_or_quarantine(serializer, raw)
    assert isinstance(quarantined.message, UndecodableMessage)
    assert quarantined.all(ErrorDetailsStamp) == (
        ErrorDetailsStamp(exception_class="A", message="first"),
    )
    error = ErrorDetailsStamp(exception_class="MessageDecodingError", message="second")
    parked = quarantined.with_(
        error,
        SentToFailureTransportStamp(original_receiver_name="async"),
        ReceivedStamp(transport_name="async"),
    )

    encoded = serializer.encode(parked)

    assert encoded.body == raw.body
    assert encoded.headers["type"] == "Unknown\\Thing"
    assert encoded.headers["X-Custom"] == "kept"
    assert json.loads(
        encoded.headers[STAMP_HEADER_PREFIX + "messenger_core.stamps.ErrorDetailsStamp"]
    ) == [
        {
            "exception_class": "A",
            "message": "first",
            "code": None,
            "traceback": None,
            "failed_at": None,
        },
        {
            "exception_class": "MessageDecodingError",
            "message": "second",
            "code": None,
            "traceback": None,
            "failed_at": None,
        },
    ]
    assert json.loads(
        encoded.headers[STAMP_HEADER_PREFIX + "messenger_core.stamps.SentToFailureTransportStamp"]
    ) == [{"original_receiver_name": "async"}]
    assert "ReceivedStamp" not in "".join(encoded.headers)
    reason = encoded.headers[DECODING_ERROR_HEADER]
    assert "not registered" in reason
    assert "\n" not in reason


def test_parked_message_decodes_once_its_class_is_registered(
    registry: MessageTypeRegistry,
) -> None:
    @attrs.frozen
    class LateMessage:
        x: int

    serializer = JsonSerializer(registry)
    raw = TransportMessage(b'{"x":1}', {"type": "late.message", "Content-Type": CONTENT_TYPE})
    parked = serializer.encode(
        decode_or_quarantine(serializer, raw).with_(
            SentToFailureTransportStamp(original_receiver_name="async")
        )
    )

    registry.register(LateMessage, "late.message")
    retried = serializer.decode(parked)

    assert retried.message == LateMessage(1)
    assert retried.stamps == (SentToFailureTransportStamp(original_receiver_name="async"),)


def test_long_decoding_reasons_are_capped(serializer: JsonSerializer) -> None:
    envelope = Envelope(UndecodableMessage(b"x", {"type": "t"}, "why\n" * 1000))

    reason = serializer.encode(envelope).headers[DECODING_ERROR_HEADER]

    assert len(reason) == 1000
    assert reason.startswith("why why")


# -- encoding errors, factory, converter ---------------------------------------------------------


def test_nan_is_refused_on_encode(serializer: JsonSerializer) -> None:
    with pytest.raises(ValueError, match="JSON"):
        serializer.encode(Envelope(Small(1, "c", float("nan"))))


def test_unsupported_union_is_a_configuration_error(serializer: JsonSerializer) -> None:
    cls = holder(datetime | UUID)

    with pytest.raises(ConfigurationError, match=r"cannot tell apart datetime and UUID"):
        serializer.encode(Envelope(cls(UUID(int=1))))


def test_unsupported_dict_key_is_a_configuration_error(serializer: JsonSerializer) -> None:
    cls = holder(dict[tuple[int, int], str])

    with pytest.raises(ConfigurationError, match="cannot be JSON object keys"):
        serializer.encode(Envelope(cls({(1, 2): "a"})))


def test_class_field_named_like_the_union_tag_is_refused(serializer: JsonSerializer) -> None:
    @attrs.frozen
    class Tagged:
        _type: str

    cls = holder(Tagged | Card)

    with pytest.raises(ConfigurationError, match="_type"):
        serializer.encode(Envelope(cls(Tagged("x"))))


def test_factory_builds_a_serializer(registry: MessageTypeRegistry) -> None:
    serializer = JsonSerializerFactory()(registry, {})

    assert isinstance(serializer, JsonSerializer)
    assert isinstance(serializer, Serializer)
    assert round_trip(serializer, Envelope(Small(1, "c", 1.0))).message == Small(1, "c", 1.0)


def test_factory_refuses_unknown_options(registry: MessageTypeRegistry) -> None:
    with pytest.raises(ConfigurationError, match=r"'indent', 'pretty'"):
        JsonSerializerFactory()(registry, {"pretty": True, "indent": 2})


def test_a_custom_converter_extends_the_supported_types(registry: MessageTypeRegistry) -> None:
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Money) and other.cents == self.cents

        __hash__ = None  # type: ignore[assignment]

    converter = make_converter()
    converter.register_unstructure_hook(Money, lambda m: m.cents)
    converter.register_structure_hook(Money, lambda v, _: Money(v))
    serializer = JsonSerializer(registry, converter=converter)
    cls = holder(Money)

    message = serializer.encode(Envelope(cls(Money(250))))

    assert json.loads(message.body) == {"value": 250}
    assert serializer.decode(message).message == cls(Money(250))
    assert serializer.converter is converter


# -- properties ----------------------------------------------------------------------------------

# Whole seconds: Python 3.11 drops the microseconds of a UTC offset when parsing ISO 8601 (no
# real zone has such an offset; see the converter's documentation).
fixed_offsets = st.integers(min_value=-86399, max_value=86399).map(
    lambda seconds: timezone(timedelta(seconds=seconds))
)
aware_datetimes = st.datetimes(timezones=st.one_of(st.just(UTC), fixed_offsets))
decimals = st.decimals(allow_nan=False)


@attrs.frozen
class Line:
    sku: str
    price: Decimal
    quantity: int
    discount: float | None = None


@dataclasses.dataclass(frozen=True)
class Address:
    street: str
    city: str
    zip_code: str | None


@attrs.frozen
class Voucher:
    code: str
    value: Decimal


@attrs.frozen
class Invoice:
    invoice_id: UUID
    issued_at: datetime
    due: date
    lines: list[Line]
    billing: Address
    shipping: Address | None
    discounts: Voucher | Line | None
    totals: dict[str, Decimal]
    by_id: dict[UUID, list[int]]
    tags: frozenset[str]
    color: Color
    attachment: bytes
    local_time: datetime
    history: tuple[datetime, ...]
    meta: Mapping[str, str | int | None]


lines = st.builds(
    Line,
    sku=st.text(),
    price=decimals,
    quantity=st.integers(),
    discount=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
addresses = st.builds(Address, street=st.text(), city=st.text(), zip_code=st.none() | st.text())
invoices = st.builds(
    Invoice,
    invoice_id=st.uuids(),
    issued_at=aware_datetimes,
    due=st.dates(),
    lines=st.lists(lines, max_size=4),
    billing=addresses,
    shipping=st.none() | addresses,
    discounts=st.none() | lines | st.builds(Voucher, code=st.text(), value=decimals),
    totals=st.dictionaries(st.text(), decimals, max_size=3),
    by_id=st.dictionaries(st.uuids(), st.lists(st.integers(), max_size=3), max_size=3),
    tags=st.frozensets(st.text(), max_size=3),
    color=st.sampled_from(Color),
    attachment=st.binary(),
    local_time=st.datetimes(),
    history=st.lists(aware_datetimes, max_size=3).map(tuple),
    meta=st.dictionaries(st.text(), st.none() | st.integers() | st.text(), max_size=3),
)
stamp_lists = st.lists(
    st.one_of(
        st.builds(BusNameStamp, bus_name=st.text()),
        st.builds(DelayStamp, delay_ms=st.integers(min_value=0)),
        st.builds(
            RedeliveryStamp,
            retry_count=st.integers(min_value=0),
            redelivered_at=st.none() | aware_datetimes,
        ),
        st.builds(
            ErrorDetailsStamp,
            exception_class=st.text(),
            message=st.text(),
            code=st.none() | st.integers() | st.booleans() | st.text(),
            traceback=st.none() | st.text(),
        ),
        st.builds(AuditStamp, user=st.text(), at=aware_datetimes),
        st.builds(HandledByStamp, handler_name=st.text()),
        st.builds(TransportNamesStamp, transport_names=st.lists(st.text(), max_size=3)),
    ),
    max_size=5,
)


def grouped(stamps: list[Stamp]) -> tuple[Stamp, ...]:
    """``stamps`` in the order a decoder yields them: by class, classes in first-seen order."""
    classes = list(dict.fromkeys(type(stamp) for stamp in stamps))
    return tuple(s for cls in classes for s in stamps if type(s) is cls)


@settings(max_examples=150, deadline=None)
@given(invoice=invoices, stamps=stamp_lists)
def test_property_decode_inverts_encode(invoice: Invoice, stamps: list[Stamp]) -> None:
    registry = MessageTypeRegistry()
    registry.register(Invoice)
    registry.register_stamp(AuditStamp)
    serializer = JsonSerializer(registry)

    message = serializer.encode(Envelope(invoice, stamps))
    decoded = serializer.decode(message)

    assert decoded.message == invoice
    assert decoded.stamps == grouped(stamps)
    json.loads(message.body.decode("utf-8"))  # strict UTF-8 JSON
    assert all(isinstance(value, str) for value in message.headers.values())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(invoice=invoices, data=st.data())
def test_property_a_tampered_body_decodes_or_raises_a_decoding_error(
    invoice: Invoice, data: st.DataObject
) -> None:
    registry = MessageTypeRegistry()
    registry.register(Invoice)
    serializer = JsonSerializer(registry)
    message = serializer.encode(Envelope(invoice))
    body = json.loads(message.body)
    field = data.draw(st.sampled_from(sorted(body)))
    body[field] = data.draw(json_values)

    raw = TransportMessage(json.dumps(body).encode(), message.headers)
    error: MessageDecodingError | None = None
    try:
        decoded = serializer.decode(raw)
    except MessageDecodingError as caught:
        error = caught

    if error is None:
        assert isinstance(decoded.message, Invoice)
    else:
        assert error.type_name == registry.name_of(Invoice)
        assert error.field is not None
        assert error.field.split("[")[0].split(".")[0] == field
