"""Transport messages <-> the ``body`` and ``headers`` text columns.

``body`` holds the message body as text: the serializer's UTF-8 output, decoded, which is what
Symfony's serializers store too. A body that is not valid UTF-8 or contains NUL characters
(which PostgreSQL text cannot hold), such as ciphertext, is stored base64-encoded instead, with
the header :data:`BODY_ENCODING_HEADER` set to ``base64``; reading it back removes the header and
restores the exact bytes. ``headers`` holds a JSON object of the string headers.

Reading a row never raises, whatever the columns hold (they may have been written by anyone):
a row that cannot be read becomes an :class:`UndecodableMessage` with its raw columns and the
reason, which the worker parks. SQLite hands the columns over as bytes (the transport reads
them as BLOBs, since SQLite's TEXT may hold bytes that are not UTF-8); the other databases as
text.

The conversions themselves are :mod:`messenger_core.wire`'s, shared by every transport that
stores text; this module adds what is particular to rows (column types, raw-column headers).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage
from messenger_core.wire import (
    BODY_ENCODING_HEADER,
    decode_body_text,
    decode_stored,
    describe_error,
    encode_body_text,
    headers_json,
    parse_headers_json,
)

__all__ = [
    "BODY_ENCODING_HEADER",
    "RAW_HEADERS_BASE64_HEADER",
    "RAW_HEADERS_HEADER",
    "decode_row",
    "encode_body",
    "encode_headers",
]


def encode_body(body: bytes, headers: Mapping[str, str]) -> tuple[str, Mapping[str, str]]:
    """The text to store for ``body``, and the headers to store with it (base64 for a body
    that is not UTF-8 text or holds a NUL, which PostgreSQL ``text`` cannot)."""
    return encode_body_text(body, headers)


def encode_headers(headers: Mapping[str, str]) -> str:
    """The JSON text stored in the ``headers`` column."""
    return headers_json(headers)


RAW_HEADERS_HEADER = "X-Messenger-Raw-Headers"
"""Header of a quarantined row holding its ``headers`` column as found, when that is text."""
RAW_HEADERS_BASE64_HEADER = "X-Messenger-Raw-Headers-Base64"
"""Header of a quarantined row holding its ``headers`` column base64-encoded, when that column
is not UTF-8 text (SQLite stores whatever bytes it is given)."""


class _BadRowError(Exception):
    """What makes one row unreadable; ``headers`` are the best headers to park it with."""

    def __init__(self, reason: str, headers: Mapping[str, str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers


def _raw_bytes(value: object) -> bytes:
    """A column's value as bytes, whatever the driver returned; never raises."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if value is None:  # a NULL column (the table was altered by hand)
        return b""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "surrogatepass")


def _raw_headers(value: object) -> dict[str, str]:
    """The headers column, unparsed, as a header that can be stored again (never raises)."""
    data = _raw_bytes(value)
    try:
        return {RAW_HEADERS_HEADER: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {RAW_HEADERS_BASE64_HEADER: base64.b64encode(data).decode("ascii")}


def _parse_headers(row_id: int, column: object) -> dict[str, str]:
    """The headers of a row, from its ``headers`` column (text, or bytes on SQLite)."""
    try:
        if not isinstance(column, str | bytes):
            raise TypeError(f"expected text, got {type(column).__name__}")
        return parse_headers_json(column)
    except Exception as error:  # RecursionError too: any content, one clear reason
        reason = (
            f"the headers column of row {row_id} is not a JSON object of headers: "
            f"{describe_error(error)}"
        )
        raise _BadRowError(reason, _raw_headers(column)) from None


def _read_body(row_id: int, column: object, headers: dict[str, str]) -> bytes:
    """The body of a row, from its ``body`` column; removes the base64 marker header."""
    if headers.get(BODY_ENCODING_HEADER) != "base64":
        return _raw_bytes(column)
    try:
        return decode_body_text(
            column if isinstance(column, bytes | str) else _raw_bytes(column), headers
        )
    except ValueError as error:  # parked as found, the marker kept
        reason = f"the body of row {row_id} cannot be read: {describe_error(error)}"
        raise _BadRowError(reason, headers) from None


def decode_row(
    row_id: int, body: object, headers_column: object, serializer: Serializer
) -> Envelope:
    """The envelope for one row, stamped with its id; never raises for bad content.

    ``body`` and ``headers_column`` are the columns as the driver returns them: text, or bytes
    (SQLite reads them as BLOBs, since its TEXT may hold any bytes). A row whose headers or body
    cannot be read, or that the serializer cannot decode, comes out as an
    :class:`UndecodableMessage` holding the raw columns and the reason, so the worker can park
    it.
    """
    id_stamp = TransportMessageIdStamp(id=str(row_id))
    try:
        headers = _parse_headers(row_id, headers_column)
        data = _read_body(row_id, body, headers)
    except _BadRowError as bad:
        message = UndecodableMessage(_raw_bytes(body), dict(bad.headers), bad.reason)
        return Envelope(message, (id_stamp,))
    return decode_stored(TransportMessage(data, headers, str(row_id)), serializer, id_stamp)
