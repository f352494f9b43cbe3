"""Reaching the real services (databases, brokers) that transport tests run against.

A test that needs a service reads its DSN from an environment variable with a local default,
and skips with a clear reason when the service is unreachable; with
``MESSENGER_REQUIRE_SERVICES=1`` (as CI sets) it fails instead, so a broken service can never
turn into a silently green run. :func:`service_unavailable` is that skip-or-fail on its own,
for what a test needs besides a reachable DSN (a server binary, a plugin, PHP);
:func:`free_port` and :func:`port_accepts` serve the tests that start servers of their own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import NoReturn

import pytest

from messenger_core.dsn import mask_dsn

__all__ = [
    "REQUIRE_SERVICES_VARIABLE",
    "free_port",
    "port_accepts",
    "require_service",
    "service_dsn",
    "service_unavailable",
]

REQUIRE_SERVICES_VARIABLE = "MESSENGER_REQUIRE_SERVICES"


def service_dsn(variable: str, default: str) -> str:
    """The DSN in the environment ``variable``, or ``default`` (the local service)."""
    return os.environ.get(variable) or default


def require_service(name: str, dsn: str, probe: Callable[[], object]) -> None:
    """Run ``probe`` (which connects to the service); skip or fail the test if it raises."""
    try:
        probe()
    except Exception as error:  # any failure to connect means "not reachable"
        service_unavailable(
            f"{name} is not reachable at {mask_dsn(dsn)}: {type(error).__name__}: {error}"
        )


def service_unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason`` (something it needs is missing or unreachable); fail it
    instead under ``MESSENGER_REQUIRE_SERVICES=1``."""
    if os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_VARIABLE}=1)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the system's choice of a free
    one; another process may take it before the caller binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_accepts(port: int, *, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host``:``port`` (within ``timeout``
    seconds)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
