"""The endpoint as a WSGI application, for Flask and Django (through a2wsgi).

a2wsgi runs the ASGI application on an event loop in a thread of its own; every WSGI request
is handed to it, and a consume still runs in a worker thread of that loop, so a WSGI server's
worker waits for its answer as for any slow view. Mount it beside the host application::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    flask_app.wsgi_app = DispatcherMiddleware(
        flask_app.wsgi_app, {"/messenger": create_wsgi_app(messenger)}
    )
"""

from __future__ import annotations

from typing import Any, cast

from a2wsgi import ASGIMiddleware

from messenger_core.app import Messenger
from messenger_http.app import MessengerHttpApp, create_app

__all__ = ["MessengerWsgiApp", "create_wsgi_app"]


class MessengerWsgiApp(ASGIMiddleware):
    """A WSGI application serving :attr:`http_app` (the ASGI app of :func:`create_app`)."""

    http_app: MessengerHttpApp


def create_wsgi_app(messenger: Messenger, **options: Any) -> MessengerWsgiApp:
    """The endpoint of ``messenger`` as a WSGI application; ``options`` are those of
    :func:`~messenger_http.create_app` (the token, the limits, the receivers)."""
    http_app = create_app(messenger, **options)
    wsgi_app = MessengerWsgiApp(cast(Any, http_app))
    wsgi_app.http_app = http_app
    return wsgi_app
