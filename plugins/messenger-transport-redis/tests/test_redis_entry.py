"""The stream entry layout: Symfony's ``message`` field, its PHP wrapper, non-text bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from messenger_transport_redis import BODY_ENCODING_HEADER
from messenger_transport_redis.entry import (
    decode_entry,
    encode_entry,
    parse_payload,
    unwrap_php_string,
)
from redis_test_support import Order, make_serializer

from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage


def php_serialized(text: bytes) -> bytes:
    """What phpredis stores for a PHP string with Symfony's default serializer."""
    return b's:%d:"%s";' % (len(text), text)


def test_an_entry_is_json_with_the_body_as_text_and_the_headers() -> None:
    message = TransportMessage(b'{"id":1,"text":"\xe2\x9c\x93"}', {"type": "tests.Order"})
    entry = encode_entry(message)
    assert json.loads(entry) == {"body": '{"id":1,"text":"✓"}', "headers": {"type": "tests.Order"}}
    assert "✓".encode() in entry, "non-ASCII text is stored as UTF-8, not escaped"


def test_a_delay_queue_member_carries_a_uniqid() -> None:
    member = json.loads(encode_entry(TransportMessage(b"x", {}), "abc"))
    assert member == {"body": "x", "headers": {}, "uniqid": "abc"}


def test_a_body_that_is_not_utf8_is_stored_base64_and_comes_back_exactly() -> None:
    body = b"\x00\xff\xfe ciphertext \x80"
    entry = encode_entry(TransportMessage(body, {"type": "secret"}))
    document = json.loads(entry)
    assert document["headers"] == {"type": "secret", BODY_ENCODING_HEADER: "base64"}
    assert parse_payload(entry) == (body, {"type": "secret"})


@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5),
)
def test_any_body_and_headers_survive_a_round_trip(body: bytes, headers: dict[str, str]) -> None:
    headers.pop(BODY_ENCODING_HEADER, None)
    assert parse_payload(encode_entry(TransportMessage(body, headers))) == (body, headers)


def test_symfony_php_wrapper_is_accepted() -> None:
    payload = json.dumps({"body": '{"id":2}', "headers": {"type": "tests.Order"}}).encode()
    assert unwrap_php_string(php_serialized(payload)) == payload
    assert parse_payload(php_serialized(payload)) == (b'{"id":2}', {"type": "tests.Order"})
    # The length counts bytes, as PHP does.
    text = json.dumps({"body": "✓", "headers": []}, ensure_ascii=False).encode()
    assert parse_payload(php_serialized(text)) == ("✓".encode(), {})


@pytest.mark.parametrize(
    "data",
    [b's:3:"abcd";', b's:x:"abc";', b's:3:"abc"', b"s:3:abc;", b"plain"],
)
def test_a_malformed_wrapper_is_left_alone(data: bytes) -> None:
    assert unwrap_php_string(data) == data


def test_php_empty_array_headers_and_non_text_header_values() -> None:
    assert parse_payload(b'{"body":"b","headers":[]}') == (b"b", {})
    assert parse_payload(b'{"body":"b","headers":{"n":1,"l":[1,"a"]}}') == (
        b"b",
        {"n": "1", "l": '[1,"a"]'},
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "Expecting value"),
        (b'["body"]', "expected a JSON object"),
        (b'{"headers":{}}', "no text 'body'"),
        (b'{"body":1,"headers":{}}', "no text 'body'"),
        (b'{"body":"b","headers":"h"}', "'headers' is not an object"),
        (b'{"body":"%%%","headers":{"X-Messenger-Body-Encoding":"base64"}}', "base64"),
        (b"\xff\xfe", "utf-8"),
    ],
)
def test_bad_entries_become_undecodable_messages_with_the_raw_bytes(
    data: bytes, reason: str
) -> None:
    envelope = decode_entry("5-1", [b"message", data], make_serializer())
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.message.body == data
    assert reason in envelope.message.reason
    assert envelope.last(TransportMessageIdStamp) == TransportMessageIdStamp(id="5-1")


def test_an_entry_without_the_message_field_keeps_its_fields() -> None:
    envelope = decode_entry("7-0", [b"payload", b"x", b"n", b"1"], make_serializer())
    assert isinstance(envelope.message, UndecodableMessage)
    assert "no 'message' field (fields: payload, n)" in envelope.message.reason
    assert json.loads(envelope.message.body) == {"payload": "x", "n": "1"}


def test_an_entry_the_serializer_rejects_keeps_its_body_and_headers() -> None:
    entry = encode_entry(TransportMessage(b'{"id":"one"}', {"type": "tests.Order"}))
    envelope = decode_entry("8-0", [b"message", entry], make_serializer())
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.message.body == b'{"id":"one"}'
    assert envelope.message.headers == {"type": "tests.Order"}


