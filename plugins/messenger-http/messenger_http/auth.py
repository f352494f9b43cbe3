"""The bearer token check: ``Authorization: Bearer <token>``, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["BearerToken"]


class BearerToken:
    """Checks ``Authorization`` header values against one token.

    Both sides are hashed before :func:`hmac.compare_digest`, so that neither the content nor
    the length of the token leaks through the comparison's timing. The token itself is kept
    only as its digest and never appears in a ``repr``.
    """

    def __init__(self, token: str) -> None:
        self._digest = _digest(token.encode("utf-8"))

    def __repr__(self) -> str:
        return "BearerToken(***)"

    def allows(self, authorization: str | None) -> bool:
        """Whether ``authorization`` (the header's value, or ``None``) carries the token."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # surrogateescape: a header is latin-1 on the wire; any byte sequence must just fail.
        given = credentials.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(_digest(given), self._digest)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()
