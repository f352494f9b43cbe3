"""Options written with brackets (``exchange[name]``, ``queues[q][binding_keys][]``), as PHP's
``parse_str`` reads a DSN's query, turned into nested dictionaries.

A configuration gives the same options nested already (TOML tables); both forms may be mixed,
and a later key wins over an earlier one, so that configuration options (merged after the
DSN's query) win.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from messenger_core.errors import ConfigurationError

__all__ = ["nest", "as_list"]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def nest(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with bracketed names expanded into nested dictionaries, merged in order."""
    nested: dict[str, Any] = {}
    for key, value in options.items():
        match = _KEY.match(key)
        if match is None:
            raise ConfigurationError(f"malformed option name {key!r}")
        path = [match.group(1), *_PART.findall(match.group(2))]
        _put(nested, path, value, key)
    return nested


def _put(target: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    head, rest = path[0], path[1:]
    if not rest:
        if isinstance(value, Mapping) and isinstance(target.get(head), dict):
            for name, each in value.items():
                _put(target[head], [str(name)], each, key)
        else:
            target[head] = dict(value) if isinstance(value, Mapping) else value
        return
    child = target.get(head)
    if not isinstance(child, dict):
        child = target[head] = {} if child is None else _as_dict(child, key)
    if rest[0] == "":  # name[] appends, as in PHP
        rest = [str(len(child)), *rest[1:]]
    _put(child, rest, value, key)


def _as_dict(value: Any, key: str) -> dict[str, Any]:
    if isinstance(value, list | tuple):
        return {str(index): each for index, each in enumerate(value)}
    raise ConfigurationError(f"option {key!r} nests under a value that is not a table: {value!r}")


def as_list(name: str, value: Any) -> list[Any]:
    """A list option given as a list, a table of indexes (``name[0]=a&name[1]=b``) or, for one
    item, a plain value."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping):
        return [value[key] for key in sorted(value, key=_index(name))]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [value]
    raise ConfigurationError(f"option {name!r} must be a list, got {value!r}")


def _index(name: str) -> Any:
    def key(text: Any) -> tuple[int, str]:
        text = str(text)
        return (int(text), "") if text.isdigit() else (1 << 62, text)

    return key
