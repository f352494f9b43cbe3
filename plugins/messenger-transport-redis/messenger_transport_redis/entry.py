"""Stream entries <-> transport messages, in Symfony Messenger's layout.

Each stream entry has one field, ``message``, holding the JSON text
``{"body": <text>, "headers": {<name>: <text>, ...}}``; a delayed message waits in the sorted
set ``<stream>__queue`` as the same JSON plus a ``uniqid`` key (members of a sorted set must be
unique), and is moved into the stream verbatim when it is due.

- **Bodies are text.** The serializer's bytes are stored as UTF-8 text, which is what Symfony's
  serializers produce too. A body that is not valid UTF-8 (ciphertext, a binary format) is
  stored base64-encoded instead, with the header :data:`BODY_ENCODING_HEADER` set to
  ``base64``; reading removes the header and restores the exact bytes. (Symfony would hand
  such a body to its serializer still encoded; the SQL transport uses the same header.)
- **Symfony's PHP wrapper.** With its defaults Symfony stores the field PHP-serialized, as
  ``s:<byte length>:"<json>";``. Reading accepts both forms; writing produces plain JSON, which
  phpredis hands to Symfony unchanged (it returns a value it cannot unserialize as is).
- **Bad entries never stop a consumer.** An entry whose field is missing, not UTF-8, not JSON
  (or JSON nested too deep to parse), or not of that shape comes out as an
  :class:`~messenger_core.transport.UndecodableMessage` holding the raw bytes and the reason,
  for the worker to park in the failure transport: any exception, not only ``ValueError``.

Body, headers and the decode wrapper are :mod:`messenger_core.wire`'s, shared with every
transport that stores text; this module adds the entry's layout and PHP's wrapper.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage
from messenger_core.wire import (
    BODY_ENCODING_HEADER,
    decode_body_text,
    decode_stored,
    describe_error,
    document_json,
    encode_body_text,
    headers_from_json,
)

__all__ = [
    "BODY_ENCODING_HEADER",
    "FIELD",
    "decode_entry",
    "encode_entry",
    "parse_payload",
    "quarantine_entry",
    "unwrap_php_string",
]

FIELD = b"message"
"""The stream entry's one field (Symfony's name)."""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_loads = json.JSONDecoder().decode


def encode_entry(message: TransportMessage, uniqid: str | None = None) -> bytes:
    """The ``message`` field for ``message`` (with ``uniqid`` for the delay queue)."""
    # A JSON string holds a NUL (escaped): only a body that is not UTF-8 needs base64.
    body, headers = encode_body_text(message.body, message.headers, allow_nul=True)
    document = {"body": body, "headers": headers if type(headers) is dict else dict(headers)}
    if uniqid is not None:
        document["uniqid"] = uniqid
    return document_json(document)


def unwrap_php_string(data: bytes) -> bytes:
    """The string inside PHP's ``s:<length>:"<string>";``, or ``data`` if it is not one."""
    if data[:2] == b"s:" and data[-2:] == b'";':
        length, separator, rest = data[2:].partition(b':"')
        if separator and length.isdigit() and int(length) == len(rest) - 2:
            return rest[:-2]
    return data


def parse_payload(data: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and headers in a ``message`` field; ``ValueError`` saying what is wrong."""
    document = _loads(unwrap_php_string(data).decode("utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, got {type(document).__name__}")
    body = document.get("body")
    if not isinstance(body, str):
        raise ValueError("the JSON object has no text 'body'")
    raw_headers = document.get("headers", {})
    if raw_headers != [] and not isinstance(raw_headers, dict):
        raise ValueError("the JSON object's 'headers' is not an object")
    headers = headers_from_json(raw_headers)
    return decode_body_text(body, headers), headers


def decode_entry(entry_id: str, fields: Sequence[bytes], serializer: Serializer) -> Envelope:
    """The envelope for one stream entry (``fields`` as Redis sends them: name, value, ...),
    stamped with its id; never raises for bad content."""
    id_stamp = TransportMessageIdStamp(id=entry_id)
    data: bytes | None = None
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == FIELD:
            data = fields[index + 1]
            break
    if data is None:
        names = [
            bytes(fields[index]).decode("utf-8", "replace") for index in range(0, len(fields), 2)
        ]
        raw = _dumps(_text_fields(fields)).encode("utf-8")
        reason = f"stream entry {entry_id} has no 'message' field (fields: {', '.join(names)})"
        return Envelope(UndecodableMessage(raw, {}, reason), (id_stamp,))
    try:
        body, headers = parse_payload(data)
    except Exception as error:
        reason = (
            f"stream entry {entry_id} is not a Symfony Messenger entry: {describe_error(error)}"
        )
        return Envelope(UndecodableMessage(bytes(data), {}, reason), (id_stamp,))
    return decode_stored(TransportMessage(body, headers, entry_id), serializer, id_stamp)


def quarantine_entry(entry_id: str, fields: Sequence[bytes], error: BaseException) -> Envelope:
    """An :class:`UndecodableMessage` for an entry whose decoding failed unexpectedly: its
    fields as raw text, and the error as the reason."""
    try:
        raw = _dumps(_text_fields(fields)).encode("utf-8")
    except Exception:
        raw = repr(fields).encode("utf-8", "replace")
    reason = f"stream entry {entry_id} could not be decoded: {describe_error(error)}"
    return Envelope(UndecodableMessage(raw, {}, reason), (TransportMessageIdStamp(id=entry_id),))


def _text_fields(fields: Sequence[bytes]) -> Mapping[str, str]:
    return {
        bytes(fields[index]).decode("utf-8", "replace"): bytes(fields[index + 1]).decode(
            "utf-8", "replace"
        )
        for index in range(0, len(fields) - 1, 2)
    }
