"""Reaching the real services (databases, brokers) that transport tests run against.

A test that needs a service reads its DSN from an environment variable with a local default,
and skips with a clear reason when the service is unreachable; with
``MESSENGER_REQUIRE_SERVICES=1`` (as CI sets) it fails instead, so a broken service can never
turn into a silently green run.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from messenger_core.dsn import mask_dsn

__all__ = ["REQUIRE_SERVICES_VARIABLE", "require_service", "service_dsn"]

REQUIRE_SERVICES_VARIABLE = "MESSENGER_REQUIRE_SERVICES"


def service_dsn(variable: str, default: str) -> str:
    """The DSN in the environment ``variable``, or ``default`` (the local service)."""
    return os.environ.get(variable) or default


def require_service(name: str, dsn: str, probe: Callable[[], object]) -> None:
    """Run ``probe`` (which connects to the service); skip or fail the test if it raises."""
    try:
        probe()
    except Exception as error:  # any failure to connect means "not reachable"
        reason = f"{name} is not reachable at {mask_dsn(dsn)}: {type(error).__name__}: {error}"
        if os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1":
            pytest.fail(f"{reason} ({REQUIRE_SERVICES_VARIABLE}=1)", pytrace=False)
        pytest.skip(reason)
