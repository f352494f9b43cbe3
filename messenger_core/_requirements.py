"""Whether an installed plugin accepts the installed core: its declared ``messenger-core``
requirement (``Requires-Dist``) checked against the core's version.

``packaging`` is used when it is importable (it is not a dependency of the core); otherwise a
small fallback compares release numbers with ``== != >= <= > < ~=`` and ``.*``.
"""

from __future__ import annotations

import re
from importlib import metadata

from messenger_core._version import CORE_DISTRIBUTION, UNKNOWN_VERSION, core_version

__all__ = ["core_requirement_problem", "normalize_name"]


def normalize_name(distribution: str) -> str:
    """A distribution name as packaging compares them (``Foo_Bar`` is ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def core_requirement_problem(distribution: str) -> str | None:
    """Why ``distribution``'s declared ``messenger-core`` requirement excludes the installed
    core, or ``None`` when it does not (or either version is unknown)."""
    installed = core_version()
    if installed == UNKNOWN_VERSION or normalize_name(distribution) == CORE_DISTRIBUTION:
        return None
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return None
    for text in requirements:
        parsed = _core_specifier(text)
        if parsed is not None and not _satisfies(installed, parsed):
            return (
                f"{distribution} requires {CORE_DISTRIBUTION}{parsed}, but {installed} is "
                f"installed: upgrade {distribution}, or install a {CORE_DISTRIBUTION} it supports"
            )
    return None


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*\(?([^;()]*)\)?")


def _core_specifier(requirement: str) -> str | None:
    """The version specifier of a ``messenger-core`` requirement (not one for an extra)."""
    text, _, marker = requirement.partition(";")
    if "extra" in marker:
        return None  # optional: only with an extra the user may not have installed
    match = _REQUIREMENT.match(text)
    if match is None or normalize_name(match.group(1)) != CORE_DISTRIBUTION:
        return None
    return match.group(3).replace(" ", "")


def _satisfies(version: str, specifier: str) -> bool:
    if not specifier:
        return True
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet  # noqa: PLC0415
        from packaging.version import InvalidVersion  # noqa: PLC0415
    except ImportError:  # packaging is not a dependency: a small fallback below
        return _satisfies_simply(version, specifier)
    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True  # what cannot be read cannot be said to be excluded


def _release(version: str) -> tuple[int, ...]:
    numbers = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(n) for n in numbers.group(1).split(".")) if numbers else ()


def _pad(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    size = max(len(a), len(b))
    return a + (0,) * (size - len(a)), b + (0,) * (size - len(b))


def _satisfies_simply(version: str, specifier: str) -> bool:
    """Release numbers compared with ``== != >= <= > < ~=`` (``.*`` for ``==``/``!=``)."""
    have = _release(version)
    for clause in filter(None, specifier.split(",")):
        match = re.match(r"^(~=|==|!=|>=|<=|>|<)(.+)$", clause)
        if match is None or not have:
            continue
        operator, wanted = match.groups()
        if wanted.endswith(".*") and operator in {"==", "!="}:
            prefix = _release(wanted[:-2])
            equal = have[: len(prefix)] == prefix
            if equal != (operator == "=="):
                return False
            continue
        mine, theirs = _pad(have, _release(wanted))
        if operator == "~=":
            upper = _release(wanted)[:-1]
            ok = mine >= theirs and have[: len(upper)] == upper
        else:
            ok = {
                "==": mine == theirs,
                "!=": mine != theirs,
                ">=": mine >= theirs,
                "<=": mine <= theirs,
                ">": mine > theirs,
                "<": mine < theirs,
            }[operator]
        if not ok:
            return False
    return True
