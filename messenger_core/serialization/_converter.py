"""The cattrs converter behind the ``json`` serializer: which Python value becomes which JSON value.

:func:`make_converter` returns a :class:`cattrs.Converter` whose unstructured output is made of
``dict``/``list``/``tuple``/``str``/``int``/``float``/``bool``/``None`` only (what the stdlib
:mod:`json` writes), and whose structure hooks are strict: a value of the wrong JSON type is an
error, never silently coerced (cattrs' defaults would turn ``5`` into ``"5"`` for a ``str`` field
and ``"abc"`` into ``["a", "b", "c"]`` for a ``list[str]`` one).

The mapping (also the documented wire format of the ``json`` serializer's body and stamps):

- attrs classes and dataclasses: a JSON object of their fields; unknown keys are ignored on
  input (a newer sender may have added a field), missing ones without default are errors.
- ``str``, ``int``, ``bool``, ``None``: themselves. A number is never a ``bool``, but a boolean
  is accepted as an ``int`` (Python's ``bool`` is an ``int``, so an ``int`` field may hold
  ``True``). ``float``: a number (an integer is accepted on input); NaN and infinities are
  refused on output, as they are not JSON.
- ``list``, ``Sequence``, ``MutableSequence``: an array, read back as a ``list``;
  ``tuple[X, ...]`` and ``tuple[X, Y]``: an array (a fixed-size tuple checks the length);
  ``set``/``MutableSet``: an array read back as a ``set``; ``frozenset``/``Set``: as a
  ``frozenset``.
- ``dict``, ``Mapping``, ``MutableMapping``: an object, read back as a ``dict``. JSON keys are
  strings: str-like keys (``str``, ``UUID``, dates and times, ``Decimal``, string enums) are
  written as their string form; int-like keys (``int``, int enums) as decimal strings, parsed
  back; other key types are refused.
- ``Enum``: its value.
- ``datetime``: an ISO 8601 string. An aware one carries its UTC offset and is read back with a
  fixed-offset ``timezone`` (same instant, same offset; a ``zoneinfo`` zone's name is not kept;
  Python 3.11 drops the microseconds of an offset, which no real zone has).
  A naive one is written without offset and read back naive: it is passed through as the
  application made it, never guessed to be UTC or local time.
- ``date``, ``time``: ISO 8601 strings. ``UUID``: the canonical hyphenated string.
- ``Decimal``: a string (``str(d)``, no precision loss); an integer is accepted on input, a
  float is not (its precision is already lost).
- ``bytes``: a standard base64 string.
- ``Any``: passed through as JSON. ``Optional[X]``: ``null`` or X.

Unions are told apart by the JSON shape of the value: null, boolean, number, string, array,
object. ``Literal`` members are matched by value first. Apart from them a union may hold at most
one member per shape, with two exceptions: ``int | float`` (a JSON integer becomes the ``int``
member) and several attrs/dataclass classes, which are written with an extra ``"_type"`` key
holding the class name (``module.QualName`` when two members share a name); on input the tag is
looked up among the union's own members only, nothing is imported. Any other union (say
``datetime | UUID``, both JSON strings) is refused when a class using it is first encoded.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import types
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, MutableSet, Sequence
from collections.abc import Set as AbstractSet
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from messenger_core.serialization.naming import (
    FieldNameStyle,
    check_style,
    field_style_of,
    wire_names,
)
from messenger_core.stamps import Stamp

__all__ = ["TAG_KEY", "make_converter"]

TAG_KEY = "_type"
"""The key that names the class of a union member written as a JSON object."""

StructureHook = Callable[[Any, Any], Any]
UnstructureHook = Callable[[Any], Any]

_NONE_TYPE = type(None)
_INT_KEY = re.compile(r"-?[0-9]+")


def make_converter(field_names: FieldNameStyle = "as_is") -> cattrs.Converter:
    """A new converter configured for the ``json`` serializer (see the module docstring).

    ``field_names`` is how the fields of message classes (and of the classes they hold) are
    named on the wire unless a class or field says otherwise (see
    :mod:`messenger_core.serialization.naming`). Register further hooks on it for types of
    your own and pass it to ``JsonSerializer``.
    """
    check_style(field_names, "make_converter(field_names=...)")
    converter = cattrs.Converter(
        detailed_validation=True,
        unstruct_collection_overrides={AbstractSet: list},
    )
    _register_scalars(converter)
    _register_collections(converter)
    _register_mappings(converter)
    _register_unions(converter)
    _register_classes(converter, field_names)
    return converter


# -- errors -------------------------------------------------------------------------------------


def json_kind(value: Any) -> str:
    """How a decoded JSON value is called in error messages."""
    kind = _JSON_KINDS.get(value.__class__)
    return kind if kind is not None else type(value).__name__


_JSON_KINDS = {
    dict: "a JSON object",
    list: "a JSON array",
    str: "a JSON string",
    int: "a JSON number",
    float: "a JSON number",
    bool: "a JSON boolean",
    _NONE_TYPE: "null",
}


def _wrong(expected: str, value: Any) -> TypeError:
    return TypeError(f"expected {expected}, got {json_kind(value)}")


def _bad(expected: str, value: Any) -> ValueError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ValueError(f"expected {expected}, got {shown}")


# -- scalars ------------------------------------------------------------------------------------


# ``cls`` is the exact class, or a subclass such as a ``str``/``int`` enum: build that from the
# checked JSON value.
def _structure_str(value: Any, cls: Any) -> str:
    if value.__class__ is str:
        return value if cls is str else cls(value)
    raise _wrong("a string", value)


def _structure_int(value: Any, cls: Any) -> int:
    # ``bool`` is an ``int`` to Python (and to type checkers), so an ``int`` field may hold
    # ``True``, written as ``true``: it must read back.
    if value.__class__ is int or value.__class__ is bool:
        return value if cls is int else cls(value)
    raise _wrong("an integer", value)


def _structure_float(value: Any, cls: Any) -> float:
    if value.__class__ is float or value.__class__ is int:
        return float(value) if cls is float else cls(value)
    raise _wrong("a number", value)


def _structure_bool(value: Any, _: Any) -> bool:
    if value.__class__ is bool:
        return value
    raise _wrong("a boolean", value)


def _unstructure_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _structure_bytes(value: Any, _: Any) -> bytes:
    if value.__class__ is not str:
        raise _wrong("a base64 string", value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("a base64 string", value) from None


def _parser(cls: type[Any], expected: str) -> StructureHook:
    parse = cls.fromisoformat

    def structure(value: Any, _: Any) -> Any:
        if value.__class__ is not str:
            raise _wrong(expected, value)
        try:
            return parse(value)
        except ValueError:
            raise _bad(expected, value) from None

    return structure


def _isoformat(value: date | time) -> str:
    return value.isoformat()


def _structure_uuid(value: Any, _: Any) -> UUID:
    if value.__class__ is not str:
        raise _wrong("a UUID string", value)
    try:
        return UUID(value)
    except ValueError:
        raise _bad("a UUID string", value) from None


def _structure_decimal(value: Any, _: Any) -> Decimal:
    cls = value.__class__
    if cls is int:
        return Decimal(value)
    if cls is not str:
        # A float already lost precision somewhere: refuse it rather than hide that.
        raise _wrong("a decimal string", value)
    try:
        return Decimal(value)
    except InvalidOperation:
        raise _bad("a decimal string", value) from None


def _register_scalars(converter: cattrs.Converter) -> None:
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_unstructure_hook(bytes, _unstructure_bytes)
    converter.register_structure_hook(bytes, _structure_bytes)
    for cls, expected in (
        (datetime, "an ISO 8601 datetime"),
        (date, "an ISO 8601 date"),
        (time, "an ISO 8601 time"),
    ):
        converter.register_unstructure_hook(cls, _isoformat)
        converter.register_structure_hook(cls, _parser(cls, expected))
    converter.register_unstructure_hook(UUID, str)
    converter.register_structure_hook(UUID, _structure_uuid)
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, _structure_decimal)


# -- type inspection ----------------------------------------------------------------------------


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``NewType`` wrappers."""
    while True:
        if get_origin(tp) is Annotated:
            tp = tp.__origin__
        elif hasattr(tp, "__supertype__"):
            tp = tp.__supertype__
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_class(tp: Any) -> bool:
    """An attrs class or a dataclass (possibly a parametrised generic one)."""
    origin = get_origin(tp) or tp
    return isinstance(origin, type) and (attrs.has(origin) or dataclasses.is_dataclass(origin))


