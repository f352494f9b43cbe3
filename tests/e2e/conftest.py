"""End-to-end tests: real ``messenger`` processes on SQLite transports in ``tmp_path``.

They need the SQL transport plugin (``pip install -e plugins/messenger-transport-sql``). Without
it every test here is skipped with that reason, or fails when ``MESSENGER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import pytest

from messenger_core.testing.services import service_unavailable

try:
    import messenger_transport_sql  # noqa: F401
except ImportError as error:
    _MISSING: str | None = str(error)
else:
    _MISSING = None


@pytest.fixture(autouse=True)
def _sql_transport_plugin() -> None:
    if _MISSING is None:
        return
    service_unavailable(
        "the end-to-end tests need the SQL transport plugin "
        f"(pip install -e plugins/messenger-transport-sql): {_MISSING}"
    )
