"""Fuzzing the ``json`` serializer's decoder (issue 9, point 8).

Random bodies and header maps only ever give a decoded envelope or a ``MessageDecodingError``
(and through ``decode_or_quarantine`` an ``UndecodableMessage``, never an exception), and
whatever decodes can be encoded again to the same envelope: a message that was read can always
be retried or parked. Example counts are modest and the runs derandomized: CI time matters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_backends import json_backend  # noqa: F401 - the fixture, used below

from messenger_core.envelope import Envelope
from messenger_core.errors import MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import CONTENT_TYPE, JsonSerializer
from messenger_core.serializer import decode_or_quarantine
from messenger_core.stamps import (
    BusNameStamp,
    DelayStamp,
    ErrorDetailsStamp,
    RedeliveryStamp,
    Stamp,
)
from messenger_core.transport import TransportMessage, UndecodableMessage

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Every test here runs with each JSON backend (the standard library, orjson).
pytestmark = pytest.mark.usefixtures("json_backend")


@attrs.frozen
class Line:
    sku: str
    quantity: int
    price: float | None = None


@attrs.frozen
class Order:
    id: int
    customer: str
    lines: list[Line]
    tags: dict[str, str]
    extra: Any = None
    nested: Order | None = None


@attrs.frozen(kw_only=True)
class TraceStamp(Stamp):
    path: list[str]


def make_serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Order, "order")
    registry.register(Line, "line")
    registry.register_stamp(TraceStamp)
    return JsonSerializer(registry)


SERIALIZER = make_serializer()

# Pieces of text a hostile or broken sender may produce.
NASTY = st.sampled_from(
    [
        "1e999",
        "-1e999",
        "NaN",
        "Infinity",
        '"\\ud800"',
        '"\\udfff x"',
        '"\\ud83d\\ude00"',
        "[" * 5000,
        "{" * 5000,
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        "\ud800",
        "\x00",
        "null",
        "[]",
        "{}",
        '{"_type": "os.system"}',
    ]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
order_like = st.fixed_dictionaries(
    {
        "id": st.integers() | NASTY,
        "customer": st.text(max_size=5) | NASTY,
        "lines": st.lists(
            st.fixed_dictionaries({"sku": st.text(max_size=3), "quantity": st.integers()})
            | json_values,
            max_size=2,
        ),
        "tags": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2) | json_values,
    },
    optional={"extra": json_values, "nested": json_values},
)


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


bodies = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda v: json.dumps(v).encode(), order_like),
    # A valid document with a nasty value spliced in as raw JSON text.
    st.builds(
        lambda v, nasty: (
            json.dumps(v)
            .replace('"customer": ', f'"customer": {nasty}, "x": ', 1)
            .encode("utf-8", "surrogatepass")
        ),
        order_like,
        NASTY,
    ),
    NASTY.map(lambda text: text.encode("utf-8", "surrogatepass")),
)
header_names = st.sampled_from(
    [
        "type",
        "Type",
        "Content-Type",
        "X-Message-Stamp-" + "messenger_core.stamps.BusNameStamp",
        "X-Message-Stamp-BusNameStamp",
        "X-Message-Stamp-" + f"{TraceStamp.__module__}.TraceStamp",
        "X-Message-Stamp-unknown.Stamp",
        "X-Message-Stamp-",
        "X-Other",
    ]
) | st.text(max_size=12)
header_values = st.one_of(
    st.sampled_from(["order", "line", "os.system", CONTENT_TYPE, "text/plain", "[]"]),
    st.builds(lambda v: json.dumps([v]), json_values),
    st.builds(json.dumps, json_values),
    NASTY,
    st.text(max_size=12),
)
headers = st.dictionaries(header_names, header_values, max_size=5).map(
    lambda h: {"type": "order", **h} if "type" not in h else h
)


@FUZZ
@given(body=bodies, headers=headers)
def test_random_input_decodes_or_raises_a_decoding_error_only(
    body: bytes, headers: dict[str, str]
) -> None:
    message = TransportMessage(body, headers)
    try:
        envelope = SERIALIZER.decode(message)
    except MessageDecodingError:
        quarantined = decode_or_quarantine(SERIALIZER, message)
        assert isinstance(quarantined.message, UndecodableMessage)
        assert quarantined.message.body == body
        # Parking must be possible: its raw form encodes (to UTF-8 headers).
        parked = SERIALIZER.encode(quarantined)
        assert parked.body == body
        for name, value in parked.headers.items():
            name.encode()
            value.encode()
        return
    # What decodes can be encoded again, to the same envelope: it can be retried or parked.
    again = SERIALIZER.decode(SERIALIZER.encode(envelope))
    assert again.message == envelope.message
    assert again.stamps == envelope.stamps


@FUZZ
@given(
    body=st.binary(max_size=32) | bodies,
    headers=st.dictionaries(
        st.one_of(st.text(max_size=5), st.binary(max_size=3), st.integers(), st.none()),
        st.one_of(st.text(max_size=5), st.binary(max_size=3), st.integers(), st.none(), NASTY),
        max_size=4,
    ),
)
def test_headers_of_any_type_are_quarantined_not_raised(body: bytes, headers: Any) -> None:
    """A transport handing over non-string headers (a bug, or a row written by hand)."""
    message = TransportMessage(body, headers)
    envelope = decode_or_quarantine(SERIALIZER, message)
    if isinstance(envelope.message, UndecodableMessage):
        assert all(
            isinstance(k, str) and isinstance(v, str) for k, v in envelope.message.headers.items()
        )
        SERIALIZER.encode(envelope)


orders = st.deferred(
    lambda: st.builds(
        Order,
        id=st.integers(),
        customer=st.text(),
        lines=st.lists(
            st.builds(
                Line,
                sku=st.text(),
                quantity=st.integers(),
                price=st.none() | st.floats(allow_nan=False, allow_infinity=False),
            ),
            max_size=3,
        ),
        tags=st.dictionaries(st.text(), st.text(), max_size=3),
        extra=json_values,
        nested=st.none() | orders,
    )
)
stamps = st.lists(
    st.one_of(
        st.builds(BusNameStamp, bus_name=st.text()),
        st.builds(DelayStamp, delay_ms=st.integers(min_value=0)),
        st.builds(
            RedeliveryStamp,
            retry_count=st.integers(min_value=0),
            redelivered_at=st.none()
            | st.datetimes(timezones=st.just(UTC), min_value=datetime(1900, 1, 1)),
        ),
        st.builds(ErrorDetailsStamp, exception_class=st.text(), message=st.text()),
        st.builds(TraceStamp, path=st.lists(st.text(), max_size=3)),
    ),
    max_size=4,
)


@FUZZ
@given(order=orders, stamps=stamps)
def test_generated_messages_round_trip(order: Order, stamps: list[Stamp]) -> None:
    decoded = SERIALIZER.decode(SERIALIZER.encode(Envelope(order, stamps)))

    assert decoded.message == order
    kinds = list(dict.fromkeys(type(s) for s in stamps))
    assert decoded.stamps == tuple(s for kind in kinds for s in stamps if type(s) is kind)


@pytest.mark.parametrize(
    "body",
    [
        b'{"id":1,"customer":"c","lines":[],"tags":{},"extra":1e999}',
        b'{"id":1,"customer":"c","lines":[],"tags":{},"extra":-1e400}',
        b'{"id":1,"customer":"\\ud800","lines":[],"tags":{}}',
        b'{"id":1,"customer":"c","lines":[],"tags":{"\\udc00":"k"}}',
    ],
)
def test_values_that_could_not_be_written_again_are_refused_when_read(body: bytes) -> None:
    with pytest.raises(MessageDecodingError, match=r"cannot be accepted|out of the range"):
        SERIALIZER.decode(TransportMessage(body, {"type": "order"}))


def test_a_valid_surrogate_pair_escape_is_read() -> None:
    body = b'{"id":1,"customer":"\\ud83d\\ude00","lines":[],"tags":{}}'

    decoded = SERIALIZER.decode(TransportMessage(body, {"type": "order"}))

    assert decoded.message.customer == "\U0001f600"


@pytest.mark.parametrize(
    "value",
    ['[{"bus_name":"\\ud800"}]', '[{"bus_name":"\ud800"}]', "[" * 100_000 + "]" * 100_000],
)
def test_stamp_headers_that_could_not_be_written_again_are_refused(value: str) -> None:
    body = b'{"id":1,"customer":"c","lines":[],"tags":{}}'
    registry_name = SERIALIZER._registry.stamp_name_of(BusNameStamp)
    header = "X-Message-Stamp-" + registry_name
    message = TransportMessage(body, {"type": "order", header: value})

    with pytest.raises(MessageDecodingError):
        SERIALIZER.decode(message)
    envelope = decode_or_quarantine(SERIALIZER, message)
    assert isinstance(envelope.message, UndecodableMessage)
    SERIALIZER.encode(envelope).headers[header].encode()  # parkable


def test_an_unknown_stamp_header_with_a_lone_surrogate_is_refused() -> None:
    body = b'{"id":1,"customer":"c","lines":[],"tags":{}}'
    message = TransportMessage(body, {"type": "order", "X-Message-Stamp-nope": "[\ud800]"})

    with pytest.raises(MessageDecodingError, match="lone surrogate"):
        SERIALIZER.decode(message)


class ExplodingSerializer:
    """A third-party serializer with bugs: ``decode`` raises anything but a decoding error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def encode(self, envelope: Envelope) -> TransportMessage:
        raise AssertionError("not used")

    def decode(self, message: TransportMessage) -> Envelope:
        raise self.error

    def decode_stamps(self, message: TransportMessage) -> list[Stamp]:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        RecursionError("maximum recursion depth exceeded"),
        KeyError("type"),
        AttributeError("'bytes' object has no attribute 'startswith'"),
        TypeError("unhashable type: 'list'"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ],
)
def test_decode_or_quarantine_turns_any_exception_into_an_undecodable_message(
    error: Exception,
) -> None:
    message = TransportMessage(b"raw \xff body", {"type": "x", "h": "\ud800"})

    envelope = decode_or_quarantine(ExplodingSerializer(error), message)

    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.message.body == b"raw \xff body"
    assert type(error).__name__ in envelope.message.reason
    assert envelope.message.headers == {"type": "x", "h": "\\ud800"}  # encodable
