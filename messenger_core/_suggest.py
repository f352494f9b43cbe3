""" "Did you mean ...?": the closest of the names a mistake could have meant."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["close_matches"]


def close_matches(word: str, candidates: Iterable[str]) -> list[str]:
    """The candidate closest to ``word`` (a list of one), or ``[]`` when none is close."""
    # Imported here: only error paths ask, and a worker that meets no mistake should not carry
    # difflib (about 170 KB resident).
    import difflib  # noqa: PLC0415

    return difflib.get_close_matches(word, list(candidates), n=1)
