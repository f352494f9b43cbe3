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
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from typing import NamedTuple, TypeVar

import attrs

from messenger_core.envelope import Envelope, new_envelope
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import Stamp
from messenger_core.transport import TransportMessage
from messenger_encryption._aead import NONCE_SIZE, Sealed, b64, new_sealed
from messenger_encryption.message import (
    ALGORITHM_SYMMETRIC,
    FORMAT_VERSION,
    TYPE_NAME,
)

__all__ = ["OuterCodec", "Read", "outer_codec"]

_CACHE_SIZE = 512  # entries per cache; cleared when full
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Names (algorithms, key ids) and one-time keys written and read as they are: none needs a
# JSON escape, and JSON reads them back unchanged.
_PLAIN = re.compile(r"[A-Za-z0-9._+/=-]{0,200}\Z")
K = TypeVar("K")
V = TypeVar("V")

try:  # the plugin's fast extra (messenger-encryption[fast]): base64 in a fifth of the time
    import pybase64  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the installation
    pybase64 = None  # type: ignore[assignment,unused-ignore]


# Partials, not functions: called twice per message, they add no Python call. Both accept the
# base64 alphabet only (no quote, no escape) with canonical padding; pybase64 refuses excess
# padding, which binascii's strict mode accepts (such a body is left to the serializer), and
# reads the same bytes otherwise (a test checks both).
_encode64_binascii: Callable[[bytes], bytes] = partial(binascii.b2a_base64, newline=False)
_decode64_binascii: Callable[[bytes | memoryview], bytes] = partial(
    binascii.a2b_base64, strict_mode=True
)
_encode64: Callable[[bytes], bytes] = _encode64_binascii if pybase64 is None else pybase64.b64encode
_decode64: Callable[[bytes | memoryview], bytes] = (
    _decode64_binascii if pybase64 is None else partial(pybase64.b64decode, validate=True)
)


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
        self._algorithm = b',"' + name[1] + b'":"'
        self._key_id = b'","' + name[2] + b'":"'
        self._nonce = b'","' + name[3] + b'":"'
        self._ciphertext = b'","' + name[4] + b'":"'
        self._ephemeral = b'","' + name[5] + b'":"'
        # A body's start, up to its nonce, by (version, algorithm, key id) and the other way
        # round: a handful per process, so each message looks its start up once.
        self._head_of: dict[tuple[int, str, str], bytes] = {}
        self._fields_of: dict[bytes, tuple[int, str, str]] = {}

    def write(self, sealed: Sealed) -> bytes | None:
        """The body for ``sealed``; ``None`` if a name would need escaping (the serializer
        writes it then)."""
        fields = sealed[:3]
        head = self._head_of.get(fields)
        if head is None:
            head = self._make_head(*fields)
            if head is None:
                return None
            _remember(self._head_of, fields, head)
        ephemeral = sealed.ephemeral_key
        if ephemeral and _PLAIN.match(ephemeral) is None:
            return None
        return b"".join(
            (
                head,
                _encode64(sealed.nonce),
                self._ciphertext,
                _encode64(sealed.ciphertext),
                self._ephemeral,
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
        at = body.find(self._nonce)
        if at < 0:
            return None
        at += len(self._nonce)
        head = body[:at]
        fields = self._fields_of.get(head)
        if fields is None:
            fields = self._read_head(head)
            if fields is None:
                return None
            _remember(self._fields_of, head, fields)
        nonce_end = body.find(self._ciphertext, at)
        end = body.rfind(self._ephemeral, nonce_end)
        ephemeral_at = end + len(self._ephemeral)
        # The closing quote must not be the separator's own (a body cut short).
        if nonce_end < 0 or end < 0 or ephemeral_at > len(body) - 2 or body[-2:] != b'"}':
            return None
        raw_ephemeral = body[ephemeral_at:-2]
        ephemeral = _plain_text(raw_ephemeral) if raw_ephemeral else ""
        if ephemeral is None:
            return None
        view = memoryview(body)
        try:
            # The base64 alphabet only (no quote, no escape): as JSON would read it.
            nonce = _decode64(view[at:nonce_end])
            ciphertext = _decode64(view[nonce_end + len(self._ciphertext) : end])
        except (binascii.Error, ValueError):
            return None
        return new_sealed((*fields, nonce, ciphertext, ephemeral))

    def _make_head(self, version: int, algorithm: str, key_id: str) -> bytes | None:
        """A body's start up to its nonce; ``None`` if a name would need escaping."""
        if _PLAIN.match(algorithm) is None or _PLAIN.match(key_id) is None:
            return None
        return b"".join(
            (
                self._start,
                str(version).encode("ascii"),
                self._algorithm,
                algorithm.encode("ascii"),
                self._key_id,
                key_id.encode("ascii"),
                self._nonce,
            )
        )

    def _read_head(self, head: bytes) -> tuple[int, str, str] | None:
        """Version, algorithm and key id from a body's start, if written as :meth:`_make_head`
        writes them (to the byte: no leading zero, no escape, no space)."""
        start = len(self._start)
        algorithm_at = head.find(self._algorithm, start)
        key_id_at = head.find(self._key_id, algorithm_at)
        if algorithm_at < 0 or key_id_at < 0:
            return None
        version = head[start:algorithm_at]
        algorithm = _plain_text(head[algorithm_at + len(self._algorithm) : key_id_at])
        key_id = _plain_text(head[key_id_at + len(self._key_id) : -len(self._nonce)])
        if algorithm is None or key_id is None or not 0 < len(version) < 10:
            return None
        if not version.isdigit():
            return None
        fields = (int(version), algorithm, key_id)
        return fields if self._make_head(*fields) == head else None


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


class Read(NamedTuple):
    """An encrypted message read without the serializer."""

    sealed: Sealed
    stamps: tuple[Stamp, ...]
    """Every stamp of its headers."""
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
        self._public: dict[Hashable, tuple[tuple[Stamp, ...], str, tuple[Stamp, ...]]] = {}

    def _get_layout(self) -> _Layout | None:
        # Learnt on first use: the message types are registered by then.
        if not self._learnt:
            self._layout = _learn_layout(self.inner)
            self._learnt = True
        return self._layout

    def encode(self, sealed: Sealed, public: tuple[Stamp, ...]) -> TransportMessage:
        """The outer message of ``sealed`` with the ``public`` stamps."""
        layout = self._layout if self._learnt else self._get_layout()
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

    def read(self, message: TransportMessage) -> Read | None:
        """What ``message`` holds if its headers are known (:meth:`remember`) and its body is
        in the serializer's layout to the byte; ``None``: the serializer reads it."""
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
        return Read(sealed, *public)

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
        _remember(self._public, key, (stamps, bus_name, kept))


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
