"""``messenger_core.wire``: what every text-storing transport shares (body, headers, decoding)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from json_backends import BACKENDS, backend_named

from messenger_core import wire
from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.stamps import BusNameStamp, TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage
from messenger_core.wire import (
    BODY_ENCODING_HEADER,
    decode_body_text,
    decode_stored,
    describe_error,
    encode_body_text,
    headers_from_json,
    headers_json,
    parse_headers_json,
)

# Text UTF-8 can encode (no lone surrogates): what headers hold.
storable = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
headers_strategy = st.dictionaries(
    storable.filter(lambda name: name != BODY_ENCODING_HEADER), storable, max_size=5
)
DEEP = "[" * 100_000 + "]" * 100_000


@attrs.frozen
class Order:
    id: int


def _serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Order, "tests.Order")
    return JsonSerializer(registry)


# -- body -----------------------------------------------------------------------------------


@given(body=st.binary(max_size=200), headers=headers_strategy, allow_nul=st.booleans())
def test_any_body_round_trips_through_text(
    body: bytes, headers: dict[str, str], allow_nul: bool
) -> None:
    text, stored = encode_body_text(body, headers, allow_nul=allow_nul)
    text.encode("utf-8")  # always storable as UTF-8 text
    for as_stored in (text, text.encode("utf-8")):
        again = dict(stored)
        assert decode_body_text(as_stored, again) == body
        assert again == headers, "the base64 marker is removed on reading"


def test_utf8_text_is_stored_as_it_is() -> None:
    headers = {"type": "x"}
    text, stored = encode_body_text('{"a":"✓"}'.encode(), headers)
    assert (text, stored) == ('{"a":"✓"}', headers)


@pytest.mark.parametrize("body", [b"\xff\xfe ciphertext", b"nul \x00 inside"])
def test_a_body_that_is_not_utf8_text_gets_the_base64_marker(body: bytes) -> None:
    text, stored = encode_body_text(body, {"type": "x"})
    assert stored == {"type": "x", BODY_ENCODING_HEADER: "base64"}
    assert decode_body_text(text, dict(stored)) == body


def test_a_nul_stays_text_where_the_store_holds_it() -> None:
    assert encode_body_text(b"a\x00b", {}, allow_nul=True) == ("a\x00b", {})


def test_a_corrupt_base64_body_is_a_value_error_and_keeps_the_marker() -> None:
    headers = {BODY_ENCODING_HEADER: "base64", "type": "x"}
    with pytest.raises(ValueError, match="the base64 body is corrupt"):
        decode_body_text("not base64!", headers)
    assert headers == {BODY_ENCODING_HEADER: "base64", "type": "x"}


def test_a_text_body_with_a_lone_surrogate_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        decode_body_text("\ud800", {})


# -- headers --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def wire_json(request: pytest.FixtureRequest) -> Iterator[None]:
    """``messenger_core.wire`` writes JSON with each backend in turn (module-scoped: hypothesis
    tests may use it)."""
    saved = wire._json
    wire._json = backend_named(request.param)
    try:
        yield
    finally:
        wire._json = saved


@pytest.mark.usefixtures("wire_json")
@given(headers=headers_strategy)
def test_any_headers_round_trip_through_json(headers: dict[str, str]) -> None:
    text = headers_json(headers)
    assert text == json.dumps(headers, ensure_ascii=False, separators=(",", ":"))
    assert parse_headers_json(text) == headers
    assert parse_headers_json(text.encode("utf-8")) == headers


@pytest.mark.usefixtures("wire_json")
def test_a_json_document_is_written_as_the_standard_library_writes_it() -> None:
    document = {"body": 'a"\\\n\x00✓', "headers": {"type": "x"}, "uniqid": "u"}
    assert wire.document_json(document) == json.dumps(
        document, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")
    assert wire.headers_json({"a": "b"}) == '{"a":"b"}'


def test_phps_empty_array_is_no_headers() -> None:
    assert parse_headers_json("[]") == {}
    assert parse_headers_json(b"[]") == {}
    assert headers_from_json([]) == {}


def test_values_that_are_not_text_are_kept_as_their_json() -> None:
    parsed = parse_headers_json('{"n":1,"l":[1,"a"],"o":{"k":null},"t":true,"s":"✓"}')
    assert parsed == {"n": "1", "l": '[1,"a"]', "o": '{"k":null}', "t": "true", "s": "✓"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "Expecting value"),
        ('["a"]', "expected a JSON object of headers, got list"),
        ("1", "expected a JSON object of headers, got int"),
        ('"h"', "expected a JSON object of headers, got str"),
        (b"\xff\xfe", "utf-8"),
        ('{"bad":"\\ud800"}', "lone surrogate"),
        ('{"\\udfff":"name"}', "lone surrogate"),
        ('{"l":["\\ud800"]}', "lone surrogate"),
        (DEEP, "nested too deeply"),
        ('{"h":' + DEEP + "}", "nested too deeply"),
    ],
)
def test_bad_headers_are_one_value_error_saying_what_is_wrong(
    text: str | bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_headers_json(text)


def test_headers_that_are_not_text_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected JSON text, got NoneType"):
        parse_headers_json(None)  # type: ignore[arg-type]


@given(text=st.text(max_size=60) | st.binary(max_size=60))
def test_any_input_parses_or_is_a_value_error(text: str | bytes) -> None:
    try:
        headers = parse_headers_json(text)
    except ValueError:
        return
    headers_json(headers).encode("utf-8")  # what was read can be written again


# -- errors and the decode wrapper ----------------------------------------------------------


def test_describe_error_is_one_short_typed_line() -> None:
    assert describe_error(ValueError("bad\n  input")) == "bad input"
    assert describe_error(KeyError("k")) == "KeyError: 'k'"
    assert describe_error(RuntimeError()) == "RuntimeError"
    long = describe_error(TypeError("x" * 500))
    assert long == "TypeError: " + "x" * 200 + "..."


ID = TransportMessageIdStamp(id="42")


def test_decode_stored_decodes_and_stamps_the_id() -> None:
    serializer = _serializer()
    message = serializer.encode(Envelope(Order(1), (BusNameStamp(bus_name="bus"),)))
    envelope = decode_stored(message, serializer, ID)
    assert envelope.message == Order(1)
    assert envelope.last(BusNameStamp) == BusNameStamp(bus_name="bus")
    assert envelope.last(TransportMessageIdStamp) == ID


def test_decode_stored_quarantines_what_the_serializer_refuses_with_its_stamps() -> None:
    serializer = _serializer()
    good = serializer.encode(Envelope(Order(1), (BusNameStamp(bus_name="bus"),)))
    message = TransportMessage(b'{"id":"one"}', good.headers)
    envelope = decode_stored(message, serializer, ID)
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.message.body == b'{"id":"one"}'
    assert envelope.message.headers == good.headers
    assert envelope.last(BusNameStamp) == BusNameStamp(bus_name="bus")
    assert envelope.last(TransportMessageIdStamp) == ID


class _Broken:
    """A serializer whose every method fails unexpectedly."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def encode(self, envelope: Envelope) -> TransportMessage:
        raise self.error

    def decode(self, message: TransportMessage) -> Any:
        raise self.error

    def decode_stamps(self, message: TransportMessage) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "error", [KeyError("bug"), RecursionError("deep"), AttributeError("x"), ValueError("v")]
)
def test_decode_stored_never_raises(error: Exception) -> None:
    message = TransportMessage(b"{}", {"type": "tests.Order"})
    envelope = decode_stored(message, _Broken(error), ID)
    assert isinstance(envelope.message, UndecodableMessage)
    assert "the serializer failed" in envelope.message.reason
    assert (envelope.message.body, envelope.message.headers) == (b"{}", {"type": "tests.Order"})
    assert envelope.last(TransportMessageIdStamp) == ID


def test_decode_stored_survives_a_quarantine_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if quarantining itself fails, the message comes out undecodable, with its id."""

    def failing(serializer: Any, message: TransportMessage) -> Envelope:
        raise RuntimeError("quarantine broke")

    monkeypatch.setattr("messenger_core.wire.decode_or_quarantine", failing)
    message = TransportMessage(b"{}", {"type": "tests.Order"})
    envelope = decode_stored(message, _serializer(), ID)
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.message.reason == "the serializer failed: RuntimeError: quarantine broke"
    assert envelope.last(TransportMessageIdStamp) == ID
