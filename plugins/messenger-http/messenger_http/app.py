"""The ASGI application: ``POST /consume``, ``GET /stats``, ``GET /health``, ``/openapi.json``.

:func:`create_app` builds it for one :class:`~messenger_core.app.Messenger`. It is a Starlette
application, so it mounts under any prefix in Starlette or FastAPI (``Mount("/queue",
app=create_app(messenger))``, ``fastapi_app.mount("/queue", ...)``), and runs under any ASGI
server; :func:`messenger_http.wsgi.create_wsgi_app` adapts it to WSGI (Flask, Django).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from messenger_core.app import Messenger
from messenger_core.dsn import mask_dsn
from messenger_core.errors import BrokerUnreachableError, ConfigurationError
from messenger_http.auth import BearerToken
from messenger_http.consumer import (
    Consumer,
    LockUnavailableError,
    ReceiverBusyError,
    ShuttingDownError,
)
from messenger_http.openapi import openapi_document
from messenger_http.settings import HttpSettings
from messenger_http.stats import transport_stats

__all__ = ["MAX_BODY_SIZE", "MessengerHttpApp", "create_app"]

logger = logging.getLogger("messenger.http")

MAX_BODY_SIZE = 4096
"""Bytes a ``POST /consume`` body may have (it holds one receiver name)."""


class MessengerHttpApp(Starlette):
    """The Starlette application :func:`create_app` returns; :attr:`consumer` runs consumes."""

    consumer: Consumer

    def stop(self) -> None:
        """Start no new consume and stop the running ones after their current message
        (``/health`` answers 503 from now on). ``messenger serve-http`` calls it on SIGTERM."""
        self.consumer.stop()

    def close(self) -> None:
        """:meth:`stop`, and close the connections the receiver locks keep.

        The app's own lifespan does this at shutdown; a host application that mounts it
        (Starlette and FastAPI do not run a mounted app's lifespan) calls it in its own.
        """
        self.consumer.close()


def create_app(
    messenger: Messenger,
    *,
    token: str | None = None,
    behind_authentication: bool | None = None,
    time_limit: float | None = None,
    memory_limit: str | int | None = None,
    poll_interval: float | None = None,
    receivers: list[str] | None = None,
    keepalive: float | None = None,
    close_messenger: bool = False,
    environ: Mapping[str, str] | None = None,
) -> MessengerHttpApp:
    """The HTTP consume endpoint of ``messenger``, as an ASGI application.

    Arguments left ``None`` come from ``[messenger.plugins.http]`` in the configuration, and
    the token from ``$MESSENGER_HTTP_TOKEN`` (``environ``, default ``os.environ``):

    - ``token``: the bearer token requests must carry; without one the app refuses to be
      built (:class:`ConfigurationError`) unless ``behind_authentication`` says something in
      front authenticates the requests;
    - ``time_limit`` (seconds, default 2), ``memory_limit`` (``"512M"``; ``0``: none),
      ``poll_interval`` (seconds between polls once something was handled, default 0.1),
      ``keepalive`` (renew a slow message's reservation every so many seconds): the limits
      of one consume;
    - ``receivers``: the transports it may consume (default: all but failure transports and
      ``sync://`` ones);
    - ``close_messenger``: close ``messenger`` (its transports) when the app shuts down, as
      ``messenger serve-http`` does; leave it off when the host application owns it.
    """
    settings = HttpSettings.resolve(
        messenger,
        {
            "token": token,
            "behind_authentication": behind_authentication,
            "time_limit": time_limit,
            "memory_limit": memory_limit,
            "poll_interval": poll_interval,
            "receivers": receivers,
            "keepalive": keepalive,
        },
        environ,
    )
    consumer = Consumer(messenger, settings)
    endpoints = _Endpoints(consumer, BearerToken(settings.token) if settings.token else None)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await anyio.to_thread.run_sync(consumer.close)
        if close_messenger:
            await anyio.to_thread.run_sync(messenger.close)

    app = MessengerHttpApp(
        routes=[
            Route("/consume", endpoints.consume, methods=["POST"]),
            Route("/stats", endpoints.stats, methods=["GET"]),
            Route("/health", endpoints.health, methods=["GET"]),
            Route("/openapi.json", endpoints.openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.consumer = consumer
    return app


class _Endpoints:
    def __init__(self, consumer: Consumer, token: BearerToken | None) -> None:
        self.consumer = consumer
        self.token = token

    def _denied(self, request: Request) -> Response | None:
        if self.token is None or self.token.allows(request.headers.get("authorization")):
            return None
        return JSONResponse(
            {"error": "missing or wrong bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="messenger"'},
        )

    async def consume(self, request: Request) -> Response:
        denied = self._denied(request)  # before reading anything else the client sent
        if denied is not None:
            return denied
        body = await _read_body(request)
        if body is None:
            return _error(413, f"the request body exceeds {MAX_BODY_SIZE} bytes")
        consumer = self.consumer
        name = _receiver_of(body)
        known = consumer.receivers()
        if name is None or name not in known:
            what = "no receiver given" if name is None else f"unknown receiver {name!r}"
            return _error(
                400,
                f'{what}: send {{"receiver": NAME}} with one of: {", ".join(known) or "none"}',
                receivers=known,
            )
        if consumer.stopping:
            return _error(503, "the endpoint is shutting down")
        if not consumer.reserve(name):
            return _error(409, f"receiver {name!r} is being consumed already", receiver=name)
        try:
            # Not cancellable: the thread finishes its message, then the finally frees the name.
            result = await anyio.to_thread.run_sync(consumer.consume, name)
        except ReceiverBusyError as error:
            return _error(
                409, f"receiver {name!r} is being consumed already: {error}", receiver=name
            )
        except (ShuttingDownError, LockUnavailableError) as error:
            return _error(503, str(error))
        except BrokerUnreachableError as error:
            # The details (hosts, paths) go to the log, not to the client.
            logger.error("consuming %s: %s", name, mask_dsn(str(error)))
            return _error(503, f"the server of receiver {name!r} cannot be reached")
        except ConfigurationError as error:
            logger.error("consuming %s: %s", name, mask_dsn(str(error)))
            return _error(500, f"receiver {name!r} is misconfigured (see the server's log)")
        except Exception as error:
            logger.exception("consuming %s failed", name)
            return _error(500, f"consuming {name!r} failed: {type(error).__name__}")
        finally:
            consumer.unreserve(name)
        logger.debug(
            "consumed %s: %d handled, %d failed in %.2fs (%s)",
            name,
            result.handled,
            result.failed,
            result.seconds,
            result.stop_reason,
        )
        return JSONResponse(
            {
                "handledMessages": result.handled,
                "failedMessages": result.failed,
                "stopReason": result.stop_reason,
            }
        )

    async def stats(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        counts = await anyio.to_thread.run_sync(transport_stats, self.consumer.messenger)
        return JSONResponse(counts)

    async def health(self, request: Request) -> Response:
        if self.consumer.stopping:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def openapi(self, request: Request) -> Response:
        root_path = str(request.scope.get("root_path", ""))
        return JSONResponse(openapi_document(root_path, authenticated=self.token is not None))


async def _read_body(request: Request) -> bytes | None:
    """The body, or ``None`` once it exceeds :data:`MAX_BODY_SIZE` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_SIZE:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _receiver_of(body: bytes) -> str | None:
    try:
        document = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(document, dict) and isinstance(document.get("receiver"), str):
        return str(document["receiver"])
    return None


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)
