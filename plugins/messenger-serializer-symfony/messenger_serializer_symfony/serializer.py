"""The ``symfony`` serializer: what Symfony Messenger's Serializer-based JSON serializer writes.

A message written here is read by a Symfony app configured with
``Symfony\\Component\\Messenger\\Transport\\Serialization\\Serializer`` (the
``messenger.transport.symfony_serializer`` service), and the other way round:

- **body**: the message as a JSON object, its fields named as the PHP class names its
  properties (``camelCase`` unless the ``field_names`` option or the class says otherwise; see
  :mod:`messenger_core.serialization.naming`), values written as by the ``json`` serializer
  (datetimes as ISO 8601 with their offset, which PHP's ``DateTimeImmutable`` reads; a naive
  datetime is refused, since PHP would read it in its own time zone).
- ``type``: the name the message class is registered under, which must be the PHP class name:
  ``messenger.register_message(OrderPlaced, "App\\\\Message\\\\OrderPlaced")``.
- ``Content-Type: application/json``.
- the stamps Symfony has, under its class and property names (:mod:`.stamps`).
- every other sendable stamp under ``X-Python-Message-Stamp-<name>``, which Symfony ignores:
  Python workers read it back, but a retry or a failure handled by a PHP worker drops it.
  Symfony deletes a message that has an ``X-Message-Stamp-`` header naming a class it does not
  have, so that prefix is only used for Symfony's stamps, for stamp headers read from Symfony
  (a PHP app's own stamps, written back unchanged) and for stamp classes the application
  registered under a PHP class name (one with a backslash).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import cattrs

from messenger_core.envelope import Envelope
from messenger_core.errors import MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import STAMP_HEADER_PREFIX, JsonSerializer, make_converter
from messenger_core.serialization.naming import FieldNameStyle
from messenger_core.stamps import Stamp
from messenger_core.transport import TransportMessage
from messenger_serializer_symfony.stamps import (
    BY_CORE_CLASS,
    BY_SYMFONY_NAME,
    DROPPED_STAMPS,
    StampMapping,
)

__all__ = ["PYTHON_STAMP_HEADER_PREFIX", "SymfonySerializer"]

PYTHON_STAMP_HEADER_PREFIX: Final = "X-Python-Message-Stamp-"
"""Headers of the stamps Symfony does not have (it ignores headers without its own prefix)."""

_CACHE_SIZE = 512


class SymfonySerializer:
    """Envelopes to Symfony Messenger's JSON wire format and back (see the module docstring).

    The body, the ``type`` header and the core's own stamp headers are handled by a
    :class:`~messenger_core.serialization.json.JsonSerializer` inside; this class translates
    the stamp headers between the two.
    """

    def __init__(
        self,
        registry: MessageTypeRegistry,
        *,
        field_names: FieldNameStyle = "camelCase",
        converter: cattrs.Converter | None = None,
    ) -> None:
        """``converter`` replaces the one made for ``field_names`` (hooks of your own)."""
        self._json = JsonSerializer(registry, converter=converter or _converter(field_names))
        # (Symfony stamp header, its value) -> the core stamps read from it; most values repeat
        # (the bus name, the failure transport's name).
        self._decoded: dict[tuple[str, str], tuple[Stamp, ...]] = {}
        self._encoded: dict[Stamp, str] = {}

    @property
    def json(self) -> JsonSerializer:
        """The ``json`` serializer writing bodies and the core's own stamps."""
        return self._json

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, envelope: Envelope) -> TransportMessage:
        """The message as Symfony's serializer would write it."""
        symfony: dict[str, list[str]] = {}
        others: list[Stamp] = []
        for stamp in envelope.stamps:
            mapping = BY_CORE_CLASS.get(stamp.__class__)
            if mapping is None:
                others.append(stamp)
            else:
                symfony.setdefault(mapping.symfony, []).append(self._written(mapping, stamp))
        if symfony:
            envelope = Envelope(envelope.message, others)
        encoded = self.json.encode(envelope)
        headers: dict[str, str] = {}
        for name, value in encoded.headers.items():
            headers[_outgoing_header(name)] = value
        for name, items in symfony.items():
            headers[STAMP_HEADER_PREFIX + name] = "[" + ",".join(items) + "]"
        return TransportMessage(encoded.body, headers)

    def _written(self, mapping: StampMapping, stamp: Stamp) -> str:
        """The JSON of one stamp as Symfony writes it; most repeat (the bus name), so the text
        of each is kept (stamps are immutable values)."""
        text = self._encoded.get(stamp)
        if text is None:
            text = json.dumps(mapping.write(stamp), separators=(",", ":"))
            if len(self._encoded) >= _CACHE_SIZE:
                self._encoded.clear()
            self._encoded[stamp] = text
        return text

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, message: TransportMessage) -> Envelope:
        """The envelope of a message Symfony (or this serializer) wrote; raises
        ``MessageDecodingError``."""
        headers, stamps = self._split(message)
        envelope = self.json.decode(TransportMessage(message.body, headers, message.id))
        if not stamps:
            return envelope
        return Envelope(envelope.message, (*stamps, *envelope.stamps))

    def decode_stamps(self, message: TransportMessage) -> list[Stamp]:
        """Only the stamps of ``message`` (for one whose body cannot be decoded)."""
        headers, stamps = self._split(message)
        return [*stamps, *self.json.decode_stamps(TransportMessage(message.body, headers))]

    def _split(self, message: TransportMessage) -> tuple[dict[str, str], list[Stamp]]:
        """The headers for the json serializer, and the stamps read from Symfony's headers."""
        headers: dict[str, str] = {}
        stamps: list[Stamp] = []
        try:
            items = list(message.headers.items())
        except Exception as error:
            raise MessageDecodingError(f"the headers cannot be read: {error}") from None
        for name, value in items:
            if not isinstance(name, str):
                headers[name] = value  # the json serializer says what is wrong with it
            elif name.startswith(STAMP_HEADER_PREFIX):
                php_class = name[len(STAMP_HEADER_PREFIX) :]
                mapping = BY_SYMFONY_NAME.get(php_class)
                if mapping is not None:
                    stamps += self._read(mapping, name, value, message)
                elif php_class not in DROPPED_STAMPS:
                    headers[name] = value
            elif name.startswith(PYTHON_STAMP_HEADER_PREFIX):
                headers[STAMP_HEADER_PREFIX + name[len(PYTHON_STAMP_HEADER_PREFIX) :]] = value
            else:
                headers[name] = value
        return headers, stamps

    def _read(
        self, mapping: StampMapping, header: str, value: Any, message: TransportMessage
    ) -> tuple[Stamp, ...]:
        key = (mapping.symfony, value)
        try:
            cached = self._decoded.get(key)
        except TypeError:  # a value that is not a string
            cached = None
        if cached is not None:
            return cached
        stamps = tuple(_read_header(mapping, header, value, message))
        if isinstance(value, str):
            if len(self._decoded) >= _CACHE_SIZE:
                self._decoded.clear()
            self._decoded[key] = stamps
        return stamps


