"""The pytest plugin of the testing kit (entry point ``pytest11``, name ``messenger``).

It does nothing to a test that does not ask for its fixtures:

``messenger_app``
    The application under test. By default it is loaded like the command line loads it: the
    ``messenger_app`` ini option (``module:attribute``), else ``MESSENGER_APP``, else the
    ``app`` key of ``messenger.toml`` (or ``[tool.messenger]`` of ``pyproject.toml``) in the
    rootdir. Override the fixture to build it yourself.
``messenger_test``
    A :class:`~messenger_core.testing.kit.MessengerTest` over ``messenger_app``: every
    transport swapped for an in-memory one for this test, assertions, ``process()``.

The marker ``@pytest.mark.messenger(keep=[...], sync=False, delays=False, serialize=False,
raise_errors=False)`` configures ``messenger_test`` for one test (or a module, with
``pytestmark``). ``-p no:messenger`` disables the plugin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from messenger_core.app import Messenger
from messenger_core.errors import ConfigurationError
from messenger_core.testing.kit import MessengerTest

__all__ = ["messenger_app", "messenger_test"]

_INI = "messenger_app"
_MARKER = "messenger"
_MARKER_OPTIONS = ("keep", "sync", "delays", "serialize", "raise_errors")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``messenger_app`` ini option."""
    parser.addini(
        _INI,
        "the messenger application of the messenger_app fixture (module:attribute); "
        "default: MESSENGER_APP, else the app key of messenger.toml",
        default=None,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``messenger`` marker (so that ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(keep=[], sync=False, delays=False, serialize=False, raise_errors=False): "
        "options of the messenger_test fixture",
    )


@pytest.fixture
def messenger_app(request: pytest.FixtureRequest) -> Messenger:
    """The application under test (override this fixture to build your own)."""
    from messenger_core.cli.app_loader import AppLoader  # noqa: PLC0415 - only when used

    spec = request.config.getini(_INI) or None
    loader = AppLoader(app=spec, directory=Path(request.config.rootpath))
    try:
        return loader.load()
    except ConfigurationError as error:
        hint = (
            ""
            if spec or os.environ.get("MESSENGER_APP")
            else (f" (set the {_INI} ini option, or override the messenger_app fixture)")
        )
        pytest.fail(f"messenger_app: {error}{hint}", pytrace=False)


@pytest.fixture
def messenger_test(
    messenger_app: Messenger, request: pytest.FixtureRequest
) -> Iterator[MessengerTest]:
    """``messenger_app`` with in-memory transports for this test (see the module)."""
    options: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers(_MARKER))):  # closest wins
        if marker.args:
            pytest.fail(f"@pytest.mark.{_MARKER} takes keyword arguments only", pytrace=False)
        unknown = set(marker.kwargs).difference(_MARKER_OPTIONS)
        if unknown:
            pytest.fail(
                f"@pytest.mark.{_MARKER}: unknown option(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(_MARKER_OPTIONS)})",
                pytrace=False,
            )
        options.update(marker.kwargs)
    keep = options.pop("keep", ())
    if isinstance(keep, str):
        keep = (keep,)
    with MessengerTest(messenger_app, keep=keep, **options) as test:  # type: ignore[arg-type]
        yield test
