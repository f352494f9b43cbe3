"""The SQL transport's options: parsed from DSN query strings or typed configuration values.

Options reach the factory merged (the DSN's query string overridden by the configuration), as
strings or as typed values. :func:`parse_options` validates them into
:class:`SqlTransportOptions`; an unknown option or a bad value is a
:class:`~messenger_core.errors.ConfigurationError` that names the option and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from messenger_core.errors import ConfigurationError

__all__ = [
    "COMMON_OPTIONS",
    "DRIVER_OPTIONS",
    "POSTGRESQL_OPTIONS",
    "SqlTransportOptions",
    "parse_options",
]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
QUEUE_NAME_LENGTH = 190
"""Length of the ``queue_name`` column (Symfony's: MySQL 5.6 indexes at most 191 utf8mb4
characters)."""


@attrs.frozen(kw_only=True)
class SqlTransportOptions:
    """Validated options of one SQL transport.

    Durations follow Symfony's Doctrine transport: ``redeliver_timeout`` in seconds,
    ``check_delayed_interval`` and ``get_notify_timeout`` in milliseconds.
    """

    table_name: str = "messenger_messages"
    """The table holding the messages; one table can serve many queues."""
    queue_name: str = "default"
    """This transport's queue within the table."""
    redeliver_timeout: float = 3600.0
    """Seconds after which a message received but neither acknowledged nor rejected is
    delivered again (its consumer is presumed dead)."""
    auto_setup: bool = True
    """Create the table (and PostgreSQL's notify trigger) on first use if it is missing."""
    fetch_size: int = 1
    """How many messages one ``get()`` reserves at most. Raise it (e.g. 100) for throughput;
    acknowledgements are then deleted in batches (see the README's delivery guarantees)."""
    use_notify: bool = True
    """PostgreSQL: wait for LISTEN/NOTIFY when the queue is empty instead of polling."""
    check_delayed_interval: int = 60_000
    """PostgreSQL with ``use_notify``: milliseconds after which an idle consumer queries the
    table even without a notification (catches redeliveries and rows added without the
    trigger); ``0`` queries on every ``get()``."""
    get_notify_timeout: int = 1_000
    """PostgreSQL with ``use_notify``: milliseconds one ``get()`` on an empty queue waits for a
    notification before returning nothing (at most a tenth of ``redeliver_timeout``, since a
    consumer cannot renew its reservations meanwhile); ``0`` does not wait."""
    driver_options: Mapping[str, str] = attrs.field(factory=dict)
    """Connection options passed to the database driver (SSL, timeouts), see
    :data:`DRIVER_OPTIONS`."""


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(
        f"option {name!r} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}"
    )


def _as_number(name: str, value: Any, *, integer: bool, minimum: float) -> float:
    number: float
    if isinstance(value, bool):
        number = math.nan
    elif isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            number = math.nan
    else:
        number = math.nan
    kind = "an integer" if integer else "a number"
    if not math.isfinite(number) or (integer and number != int(number)) or number < minimum:
        bound = int(minimum) if integer else minimum
        raise ConfigurationError(f"option {name!r} must be {kind} >= {bound}, got {value!r}")
    return number


def _table_name(value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigurationError(
            f"option 'table_name' must be an SQL identifier (letters, digits, underscores, "
            f"not starting with a digit, at most 63 characters), got {value!r}"
        )
    return value


def _queue_name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > QUEUE_NAME_LENGTH:
        raise ConfigurationError(
            f"option 'queue_name' must be a non-empty string of at most "
            f"{QUEUE_NAME_LENGTH} characters, got {value!r}"
        )
    return value


def _positive_seconds(name: str) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        seconds = _as_number(name, value, integer=False, minimum=0)
        if seconds <= 0:
            raise ConfigurationError(
                f"option {name!r} must be a number of seconds > 0, got {value!r}"
            )
        return seconds

    return parse


_COMMON_PARSERS: dict[str, Callable[[Any], Any]] = {
    "table_name": _table_name,
    "queue_name": _queue_name,
    "redeliver_timeout": _positive_seconds("redeliver_timeout"),
    "auto_setup": lambda value: _as_bool("auto_setup", value),
    "fetch_size": lambda value: int(_as_number("fetch_size", value, integer=True, minimum=1)),
}
_POSTGRESQL_PARSERS: dict[str, Callable[[Any], Any]] = {
    "use_notify": lambda value: _as_bool("use_notify", value),
    "check_delayed_interval": lambda value: int(
        _as_number("check_delayed_interval", value, integer=True, minimum=0)
    ),
    "get_notify_timeout": lambda value: int(
        _as_number("get_notify_timeout", value, integer=True, minimum=0)
    ),
}

COMMON_OPTIONS: tuple[str, ...] = tuple(_COMMON_PARSERS)
"""Options every SQL database accepts."""
POSTGRESQL_OPTIONS: tuple[str, ...] = tuple(_POSTGRESQL_PARSERS)
"""Options only PostgreSQL accepts."""
DRIVER_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "sqlite": (),
    "postgresql": (
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "connect_timeout",
        "application_name",
        "target_session_attrs",
    ),
    "mysql": (
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
        "ssl_check_hostname",
        "connect_timeout",
    ),
}
"""Connection options handed to each database's driver unchanged (as strings)."""

_MAX_FETCH_SIZE = 10_000


def parse_options(options: Mapping[str, Any], backend: str) -> SqlTransportOptions:
    """Validate ``options`` for ``backend`` (``sqlite``, ``postgresql`` or ``mysql``).

    Raises :class:`ConfigurationError` naming an unknown option (and the known ones) or a bad
    value.
    """
    parsers = dict(_COMMON_PARSERS)
    if backend == "postgresql":
        parsers.update(_POSTGRESQL_PARSERS)
    driver_names = DRIVER_OPTIONS[backend]
    known = (*parsers, *driver_names)
    values: dict[str, Any] = {}
    driver_options: dict[str, str] = {}
    for name, value in options.items():
        if name in parsers:
            values[name] = parsers[name](value)
        elif name in driver_names:
            if value is None or isinstance(value, Mapping | list | tuple):
                raise ConfigurationError(f"option {name!r} must be a single value, got {value!r}")
            driver_options[name] = str(value).lower() if isinstance(value, bool) else str(value)
        elif name in _POSTGRESQL_PARSERS:
            raise ConfigurationError(
                f"option {name!r} applies to PostgreSQL only, not to {backend}; "
                f"known options for {backend}: {', '.join(known)}"
            )
        else:
            raise ConfigurationError(
                f"unknown option {name!r} for the {backend} transport; "
                f"known options: {', '.join(known)}"
            )
    if values.get("fetch_size", 1) > _MAX_FETCH_SIZE:
        raise ConfigurationError(
            f"option 'fetch_size' must be at most {_MAX_FETCH_SIZE}, got {values['fetch_size']}"
        )
    return SqlTransportOptions(**values, driver_options=driver_options)
