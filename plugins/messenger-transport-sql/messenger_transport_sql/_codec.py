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
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer, decode_or_quarantine
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage

__all__ = [
    "BODY_ENCODING_HEADER",
    "RAW_HEADERS_BASE64_HEADER",
    "RAW_HEADERS_HEADER",
    "decode_row",
    "encode_body",
    "encode_headers",
]

BODY_ENCODING_HEADER = "X-Messenger-Body-Encoding"
"""Header marking a body stored base64-encoded (it was not UTF-8 text)."""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


def encode_body(body: bytes, headers: Mapping[str, str]) -> tuple[str, Mapping[str, str]]:
    """The text to store for ``body``, and the headers to store with it."""
    if b"\x00" not in body:
        try:
            return body.decode("utf-8"), headers
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), {**headers, BODY_ENCODING_HEADER: "base64"}


def encode_headers(headers: Mapping[str, str]) -> str:
    """The JSON text stored in the ``headers`` column."""
    return _dumps(dict(headers))


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


def _describe(error: BaseException) -> str:
    # RecursionError's message is long and generic; keep every reason short and typed.
    text = str(error)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _parse_headers(row_id: int, column: object) -> dict[str, str]:
    """The headers of a row, from its ``headers`` column (text, or bytes on SQLite)."""
    try:
        text = column.decode("utf-8") if isinstance(column, bytes) else column
        if not isinstance(text, str):
            raise TypeError(f"expected text, got {type(column).__name__}")
        value: Any = _loads(text)
        if value == []:  # PHP's json_encode writes an empty array for no headers
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        headers = {
            str(name): item if isinstance(item, str) else _dumps(item)
            for name, item in value.items()
        }
        for name, item in headers.items():
            # A lone surrogate (written as an escape) could never be stored again.
            name.encode("utf-8")
            item.encode("utf-8")
    except Exception as error:  # RecursionError too: any content, one clear reason
        reason = (
            f"the headers column of row {row_id} is not a JSON object of headers: "
            f"{_describe(error)}"
        )
        raise _BadRowError(reason, _raw_headers(column)) from None
    return headers


def _read_body(row_id: int, column: object, headers: dict[str, str]) -> bytes:
    """The body of a row, from its ``body`` column; removes the base64 marker header."""
    if headers.get(BODY_ENCODING_HEADER) != "base64":
        return _raw_bytes(column)
    del headers[BODY_ENCODING_HEADER]
    try:
        text = column if isinstance(column, bytes | str) else _raw_bytes(column)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        headers[BODY_ENCODING_HEADER] = "base64"  # parked as found
        reason = f"the base64 body of row {row_id} is corrupt: {_describe(error)}"
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
    transport_message = TransportMessage(data, headers, str(row_id))
    try:
        envelope = decode_or_quarantine(serializer, transport_message)
    except Exception as error:  # a serializer bug must not hide the other rows of a batch
        reason = f"the serializer failed: {_describe(error)}"
        envelope = Envelope(UndecodableMessage(data, headers, reason))
    return envelope.with_(id_stamp)
