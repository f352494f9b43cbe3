"""The installed version of ``messenger-core`` (kept apart so every module can import it)."""

from __future__ import annotations

from importlib import metadata

__all__ = ["CORE_DISTRIBUTION", "UNKNOWN_VERSION", "core_version"]

CORE_DISTRIBUTION = "messenger-core"
UNKNOWN_VERSION = "0+unknown"
"""The version reported when the package runs from source without being installed."""


def core_version() -> str:
    """The version in the installed metadata, else :data:`UNKNOWN_VERSION`."""
    try:
        return metadata.version(CORE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION
