"""The json serializer's per-class functions, built on first use and cached.

How each message class and stamp class is written and read (cattrs hooks, wire names, stamp
header names), kept apart from :mod:`messenger_core.serialization.json`, which does the
encoding and decoding with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import cattrs

from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry, type_name_of
from messenger_core.stamps import NonSendableStamp, Stamp, UnknownStampsStamp

__all__ = ["STAMP_HEADER_PREFIX", "ClassHooks", "StampEncoder", "StampHeader"]

STAMP_HEADER_PREFIX: Final = "X-Message-Stamp-"


_Unstructure = Callable[[Any], Any]
_Structure = Callable[[Any, Any], Any]


class StampEncoder:
    """How one stamp class is written: its header name and unstructure function."""

    __slots__ = ("header", "unstructure")

    def __init__(self, header: str | None, unstructure: _Unstructure) -> None:
        self.header = header  # None: not sent (non-sendable, or written verbatim)
        self.unstructure = unstructure


class StampHeader:
    """How one known stamp header is read, with the stamps recently decoded from its values."""

    __slots__ = ("cls", "decoded", "structure")

    def __init__(self, cls: type[Stamp], structure: _Structure | None) -> None:
        self.cls = cls
        self.structure = structure  # None: ignored (a non-sendable stamp)
        self.decoded: dict[str, tuple[Stamp, ...]] = {}


class ClassHooks:
    """The functions writing and reading each class, cached by class (or stamp header).

    The caches are plain dicts the serializer also reads directly on its hot paths.
    """

    def __init__(self, registry: MessageTypeRegistry, converter: cattrs.Converter) -> None:
        self.registry = registry
        self.converter = converter
        self.message_encoders: dict[type[Any], tuple[str, _Unstructure]] = {}
        self.message_decoders: dict[type[Any], _Structure] = {}
        self.stamp_encoders: dict[type[Any], StampEncoder] = {}
        self.stamp_headers: dict[str, StampHeader] = {}

    def message_encoder(self, cls: type[Any]) -> tuple[str, _Unstructure]:
        """The wire name of message class ``cls`` and how to write it (cached)."""
        name = self.registry.name_of(cls)
        unstructure = self.unstructure_hook(cls, "message")
        self.message_encoders[cls] = (name, unstructure)
        return name, unstructure

    def unstructure_hook(self, cls: type[Any], kind: str) -> _Unstructure:
        """How to write ``cls`` (a ``kind`` class); ``ConfigurationError`` if it cannot be."""
        try:
            unstructure = self.converter.get_unstructure_hook(cls)
            # Built now as well so that a class that could not be read back fails on the
            # sending side, at its first message, instead of on every receiver.
            self.converter.get_structure_hook(cls)
        except Exception as error:
            raise ConfigurationError(
                f"the json serializer cannot handle {kind} class {type_name_of(cls)}: {error}"
            ) from error
        return unstructure

    def stamp_encoder(self, cls: type[Any]) -> StampEncoder:
        """How to write stamp class ``cls`` (cached)."""
        if issubclass(cls, NonSendableStamp) or cls is UnknownStampsStamp:
            encoder = StampEncoder(None, _unused)
        else:
            header = STAMP_HEADER_PREFIX + self.registry.stamp_name_of(cls)
            encoder = StampEncoder(header, self.unstructure_hook(cls, "stamp"))
        self.stamp_encoders[cls] = encoder
        return encoder

    def message_decoder(self, cls: type[Any], type_name: str) -> _Structure:
        """How to read message class ``cls`` (cached); ``MessageDecodingError`` if it cannot be."""
        try:
            structure = self.converter.get_structure_hook(cls)
        except Exception as error:
            # A receiver turns this into an UndecodableMessage: parked, not lost.
            raise MessageDecodingError(
                f"the json serializer cannot handle class {type_name_of(cls)}: {error}",
                type_name=type_name,
            ) from error
        self.message_decoders[cls] = structure
        return structure

    def stamp_header(self, header: str, type_name: str) -> StampHeader | None:
        """How to read ``header``, or ``None`` if it names no registered stamp class."""
        cls = self.registry.resolve_stamp(header[len(STAMP_HEADER_PREFIX) :])
        if cls is None:
            return None  # not remembered: the class may be registered later
        structure: _Structure | None = None
        if not issubclass(cls, NonSendableStamp) and cls is not UnknownStampsStamp:
            try:
                structure = self.converter.get_structure_hook(cls)
            except Exception as error:
                raise MessageDecodingError(
                    f"the json serializer cannot handle stamp class {type_name_of(cls)}: {error}",
                    type_name=type_name,
                ) from error
        entry = self.stamp_headers[header] = StampHeader(cls, structure)
        return entry


def _unused(_: Any) -> Any:  # pragma: no cover - never called (header is None)
    raise AssertionError("unreachable")
