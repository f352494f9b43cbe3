"""Properties of the SQL row decoder over random columns (issue 9, point 8).

Whatever the ``body`` and ``headers`` columns hold (any text, any bytes: SQLite keeps whatever
it is given), decoding a row gives an envelope: the decoded message or an
:class:`UndecodableMessage` that can be stored again in a failure transport; it never raises.
What decodes round-trips: encoded again into columns and decoded, it is the same transport
message. Example counts are modest and the runs derandomized, for a steady CI.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from messenger_transport_sql import BODY_ENCODING_HEADER, SqlTransportFactory
from messenger_transport_sql._codec import decode_row, encode_body, encode_headers
from sql_test_support import make_serializer

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage

FUZZ = settings(max_examples=150, derandomize=True, deadline=None)
DEEP = "[" * 100_000 + "]" * 100_000


class RawSerializer:
    """Passes transport messages through unchanged: the codec alone is under test."""

    def encode(self, envelope: Envelope) -> TransportMessage:
        message = envelope.message
        assert isinstance(message, TransportMessage | UndecodableMessage)
        return TransportMessage(message.body, dict(message.headers))

    def decode(self, message: TransportMessage) -> Envelope:
        return Envelope(TransportMessage(message.body, dict(message.headers)))


# Text that UTF-8 can encode (no lone surrogates): what a serializer may put in headers.
storable_text = st.text(st.characters(exclude_categories=["Cs"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | storable_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(storable_text, inner, max_size=3),
    max_leaves=8,
)
headers_text = st.one_of(
    st.text(),  # anything, lone surrogates included
    st.dictionaries(st.text(), json_values, max_size=4).map(json.dumps),
    st.dictionaries(storable_text, storable_text, max_size=4).map(
        lambda headers: json.dumps({**headers, BODY_ENCODING_HEADER: "base64"})
    ),
    json_values.map(json.dumps),
)
# A column as a driver returns it: text (PostgreSQL, MySQL) or bytes (SQLite reads BLOBs).
body_column = st.one_of(st.text(), st.binary())
headers_column = st.one_of(
    headers_text, headers_text.map(lambda t: t.encode("utf-8", "replace")), st.binary()
)


def _decode(body: Any, headers: Any, serializer: Any) -> Envelope:
    return decode_row(7, body, headers, serializer)


def _storable_again(message: UndecodableMessage) -> None:
    """A parked message must go into a table again: its columns encode as UTF-8 text."""
    text, headers = encode_body(message.body, message.headers)
    text.encode("utf-8")
    encode_headers(headers).encode("utf-8")


@FUZZ
@given(body=body_column, headers=headers_column)
@example(body="{}", headers=DEEP)
@example(body=DEEP, headers='{"type": "tests.Order"}')
@example(body=b"\xff\xfe", headers=b'{"type": "tests.Order"}')
@example(body="not base64!", headers=json.dumps({BODY_ENCODING_HEADER: "base64"}))
@example(body="{}", headers='{"bad": "\\ud800"}')
@example(body="{}", headers=b'{"type": "\xff"}')
@example(body=None, headers=None)  # NULL columns of a table altered by hand
def test_any_row_decodes_to_an_envelope_or_an_undecodable_message(body: Any, headers: Any) -> None:
    envelope = _decode(body, headers, make_serializer())

    assert envelope.last(TransportMessageIdStamp) == TransportMessageIdStamp(id="7")
    if isinstance(envelope.message, UndecodableMessage):
        assert envelope.message.reason
        _storable_again(envelope.message)


@FUZZ
@given(body=body_column, headers=headers_column)
@example(body="{}", headers=DEEP)
def test_what_decodes_round_trips(body: Any, headers: Any) -> None:
    first = _decode(body, headers, RawSerializer()).message
    if isinstance(first, UndecodableMessage):
        _storable_again(first)
        return
    assert isinstance(first, TransportMessage)
    text, stored_headers = encode_body(first.body, first.headers)
    for as_sqlite in (False, True):  # SQLite hands back bytes, the others text
        row_body: Any = text.encode("utf-8") if as_sqlite else text
        row_headers: Any = encode_headers(stored_headers)
        row_headers = row_headers.encode("utf-8") if as_sqlite else row_headers
        again = _decode(row_body, row_headers, RawSerializer()).message
        assert isinstance(again, TransportMessage)
        assert (again.body, dict(again.headers)) == (first.body, dict(first.headers))


messages = st.builds(
    TransportMessage,
    st.binary(),
    st.dictionaries(
        storable_text.filter(lambda name: name != BODY_ENCODING_HEADER), storable_text, max_size=5
    ),
)


@FUZZ
@given(message=messages)
def test_every_transport_message_round_trips_through_the_columns(
    message: TransportMessage,
) -> None:
    text, headers = encode_body(message.body, message.headers)
    decoded = _decode(text, encode_headers(headers), RawSerializer()).message
    assert isinstance(decoded, TransportMessage)
    assert (decoded.body, dict(decoded.headers)) == (message.body, dict(message.headers))


@pytest.fixture(scope="module")
def sqlite_transport() -> Any:
    transport = SqlTransportFactory().create(
        Dsn.parse("sqlite:///:memory:"),
        {},
        RawSerializer(),  # type: ignore[arg-type]
    )
    yield transport
    transport.close()


@settings(max_examples=40, derandomize=True, deadline=None)
@given(message=messages)
def test_every_transport_message_round_trips_through_a_sqlite_table(
    sqlite_transport: Any, message: TransportMessage
) -> None:
    sqlite_transport.send(Envelope(message))
    [received] = sqlite_transport.get()
    sqlite_transport.ack(received)
    decoded = received.message
    assert isinstance(decoded, TransportMessage)
    assert (decoded.body, dict(decoded.headers)) == (message.body, dict(message.headers))
