"""Consume messenger transports over HTTP: the endpoint Shopware's administration calls.

- :func:`create_app`: the ASGI application (``POST /consume``, ``GET /stats``,
  ``GET /health``, ``/openapi.json``), mountable in Starlette or FastAPI under any prefix;
- :func:`create_wsgi_app`: the same for WSGI hosts (Flask, Django);
- ``messenger serve-http``: serve it with uvicorn; ``messenger consume-http URL --receiver
  NAME``: a loop client calling it (:class:`ConsumeLoop`).

See the README for the API, authentication, the per-receiver locks and mounting.

The names are imported on first use: every application loads this plugin's hooks
(:mod:`messenger_http.commands`), and must not pay for Starlette, uvicorn and httpx then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from messenger_http._names import TOKEN_VARIABLE

if TYPE_CHECKING:
    from messenger_http.app import MessengerHttpApp, create_app
    from messenger_http.client import ConsumeLoop
    from messenger_http.settings import HttpSettings
    from messenger_http.wsgi import MessengerWsgiApp, create_wsgi_app

__all__ = [
    "TOKEN_VARIABLE",
    "ConsumeLoop",
    "HttpSettings",
    "MessengerHttpApp",
    "MessengerWsgiApp",
    "create_app",
    "create_wsgi_app",
]

_WHERE = {
    "ConsumeLoop": "client",
    "HttpSettings": "settings",
    "MessengerHttpApp": "app",
    "MessengerWsgiApp": "wsgi",
    "create_app": "app",
    "create_wsgi_app": "wsgi",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