def _enum_value_kind(tp: type[Enum]) -> str | None:
    values = [member.value for member in tp]
    if values and all(type(v) is str for v in values):
        return "string"
    if values and all(type(v) is int for v in values):
        return "number"
    return None


_STRING_TYPES = (str, bytes, datetime, date, time, UUID, Decimal)
_SEQUENCE_ORIGINS = {
    list: list,
    MutableSequence: list,
    Sequence: list,
    tuple: tuple,
    set: set,
    MutableSet: set,
    frozenset: frozenset,
    AbstractSet: frozenset,
}
_MAPPING_ORIGINS = (dict, Mapping, MutableMapping)


def _shape(tp: Any) -> str | None:
    """The JSON shape a union member is written as, or ``None`` if it cannot be told apart."""
    tp = _strip(tp)
    origin = get_origin(tp) or tp
    if tp is _NONE_TYPE:
        return "null"
    if tp is bool:
        return "boolean"
    if isinstance(origin, type) and issubclass(origin, Enum):
        return _enum_value_kind(origin)
    if tp in (int, float):
        return "number"
    if isinstance(tp, type) and issubclass(tp, _STRING_TYPES):
        return "string"
    if origin in _SEQUENCE_ORIGINS:
        return "array"
    if origin in _MAPPING_ORIGINS:
        return "mapping"
    if _is_class(tp):
        return "class"
    return None