def test_a_serializer_that_crashes_does_not_stop_the_batch() -> None:
    class Broken:
        def encode(self, envelope: Envelope) -> TransportMessage:
            raise NotImplementedError

        def decode(self, message: TransportMessage) -> Any:
            raise KeyError("bug")

    entry = encode_entry(TransportMessage(b"{}", {"type": "tests.Order"}))
    envelope = decode_entry("9-0", [b"message", entry], Broken())
    assert isinstance(envelope.message, UndecodableMessage)
    assert "the serializer failed: KeyError" in envelope.message.reason


def test_a_good_entry_decodes_with_its_id() -> None:
    serializer = make_serializer()
    entry = encode_entry(serializer.encode(Envelope(Order(3, "ok"))))
    envelope = decode_entry("10-0", [b"other", b"x", b"message", entry], serializer)
    assert envelope.message == Order(3, "ok")
    assert envelope.last(TransportMessageIdStamp) == TransportMessageIdStamp(id="10-0")


# -- hostile entries (issue: one entry never stops a worker) ---------------------------------
DEEP = 100_000


@pytest.mark.parametrize(
    "data",
    [
        b"[" * DEEP + b"]" * DEEP,  # RecursionError in the JSON parser, not a ValueError
        b'{"body":"b","headers":{"h":' + b"[" * DEEP + b"]" * DEEP + b"}}",
        b'{"body":"b","headers":{"h":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}}",
    ],
    ids=["deep-document", "deep-header-array", "deep-header-object"],
)
def test_an_entry_nested_too_deep_is_undecodable_with_its_raw_bytes(data: bytes) -> None:
    envelope = decode_entry("11-0", [b"message", data], make_serializer())
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.message.body == data
    assert "RecursionError" in envelope.message.reason
    assert envelope.last(TransportMessageIdStamp) == TransportMessageIdStamp(id="11-0")


def test_a_body_nested_too_deep_for_the_serializer_keeps_body_and_headers() -> None:
    body = "[" * DEEP + "]" * DEEP
    entry = json.dumps({"body": body, "headers": {"type": "tests.Order"}}).encode()
    envelope = decode_entry("12-0", [b"message", entry], make_serializer())
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.message.body == body.encode()
    assert envelope.message.headers == {"type": "tests.Order"}


# -- fuzzing: decoding never raises, and what decodes round-trips ----------------------------
_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "body": st.text(max_size=40) | _JSON,
        "headers": st.dictionaries(st.text(max_size=20), st.text(max_size=20) | _JSON, max_size=4)
        | _JSON,
        "uniqid": st.text(max_size=8),
    },
)
_FIELD_VALUES = (
    st.binary(max_size=120)
    | _JSON.map(lambda value: json.dumps(value).encode())
    | _SHAPED.map(lambda value: json.dumps(value).encode())
    | _SHAPED.map(lambda value: php_serialized(json.dumps(value).encode()))
)
_FIELDS = st.lists(
    st.tuples(st.sampled_from([b"message", b"other"]) | st.binary(max_size=8), _FIELD_VALUES),
    max_size=3,
).map(lambda pairs: [part for pair in pairs for part in pair])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(fields=_FIELDS)
def test_any_fields_decode_to_a_message_or_an_undecodable_one(fields: list[bytes]) -> None:
    envelope = decode_entry("13-0", fields, make_serializer())
    assert envelope.last(TransportMessageIdStamp) == TransportMessageIdStamp(id="13-0")
    if isinstance(envelope.message, UndecodableMessage):
        assert envelope.message.reason
        return
    assert isinstance(envelope.message, Order)
    _assert_round_trip(envelope)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    number=st.integers(),
    text=st.text(max_size=40),
    headers=st.dictionaries(st.text(max_size=20), st.text(max_size=20) | _JSON, max_size=3),
)
def test_orders_with_any_extra_headers_decode_and_round_trip(
    number: int, text: str, headers: dict[str, Any]
) -> None:
    serializer = make_serializer()
    message = serializer.encode(Envelope(Order(number, text)))
    document = {"body": message.body.decode(), "headers": {**headers, **message.headers}}
    envelope = decode_entry("14-0", [b"message", json.dumps(document).encode()], serializer)
    if isinstance(envelope.message, UndecodableMessage):  # a header the serializer refuses
        assert envelope.message.reason
        return
    assert envelope.message == Order(number, text)
    _assert_round_trip(envelope)


def _assert_round_trip(envelope: Envelope) -> None:
    serializer = make_serializer()
    entry = encode_entry(serializer.encode(envelope))
    again = decode_entry("15-0", [b"message", entry], serializer)
    assert again.message == envelope.message
    assert again.without_all(TransportMessageIdStamp).stamps == (
        envelope.without_all(TransportMessageIdStamp).stamps
    )
