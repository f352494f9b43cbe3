"""The option helpers transport plugins share: typed values from DSN strings or configuration."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.transport_options import (
    FALSE_WORDS,
    TRUE_WORDS,
    parse_bool,
    parse_int,
    parse_milliseconds,
    parse_number,
    parse_seconds,
    reject_unknown_options,
)


def error_of(function: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigurationError) as raised:
        function(*args, **kwargs)
    return str(raised.value)


# -- booleans ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" Yes ", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
        ("0", False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_booleans_in_every_usual_spelling(value: Any, expected: bool) -> None:
    assert parse_bool("auto_setup", value) is expected


def test_the_boolean_words_are_disjoint() -> None:
    assert TRUE_WORDS.isdisjoint(FALSE_WORDS)
    assert {"true", "yes", "on", "1"} <= TRUE_WORDS


@pytest.mark.parametrize("value", ["maybe", "", "2", "truee", 2, -1, 1.0, None, [True]])
def test_anything_else_is_not_a_boolean(value: Any) -> None:
    message = error_of(parse_bool, "auto_setup", value)
    assert message == (
        f"option 'auto_setup' must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}"
    )


# -- integers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10", 10),
        (" 7 ", 7),
        ("0", 0),
        (3, 3),
        (4.0, 4),
        ("12345678901234567890", 12345678901234567890),
    ],
)
def test_integers_from_strings_and_typed_values(value: Any, expected: int) -> None:
    result = parse_int("fetch_size", value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", ["ten", "1.5", "", 2.5, True, False, None, math.nan, math.inf])
def test_anything_else_is_not_an_integer(value: Any) -> None:
    assert error_of(parse_int, "fetch_size", value) == (
        f"option 'fetch_size' must be an integer, got {value!r}"
    )


@pytest.mark.parametrize(
    ("bounds", "value", "wording"),
    [
        ({"minimum": 1}, "0", "an integer >= 1"),
        ({"maximum": 5}, 6, "an integer <= 5"),
        ({"minimum": 1, "maximum": 10_000}, 100_000, "an integer from 1 to 10000"),
        ({"minimum": 1, "maximum": 10_000}, "0", "an integer from 1 to 10000"),
        ({"minimum": 1, "maximum": 10_000}, "x", "an integer from 1 to 10000"),
    ],
)
def test_integers_out_of_bounds_are_refused_with_the_bounds(
    bounds: dict[str, int], value: Any, wording: str
) -> None:
    assert error_of(parse_int, "fetch_size", value, **bounds) == (
        f"option 'fetch_size' must be {wording}, got {value!r}"
    )


def test_integer_bounds_are_inclusive() -> None:
    assert parse_int("fetch_size", "1", minimum=1, maximum=10) == 1
    assert parse_int("fetch_size", 10, minimum=1, maximum=10) == 10


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_any_integer_survives_the_dsn_string(number: int) -> None:
    assert parse_int("n", str(number)) == number


# -- numbers -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"), [("1.5", 1.5), ("2e3", 2000.0), (" 3 ", 3.0), (4, 4.0), (0.25, 0.25)]
)
def test_numbers_from_strings_and_typed_values(value: Any, expected: float) -> None:
    result = parse_number("ratio", value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize("value", ["soon", "", "nan", "inf", "-inf", math.nan, True, None, 10**400])
def test_anything_else_is_not_a_number(value: Any) -> None:
    assert error_of(parse_number, "ratio", value) == (
        f"option 'ratio' must be a number, got {value!r}"
    )


def test_numbers_out_of_bounds_are_refused_with_the_bounds() -> None:
    assert parse_number("ratio", "0.5", minimum=0, maximum=1) == 0.5
    assert error_of(parse_number, "ratio", "1.5", minimum=0, maximum=1) == (
        "option 'ratio' must be a number from 0 to 1, got '1.5'"
    )
    assert error_of(parse_number, "ratio", -0.5, minimum=0.0) == (
        "option 'ratio' must be a number >= 0, got -0.5"
    )
    assert error_of(parse_number, "ratio", 1.0, maximum=0.5) == (
        "option 'ratio' must be a number <= 0.5, got 1.0"
    )


# -- durations ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"), [("1.5", 1.5), ("3600", 3600.0), (30, 30.0), (0.01, 0.01)]
)
def test_seconds_from_strings_and_typed_values(value: Any, expected: float) -> None:
    result = parse_seconds("redeliver_timeout", value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", 0, -0.5, True, None])
def test_seconds_must_be_positive_and_finite(value: Any) -> None:
    assert error_of(parse_seconds, "redeliver_timeout", value) == (
        f"option 'redeliver_timeout' must be a number of seconds > 0, got {value!r}"
    )


def test_zero_seconds_when_allowed() -> None:
    assert parse_seconds("reconnect_timeout", "0", allow_zero=True) == 0.0
    assert error_of(parse_seconds, "reconnect_timeout", "-1", allow_zero=True) == (
        "option 'reconnect_timeout' must be a number of seconds >= 0, got '-1'"
    )


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("60000", 60_000), (250, 250), (5.0, 5)])
def test_milliseconds_are_whole_numbers(value: Any, expected: int) -> None:
    result = parse_milliseconds("claim_interval", value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", ["-5", "1.5", 2.5, "soon", True, None])
def test_anything_else_is_not_a_number_of_milliseconds(value: Any) -> None:
    assert error_of(parse_milliseconds, "claim_interval", value) == (
        f"option 'claim_interval' must be a whole number of milliseconds >= 0, got {value!r}"
    )


def test_milliseconds_with_a_minimum() -> None:
    assert parse_milliseconds("interval", "10", minimum=10) == 10
    assert "milliseconds >= 10, got '9'" in error_of(
        parse_milliseconds, "interval", "9", minimum=10
    )


# -- unknown options ---------------------------------------------------------------------------
KNOWN = ("stream", "fetch_size", "redeliver_timeout")


def test_known_options_pass() -> None:
    reject_unknown_options({"stream": "jobs", "fetch_size": "10"}, KNOWN, transport="Redis")
    reject_unknown_options({}, KNOWN, transport="Redis")


def test_an_unknown_option_is_named_with_a_suggestion_and_the_known_ones() -> None:
    message = error_of(reject_unknown_options, {"fetch_sise": "10"}, KNOWN, transport="Redis")
    assert message == (
        "unknown option 'fetch_sise' (did you mean 'fetch_size'?) for the Redis transport; "
        "known options: stream, fetch_size, redeliver_timeout"
    )


def test_no_suggestion_when_nothing_is_close() -> None:
    message = error_of(reject_unknown_options, ["colour"], KNOWN, transport="example")
    assert message.startswith("unknown option 'colour' for the example transport;")
    assert "did you mean" not in message


def test_every_unknown_option_is_named_once_in_the_order_given() -> None:
    message = error_of(
        reject_unknown_options, ["colour", "strem", "stream", "colour"], KNOWN, transport="memory"
    )
    assert message.startswith(
        "unknown options 'colour', 'strem' (did you mean 'stream'?) for the memory transport;"
    )


def test_the_dsn_is_named_with_its_password_masked() -> None:
    dsn = Dsn.parse("redis://user:s3cret@cache.example:6380/jobs?fetch_sise=10")
    message = error_of(reject_unknown_options, dsn.options, KNOWN, transport="Redis", dsn=dsn)
    assert "s3cret" not in message
    assert (
        "for the Redis transport redis://user:***@cache.example:6380/jobs?fetch_sise=10;" in message
    )


def test_a_transport_without_options_says_so() -> None:
    message = error_of(reject_unknown_options, ["x"], (), transport="sync")
    assert message == "unknown option 'x' for the sync transport; known options: (none)"