def _converter(field_names: FieldNameStyle) -> cattrs.Converter:
    converter = make_converter(field_names)
    converter.register_unstructure_hook(datetime, _aware_datetime)
    return converter


def _aware_datetime(value: datetime) -> str:
    # PHP reads a time without offset in its own date.timezone: the instant would depend on
    # the PHP app's settings. The json serializer passes naive times through; here they are
    # refused at dispatch rather than shifted silently.
    if value.utcoffset() is None:
        raise ValueError(
            f"naive datetime {value.isoformat()} (no time zone): PHP would read it in its own "
            "date.timezone; give it one (datetime.now(UTC))"
        )
    return value.isoformat()


def _outgoing_header(name: str) -> str:
    """Where a header the json serializer wrote goes: stamp headers of classes that have no PHP
    name (no backslash) move to the prefix Symfony ignores."""
    if name.startswith(STAMP_HEADER_PREFIX) and "\\" not in name:
        return PYTHON_STAMP_HEADER_PREFIX + name[len(STAMP_HEADER_PREFIX) :]
    return name


def _read_header(
    mapping: StampMapping, header: str, value: Any, message: TransportMessage
) -> list[Stamp]:
    type_name = _type_of(message)
    if not isinstance(value, str):
        raise MessageDecodingError(
            f"the stamp header holds {type(value).__name__}, not text",
            type_name=type_name,
            field=header,
        )
    try:
        items = json.loads(value)
    except (ValueError, RecursionError) as error:
        raise MessageDecodingError(
            f"the stamp header is not JSON ({_short(error)})", type_name=type_name, field=header
        ) from None
    if not isinstance(items, list):
        raise MessageDecodingError(
            "the stamp header is not a JSON array", type_name=type_name, field=header
        )
    stamps: list[Stamp] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise MessageDecodingError(
                "expected a JSON object", type_name=type_name, field=f"{header}[{index}]"
            )
        try:
            stamps.append(mapping.read(item))
        except (TypeError, ValueError) as error:
            raise MessageDecodingError(
                _short(error), type_name=type_name, field=f"{header}[{index}]"
            ) from None
    return stamps


def _type_of(message: TransportMessage) -> str | None:
    try:
        name = message.headers.get("type")
    except Exception:
        return None
    return name if isinstance(name, str) else None


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
