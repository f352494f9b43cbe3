"""The ``json`` serializer's two JSON backends (standard library, orjson) mean the same.

Whatever one accepts the other accepts with the same value; whatever one refuses the other
refuses; what one writes the other reads back; the text is the same but for the spelling of
floats. So a message written with one is read by a process using the other.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from json_backends import backend_named

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization import _json_text
from messenger_core.serialization import json as json_serialization
from messenger_core.serialization.json import JsonSerializer
from messenger_core.stamps import BusNameStamp, RedeliveryStamp

FUZZ = settings(max_examples=400, deadline=None)

STD = _json_text.JSON


def _orjson() -> _json_text.JsonText:
    return backend_named("orjson")


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (``1 == 1.0`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def _outcome(function: Any, argument: Any) -> tuple[str, Any]:
    try:
        return "ok", function(argument)
    except (TypeError, ValueError, RecursionError) as error:
        return "error", type(error)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(value=values)
@example(value=float("nan"))
@example(value=[float("inf"), None])
@example(value=2**64)
@example(value={"k": -(2**63) - 1})
@example(value="\ud800")
@example(value=1e-7)
@example(value=[[[[]]]] * 3)
def test_both_backends_write_the_same_json(value: Any) -> None:
    fast = _orjson()
    std_outcome, fast_outcome = _outcome(STD.dumps_bytes, value), _outcome(fast.dumps_bytes, value)
    assert std_outcome[0] == fast_outcome[0], (std_outcome, fast_outcome)
    if std_outcome[0] == "error":
        assert std_outcome == fast_outcome  # the same error: the standard library's
        return
    std_text, fast_text = std_outcome[1], fast_outcome[1]
    assert _same(json.loads(std_text), json.loads(fast_text))
    assert _same(STD.loads(fast_text.decode()), fast.loads(std_text.decode()))
    if "e-" not in std_text.decode() and "e+" not in std_text.decode():
        assert std_text == fast_text  # only a float's exponent may be spelled otherwise
    assert fast.dumps(value) == fast_text.decode()
    assert STD.dumps(value) == std_text.decode()


json_texts = st.one_of(
    values.map(lambda value: json.dumps(value, ensure_ascii=False)),
    values.map(json.dumps),
    st.text(max_size=40),
    st.text(alphabet='[]{}",:0123456789.eE+-tfnrul \\', max_size=40),
    st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)


@FUZZ
@given(text=json_texts)
@example(text="1e999")
@example(text="123456789012345678901234567890")
@example(text="-9223372036854775809")
@example(text="18446744073709551616")
@example(text='"\\ud800"')
@example(text="NaN")
@example(text=" [1] ")
@example(text="[" * 2000 + "]" * 2000)
@example(text="\ufeff1")
def test_both_backends_read_the_same_json(text: str) -> None:
    fast = _orjson()
    std_outcome, fast_outcome = _outcome(STD.loads, text), _outcome(fast.loads, text)
    assert std_outcome[0] == fast_outcome[0], (std_outcome, fast_outcome)
    if std_outcome[0] == "ok":
        assert _same(std_outcome[1], fast_outcome[1])
    else:
        assert std_outcome == fast_outcome


def test_a_refused_text_gets_the_standard_librarys_error_from_both() -> None:
    for backend in (STD, _orjson()):
        with pytest.raises(json.JSONDecodeError, match="Expecting value: line 1 column 1"):
            backend.loads("nope")
        with pytest.raises(ValueError, match="out of the range of a float"):
            backend.loads("[1e999]")
        with pytest.raises(ValueError, match="NaN is not valid JSON"):
            backend.loads("NaN")
        with pytest.raises(ValueError, match="Out of range float values are not JSON"):
            backend.dumps_bytes({"x": float("nan")})
        with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
            backend.dumps_bytes({1, 2})


@attrs.frozen
class Order:
    id: int
    customer: str
    total: float
    lines: tuple[str, ...]
    note: str | None = None


def _serializer() -> JsonSerializer:
    registry = MessageTypeRegistry()
    registry.register(Order, "tests.Order")
    return JsonSerializer(registry)


@FUZZ
@given(
    order=st.builds(
        Order,
        st.integers(),
        st.text(st.characters(exclude_categories=["Cs"])),
        st.floats(allow_nan=False, allow_infinity=False),
        st.lists(st.text(max_size=5), max_size=3).map(tuple),
        st.none() | st.text(max_size=5),
    ),
    retries=st.integers(min_value=0, max_value=2**70),
)
def test_a_message_written_with_one_backend_is_read_with_the_other(
    order: Order, retries: int
) -> None:
    envelope = Envelope(order, (BusNameStamp(bus_name="bus"), RedeliveryStamp(retry_count=retries)))
    serializer = _serializer()
    fast = _orjson()
    saved = (json_serialization._dumps, json_serialization._dumps_bytes, json_serialization._loads)
    try:
        for writer, reader in ((STD, fast), (fast, STD)):
            json_serialization._dumps, json_serialization._dumps_bytes = (
                writer.dumps,
                writer.dumps_bytes,
            )
            message = serializer.encode(envelope)
            json_serialization._loads = reader.loads
            assert serializer.decode(message) == envelope
    finally:
        json_serialization._dumps, json_serialization._dumps_bytes, json_serialization._loads = (
            saved
        )


@pytest.mark.parametrize(("wanted", "expected"), [("json", "json"), ("orjson", "orjson")])
def test_the_backend_is_chosen_by_the_environment(wanted: str, expected: str) -> None:
    if expected == "orjson":
        _orjson()  # skips without orjson
    code = "from messenger_core.serialization.json import JSON_BACKEND; print(JSON_BACKEND)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"MESSENGER_JSON_BACKEND": wanted, "PATH": ""},
    )
    assert result.stdout.strip() == expected


def test_an_unknown_backend_name_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSENGER_JSON_BACKEND", "simdjson")
    with pytest.raises(ValueError, match="set it to 'json', 'orjson' or nothing"):
        _json_text.backend()


def test_orjson_is_the_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESSENGER_JSON_BACKEND", raising=False)
    expected = "json" if _json_text.ORJSON is None else "orjson"
    assert _json_text.backend().name == expected


def test_without_orjson_the_standard_library_serves() -> None:
    """The ``fast`` extra is optional: with orjson missing the serializer works on ``json``."""
    code = (
        "import sys\n"
        "sys.modules['orjson'] = None  # an import of it fails, as if not installed\n"
        "import attrs\n"
        "from messenger_core.envelope import Envelope\n"
        "from messenger_core.message_types import MessageTypeRegistry\n"
        "from messenger_core.serialization import _json_text\n"
        "from messenger_core.serialization.json import JSON_BACKEND, JsonSerializer\n"
        "from messenger_core.wire import headers_json\n"
        "@attrs.frozen\n"
        "class Ping:\n"
        "    n: float\n"
        "registry = MessageTypeRegistry()\n"
        "registry.register(Ping, 'ping')\n"
        "serializer = JsonSerializer(registry)\n"
        "message = serializer.encode(Envelope(Ping(1e-7)))\n"
        "assert serializer.decode(message).message == Ping(1e-7)\n"
        "assert headers_json({'a': '✓'}) == '{\"a\":\"✓\"}'\n"
        "print(JSON_BACKEND, _json_text.ORJSON, message.body.decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["json", "None", '{"n":1e-07}']
