"""The outer message (the :class:`EncryptedMessage` and the public stamps), written and read
here for the core's ``json`` serializer instead of running the serializer a second time.

An encrypted envelope travels as what the transport's serializer writes for
``Envelope(EncryptedMessage(...), public stamps)``. Running the serializer for it on every
message cost about as much as the encryption, for an output that hardly changes: the ``json``
serializer's headers depend on the message's type and stamps only, and its body is one flat
JSON object of a number, two names and base64 text. So, for that serializer:

- **writing**: the headers are those the serializer wrote for the same public stamps before
  (kept per tuple of stamps: stamps are immutable values); the body is written here in the
  layout the serializer writes (its field names learnt from its own output for a sample, and
  checked to the byte);
- **reading**: a message whose headers are exactly those of one the serializer already read as
  an :class:`EncryptedMessage` gets the stamps read then; its body is read here if it is in
  that layout to the byte (no escape, no space, base64 where base64 goes), else by the
  serializer. Whatever is read here, the serializer would have read alike.

The bytes on the wire are the serializer's, so processes with and without this shortcut read
each other's messages. Any other serializer (which may write other headers for other bodies)
is run twice, as before.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import attrs

from messenger_core.envelope import Envelope, new_envelope
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import Stamp
from messenger_core.transport import TransportMessage
from messenger_encryption._aead import NONCE_SIZE, Sealed, b64
from messenger_encryption.message import (
    ALGORITHM_SYMMETRIC,
    FORMAT_VERSION,
    TYPE_NAME,
    EncryptedMessage,
)

__all__ = ["OuterCodec", "outer_codec"]

_CACHE_SIZE = 512  # entries per cache; cleared when full
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Names (algorithms, key ids) and one-time keys written and read as they are: none needs a
# JSON escape, and JSON reads them back unchanged.
_PLAIN = re.compile(r"[A-Za-z0-9._+/=-]{0,200}\Z")
K = TypeVar("K")
V = TypeVar("V")
_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64


def outer_codec(inner: Serializer) -> OuterCodec | None:
    """The codec for ``inner``, or ``None`` if ``inner`` must encode the outer message itself
    (only the core's ``json`` serializer, as it is, is known to write as this codec does)."""
    if type(inner) is JsonSerializer:
        return OuterCodec(inner)
    return None


class _Layout:
    """The JSON object a serializer writes for an :class:`EncryptedMessage`, field names
    given, compact: ``{"version":1,"algorithm":"...","key_id":"...","nonce":"...",...}``."""

    def __init__(self, names: Sequence[str]) -> None:
        name = [item.encode("ascii") for item in names]
        self._start = b'{"' + name[0] + b'":'
        self._between = [b',"' + name[1] + b'":"'] + [b'","' + n + b'":"' for n in name[2:]]
        # The plain names seen (algorithms, key ids), as text and as bytes.
        self._name_bytes_of: dict[str, bytes] = {}
        self._name_text_of: dict[bytes, str] = {}

    def write(self, sealed: Sealed) -> bytes | None:
        """The body for ``sealed``; ``None`` if a name would need escaping (the serializer
        writes it then)."""
        algorithm = self._name_bytes(sealed.algorithm)
        key_id = self._name_bytes(sealed.key_id)
        ephemeral = sealed.ephemeral_key
        if algorithm is None or key_id is None or _PLAIN.match(ephemeral) is None:
            return None
        between = self._between
        return b"".join(
            (
                self._start,
                str(sealed.version).encode("ascii"),
                between[0],
                algorithm,
                between[1],
                key_id,
                between[2],
                _b2a(sealed.nonce, newline=False),
                between[3],
                _b2a(sealed.ciphertext, newline=False),
                between[4],
                ephemeral.encode("ascii"),
                b'"}',
            )
        )

    def read(self, body: bytes) -> Sealed | None:
        """What ``body`` holds if it is in this layout to the byte, else ``None``.

        Each value lies between two fixed separators that begin with a quote, and no value
        read here may hold a quote (names and one-time keys are checked, base64 is decoded
        strictly), so the values found are the only reading of ``body``: the one JSON gives.
        """
        start, between = self._start, self._between
        if body[: len(start)] != start or body[-2:] != b'"}':
            return None
        at = len(start)
        end = body.find(between[0], at)
        version = body[at:end]
        at = end + len(between[0])
        end = body.find(between[1], at)
        algorithm = self._name_text(body[at:end])
        at = end + len(between[1])
        end = body.find(between[2], at)
        key_id = self._name_text(body[at:end])
        nonce_at = end + len(between[2])
        nonce_end = body.find(between[3], nonce_at)
        at = nonce_end + len(between[3])
        end = body.find(between[4], at)
        ephemeral = _plain_text(body[end + len(between[4]) : -2])
        if (
            min(nonce_end, end) < 0
            or algorithm is None
            or key_id is None
            or ephemeral is None
            or not 0 < len(version) < 10
            or not version.isdigit()
            or (version[:1] == b"0" and len(version) > 1)  # JSON has no leading zeros
        ):
            return None
        view = memoryview(body)
        try:
            # Strict: the base64 alphabet only (no quote, no escape), as JSON would read it.
            nonce = _a2b(view[nonce_at:nonce_end], strict_mode=True)
            ciphertext = _a2b(view[at:end], strict_mode=True)
        except binascii.Error:
            return None
        return Sealed(int(version), algorithm, key_id, nonce, ciphertext, ephemeral)

    def _name_bytes(self, text: str) -> bytes | None:
        found = self._name_bytes_of.get(text)
        if found is None:
            if _PLAIN.match(text) is None:
                return None
            found = text.encode("ascii")
            _remember(self._name_bytes_of, text, found)
        return found

    def _name_text(self, data: bytes) -> str | None:
        found = self._name_text_of.get(data)
        if found is None:
            found = _plain_text(data)
            if found is not None:
                _remember(self._name_text_of, data, found)
        return found


def _plain_text(data: bytes) -> str | None:
    """``data`` as text if it is a plain name (JSON reads it unchanged), else ``None``."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _PLAIN.match(text) is not None else None


def _remember(cache: dict[K, V], key: K, value: V) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


def _learn_layout(inner: Serializer) -> _Layout | None:
    """The layout of ``inner``'s body for an :class:`EncryptedMessage`, learnt from its
    output for a sample and checked to the byte; ``None`` if it writes something else."""
    sample = Sealed(
        FORMAT_VERSION, ALGORITHM_SYMMETRIC, "k-1.x_y", bytes(NONCE_SIZE), b"c" * 40, ""
    )
    for ephemeral in ("", b64(bytes(32))):
        sealed = sample._replace(ephemeral_key=ephemeral)
        message = sealed.to_message()
        try:
            body = bytes(inner.encode(Envelope(message)).body)
            data = json.loads(body)
        except Exception:  # a type not registered, a body that is not JSON: not this layout
            return None
        if not isinstance(data, dict) or list(data.values()) != list(attrs.astuple(message)):
            return None
        names = list(data)
        if not all(_FIELD_NAME.match(name) for name in names):
            return None
        layout = _Layout(names)
        if layout.write(sealed) != body or layout.read(body) != sealed:
            return None
    return layout


class OuterCodec:
    """Writes and reads the outer message for a ``json`` serializer (see the module
    docstring); what it cannot do alike, the serializer does."""

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner
        self._layout: _Layout | None = None
        self._learnt = False
        self._headers: dict[tuple[Stamp, ...], Mapping[str, str]] = {}
        self._stamps: dict[Hashable, tuple[Stamp, ...]] = {}

    def _get_layout(self) -> _Layout | None:
        # Learnt on first use: the message types are registered by then.
        if not self._learnt:
            self._layout = _learn_layout(self.inner)
            self._learnt = True
        return self._layout

    def encode(self, sealed: Sealed, public: tuple[Stamp, ...]) -> TransportMessage:
        """The outer message of ``sealed`` with the ``public`` stamps."""
        layout = self._get_layout()
        try:
            headers = self._headers.get(public)
        except TypeError:  # a mutable stamp: the serializer writes this one
            headers = None
        if headers is not None and layout is not None:
            body = layout.write(sealed)
            if body is not None:
                return TransportMessage(body, dict(headers))
        written = self.inner.encode(new_envelope(sealed.to_message(), public))
        if _hashable(public):
            _remember(self._headers, public, dict(written.headers))
        return written

    def decode(self, message: TransportMessage) -> Envelope:
        """The outer envelope of ``message``: a :class:`Sealed` if read here, else what the
        serializer reads (an :class:`EncryptedMessage`, or a message of another bus)."""
        headers = message.headers
        if headers.get("type") == TYPE_NAME and (layout := self._get_layout()) is not None:
            key: Hashable | None = tuple(headers.items())
            try:
                stamps = self._stamps.get(key)
            except TypeError:  # a header value that is not a string: the serializer says so
                key = stamps = None
            if stamps is not None:
                sealed = layout.read(bytes(message.body))
                if sealed is not None:
                    return new_envelope(sealed, stamps)
            outer = self.inner.decode(message)
            if (
                key is not None
                and outer.message.__class__ is EncryptedMessage
                and _hashable(outer.stamps)
            ):
                _remember(self._stamps, key, outer.stamps)
            return outer
        return self.inner.decode(message)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
