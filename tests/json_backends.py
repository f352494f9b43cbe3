"""A fixture running a test once with each JSON backend of the ``json`` serializer.

Import ``json_backend`` into a test module (and use it, or mark it autouse there): the
serializer then writes and reads JSON with the standard library, then with orjson (when the
``fast`` extra is installed; without it that run is skipped, so the fallback always runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from messenger_core.serialization import _json_text
from messenger_core.serialization import json as json_serialization

BACKENDS = ["json", "orjson"]


def backend_named(name: str) -> _json_text.JsonText:
    """The backend called ``name``; skips the test if orjson is wanted but not installed."""
    if name == "json":
        return _json_text.JSON
    if _json_text.ORJSON is None:
        pytest.skip("orjson is not installed (the messenger-core[fast] extra)")
    return _json_text.ORJSON


@pytest.fixture(scope="module", params=BACKENDS)
def json_backend(request: pytest.FixtureRequest) -> Iterator[_json_text.JsonText]:
    """The serializer uses each backend in turn (module-scoped: hypothesis tests may use it)."""
    chosen = backend_named(request.param)
    names = ("_dumps", "_dumps_bytes", "_loads")
    saved = [getattr(json_serialization, name) for name in names]
    for name, function in zip(names, (chosen.dumps, chosen.dumps_bytes, chosen.loads), strict=True):
        setattr(json_serialization, name, function)
    try:
        yield chosen
    finally:
        for name, function in zip(names, saved, strict=True):
            setattr(json_serialization, name, function)
