"""What every transport that stores messages as text shares: body, headers, decoding.

A :class:`~messenger_core.transport.TransportMessage` has a ``bytes`` body and string headers;
stores such as a SQL ``text`` column or a Redis stream entry in Symfony Messenger's layout hold
text. These helpers are the one way the plugins convert, so that every transport writes the
same form and refuses the same input:

- **Body as text.** :func:`encode_body_text` stores the serializer's UTF-8 output as it is
  (what Symfony's serializers produce too); a body that is not UTF-8 (ciphertext, a binary
  format) is stored base64-encoded with the header :data:`BODY_ENCODING_HEADER` set to
  ``base64``. :func:`decode_body_text` removes that header and restores the exact bytes.
- **Headers as a JSON object** of strings (:func:`headers_json`, :func:`parse_headers_json`).
  Reading accepts PHP's ``[]`` for no headers (``json_encode`` of an empty array) and writes a
  non-string value as its JSON text; it refuses a lone surrogate (a ``\\uD800`` escape that is
  not part of a pair), which could never be written as UTF-8 again.
- **Decoding never raises.** :func:`decode_stored` turns whatever the serializer does with a
  message into an envelope (an :class:`~messenger_core.transport.UndecodableMessage` with the
  reason if it fails) stamped with the message's id, so one bad message never stops a worker.

Every bad input is one ``ValueError`` that says what is wrong (JSON nested too deeply to read
included); :func:`describe_error` words any exception for a reason on one line.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from messenger_core.envelope import Envelope
from messenger_core.serialization._json_text import backend
from messenger_core.serializer import Serializer, decode_or_quarantine
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import TransportMessage, UndecodableMessage

__all__ = [
    "BODY_ENCODING_HEADER",
    "decode_body_text",
    "decode_stored",
    "describe_error",
    "document_json",
    "encode_body_text",
    "headers_from_json",
    "headers_json",
    "parse_headers_json",
]

BODY_ENCODING_HEADER: Final = "X-Messenger-Body-Encoding"
"""Header marking a body stored base64-encoded (it was not UTF-8 text)."""

_MAX_DESCRIPTION = 200

# Compact JSON, non-ASCII kept as it is (the stores hold UTF-8): orjson with the core's ``fast``
# extra, else the standard library (the json serializer's backend; the same text for strings).
_json = backend()
# A value in received headers that is not a string is kept as its JSON text, as it was written
# (NaN included, as Python reads it).
_encode: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False
).encode
_decode: Final = json.JSONDecoder().decode


def encode_body_text(
    body: bytes, headers: Mapping[str, str], *, allow_nul: bool = False
) -> tuple[str, Mapping[str, str]]:
    """The text to store for ``body``, and the headers to store with it.

    UTF-8 text is stored as it is and ``headers`` are returned unchanged; anything else is
    stored base64-encoded and the headers get :data:`BODY_ENCODING_HEADER`. So is text holding
    a NUL character, unless ``allow_nul`` (the store holds it, like a JSON string does; a
    PostgreSQL ``text`` column cannot).
    """
    if allow_nul or b"\x00" not in body:
        try:
            return body.decode("utf-8"), headers
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), {**headers, BODY_ENCODING_HEADER: "base64"}


def decode_body_text(text: str | bytes, headers: dict[str, str]) -> bytes:
    """The body stored as ``text`` (or as its UTF-8 bytes), the exact bytes that were sent.

    If ``headers`` mark the body as base64, the marker is removed from them (in place) once the
    body is decoded. Raises ``ValueError`` for a corrupt base64 body (``headers`` are then left
    as they were) and for text that cannot be UTF-8 (a lone surrogate).
    """
    if headers.get(BODY_ENCODING_HEADER) != "base64":
        if isinstance(text, str):
            try:
                return text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise ValueError(f"the body is not UTF-8 text: {error}") from None
        return bytes(text)
    try:
        body = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"the base64 body is corrupt: {error}") from None
    del headers[BODY_ENCODING_HEADER]
    return body


def headers_json(headers: Mapping[str, str]) -> str:
    """The JSON object text of ``headers`` (compact, non-ASCII characters kept as they are)."""
    return _json.dumps(headers if type(headers) is dict else dict(headers))


def document_json(document: dict[str, Any]) -> bytes:
    """The UTF-8 JSON text of ``document``, a JSON object of strings and headers (a stream
    entry, say), written as :func:`headers_json` writes headers."""
    return _json.dumps_bytes(document)


def parse_headers_json(text: str | bytes) -> dict[str, str]:
    """The headers in ``text``, a JSON object of them (or its UTF-8 bytes).

    See :func:`headers_from_json`. Raises ``ValueError`` saying what is wrong for anything else:
    bytes that are not UTF-8, text that is not JSON or nested too deeply to read, JSON that is
    not an object, a lone surrogate.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    elif not isinstance(text, str):
        raise ValueError(f"expected JSON text, got {type(text).__name__}")
    try:
        value = _decode(text)
    except RecursionError as error:
        raise ValueError(
            f"the JSON is nested too deeply to read ({describe_error(error)})"
        ) from None
    return headers_from_json(value)


def headers_from_json(value: Any) -> dict[str, str]:
    """The headers in ``value``, a decoded JSON object of them.

    An empty JSON array is no headers (PHP's ``json_encode`` writes ``[]`` for an empty array);
    a value that is not a string is kept as its JSON text. Raises ``ValueError`` for JSON that
    is not an object, and for a name or value holding a lone surrogate (it could not be written
    as UTF-8 again, so the message could be neither retried nor parked).
    """
    if value == []:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object of headers, got {type(value).__name__}")
    try:
        headers = {
            str(name): item if isinstance(item, str) else _encode(item)
            for name, item in value.items()
        }
    except RecursionError as error:
        raise ValueError(
            f"a header is nested too deeply to write ({describe_error(error)})"
        ) from None
    for name, item in headers.items():
        if not (name.isascii() and item.isascii()):
            try:
                name.encode("utf-8")
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"header {name.encode('utf-8', 'backslashreplace').decode()!r} holds a lone "
                    "surrogate (a \\uD800-\\uDFFF escape that is not part of a pair), which "
                    "cannot be written as UTF-8"
                ) from None
    return headers


def describe_error(error: BaseException) -> str:
    """``error`` as one short line for a reason: its message, prefixed by its type unless it is
    a ``ValueError`` (JSON, UTF-8 and base64 errors explain themselves); at most 200
    characters."""
    text = " ".join(str(error).split())
    if len(text) > _MAX_DESCRIPTION:
        text = text[:_MAX_DESCRIPTION] + "..."
    if isinstance(error, ValueError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def decode_stored(
    message: TransportMessage, serializer: Serializer, id_stamp: TransportMessageIdStamp
) -> Envelope:
    """The envelope ``serializer`` decodes from ``message``, stamped with ``id_stamp``.

    Never raises for what the message holds: a message the serializer cannot decode comes out
    as an :class:`~messenger_core.transport.UndecodableMessage` with the reason (see
    :func:`~messenger_core.serializer.decode_or_quarantine`), and so does one that makes the
    serializer fail in a way it should not, so that a serializer bug cannot hide the other
    messages of a batch.
    """
    try:
        envelope = decode_or_quarantine(serializer, message)
    except Exception as error:
        reason = f"the serializer failed: {describe_error(error)}"
        envelope = Envelope(UndecodableMessage(message.body, dict(message.headers), reason))
    return envelope.with_(id_stamp)
