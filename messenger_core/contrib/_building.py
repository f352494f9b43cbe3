"""Building the application from a framework's settings (shared by the integrations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from messenger_core.app import Messenger
from messenger_core.cli.app_loader import AppLoader
from messenger_core.config import load_config
from messenger_core.errors import ConfigurationError

__all__ = ["build_messenger"]


def build_messenger(
    *,
    where: str,
    config: Mapping[str, Any] | None = None,
    config_file: str | None = None,
    app: str | None = None,
    scan: Iterable[str] = (),
) -> Messenger:
    """The application that settings describe, ``where`` naming them in errors.

    One of: ``app`` (``module:attribute``: a ``Messenger`` or a function returning one, as
    ``--app`` takes it), ``config`` (a dict shaped like the ``[messenger]`` table),
    ``config_file`` (a ``messenger.toml`` or ``pyproject.toml``); none means every message is
    handled synchronously. The modules of ``scan`` are scanned for ``@handler`` marks.
    """
    settings = {"app": app, "config": config, "config file": config_file}
    chosen = [name for name, value in settings.items() if value is not None]
    if len(chosen) > 1:
        raise ConfigurationError(f"{where}: give one of {', '.join(chosen)}, not several")
    if app is not None:
        messenger = AppLoader(app=app).load()
    elif config_file is not None:
        messenger = Messenger(load_config(config_file))
    else:
        messenger = Messenger(config)
    scanned = list(scan)
    if scanned:
        messenger.scan(*scanned)
    return messenger
