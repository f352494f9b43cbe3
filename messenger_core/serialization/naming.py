"""Field names on the wire: ``order_id`` in Python, ``orderId`` where a PHP class reads it.

Three levels, the most specific wins:

1. one field: ``attrs.field(metadata=wire_name("orderId"))`` (or the same ``metadata`` on a
   ``dataclasses.field``);
2. one class: the :func:`field_names` decorator, ``@field_names("camelCase")`` (for that class
   only: a class nested in it follows its own decorator or the serializer's option);
3. a whole serializer: its ``field_names`` option (``json``: ``"as_is"`` by default;
   ``symfony``: ``"camelCase"``), for message classes and the classes they contain. Stamps keep
   their Python names unless their class is decorated, since their wire form belongs to the
   serializer.

``"camelCase"`` turns ``order_id`` into ``orderId`` and ``placed_at_utc`` into ``placedAtUtc``;
leading underscores are kept (``_hidden_value`` becomes ``_hiddenValue``). Reading accepts only
the wire name, so a message is never read from two spellings of one field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar, get_args

import attrs

from messenger_core.errors import ConfigurationError

__all__ = [
    "FIELD_NAME_STYLES",
    "WIRE_NAME",
    "FieldNameStyle",
    "camel_case",
    "field_names",
    "field_style_of",
    "wire_name",
    "wire_names",
]

FieldNameStyle = Literal["as_is", "camelCase"]
FIELD_NAME_STYLES: Final[tuple[str, ...]] = get_args(FieldNameStyle)

WIRE_NAME: Final = "messenger.wire_name"
"""The field metadata key holding a field's name on the wire."""

_STYLE_ATTRIBUTE: Final = "__messenger_field_names__"

_C = TypeVar("_C", bound=type[Any])


def wire_name(name: str) -> dict[str, str]:
    """Field metadata naming the field ``name`` on the wire:
    ``order_id: str = attrs.field(metadata=wire_name("orderId"))``."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a wire name must be a non-empty string, not {name!r}")
    return {WIRE_NAME: name}


def check_style(style: object, where: str) -> FieldNameStyle:
    """``style`` if it is a known field name style, else a ``ConfigurationError``."""
    if style not in FIELD_NAME_STYLES:
        known = ", ".join(repr(each) for each in FIELD_NAME_STYLES)
        raise ConfigurationError(f"{where}: unknown field name style {style!r} (known: {known})")
    return style  # type: ignore[return-value]


def field_names(style: FieldNameStyle) -> Callable[[_C], _C]:
    """Class decorator: write the fields of this class in ``style``, whatever the serializer's
    own option."""
    checked = check_style(style, "field_names()")

    def decorate(cls: _C) -> _C:
        setattr(cls, _STYLE_ATTRIBUTE, checked)
        return cls

    return decorate


def field_style_of(cls: type[Any]) -> FieldNameStyle | None:
    """The style the class itself asks for with :func:`field_names`, if any (not inherited)."""
    style = cls.__dict__.get(_STYLE_ATTRIBUTE)
    return style if style in FIELD_NAME_STYLES else None


def camel_case(name: str) -> str:
    """``order_id`` -> ``orderId``; leading underscores are kept."""
    stripped = name.lstrip("_")
    head, *rest = stripped.split("_")
    return (
        name[: len(name) - len(stripped)]
        + head
        + "".join(part[:1].upper() + part[1:] for part in rest)
    )


def wire_names(cls: type[Any], style: FieldNameStyle) -> dict[str, str]:
    """The fields of attrs class or dataclass ``cls`` whose wire name differs from their name."""
    renamed: dict[str, str] = {}
    for name, metadata in _fields(cls):
        explicit = metadata.get(WIRE_NAME)
        if explicit is not None:
            wire = explicit
        elif style == "camelCase":
            wire = camel_case(name)
        else:
            wire = name
        if wire != name:
            renamed[name] = wire
    _check_unique(cls, renamed)
    return renamed


def _fields(cls: type[Any]) -> list[tuple[str, Any]]:
    if attrs.has(cls):
        return [(field.name, field.metadata) for field in attrs.fields(cls)]
    return [(field.name, field.metadata) for field in dataclasses.fields(cls)]


def _check_unique(cls: type[Any], renamed: dict[str, str]) -> None:
    seen: dict[str, str] = {}
    for name, _ in _fields(cls):
        wire = renamed.get(name, name)
        if wire in seen:
            raise ConfigurationError(
                f"fields {seen[wire]!r} and {name!r} of {cls.__qualname__} both have the wire "
                f"name {wire!r}"
            )
        seen[wire] = name
