"""Consume messenger transports over HTTP: the endpoint Shopware's administration calls.

- :func:`create_app`: the ASGI application (``POST /consume``, ``GET /stats``,
  ``GET /health``, ``/openapi.json``), mountable in Starlette or FastAPI under any prefix;
- :func:`create_wsgi_app`: the same for WSGI hosts (Flask, Django);
- ``messenger serve-http``: serve it with uvicorn; ``messenger consume-http URL --receiver
  NAME``: a loop client calling it (:class:`ConsumeLoop`).

See the README for the API, authentication, the per-receiver locks and mounting.
"""

from __future__ import annotations

from messenger_http.app import MessengerHttpApp, create_app
from messenger_http.client import ConsumeLoop
from messenger_http.settings import TOKEN_VARIABLE, HttpSettings
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
