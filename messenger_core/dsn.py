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
    merge them with explicit configuration options, which win. ``path`` is percent-decoded;
    ``raw_path`` is the path as written (``/%2f/messages``), for transports whose path segments
    may hold an encoded ``/`` (an AMQP virtual host); it is empty for a ``Dsn`` built by hand.
    """

    scheme: str
    variant: str | None = None
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    hosts: tuple[DsnHost, ...] = ()
    path: str = ""
    options: Mapping[str, str] = attrs.field(factory=dict)
    raw_path: str = attrs.field(default="", eq=False, repr=False)

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
        if _ambiguous_credentials(rest):
            raise _malformed(dsn, "")
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
            raw_path=slash + path,
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


_AUTHORITY_END = re.compile(r"[/?#]")
_DSN_IN_TEXT = re.compile(r"://(\S*)")


def _ambiguous_credentials(rest: str) -> bool:
    """Whether ``rest`` (what follows ``scheme://``) has an '@' after its authority ends.

    The authority (``user:password@host``) ends at the first '/', '?' or '#'; an '@' after it
    usually means a password holding one of those characters unencoded. Where the password
    ends cannot be known then, so such a DSN is refused rather than split at a guess.
    """
    if rest.startswith("/"):  # no authority (``sqlite:///path``): an '@' is part of the path
        return False
    if "@" in rest and any(c.isspace() for c in rest.strip()):
        return True  # whitespace ends a DSN in logs: a password holding some could show
    end = _AUTHORITY_END.search(rest)
    return end is not None and "@" in rest[end.start() :]


def _mask_authority(match: re.Match[str]) -> str:
    token = match.group(1)
    if token.startswith("/") or "@" not in token:
        return match.group(0)
    credentials, _, after = token.rpartition("@")
    user, colon, _ = credentials.partition(":")
    if any(c in user for c in "@/?#") or (not colon and any(c in credentials for c in "/?#")):
        return f"://{_MASK}@{after}"  # cannot tell the user from the password: hide both
    if not colon:
        return match.group(0)  # a user name alone
    return f"://{user}:{_MASK}@{after}"


def mask_dsn(text: str) -> str:
    """``text`` with any DSN password replaced by ``***`` (for logs and errors).

    A DSN runs to the next whitespace; its password runs to its *last* '@' (an unencoded '@',
    '/', '?', '#' or quote in a password is common). Where the user name cannot be told apart
    from the password, both are hidden. (A password holding whitespace must be
    percent-encoded: :meth:`Dsn.parse` refuses it unencoded.)
    """
    return _DSN_IN_TEXT.sub(_mask_authority, text)


def _malformed(dsn: str, detail: str) -> ConfigurationError:
    """The error for a DSN that does not parse, showing nothing that may be a password.

    When the credentials cannot be told apart (no ``scheme://``, or an '@' after the first
    '/', '?' or '#'), everything before the last '@' is hidden, and so is the detail, which
    would quote pieces of it.
    """
    head, sep, tail = dsn.partition("://")
    before, at, after = (tail if sep else dsn).rpartition("@")
    if at and (not sep or _ambiguous_credentials(tail) or any(c in before for c in "/?#")):
        shown = f"{head}{sep}***@{after}" if sep else f"***@{after}"
        if sep:
            detail = (
                "percent-encode '@' as %40, '/' as %2F, '?' as %3F, '#' as %23 and spaces as "
                "%20 in the user name and password (and '@' in the path or query): an '@' after "
                "one of them makes it impossible to tell where the password ends"
            )
        return ConfigurationError(f"malformed DSN {shown!r}: {detail}")
    return ConfigurationError(f"malformed DSN {mask_dsn(dsn)!r}: {detail}")
