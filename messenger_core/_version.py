"""The installed version of ``messenger-core`` (kept apart so every module can import it)."""

from __future__ import annotations

from importlib import metadata

__all__ = ["DISTRIBUTION", "UNKNOWN_VERSION", "version"]

DISTRIBUTION = "messenger-core"
UNKNOWN_VERSION = "0+unknown"
"""The version reported when the package runs from source without being installed."""


def version() -> str:
    """The version in the installed metadata, else :data:`UNKNOWN_VERSION`."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION
