"""Flask integration: the application as a Flask extension, and ``flask messenger ...``.

::

    from flask import Flask
    from messenger_core.contrib.flask import FlaskMessenger

    app = Flask(__name__)
    app.config["MESSENGER"] = {"transports": {"async": "redis://localhost:6379/orders"},
                               "routing": {"shop.messages.OrderPlaced": "async"}}
    app.config["MESSENGER_SCAN"] = ["shop.handlers"]
    messenger = FlaskMessenger(app)        # or FlaskMessenger(messenger=an_app) + init_app(app)

    @app.post("/orders")
    def place_order():
        messenger.bus.dispatch(OrderPlaced(order_id=1))
        ...

Settings (``app.config``), one of: ``MESSENGER`` (the ``[messenger]`` table as a dict),
``MESSENGER_CONFIG`` (a ``messenger.toml``), ``MESSENGER_APP`` (``module:attribute``); plus
``MESSENGER_SCAN`` (modules whose ``@handler`` marks are registered). A ``Messenger`` given to
the constructor is used as it is.

``flask messenger COMMAND ...`` is the ``messenger`` command line on this application, in the
application context (handlers can use ``current_app`` and the app's extensions):
``flask messenger consume async``, ``flask messenger failed show``, ...
"""

from __future__ import annotations

import click
from flask import Flask, current_app, has_app_context
from flask.cli import with_appcontext

from messenger_core.app import Messenger
from messenger_core.bus import MessageBus
from messenger_core.contrib._building import build_messenger
from messenger_core.errors import ConfigurationError

__all__ = ["EXTENSION", "FlaskMessenger", "current_messenger", "messenger_command"]

EXTENSION = "messenger"
"""The key of ``app.extensions`` holding the application's ``Messenger``."""


class FlaskMessenger:
    """The Flask extension: one ``Messenger`` per Flask application."""

    def __init__(self, app: Flask | None = None, *, messenger: Messenger | None = None) -> None:
        self._messenger = messenger
        self._initialized: Messenger | None = None  # the last init_app's, for use outside a request
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Messenger:
        """Build (or take) the ``Messenger`` of ``app`` and add the ``flask messenger`` command."""
        messenger = self._messenger
        if messenger is None:
            config = app.config
            messenger = build_messenger(
                where="Flask configuration MESSENGER*",
                config=config.get("MESSENGER"),
                config_file=config.get("MESSENGER_CONFIG"),
                app=config.get("MESSENGER_APP"),
                scan=config.get("MESSENGER_SCAN", ()),
            )
        elif app.config.get("MESSENGER_SCAN"):
            messenger.scan(*app.config["MESSENGER_SCAN"])
        app.extensions[EXTENSION] = messenger
        app.cli.add_command(messenger_command)
        self._initialized = messenger
        return messenger

    @property
    def messenger(self) -> Messenger:
        """The ``Messenger`` given to the constructor, else the current Flask app's (outside
        an application context: the one of the application last initialized)."""
        if self._messenger is not None:
            return self._messenger
        if has_app_context() or self._initialized is None:
            return current_messenger()
        return self._initialized

    @property
    def bus(self) -> MessageBus:
        """The default bus of :attr:`messenger`."""
        return self.messenger.bus


def current_messenger() -> Messenger:
    """The ``Messenger`` of the current Flask application."""
    try:
        messenger: Messenger = current_app.extensions[EXTENSION]
    except KeyError:
        raise ConfigurationError(
            "this Flask application has no messenger: call FlaskMessenger(app) or init_app(app)"
        ) from None
    return messenger


@click.command(
    "messenger",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def messenger_command(arguments: tuple[str, ...]) -> None:
    """The messenger command line on this application (flask messenger --help)."""
    from messenger_core.cli import main  # noqa: PLC0415 - only when the command runs

    code = main(list(arguments), application=current_messenger())
    if code:
        raise SystemExit(code)