# -- sequences ----------------------------------------------------------------------------------


def _is_sequence(tp: Any) -> bool:
    return (get_origin(tp) or tp) in _SEQUENCE_ORIGINS


def _detailed_items(hook: StructureHook, elem: Any, value: list[Any], tp: Any) -> list[Any]:
    """Structure every item, collecting each failure with its index (the slow, error path)."""
    errors: list[Exception] = []
    out: list[Any] = []
    for index, item in enumerate(value):
        try:
            out.append(hook(item, elem))
        except Exception as error:
            note = IterableValidationNote(f"Structuring {tp!r} @ index {index}", index, elem)
            error.__notes__ = [*getattr(error, "__notes__", []), note]
            errors.append(error)
    if errors:
        raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
    return out


def _register_collections(converter: cattrs.Converter) -> None:
    def factory(tp: Any) -> StructureHook:
        origin = get_origin(tp) or tp
        build: Callable[[Any], Any] = _SEQUENCE_ORIGINS[origin]
        args = get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return _fixed_tuple_hook(converter, tp, args)
        elem = args[0] if args else Any
        hook = converter.get_structure_hook(elem)

        def structure(value: Any, _: Any) -> Any:
            if value.__class__ is not list:
                raise _wrong("a JSON array", value)
            try:
                items = [hook(item, elem) for item in value]
            except Exception:
                items = _detailed_items(hook, elem, value, tp)
            return items if build is list else build(items)

        return structure

    converter.register_structure_hook_factory(_is_sequence, factory)


def _fixed_tuple_hook(converter: cattrs.Converter, tp: Any, args: tuple[Any, ...]) -> StructureHook:
    if args == ((),):  # tuple[()]
        args = ()
    hooks = [converter.get_structure_hook(arg) for arg in args]
    pairs = list(zip(hooks, args, strict=True))
    size = len(args)

    def structure(value: Any, _: Any) -> tuple[Any, ...]:
        if value.__class__ is not list:
            raise _wrong(f"a JSON array of {size}", value)
        if len(value) != size:
            raise ValueError(f"expected a JSON array of {size}, got {len(value)} items")
        try:
            return tuple([h(item, t) for (h, t), item in zip(pairs, value, strict=True)])
        except Exception:
            errors: list[Exception] = []
            for index, ((h, t), item) in enumerate(zip(pairs, value, strict=True)):
                try:
                    h(item, t)
                except Exception as error:
                    note = IterableValidationNote(f"Structuring {tp!r} @ index {index}", index, t)
                    error.__notes__ = [*getattr(error, "__notes__", []), note]
                    errors.append(error)
            if errors:
                raise IterableValidationError(f"While structuring {tp!r}", errors, tp) from None
            raise

    return structure


