"""Environments for ``messenger`` processes that tests start (``messenger consume`` and co.).

A test that runs the command line as a real process wants it to import the test's own app
modules, to keep its stop signal to itself, to print its log lines as they come, and not to
be steered by the environment the test suite itself runs in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["OUTER_VARIABLES", "messenger_environment"]

OUTER_VARIABLES = (
    "MESSENGER_APP",
    "MESSENGER_DISABLE_PLUGIN_AUTOLOAD",
    "MESSENGER_DISABLED_PLUGINS",
)
"""Variables of the outer environment that would pick another application or block plugins."""


def messenger_environment(
    import_paths: Iterable[Path], stop_signal_file: Path, **variables: str
) -> dict[str, str]:
    """This process's environment for a ``messenger`` child process.

    ``import_paths`` go before any ``PYTHONPATH`` already set; the stop signal is
    ``stop_signal_file`` (``MESSENGER_STOP_SIGNAL_FILE``), so that ``stop-workers`` in one
    test reaches no other test's workers; output is unbuffered; :data:`OUTER_VARIABLES` are
    removed; ``variables`` are added last.
    """
    environment = {name: value for name, value in os.environ.items() if name not in OUTER_VARIABLES}
    inherited = [path for path in [os.environ.get("PYTHONPATH")] if path]
    environment["PYTHONPATH"] = os.pathsep.join([*map(str, import_paths), *inherited])
    environment["MESSENGER_STOP_SIGNAL_FILE"] = str(stop_signal_file)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(variables)
    return environment
