"""Fixtures of the tests against real Symfony Messenger 5.4 (PHP, from Debian's packages).

PHP and Symfony come from Debian's packages: when ``php`` or a package is missing, the session
installs them with ``apt-get`` (as root); if that is impossible, every test here is skipped
with the reason, or fails under ``MESSENGER_REQUIRE_SERVICES=1``. Each test gets its own queue
on each backend (Redis, PostgreSQL, MariaDB, RabbitMQ), dropped afterwards.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import BACKENDS, PHP_DIR, Backend, Interop, new_backend

from messenger_core.testing.services import service_unavailable

DEBIAN_PACKAGES = (
    "php-cli",
    "php-symfony-messenger",
    "php-symfony-redis-messenger",
    "php-symfony-doctrine-messenger",
    "php-symfony-amqp-messenger",
    "php-amqp",
    "php-redis",
    "php-symfony-serializer",
    "php-symfony-property-access",
    "php-symfony-property-info",
    "php-pgsql",
    "php-mysql",
    "php-doctrine-dbal",
    "php-symfony-console",
    "php-symfony-dependency-injection",
    "php-symfony-event-dispatcher",
    # FrameworkBundle requires it: ErrorDetailsStamp carries a FlattenException only with it.
    "php-symfony-error-handler",
)
"""What the tests need; ``.ci/run`` installs the same list."""


def _php_problem() -> str | None:
    """Why PHP cannot run the tests' scripts, or None."""
    if shutil.which("php") is None:
        return "php is not installed"
    result = subprocess.run(
        ["php", str(PHP_DIR / "check.php")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or result.stdout.strip() != "ok":
        return f"PHP lacks: {(result.stdout + result.stderr).strip()}"
    return None


def _install() -> str:
    """Install the Debian packages; what went wrong, or an empty string."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing them needs root"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]
    result = subprocess.run(install, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:  # perhaps stale package lists
        subprocess.run(["apt-get", "update"], capture_output=True, env=environment, check=False)
        result = subprocess.run(
            install, capture_output=True, text=True, env=environment, check=False
        )
    return "" if result.returncode == 0 else result.stderr.strip()[-500:]


@pytest.fixture(scope="session")
def php() -> None:
    """PHP with Symfony Messenger 5.4 from Debian, installed if missing."""
    problem = _php_problem()
    if problem is not None:
        failure = _install()
        problem = _php_problem()
        if problem is not None:
            service_unavailable(
                f"Symfony Messenger from Debian's packages is needed ({problem}); "
                f"installing {' '.join(DEBIAN_PACKAGES)} failed: {failure or 'no error'}"
            )


@pytest.fixture(scope="session")
def symfony_serializer() -> None:
    """The ``symfony`` serializer plugin is installed (skip, or fail under CI, if not)."""
    try:
        importlib.import_module("messenger_serializer_symfony")
    except ImportError as error:
        service_unavailable(
            "the symfony serializer is needed "
            f"(pip install -e plugins/messenger-serializer-symfony): {error}"
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, php: None) -> Iterator[Backend]:
    """A backend with this test's own queues (Symfony created the table, as in an app that
    ran ``messenger:setup-transports`` before this project joined)."""
    made = new_backend(request.param)
    made.require()
    yield made
    made.cleanup()


@pytest.fixture
def interop(backend: Backend, tmp_path: Path) -> Iterator[Interop]:
    """Both sides on ``backend``, Symfony's transports set up."""
    made = Interop(tmp_path, backend)
    made.setup_symfony()
    yield made
    made.stop_all()