# -- mappings -----------------------------------------------------------------------------------


def _is_mapping(tp: Any) -> bool:
    return (get_origin(tp) or tp) in _MAPPING_ORIGINS


def _key_kind(key_type: Any) -> str:
    """How keys of ``key_type`` are written as JSON object keys: ``str``, ``int`` or ``any``."""
    tp = _strip(key_type)
    if tp is Any:
        return "any"
    if get_origin(tp) is Literal:
        values = get_args(tp)
        if all(type(v) is str for v in values):
            return "str"
        if all(type(v) is int for v in values):
            return "int"
    elif isinstance(tp, type):
        if issubclass(tp, Enum):
            kind = _enum_value_kind(tp)
            if kind is not None:
                return "str" if kind == "string" else "int"
        elif issubclass(tp, bool):
            pass
        elif issubclass(tp, int):
            return "int"
        elif issubclass(tp, _STRING_TYPES) and tp is not bytes:
            return "str"
    raise TypeError(
        f"dict keys of type {key_type!r} cannot be JSON object keys; use str, int, UUID, "
        "a date/time, Decimal or an enum of strings or ints"
    )


def _mapping_errors(
    value: dict[str, Any],
    key_hook: Callable[[str], Any] | None,
    key_type: Any,
    value_hook: StructureHook,
    value_type: Any,
) -> list[Exception]:
    """Every failing key and value, each noted with its key (the slow, error path)."""
    errors: list[Exception] = []
    for key, item in value.items():
        for what, tp in (("key", key_type), ("value", value_type)):
            try:
                if what == "value":
                    value_hook(item, value_type)
                elif key_hook is not None:
                    key_hook(key)
            except Exception as error:
                note = IterableValidationNote(f"Structuring mapping {what} @ key {key!r}", key, tp)
                error.__notes__ = [*getattr(error, "__notes__", []), note]
                errors.append(error)
    return errors


def _register_mappings(converter: cattrs.Converter) -> None:
    def structure_factory(tp: Any) -> StructureHook:
        args = get_args(tp)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        kind = _key_kind(key_type)
        value_hook = converter.get_structure_hook(value_type)
        raw_key_hook = converter.get_structure_hook(key_type)

        def key_hook(key: str) -> Any:
            if kind == "int":
                if _INT_KEY.fullmatch(key) is None:
                    raise _bad("an integer key", key)
                return raw_key_hook(int(key), key_type)
            return raw_key_hook(key, key_type)

        plain_keys = kind == "any" or _strip(key_type) is str

        def structure(value: Any, _: Any) -> dict[Any, Any]:
            if value.__class__ is not dict:
                raise _wrong("a JSON object", value)
            try:
                if plain_keys:
                    return {k: value_hook(v, value_type) for k, v in value.items()}
                return {key_hook(k): value_hook(v, value_type) for k, v in value.items()}
            except Exception:
                errors = _mapping_errors(
                    value, None if plain_keys else key_hook, key_type, value_hook, value_type
                )
                if not errors:
                    raise
                raise IterableValidationError(f"While structuring {tp!r}", errors, tp) from None

        return structure

    def unstructure_factory(tp: Any) -> UnstructureHook:
        args = get_args(tp)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        kind = _key_kind(key_type)
        key_hook = converter.get_unstructure_hook(key_type)
        value_hook = converter.get_unstructure_hook(value_type)
        if kind == "int":
            return lambda value: {str(key_hook(k)): value_hook(v) for k, v in value.items()}
        return lambda value: {key_hook(k): value_hook(v) for k, v in value.items()}

    converter.register_structure_hook_factory(_is_mapping, structure_factory)
    converter.register_unstructure_hook_factory(_is_mapping, unstructure_factory)


# -- unions -------------------------------------------------------------------------------------


def _is_general_union(tp: Any) -> bool:
    """A union that is not just ``Optional[X]`` (cattrs handles that one well)."""
    if not _is_union(tp):
        return False
    args = get_args(tp)
    return not (len(args) == 2 and _NONE_TYPE in args)


