"""The core's stamps under Symfony Messenger's class and property names, both ways.

Symfony's Serializer-based JSON serializer writes each stamp class as one
``X-Message-Stamp-<PHP class>`` header holding a JSON array of the stamps, each an object of the
stamp's getter names. Symfony refuses a whole message (and deletes it) when one such header
names a class it does not have, so only the stamps below are written under Symfony names; the
core's other sendable stamps travel in headers Symfony ignores (see :mod:`.serializer`).

The mapping, core stamp to Symfony stamp (Symfony 5.4 to 7.x read all of them):

==============================  =================================================================
``BusNameStamp``                ``BusNameStamp {busName}``
``DelayStamp``                  ``DelayStamp {delay}`` (milliseconds)
``RedeliveryStamp``             ``RedeliveryStamp {retryCount, redeliveredAt}``
``ErrorDetailsStamp``           ``ErrorDetailsStamp {exceptionClass, exceptionCode,
                                exceptionMessage, flattenException}``; the Python traceback is the
                                flattened exception's ``trace`` (its frames) and
                                ``trace_as_string``
``SentToFailureTransportStamp`` ``SentToFailureTransportStamp {originalReceiverName}``
``HandledByStamp``              ``HandledStamp {result: null, handlerName}``: Symfony's own record
                                of the handlers that already ran, which its retries carry too
==============================  =================================================================

Symfony's ``TransportMessageIdStamp`` is read and dropped: it is the id a transport gave the
message on an earlier delivery, and the receiver adds the current one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from messenger_core.stamps import (
    BusNameStamp,
    DelayStamp,
    ErrorDetailsStamp,
    HandledByStamp,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    Stamp,
)

__all__ = [
    "DROPPED_STAMPS",
    "SYMFONY_STAMP_NAMESPACE",
    "StampMapping",
    "symfony_name_of",
    "to_core",
    "to_symfony",
]

SYMFONY_STAMP_NAMESPACE: Final = "Symfony\\Component\\Messenger\\Stamp\\"

# PHP's FlattenException says this when it has no HTTP status text of its own.
_STATUS_TEXT: Final = "Whoops, looks like something went wrong."


class StampMapping:
    """How one core stamp class is written as a Symfony stamp and read back."""

    __slots__ = ("core", "read", "symfony", "write")

    def __init__(
        self,
        core: type[Stamp],
        symfony: str,
        write: Callable[[Any], dict[str, Any]],
        read: Callable[[Mapping[str, Any]], Stamp],
    ) -> None:
        self.core = core
        self.symfony = SYMFONY_STAMP_NAMESPACE + symfony
        self.write = write
        self.read = read


# -- values -----------------------------------------------------------------------------------


def _php_datetime(value: datetime | None) -> str | None:
    """RFC 3339 without fractions, as Symfony's DateTimeNormalizer writes and reads by default."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def _read_datetime(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected a date string, got {type(value).__name__}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: not an RFC 3339 date: {value[:60]!r}") from None


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise TypeError(f"{key}: expected a string, got {_kind(value)}")
    return value


