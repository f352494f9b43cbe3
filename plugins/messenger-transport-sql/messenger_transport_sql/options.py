"""The SQL transport's options: parsed from DSN query strings or typed configuration values.

Options reach the factory merged (the DSN's query string overridden by the configuration), as
strings or as typed values. :func:`parse_options` validates them into
:class:`SqlTransportOptions`; an unknown option or a bad value is a
:class:`~messenger_core.errors.ConfigurationError` that names the option and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import attrs

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.transport_options import (
    parse_bool,
    parse_int,
    parse_milliseconds,
    parse_seconds,
    reject_unknown_options,
)

__all__ = [
    "COMMON_OPTIONS",
    "DRIVER_OPTIONS",
    "POSTGRESQL_OPTIONS",
    "SqlTransportOptions",
    "parse_options",
]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MAX_FETCH_SIZE = 10_000
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
    fetch_size: int = 10
    """How many messages one ``get()`` reserves at most; above 1, acknowledgements are deleted
    in batches. Symfony reserves 1: 10 consumes several times faster, at the price of up to 10
    messages waiting ``redeliver_timeout`` after a crash (none after a graceful stop); see the
    README's delivery guarantees."""
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
    reconnect_timeout: float = 10.0
    """Seconds an operation keeps reconnecting (with backoff) to an unreachable database
    before it fails. A consumer that was connected carries on regardless: its ``get()``
    returns nothing until the database is back; one that never reached the database fails
    after this long (a wrong DSN or a stopped server at start-up)."""
    driver_options: Mapping[str, str] = attrs.field(factory=dict)
    """Connection options passed to the database driver (SSL, timeouts), see
    :data:`DRIVER_OPTIONS`."""


def _table_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigurationError(
            f"option {name!r} must be an SQL identifier (letters, digits, underscores, "
            f"not starting with a digit, at most 63 characters), got {value!r}"
        )
    return value


def _queue_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > QUEUE_NAME_LENGTH:
        raise ConfigurationError(
            f"option {name!r} must be a non-empty string of at most "
            f"{QUEUE_NAME_LENGTH} characters, got {value!r}"
        )
    return value


# Each parser takes the option's name and its value.
_COMMON_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "table_name": _table_name,
    "queue_name": _queue_name,
    "redeliver_timeout": parse_seconds,
    "auto_setup": parse_bool,
    "fetch_size": partial(parse_int, minimum=1, maximum=_MAX_FETCH_SIZE),
    "reconnect_timeout": partial(parse_seconds, allow_zero=True),
}
_POSTGRESQL_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "use_notify": parse_bool,
    "check_delayed_interval": parse_milliseconds,
    "get_notify_timeout": parse_milliseconds,
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


def parse_options(
    options: Mapping[str, Any], backend: str, *, dsn: Dsn | None = None
) -> SqlTransportOptions:
    """Validate ``options`` for ``backend`` (``sqlite``, ``postgresql`` or ``mysql``).

    Raises :class:`ConfigurationError` naming an unknown option (and the known ones, and
    ``dsn`` if given, its password masked) or a bad value.
    """
    parsers = dict(_COMMON_PARSERS)
    if backend == "postgresql":
        parsers.update(_POSTGRESQL_PARSERS)
    driver_names = DRIVER_OPTIONS[backend]
    known = (*parsers, *driver_names)
    for name in options:
        if name in _POSTGRESQL_PARSERS and name not in parsers:
            raise ConfigurationError(
                f"option {name!r} applies to PostgreSQL only, not to {backend}; "
                f"known options for {backend}: {', '.join(known)}"
            )
    reject_unknown_options(options, known, transport=backend, dsn=dsn)
    values: dict[str, Any] = {}
    driver_options: dict[str, str] = {}
    for name, value in options.items():
        if name in parsers:
            values[name] = parsers[name](name, value)
        else:
            if value is None or isinstance(value, Mapping | list | tuple):
                raise ConfigurationError(f"option {name!r} must be a single value, got {value!r}")
            driver_options[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return SqlTransportOptions(**values, driver_options=driver_options)
