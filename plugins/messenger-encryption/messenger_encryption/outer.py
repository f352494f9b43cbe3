"""The outer message (the :class:`EncryptedMessage` and the public stamps), written and read
here for the core's ``json`` serializer instead of running the serializer a second time.

An encrypted envelope travels as what the transport's serializer writes for
``Envelope(EncryptedMessage(sealed), public stamps)``. Running the serializer for it on every
message cost about as much as the encryption, for an output that hardly changes: the ``json``
serializer's headers depend on the message's type and stamps only, and its body is a JSON
object of one field holding base64 text. So, for that serializer:

- **writing**: the headers are those the serializer wrote for the same public stamps before
  (kept per tuple of stamps: stamps are immutable values); the body is written here in the
  layout the serializer writes (the field's name learnt from its own output for a sample, and
  checked to the byte);
- **reading**: a message whose headers are exactly those of one the serializer already read as
  an :class:`EncryptedMessage` gets the stamps read then; its body is read here if it is in
  that layout to the byte (no escape, no space, strict base64), else by the serializer.
  Base64 holds no quote and no backslash, so whatever is read here, the serializer would have
  read alike.

The bytes on the wire are the serializer's, so processes with and without this shortcut read
each other's messages. Any other serializer (which may write other headers for other bodies)
is run twice.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import NamedTuple, TypeVar

import pybase64

from messenger_core.envelope import Envelope, new_envelope
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import Stamp
from messenger_core.transport import TransportMessage
from messenger_encryption.message import TYPE_NAME, EncryptedMessage

__all__ = ["OuterCodec", "Public", "decode64", "encode64", "outer_codec"]

_CACHE_SIZE = 512  # entries per cache; cleared when full
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SAMPLE = b"\x02\x01\x01k" + bytes(40)
K = TypeVar("K")
V = TypeVar("V")

encode64: Callable[[bytes], bytes] = pybase64.b64encode
"""Base64 (standard alphabet, padded), as the serializers' base64 text is."""
# A partial, not a function: called once per message, it adds no Python call. It accepts the
# base64 alphabet only (no quote, no escape) with canonical padding, as binascii's strict mode
# does (a test checks that it accepts nothing binascii refuses).
decode64: Callable[[bytes | memoryview], bytes] = partial(pybase64.b64decode, validate=True)
"""Strict base64 decoding: ``binascii.Error`` or ``ValueError`` for anything else."""


def outer_codec(inner: Serializer) -> OuterCodec | None:
    """The codec for ``inner``, or ``None`` if ``inner`` must encode the outer message itself
    (only the core's ``json`` serializer, as it is, is known to write as this codec does)."""
    if type(inner) is JsonSerializer:
        return OuterCodec(inner)
    return None


class _Layout(NamedTuple):
    """The JSON object a serializer writes for an :class:`EncryptedMessage`, compact:
    ``{"<field>":"<base64>"}``."""

    start: bytes
    end: bytes

    def write(self, sealed: bytes) -> bytes:
        return b"".join((self.start, encode64(sealed), self.end))

    def read(self, body: bytes) -> bytes | None:
        """The sealed bytes if ``body`` is in this layout to the byte, else ``None``."""
        start, end = self.start, self.end
        if not body.startswith(start) or not body.endswith(end):
            return None
        try:
            # The base64 alphabet only (no quote, no escape): as JSON would read it.
            return decode64(memoryview(body)[len(start) : len(body) - len(end)])
        except (binascii.Error, ValueError):
            return None


def _learn_layout(inner: Serializer) -> _Layout | None:
    """The layout of ``inner``'s body for an :class:`EncryptedMessage`, learnt from its
    output for a sample and checked to the byte; ``None`` if it writes something else."""
    text = encode64(_SAMPLE).decode("ascii")
    try:
        body = bytes(inner.encode(Envelope(EncryptedMessage(text))).body)
        data = json.loads(body)
    except Exception:  # a type not registered, a body that is not JSON: not this layout
        return None
    if not isinstance(data, dict) or list(data.values()) != [text]:
        return None
    (name,) = data
    if not _FIELD_NAME.match(name):
        return None
    layout = _Layout(b'{"' + name.encode("ascii") + b'":"', b'"}')
    if layout.write(_SAMPLE) != body or layout.read(body) != _SAMPLE:
        return None
    return layout


class Public(NamedTuple):
    """What the headers of an encrypted message hold (read once per distinct headers)."""

    stamps: tuple[Stamp, ...]
    """Every stamp of the headers."""
    bus_name: str
    kept: tuple[Stamp, ...]
    """The stamps the receiver keeps, as :meth:`OuterCodec.remember` was told."""


class OuterCodec:
    """Writes and reads the outer message for a ``json`` serializer (see the module
    docstring); what it cannot do alike, the serializer does."""

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner
        self._layout: _Layout | None = None
        self._learnt = False
        self._headers: dict[tuple[Stamp, ...], Mapping[str, str]] = {}
        # The headers of the messages the serializer read as encrypted -> what they hold.
        self._public: dict[Hashable, Public] = {}

    def _get_layout(self) -> _Layout | None:
        # Learnt on first use: the message types are registered by then.
        if not self._learnt:
            self._layout = _learn_layout(self.inner)
            self._learnt = True
        return self._layout

    def encode(self, sealed: bytes, public: tuple[Stamp, ...]) -> TransportMessage:
        """The outer message of ``sealed`` with the ``public`` stamps."""
        layout = self._layout if self._learnt else self._get_layout()
        try:
            headers = self._headers.get(public)
        except TypeError:  # a mutable stamp: the serializer writes this one
            headers = None
        if headers is not None and layout is not None:
            return TransportMessage(layout.write(sealed), dict(headers))
        message = EncryptedMessage(encode64(sealed).decode("ascii"))
        written = self.inner.encode(new_envelope(message, public))
        if _hashable(public):
            _remember(self._headers, public, dict(written.headers))
        return written

    def read(self, message: TransportMessage) -> tuple[bytes, Public] | None:
        """The sealed bytes and the public part of ``message`` if its headers are known
        (:meth:`remember`) and its body is in the serializer's layout to the byte; ``None``:
        the serializer reads it."""
        try:
            headers = message.headers
            if headers.get("type") != TYPE_NAME:
                return None
            public = self._public.get(tuple(headers.items()))
        except Exception:  # headers that are not strings: the serializer says what is wrong
            return None
        if public is None or self._layout is None:
            return None
        sealed = self._layout.read(bytes(message.body))
        if sealed is None:
            return None
        return sealed, public

    def remember(
        self,
        message: TransportMessage,
        stamps: tuple[Stamp, ...],
        bus_name: str,
        kept: tuple[Stamp, ...],
    ) -> None:
        """The serializer read ``message`` as an :class:`EncryptedMessage` with ``stamps``
        (of which the receiver keeps ``kept``), on ``bus_name``: the next message with the
        same headers gets these (stamps are immutable values)."""
        if self._layout is None and not self._learnt:
            self._get_layout()
        try:
            key = tuple(message.headers.items())
            hash((key, stamps, kept))
        except TypeError:  # a mutable stamp, a header that is not a string: not kept
            return
        _remember(self._public, key, Public(stamps, bus_name, kept))


def _remember(cache: dict[K, V], key: K, value: V) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
