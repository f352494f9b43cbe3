"""Both directions on a table this project created (``messenger setup-transports``), with its
microsecond columns, its extra index and its PostgreSQL trigger: the Symfony app joins a
Python one, instead of the other way round as in the other tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import Interop, check_handled, new_backend

pytestmark = pytest.mark.usefixtures("symfony_serializer")

N = 50


@pytest.fixture(params=["postgresql", "mariadb"])
def python_table(request: pytest.FixtureRequest, php: None, tmp_path: Path) -> Iterator[Interop]:
    backend = new_backend(request.param)
    backend.require()
    made = Interop(tmp_path, backend)
    made.messenger(made.python_settings(), "setup-transports")
    yield made
    made.stop_all()
    backend.cleanup()


def test_php_to_python_on_a_python_table(python_table: Interop) -> None:
    expected = python_table.php_produce("php", N)
    settings = python_table.python_settings()
    python_table.python_worker(settings, "async", "--limit", str(N)).finish()
    check_handled(python_table.records(), expected, side="python")


def test_python_to_php_on_a_python_table(python_table: Interop) -> None:
    expected = python_table.python_dispatch("py", N)
    python_table.php_worker(python_table.php_config(), "--limit", str(N)).finish()
    check_handled(python_table.records(), expected, side="php")
