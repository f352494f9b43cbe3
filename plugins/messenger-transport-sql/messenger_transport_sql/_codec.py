"""Transport messages <-> the ``body`` and ``headers`` text columns.

``body`` holds the message body as text: the serializer's UTF-8 output, decoded, which is what
Symfony's serializers store too. A body that is not valid UTF-8 or contains NUL characters
(which PostgreSQL text cannot hold), such as ciphertext, is stored base64-encoded instead, with
the header :data:`BODY_ENCODING_HEADER` set to ``base64``; reading it back removes the header and
restores the exact bytes. ``headers`` holds a JSON object of the string headers.
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

__all__ = ["BODY_ENCODING_HEADER", "decode_row", "encode_body", "encode_headers"]

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


def _parse_headers(text: str) -> dict[str, str]:
    value: Any = _loads(text)
    if value == []:  # PHP's json_encode writes an empty array for no headers
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return {
        str(name): item if isinstance(item, str) else _dumps(item) for name, item in value.items()
    }


def decode_row(row_id: int, body: str, headers_text: str, serializer: Serializer) -> Envelope:
    """The envelope for one row, stamped with its id; never raises for bad content.

    A row whose headers or body cannot be read, or that the serializer cannot decode, comes out
    as an :class:`UndecodableMessage` holding what could be read, so the worker can park it.
    """
    id_stamp = TransportMessageIdStamp(id=str(row_id))
    try:
        headers = _parse_headers(headers_text)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raw = {"X-Messenger-Raw-Headers": headers_text}
        reason = f"the headers column of row {row_id} is not a JSON object: {error}"
        return Envelope(UndecodableMessage(body.encode("utf-8"), raw, reason), (id_stamp,))
    if headers.get(BODY_ENCODING_HEADER) == "base64":
        del headers[BODY_ENCODING_HEADER]
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            reason = f"the base64 body of row {row_id} is corrupt: {error}"
            return Envelope(UndecodableMessage(body.encode("utf-8"), headers, reason), (id_stamp,))
    else:
        data = body.encode("utf-8")
    message = TransportMessage(data, headers, str(row_id))
    try:
        envelope = decode_or_quarantine(serializer, message)
    except Exception as error:  # a serializer bug must not hide the other rows of a batch
        reason = f"the serializer failed: {type(error).__name__}: {error}"
        envelope = Envelope(UndecodableMessage(data, headers, reason))
    return envelope.with_(id_stamp)
