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
"""

from __future__ import annotations

import base64
import binascii
import json
import json.encoder
from collections.abc import Mapping, Sequence

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer, decode_or_quarantine
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage

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
BODY_ENCODING_HEADER = "X-Messenger-Body-Encoding"
"""Header marking a body stored base64-encoded (it was not UTF-8 text)."""

_string = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept as is
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_loads = json.JSONDecoder().decode


def encode_entry(message: TransportMessage, uniqid: str | None = None) -> bytes:
    """The ``message`` field for ``message`` (with ``uniqid`` for the delay queue)."""
    headers = message.headers
    try:
        body = message.body.decode("utf-8")
    except UnicodeDecodeError:
        body = base64.b64encode(message.body).decode("ascii")
        headers = {**headers, BODY_ENCODING_HEADER: "base64"}
    # Written by hand: twice as fast as json.dumps for this fixed shape (it is on every send).
    text = ",".join([_string(name) + ":" + _string(value) for name, value in headers.items()])
    tail = "}}" if uniqid is None else '},"uniqid":' + _string(uniqid) + "}"
    return ('{"body":' + _string(body) + ',"headers":{' + text + tail).encode("utf-8")


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
    if raw_headers == []:  # PHP's json_encode writes an empty array for no headers
        raw_headers = {}
    if not isinstance(raw_headers, dict):
        raise ValueError("the JSON object's 'headers' is not an object")
    headers = {
        str(name): value if isinstance(value, str) else _dumps(value)
        for name, value in raw_headers.items()
    }
    if headers.get(BODY_ENCODING_HEADER) == "base64":
        del headers[BODY_ENCODING_HEADER]
        try:
            return base64.b64decode(body, validate=True), headers
        except (binascii.Error, ValueError) as error:
            raise ValueError(f"the base64 body is corrupt: {error}") from None
    return body.encode("utf-8"), headers


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
        reason = f"stream entry {entry_id} is not a Symfony Messenger entry: {_describe(error)}"
        return Envelope(UndecodableMessage(bytes(data), {}, reason), (id_stamp,))
    message = TransportMessage(body, headers, entry_id)
    try:
        envelope = decode_or_quarantine(serializer, message)
    except Exception as error:  # a serializer bug must not hide the other entries of a batch
        reason = f"the serializer failed: {_describe(error)}"
        envelope = Envelope(UndecodableMessage(body, headers, reason))
    return envelope.with_(id_stamp)


def quarantine_entry(entry_id: str, fields: Sequence[bytes], error: BaseException) -> Envelope:
    """An :class:`UndecodableMessage` for an entry whose decoding failed unexpectedly: its
    fields as raw text, and the error as the reason."""
    try:
        raw = _dumps(_text_fields(fields)).encode("utf-8")
    except Exception:
        raw = repr(fields).encode("utf-8", "replace")
    reason = f"stream entry {entry_id} could not be decoded: {_describe(error)}"
    return Envelope(UndecodableMessage(raw, {}, reason), (TransportMessageIdStamp(id=entry_id),))


def _describe(error: BaseException) -> str:
    if isinstance(error, ValueError):  # UnicodeDecodeError, JSONDecodeError: self-explaining
        return str(error)
    return f"{type(error).__name__}: {error}"


def _text_fields(fields: Sequence[bytes]) -> Mapping[str, str]:
    return {
        bytes(fields[index]).decode("utf-8", "replace"): bytes(fields[index + 1]).decode(
            "utf-8", "replace"
        )
        for index in range(0, len(fields) - 1, 2)
    }
