"""Helpers for transport plugins to validate their options.

A transport factory merges its options once, ``dsn.with_options(options)`` (the DSN's query
string overridden by the configuration's): a value is a string when it came from the DSN and a
typed value (``bool``, ``int``, ``float``, ``str``) when it came from TOML or a dict. Each
helper here accepts both forms and returns the typed value, or raises
:class:`~messenger_core.errors.ConfigurationError` naming the option, what it must be and what
it got::

    from messenger_core.transport_options import (
        parse_bool, parse_int, parse_seconds, reject_unknown_options,
    )

    def create(self, dsn, options, serializer):
        merged = dsn.with_options(options)
        reject_unknown_options(merged, ("auto_setup", "fetch_size"), transport="example", dsn=dsn)
        auto_setup = parse_bool("auto_setup", merged.get("auto_setup", True))
        fetch_size = parse_int("fetch_size", merged.get("fetch_size", 1), minimum=1)

``bool`` is a subclass of ``int`` in Python; the numeric helpers refuse it all the same
(``fetch_size = true`` is a mistake, not ``1``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from messenger_core._suggest import close_matches
from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "parse_bool",
    "parse_int",
    "parse_milliseconds",
    "parse_number",
    "parse_seconds",
    "reject_unknown_options",
]

TRUE_WORDS: frozenset[str] = frozenset({"1", "true", "yes", "on"})
"""Strings :func:`parse_bool` reads as ``True`` (compared case-insensitively)."""
FALSE_WORDS: frozenset[str] = frozenset({"0", "false", "no", "off"})
"""Strings :func:`parse_bool` reads as ``False`` (compared case-insensitively)."""


def parse_bool(name: str, value: Any) -> bool:
    """Option ``name`` as a boolean.

    Accepts a ``bool``, the integers ``0`` and ``1``, and the strings of :data:`TRUE_WORDS`
    and :data:`FALSE_WORDS` in any case, surrounded by whitespace or not.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    elif isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(
        f"option {name!r} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}"
    )


def parse_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Option ``name`` as an integer from ``minimum`` to ``maximum`` (both included; ``None``:
    no bound).

    Accepts an ``int``, a ``float`` without a fractional part (TOML writes ``2.0``), and a
    string of digits (``"100"``).
    """
    number = _number(value, integer=True)
    if number is not None and _in_bounds(number, minimum, maximum):
        return int(number)
    raise ConfigurationError(
        f"option {name!r} must be {_bounded('an integer', minimum, maximum)}, got {value!r}"
    )


def parse_number(
    name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """Option ``name`` as a finite number from ``minimum`` to ``maximum`` (both included;
    ``None``: no bound).

    Accepts an ``int``, a ``float`` and a string ``float()`` reads (``"1.5"``, ``"2e3"``);
    refuses NaN and infinities.
    """
    number = _number(value, integer=False)
    if number is not None and _in_bounds(number, minimum, maximum):
        return float(number)
    raise ConfigurationError(
        f"option {name!r} must be {_bounded('a number', minimum, maximum)}, got {value!r}"
    )


def parse_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Option ``name`` as a duration in seconds: a finite number above 0 (or from 0 with
    ``allow_zero``), possibly fractional (``"0.5"``)."""
    seconds = _number(value, integer=False)
    if seconds is not None and (seconds > 0 or (allow_zero and seconds == 0)):
        return float(seconds)
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigurationError(f"option {name!r} must be a number of seconds {bound}, got {value!r}")


def parse_milliseconds(name: str, value: Any, *, minimum: int = 0) -> int:
    """Option ``name`` as a whole number of milliseconds, at least ``minimum``.

    Accepts what :func:`parse_int` accepts.
    """
    number = _number(value, integer=True)
    if number is not None and number >= minimum:
        return int(number)
    raise ConfigurationError(
        f"option {name!r} must be a whole number of milliseconds >= {minimum}, got {value!r}"
    )


def reject_unknown_options(
    options: Iterable[str],
    known: Sequence[str],
    *,
    transport: str = "",
    dsn: Dsn | None = None,
    subject: str | None = None,
) -> None:
    """Raise :class:`ConfigurationError` if ``options`` (names) holds a name not in ``known``.

    The message names every unknown option (with the closest known name when one is close
    enough to be a typo), the ``transport`` (a label such as ``"Redis"``: "for the Redis
    transport"), the DSN if given (its password masked), and lists the known options in the
    order of ``known``. Options of something else than a transport name it as ``subject``
    instead (``"the sql_transaction middleware"``).
    """
    known_names = set(known)
    unknown = list(dict.fromkeys(name for name in options if name not in known_names))
    if not unknown:
        return
    described = []
    for name in unknown:
        close = close_matches(name, known)
        described.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    where = subject or f"the {transport} transport" + (f" {dsn}" if dsn is not None else "")
    raise ConfigurationError(
        f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(described)} for {where}; "
        f"known options: {', '.join(known) if known else '(none)'}"
    )


def _number(value: Any, *, integer: bool) -> int | float | None:
    """``value`` as a finite number (an ``int`` if ``integer``), or ``None`` if it is none.

    ``bool`` is not a number here; a float given for an integer must be whole.
    """
    number: int | float
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if isinstance(number, int):
        if integer:
            return number
        try:
            return float(number)
        except OverflowError:  # an integer beyond any float
            return None
    if not math.isfinite(number) or (integer and not number.is_integer()):
        return None
    return int(number) if integer else number


def _in_bounds(number: float, minimum: float | None, maximum: float | None) -> bool:
    return (minimum is None or number >= minimum) and (maximum is None or number <= maximum)


def _bounded(kind: str, minimum: float | None, maximum: float | None) -> str:
    """``kind`` with its bounds in words: "an integer from 1 to 10000", "a number >= 0"."""
    if minimum is not None and maximum is not None:
        return f"{kind} from {_text(minimum)} to {_text(maximum)}"
    if minimum is not None:
        return f"{kind} >= {_text(minimum)}"
    if maximum is not None:
        return f"{kind} <= {_text(maximum)}"
    return kind


def _text(bound: float) -> str:
    """A bound as people write it: ``10000``, ``0.5`` (not ``1e+04`` or ``0.0``)."""
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return str(bound)