def _class_members(tp: Any) -> list[Any]:
    return [arg for arg in get_args(tp) if _is_class(_strip(arg))]


def _tags(classes: list[Any]) -> dict[str, Any]:
    """Tag -> class for the classes of one union: the class name, or its full name if shared."""
    names = [(get_origin(cls) or cls).__name__ for cls in classes]
    tags: dict[str, Any] = {}
    for cls, name in zip(classes, names, strict=True):
        origin = get_origin(cls) or cls
        tag = name if names.count(name) == 1 else f"{origin.__module__}.{origin.__qualname__}"
        if TAG_KEY in {field.name for field in _fields_of(origin)}:
            raise TypeError(
                f"{origin.__qualname__} has a field named {TAG_KEY!r}, which is the tag key "
                "of unions of classes; rename the field or avoid the union"
            )
        tags[tag] = cls
    return tags


def _fields_of(cls: type[Any]) -> tuple[Any, ...]:
    if attrs.has(cls):
        return tuple(attrs.fields(cls))
    return tuple(dataclasses.fields(cls))


def _type_name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


def _plan_union(tp: Any) -> tuple[dict[tuple[type[Any], Any], Any], dict[str, list[Any]]]:
    """The literal values of union ``tp`` (by their JSON value) and its other members by shape.

    Raises ``TypeError`` when two members would be written as the same kind of JSON value.
    """
    literals: dict[tuple[type[Any], Any], Any] = {}
    by_shape: dict[str, list[Any]] = {}
    for arg in get_args(tp):
        stripped = _strip(arg)
        if get_origin(stripped) is Literal:
            for value in get_args(stripped):
                wire = value.value if isinstance(value, Enum) else value
                literals[(type(wire), wire)] = value
            continue
        shape = _shape(stripped)
        if shape is None:
            raise TypeError(f"unsupported union member {arg!r} in {tp!r}")
        by_shape.setdefault(shape, []).append(arg)
    for shape, members in by_shape.items():
        if shape == "number":
            members = [m for m in members if _strip(m) is not float]  # noqa: PLW2901
        if len(members) > 1 and shape != "class":
            raise TypeError(
                f"cannot tell apart {' and '.join(map(_type_name, members))} in {tp!r}: they are "
                f"all written as a JSON {shape}"
            )
    if "class" in by_shape and "mapping" in by_shape:
        raise TypeError(f"cannot tell apart a class and a dict in {tp!r}: both are JSON objects")
    return literals, by_shape


def _union_handlers(
    converter: cattrs.Converter, by_shape: dict[str, list[Any]]
) -> dict[type[Any], Callable[[Any], Any]]:
    """For each class of decoded JSON value, the function structuring it as its union member."""

    def hook_for(member: Any) -> Callable[[Any], Any]:
        hook = converter.get_structure_hook(member)
        return lambda value: hook(value, member)

    handlers: dict[type[Any], Callable[[Any], Any]] = {}
    if "null" in by_shape:
        handlers[_NONE_TYPE] = lambda value: None
    numbers = by_shape.get("number", [])
    float_member = next((m for m in numbers if _strip(m) is float), None)
    int_member = next((m for m in numbers if m is not float_member), float_member)
    if float_member is not None:
        handlers[float] = hook_for(float_member)
    if int_member is not None:
        handlers[int] = hook_for(int_member)
        if "boolean" not in by_shape and _strip(int_member) is int:
            handlers[bool] = handlers[int]  # True is an int too (see _structure_int)
    for shape, json_class in (
        ("boolean", bool),
        ("string", str),
        ("array", list),
        ("mapping", dict),
    ):
        if shape in by_shape:
            handlers[json_class] = hook_for(by_shape[shape][0])
    classes = by_shape.get("class", [])
    if len(classes) == 1:
        handlers[dict] = hook_for(classes[0])
    elif classes:
        by_tag = {tag: hook_for(cls) for tag, cls in _tags(classes).items()}
        expected_tags = ", ".join(repr(tag) for tag in by_tag)

        def structure_tagged(value: dict[str, Any]) -> Any:
            tag = value.get(TAG_KEY)
            hook = by_tag.get(tag) if tag.__class__ is str else None
            if hook is None:
                got = "missing" if tag is None else f"{tag!r}"
                raise ValueError(
                    f"the union tag {TAG_KEY!r} is {got}; expected one of {expected_tags}"
                )
            return hook(value)

        handlers[dict] = structure_tagged
    return handlers


