"""Transport DSNs: ``scheme[+variant]://[user[:password]@]host[:port][,host[:port]...][/path][?options]``.

The password never appears in ``repr``, ``str`` or error messages: it is shown as ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import attrs

from messenger_core.errors import ConfigurationError

__all__ = ["Dsn", "DsnHost", "mask_dsn"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.\-]*)(?:\+([A-Za-z0-9.\-_]+))?://(.*)$", re.DOTALL)
_MASK = "***"


@attrs.frozen
class DsnHost:
    """One ``host[:port]`` of a DSN."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@attrs.frozen(repr=False)
class Dsn:
    """A parsed transport DSN.

    ``options`` holds the query string's options (strings, percent-decoded); transport factories
    merge them with explicit configuration options, which win.
    """

    scheme: str
    variant: str | None = None
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    hosts: tuple[DsnHost, ...] = ()
    path: str = ""
    options: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, dsn: str) -> Dsn:
        """Parse ``dsn``; a malformed one raises :class:`ConfigurationError` (password masked)."""
        if not isinstance(dsn, str) or not dsn.strip():
            got = repr(dsn) if isinstance(dsn, str) else type(dsn).__name__
            raise ConfigurationError(f"a transport DSN must be a non-empty string, got {got}")
        match = _SCHEME.match(dsn.strip())
        if match is None:
            raise _malformed(
                dsn,
                "expected scheme://..., for example "
                "'sqlite:///var/messenger.db' or 'redis://localhost:6379/messages'",
            )
        scheme, variant, rest = match.groups()
        rest, _, query = rest.partition("?")
        rest, _, _fragment = rest.partition("#")
        authority, slash, path = rest.partition("/")
        user = password = None
        if "@" in authority:
            credentials, _, authority = authority.rpartition("@")
            user_part, has_password, password_part = credentials.partition(":")
            user = unquote(user_part) or None
            password = unquote(password_part) if has_password else None
        try:
            hosts = tuple(_parse_host(each) for each in authority.split(",") if each)
        except ValueError as error:
            raise _malformed(dsn, str(error)) from None
        try:
            options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
        except ValueError:
            raise _malformed(dsn, "the query must be name=value pairs joined by &") from None
        return cls(
            scheme=scheme.lower(),
            variant=variant.lower() if variant else None,
            user=user,
            password=password,
            hosts=hosts,
            path=unquote(slash + path),
            options=options,
        )

    @property
    def host(self) -> str | None:
        """The first host, if any."""
        return self.hosts[0].host if self.hosts else None

    @property
    def port(self) -> int | None:
        """The first host's port, if any."""
        return self.hosts[0].port if self.hosts else None

    @property
    def full_scheme(self) -> str:
        """``scheme+variant`` (or just the scheme)."""
        return f"{self.scheme}+{self.variant}" if self.variant else self.scheme

    def with_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The query options overridden by ``options`` (explicit configuration wins)."""
        merged: dict[str, Any] = dict(self.options)
        merged.update(options)
        return merged

    def to_url(self, *, mask_password: bool = True) -> str:
        """The DSN as a string; the password is ``***`` unless ``mask_password`` is false."""
        credentials = ""
        if self.user is not None or self.password is not None:
            credentials = quote(self.user or "", safe="")
            if self.password is not None:
                secret = _MASK if mask_password else quote(self.password, safe="")
                credentials += f":{secret}"
            credentials += "@"
        hosts = ",".join(str(h) for h in self.hosts)
        query = "&".join(
            f"{quote(k, safe='')}={quote(str(v), safe='')}" for k, v in self.options.items()
        )
        return f"{self.full_scheme}://{credentials}{hosts}{quote(self.path, safe='/:')}" + (
            f"?{query}" if query else ""
        )

    def __str__(self) -> str:
        return self.to_url()

    def __repr__(self) -> str:
        return f"Dsn({self.to_url()!r})"


def _parse_host(text: str) -> DsnHost:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"bad host {text!r}: no closing ']'")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad host {text!r}")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"empty host in {text!r}")
    if not port_text:
        return DsnHost(unquote(host))
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} of host {host!r} is not a number from 1 to 65535")
    return DsnHost(unquote(host), int(port_text))


# The password runs to the *last* '@' before the path (an unencoded '@' in it is common); it
# stops at whitespace and quotes so that masking never spans two DSNs in one text.
_CREDENTIALS = re.compile(r"(://[^/@:?#\s'\"]*:)([^/?#\s'\"]*)(@)")


def mask_dsn(text: str) -> str:
    """``text`` with any DSN password replaced by ``***`` (for logs and errors)."""
    return _CREDENTIALS.sub(lambda m: m.group(1) + _MASK + m.group(3), text)


def _malformed(dsn: str, detail: str) -> ConfigurationError:
    """The error for a DSN that does not parse, showing nothing that may be a password.

    When the credentials cannot be told apart (no ``scheme://``, or a '/', '?' or '#' before
    the last '@', which the parser took for the end of the host), everything before that '@'
    is hidden, and so is the detail, which would quote pieces of it.
    """
    head, sep, tail = dsn.partition("://")
    before, at, after = (tail if sep else dsn).rpartition("@")
    if at and (not sep or any(c in before for c in "/?#")):
        shown = f"{head}{sep}***@{after}" if sep else f"***@{after}"
        if sep:
            detail = (
                "percent-encode '/', '?', '#' and '@' in the user name and password "
                "(the DSN has an '@' after one of them)"
            )
        return ConfigurationError(f"malformed DSN {shown!r}: {detail}")
    return ConfigurationError(f"malformed DSN {mask_dsn(dsn)!r}: {detail}")
