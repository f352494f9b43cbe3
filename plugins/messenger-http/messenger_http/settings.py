"""What the HTTP endpoint is configured with: the token, the limits of one consume, and which
receivers it serves.

Settings come from the arguments of :func:`~messenger_http.create_app` first, then from the
``[messenger.plugins.http]`` table of the configuration, then (for the token) from the
``MESSENGER_HTTP_TOKEN`` environment variable::

    [messenger.plugins.http]
    # token: better left to $MESSENGER_HTTP_TOKEN (a secret kept out of files)
    time_limit = 2                      # seconds one POST /consume may consume for
    memory_limit = "512M"               # stop consuming once the process used this much
    receivers = ["async"]               # default: every transport but failure and sync:// ones
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from messenger_core.app import Messenger
from messenger_core.errors import ConfigurationError
from messenger_core.transport_options import parse_bool, parse_seconds
from messenger_core.worker_limits import parse_memory_limit
from messenger_http._names import PLUGIN_NAME, TOKEN_VARIABLE

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TIME_LIMIT",
    "MIN_TOKEN_LENGTH",
    "PLUGIN_NAME",
    "TOKEN_VARIABLE",
    "HttpSettings",
]

DEFAULT_TIME_LIMIT = 2.0
"""Seconds one ``POST /consume`` consumes for at most (a message in progress is finished)."""
DEFAULT_MEMORY_LIMIT = "512M"
"""Peak resident memory of the process past which a consume stops after its current message."""
DEFAULT_POLL_INTERVAL = 0.1
"""Seconds between polls once a consume has handled something (until the time limit)."""
MIN_TOKEN_LENGTH = 16
"""Shorter tokens are refused: a bearer token is a password sent with every request."""

_OPTIONS = (
    "token",
    "behind_authentication",
    "time_limit",
    "memory_limit",
    "poll_interval",
    "receivers",
    "keepalive",
)


@attrs.frozen(kw_only=True)
class HttpSettings:
    """The endpoint's settings (see the module documentation for where they come from)."""

    token: str | None = attrs.field(default=None, repr=False)
    """The bearer token every request but ``/health`` and ``/openapi.json`` must carry."""
    behind_authentication: bool = False
    """Serve without a token: something in front (a proxy, the host application's own
    middleware) authenticates the requests. Without it, no token is a configuration error."""
    time_limit: float = DEFAULT_TIME_LIMIT
    memory_limit: int | None = parse_memory_limit(DEFAULT_MEMORY_LIMIT)
    """Bytes; ``None``: no memory limit."""
    poll_interval: float = DEFAULT_POLL_INTERVAL
    receivers: tuple[str, ...] | None = None
    """The transports ``POST /consume`` may name; ``None``: every transport but failure
    transports and ``sync://`` ones."""
    keepalive: float | None = None
    """Renew a slow message's reservation every so many seconds (transports that can)."""

    @classmethod
    def resolve(
        cls,
        messenger: Messenger,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> HttpSettings:
        """The settings of ``messenger``'s configuration, with ``overrides`` (not ``None``
        values) on top and the token from ``environ`` (default: ``os.environ``) if none is set.

        Raises :class:`ConfigurationError` for an unknown option or a bad value, and when there
        is no token and ``behind_authentication`` is not set.
        """
        table = dict(messenger.config.plugins.get(PLUGIN_NAME, {}))
        _reject_unknown(table)
        values = {**table, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        _reject_unknown(values)
        environ = os.environ if environ is None else environ
        if not values.get("token"):
            values["token"] = environ.get(TOKEN_VARIABLE) or None
        settings = cls(
            token=_token(values.get("token")),
            behind_authentication=parse_bool(
                "behind_authentication", values.get("behind_authentication", False)
            ),
            time_limit=parse_seconds("time_limit", values.get("time_limit", DEFAULT_TIME_LIMIT)),
            memory_limit=_memory(values.get("memory_limit", DEFAULT_MEMORY_LIMIT)),
            poll_interval=parse_seconds(
                "poll_interval", values.get("poll_interval", DEFAULT_POLL_INTERVAL)
            ),
            receivers=_receivers(values.get("receivers")),
            keepalive=(
                parse_seconds("keepalive", values["keepalive"]) if values.get("keepalive") else None
            ),
        )
        settings.check_authentication()
        return settings

    def check_authentication(self) -> None:
        """Refuse to serve with neither a token nor ``behind_authentication``."""
        if self.token is None and not self.behind_authentication:
            raise ConfigurationError(
                f"the HTTP consume endpoint needs a bearer token: set ${TOKEN_VARIABLE} (or "
                "`token` under [messenger.plugins.http]); only if something in front already "
                "authenticates every request, say so with behind_authentication "
                "(serve-http --behind-authentication)"
            )


def _reject_unknown(values: Mapping[str, Any]) -> None:
    for name in values:
        if name not in _OPTIONS:
            raise ConfigurationError(
                f"unknown option {name!r} for messenger-http; known options: {', '.join(_OPTIONS)}"
            )


def _token(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError("option 'token' must be a string")
    if len(value) < MIN_TOKEN_LENGTH or value.strip() != value:
        # Never echo the value: it is a secret, and this message goes to logs.
        raise ConfigurationError(
            f"the HTTP token must be at least {MIN_TOKEN_LENGTH} characters, with no "
            "surrounding spaces (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return value


def _memory(value: Any) -> int | None:
    if value is None or value in (0, "0", ""):
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ConfigurationError("option 'memory_limit' must be like 128M, 1G or 500000")
    return parse_memory_limit(value)


def _receivers(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError("option 'receivers' must be a list of transport names")
    return tuple(value)