def _union_structure_factory(converter: cattrs.Converter) -> Callable[[Any], StructureHook]:
    def factory(tp: Any) -> StructureHook:
        literals, by_shape = _plan_union(tp)
        handlers = _union_handlers(converter, by_shape)
        expected = " or ".join(
            sorted({_SHAPE_NAMES[s] for s in by_shape} | {repr(w) for _, w in literals})
        )

        def structure(value: Any, _: Any) -> Any:
            cls = value.__class__
            if literals and cls in _HASHABLE:
                found = literals.get((cls, value), _MISSING)
                if found is not _MISSING:
                    return found
            handler = handlers.get(cls)
            if handler is None:
                raise _wrong(expected, value)
            return handler(value)

        return structure

    return factory


_MISSING = object()
_HASHABLE = (str, int, float, bool, _NONE_TYPE)
_SHAPE_NAMES = {
    "null": "null",
    "boolean": "a boolean",
    "number": "a number",
    "string": "a string",
    "array": "an array",
    "mapping": "an object",
    "class": "an object",
}


def _union_unstructure_factory(converter: cattrs.Converter) -> Callable[[Any], UnstructureHook]:
    def factory(tp: Any) -> UnstructureHook:
        tagged = {
            get_origin(cls) or cls: (tag, converter.get_unstructure_hook(cls))
            for tag, cls in _tags(_class_members(tp)).items()
        }
        members = tuple(tagged)

        def unstructure(value: Any) -> Any:
            entry = tagged.get(value.__class__)
            if entry is None:
                # A subclass of a member is written as that member (the declared type).
                base = next((m for m in members if isinstance(value, m)), None)
                if base is None:
                    return converter.unstructure(value)
                entry = tagged[base]
            tag, hook = entry
            data = hook(value)
            data[TAG_KEY] = tag
            return data

        return unstructure

    return factory


def _register_unions(converter: cattrs.Converter) -> None:
    converter.register_structure_hook_factory(
        _is_general_union, _union_structure_factory(converter)
    )
    # Only unions holding several classes need a tag; the others are written by the value's
    # own class, which cattrs already does.
    converter.register_unstructure_hook_factory(
        lambda tp: _is_general_union(tp) and len(_class_members(tp)) > 1,
        _union_unstructure_factory(converter),
    )


# -- attrs classes and dataclasses ---------------------------------------------------------------


def _register_classes(converter: cattrs.Converter, style: FieldNameStyle) -> None:
    def renames(tp: Any) -> dict[str, Any]:
        origin = get_origin(tp) or tp
        if attrs.has(origin):
            attrs.resolve_types(origin)  # string annotations (PEP 563)
        # Stamps keep their Python field names unless their class asks: their wire form is
        # the serializer's, not the application's.
        default = "as_is" if isinstance(origin, type) and issubclass(origin, Stamp) else style
        wire = wire_names(origin, field_style_of(origin) or default)
        return {name: override(rename=renamed) for name, renamed in wire.items()}

    def factory(tp: Any) -> StructureHook:
        overrides = renames(tp)
        # Two versions: the fast one runs on every message; the detailed one only runs when the
        # fast one failed, to say which field was wrong.
        fast = make_dict_structure_fn(tp, converter, _cattrs_detailed_validation=False, **overrides)
        detailed = make_dict_structure_fn(
            tp, converter, _cattrs_detailed_validation=True, **overrides
        )

        def structure(value: Any, cls: Any) -> Any:
            if value.__class__ is not dict:
                raise _wrong("a JSON object", value)
            try:
                return fast(value, cls)
            except Exception:
                return detailed(value, cls)

        return structure

    def unstructure_factory(tp: Any) -> UnstructureHook:
        return make_dict_unstructure_fn(tp, converter, **renames(tp))

    converter.register_structure_hook_factory(_is_class, factory)
    converter.register_unstructure_hook_factory(_is_class, unstructure_factory)