def _integer(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if value.__class__ is not int:
        raise TypeError(f"{key}: expected an integer, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# -- each stamp -------------------------------------------------------------------------------


def _write_error(stamp: ErrorDetailsStamp) -> dict[str, Any]:
    # PHP's exception codes are integers (0 when none): Symfony 6 and later type the property
    # int|string, so None must not be written.
    code = stamp.code if stamp.code is not None else 0
    flattened: dict[str, Any] | None = None
    if stamp.traceback is not None:
        # The shape Symfony's FlattenExceptionNormalizer reads; `messenger:failed:show -vv`
        # prints trace_as_string.
        flattened = {
            "message": stamp.message,
            "code": code,
            "headers": [],
            "class": stamp.exception_class,
            "file": "",
            "line": 0,
            "previous": None,
            "status": 500,
            "status_text": _STATUS_TEXT,
            "trace": _php_frames(stamp.traceback),
            "trace_as_string": stamp.traceback,
        }
    return {
        "exceptionClass": stamp.exception_class,
        "exceptionCode": code,
        "exceptionMessage": stamp.message,
        "flattenException": flattened,
    }


# One frame of a Python traceback: `  File "shop/handlers.py", line 12, in on_order`.
_FRAME = re.compile(r'^  File "(?P<file>[^"]*)", line (?P<line>\d+), in (?P<function>.+)$', re.M)


def _php_frames(traceback: str) -> list[dict[str, Any]]:
    """The frames of a Python traceback as FlattenException's ``trace`` (innermost first, as
    PHP lists them), which ``messenger:failed:show -vv`` prints."""
    frames: list[dict[str, Any]] = [
        {
            "namespace": "",
            "short_class": "",
            "class": "",
            "type": "",
            "function": match["function"],
            "file": match["file"],
            "line": int(match["line"]),
            "args": [],
        }
        for match in _FRAME.finditer(traceback)
    ]
    frames.reverse()
    return frames


def _read_error(data: Mapping[str, Any]) -> ErrorDetailsStamp:
    code = data.get("exceptionCode")
    if code is not None and code.__class__ not in (int, str):
        raise TypeError(f"exceptionCode: expected an integer or a string, got {_kind(code)}")
    traceback = None
    flattened = data.get("flattenException")
    if isinstance(flattened, Mapping):
        # FlattenExceptionNormalizer's key, or the getter name when a serializer without it
        # wrote the object.
        text = flattened.get("trace_as_string", flattened.get("traceAsString"))
        traceback = text if isinstance(text, str) else None
    return ErrorDetailsStamp(
        exception_class=_string(data, "exceptionClass"),
        message=_string(data, "exceptionMessage"),
        code=code,
        traceback=traceback,
    )


def _read_redelivery(data: Mapping[str, Any]) -> RedeliveryStamp:
    return RedeliveryStamp(
        retry_count=_integer(data, "retryCount"),
        redelivered_at=_read_datetime(data.get("redeliveredAt"), "redeliveredAt"),
    )


MAPPINGS: Final[tuple[StampMapping, ...]] = (
    StampMapping(
        BusNameStamp,
        "BusNameStamp",
        lambda stamp: {"busName": stamp.bus_name},
        lambda data: BusNameStamp(bus_name=_string(data, "busName")),
    ),
    StampMapping(
        DelayStamp,
        "DelayStamp",
        lambda stamp: {"delay": stamp.delay_ms},
        lambda data: DelayStamp(delay_ms=_integer(data, "delay")),
    ),
    StampMapping(
        RedeliveryStamp,
        "RedeliveryStamp",
        lambda stamp: {
            "retryCount": stamp.retry_count,
            "redeliveredAt": _php_datetime(stamp.redelivered_at),
        },
        _read_redelivery,
    ),
    StampMapping(ErrorDetailsStamp, "ErrorDetailsStamp", _write_error, _read_error),
    StampMapping(
        SentToFailureTransportStamp,
        "SentToFailureTransportStamp",
        lambda stamp: {"originalReceiverName": stamp.original_receiver_name},
        lambda data: SentToFailureTransportStamp(
            original_receiver_name=_string(data, "originalReceiverName")
        ),
    ),
    StampMapping(
        HandledByStamp,
        "HandledStamp",
        lambda stamp: {"result": None, "handlerName": stamp.handler_name},
        lambda data: HandledByStamp(handler_name=_string(data, "handlerName")),
    ),
)

BY_CORE_CLASS: Final[dict[type[Stamp], StampMapping]] = {m.core: m for m in MAPPINGS}
BY_SYMFONY_NAME: Final[dict[str, StampMapping]] = {m.symfony: m for m in MAPPINGS}

DROPPED_STAMPS: Final[frozenset[str]] = frozenset(
    {SYMFONY_STAMP_NAMESPACE + "TransportMessageIdStamp"}
)
"""Symfony stamps that are read and dropped (see the module docstring)."""


def symfony_name_of(cls: type[Stamp]) -> str | None:
    """The Symfony class core stamp class ``cls`` is written as, if it has one."""
    mapping = BY_CORE_CLASS.get(cls)
    return mapping.symfony if mapping is not None else None


def to_symfony(stamp: Stamp) -> dict[str, Any]:
    """``stamp`` as the object Symfony's normalizer writes for its counterpart."""
    return BY_CORE_CLASS[stamp.__class__].write(stamp)


def to_core(symfony_name: str, data: Mapping[str, Any]) -> Stamp:
    """The core stamp for one object of a Symfony stamp header; ``TypeError``/``ValueError``
    if ``data`` is not the shape Symfony writes."""
    return BY_SYMFONY_NAME[symfony_name].read(data)
