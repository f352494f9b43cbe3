"""JSON text for the ``json`` serializer: the standard library, or orjson when it is installed.

Two backends with one meaning (tested to agree, ``tests/test_json_backends.py``):

- ``json``: the standard library through its documented API only.
- ``orjson`` (the ``messenger-core[fast]`` extra) writes JSON about four times faster than the
  standard library. Where it would write something else, the standard library writes instead:
  orjson writes NaN and infinities as ``null`` (so output holding ``null`` is written again by
  ``json``, which refuses them), and refuses integers beyond 64 bits, JSON nested deeper than it
  supports and lone surrogates (every failure is written again by ``json``, which writes the
  value or raises its own error). The text is the same but for how a float's exponent is
  spelled (``1e-07`` against ``1e-7``): the same value. Reading stays with the standard
  library: orjson reads integers beyond 64 bits as floats, and guarding against that costs
  more than orjson saves on a message-sized document.

The backend is orjson if it can be imported, unless the environment variable
``MESSENGER_JSON_BACKEND`` is ``json``; :data:`BACKEND` names the one in use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = ["BACKEND", "JSON", "ORJSON", "JsonText", "backend"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # ``1e999`` is valid JSON but reads as an infinity, which cannot be written again: refuse it
    # here, or the message could be neither retried nor parked.
    value = float(text)
    if value - value != 0.0:
        raise ValueError(f"the number {text[:40]} is out of the range of a float")
    return value


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@attrs.frozen
class JsonText:
    """One backend: compact JSON with non-ASCII characters kept, NaN and infinities refused."""

    name: str
    dumps: Callable[[Any], str]
    """The JSON text of a value; ``TypeError``/``ValueError`` if it has none."""
    dumps_bytes: Callable[[Any], bytes]
    """The same as UTF-8 bytes (``UnicodeEncodeError`` for a lone surrogate)."""
    loads: Callable[[str], Any]
    """The value of a JSON document; ``ValueError`` (a ``JSONDecodeError``) if it is not one.
    A number out of the range of a float is refused; so is a NaN or infinity literal."""


_encode = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    allow_nan=False,
    check_circular=False,
    default=_not_serializable,
).encode
_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_raw_decode = _decoder.raw_decode


def _json_dumps_bytes(value: Any) -> bytes:
    return _encode(value).encode()


def _json_loads(text: str) -> Any:
    try:
        # ``raw_decode`` skips the two regular expressions ``decode`` runs around the scanner.
        value, end = _raw_decode(text)
    except ValueError:
        pass  # let ``decode`` explain (or skip leading whitespace)
    else:
        if end == len(text):
            return value
    return _decoder.decode(text)


JSON: Final = JsonText("json", _encode, _json_dumps_bytes, _json_loads)
"""The standard library's ``json``."""


def _orjson() -> JsonText | None:
    try:
        import orjson  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 - the fast extra
    except ImportError:
        return None
    orjson_dumps, encode_error = orjson.dumps, orjson.JSONEncodeError
    # datetimes and dataclasses go to ``default`` (none: an error), so that ``json`` refuses
    # them as it would, instead of orjson writing them.
    option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def dumps_bytes(value: Any) -> bytes:
        try:
            # Typed here: without orjson installed, mypy sees the module as Any.
            data: bytes = orjson_dumps(value, option=option)
        except encode_error:
            return _json_dumps_bytes(value)  # writes it, or raises its own error
        if b"null" in data:  # maybe a NaN or an infinity, which ``json`` refuses
            return _json_dumps_bytes(value)
        return data

    def dumps(value: Any) -> str:
        try:
            data: bytes = orjson_dumps(value, option=option)
        except encode_error:
            return _encode(value)
        if b"null" in data:
            return _encode(value)
        return data.decode()

    return JsonText("orjson", dumps, dumps_bytes, _json_loads)


ORJSON: Final = _orjson()
"""orjson, or ``None`` if it is not installed."""


def backend() -> JsonText:
    """The backend to use: orjson if installed, unless ``MESSENGER_JSON_BACKEND=json``."""
    wanted = os.environ.get("MESSENGER_JSON_BACKEND", "").strip().lower()
    if wanted not in ("", "json", "orjson"):
        raise ValueError(
            f"MESSENGER_JSON_BACKEND is {wanted!r}: set it to 'json', 'orjson' or nothing"
        )
    if wanted == "json" or (ORJSON is None and not wanted):
        return JSON
    if ORJSON is None:
        raise ValueError(
            "MESSENGER_JSON_BACKEND is 'orjson' but orjson is not installed: install "
            "messenger-core[fast], or unset the variable"
        )
    return ORJSON


BACKEND: Final = backend().name
"""The name of the backend in use (``"orjson"`` or ``"json"``)."""
