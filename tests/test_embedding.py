"""Embedding with no entry points at all: ``messenger_core`` imported from a copy of its source
with no ``*.dist-info`` anywhere (not even the core's), as an application that vendors it does.

The README's call, ``Messenger(config, autoload=False, transports={"memory":
MemoryTransportFactory()})``, must dispatch and consume; the core's own built-ins (``sync://``,
the ``json`` serializer, the default middleware) need no entry point; an unknown scheme is an
error naming it and what to install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import messenger_core

# What messenger_core imports from outside the standard library (stevedore is not needed for
# the built-ins, so it is left out on purpose).
DEPENDENCIES = ("attr", "attrs", "cattrs", "pluggy", "typing_extensions")


@pytest.fixture(scope="module")
def source_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding messenger_core and its dependencies' packages, no metadata."""
    root = tmp_path_factory.mktemp("source-only")
    shutil.copytree(
        Path(messenger_core.__file__).parent,
        root / "messenger_core",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue  # not installed here: then not needed either
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, root / name, ignore=shutil.ignore_patterns("*.pyc"))
        else:
            shutil.copy(origin, root / origin.name)
    return root


def _run(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("MESSENGER_")
    }
    environment["PYTHONPATH"] = str(root)
    return subprocess.run(
        # -S: no site-packages, so no installed distribution (and no .pth finder) is seen.
        [sys.executable, "-S", "-c", textwrap.dedent(code)],
        env=environment,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


PRELUDE = """
    import sys
    from importlib import metadata

    import attrs

    import messenger_core
    from messenger_core import ConfigurationError, Messenger
    from messenger_core.transports.memory import MemoryTransportFactory

    assert "site-packages" not in messenger_core.__file__, messenger_core.__file__
    assert not list(metadata.distributions()), "a distribution is visible"
    assert messenger_core.__version__ == "0+unknown"

    @attrs.frozen
    class OrderPlaced:
        order_id: int

    HANDLED = []
"""


def test_the_readmes_embedding_call_dispatches_and_consumes(source_only: Path) -> None:
    result = _run(
        source_only,
        PRELUDE
        + """
    config = {
        "transports": {"async": "memory://", "now": "sync://"},
        "routing": {"__main__.OrderPlaced": "async"},
    }
    messenger = Messenger(config, autoload=False, transports={"memory": MemoryTransportFactory()})

    @messenger.handler
    def on_order(message: OrderPlaced) -> None:
        HANDLED.append(message.order_id)

    messenger.bus.dispatch(OrderPlaced(order_id=7))
    assert HANDLED == [], "it was routed to async, not handled at once"
    messenger.worker(["async"]).run(limit=1)
    assert HANDLED == [7], HANDLED
    # The core's built-ins without entry points, even with autoload on.
    assert "sync" in Messenger(config).factories.names("messenger.transports")
    assert "stevedore" not in sys.modules
    print("ok")
    """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_an_unknown_scheme_names_it_and_what_to_install(source_only: Path) -> None:
    result = _run(
        source_only,
        PRELUDE
        + """
    for autoload in (False, True):
        messenger = Messenger(
            {"transports": {"async": "redis://localhost:6379/messages"}},
            autoload=autoload,
            transports={"memory": MemoryTransportFactory()},
        )
        try:
            messenger.get_transport("async")
        except ConfigurationError as error:
            print(error)
        else:
            raise AssertionError("no error")
    """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    without, with_autoload = result.stdout.strip().splitlines()
    for text in (without, with_autoload):
        assert "no transport for DSN scheme 'redis'" in text
        assert "pip install messenger-transport-redis" in text
        assert "MESSENGER_DISABLE_PLUGIN_AUTOLOAD" not in text  # it is not set
    assert "autoload=False was passed" in without
    assert "autoload=False" not in with_autoload
