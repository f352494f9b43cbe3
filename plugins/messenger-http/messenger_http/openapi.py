"""The OpenAPI description of the endpoint, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from messenger_http.settings import DEFAULT_TIME_LIMIT

__all__ = ["openapi_document"]


def _error(description: str, **extra: Any) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, **extra},
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(root_path: str = "", *, authenticated: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``root_path`` is where the app is mounted (``servers``)."""
    security: list[dict[str, list[str]]] = [{"bearer": []}] if authenticated else []
    unauthorized = {"401": _error("no token, or a wrong one")} if authenticated else {}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "messenger HTTP consume endpoint",
            "version": "1",
            "description": "Consume a messenger transport for a short time per request "
            "(Shopware's admin worker), count the messages waiting, check health.",
        },
        "servers": [{"url": root_path or "/"}],
        "paths": {
            "/consume": {
                "post": {
                    "operationId": "consume",
                    "summary": "Consume messages of one receiver for a short time",
                    "description": "Runs the worker on the receiver for up to the time limit "
                    f"(default {DEFAULT_TIME_LIMIT:g} s; a message in progress is finished), "
                    "returning at once if the first poll finds nothing, or when the process "
                    "reached its memory limit. Retries, the failure transport and the "
                    "worker's hooks apply as with `messenger consume`.",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["receiver"],
                                    "properties": {"receiver": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "the consume ran",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["handledMessages"],
                                        "properties": {
                                            "handledMessages": {"type": "integer"},
                                            "failedMessages": {"type": "integer"},
                                            "stopReason": {"type": ["string", "null"]},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error(
                            "no receiver, or one this endpoint does not consume",
                            receivers={"type": "array", "items": {"type": "string"}},
                        ),
                        **unauthorized,
                        "409": _error("the receiver is being consumed already"),
                        "413": _error("the request body is too large"),
                        "503": _error(
                            "shutting down, or the lock's store or the transport cannot be reached"
                        ),
                    },
                }
            },
            "/stats": {
                "get": {
                    "operationId": "stats",
                    "summary": "Count the messages of every transport",
                    "security": security,
                    "responses": {
                        "200": {
                            "description": "counts per transport; failure transports marked",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "transports": {
                                                "type": "object",
                                                "additionalProperties": {
                                                    "type": "object",
                                                    "properties": {
                                                        "count": {"type": ["integer", "null"]},
                                                        "failureTransport": {"type": "boolean"},
                                                        "error": {"type": "string"},
                                                    },
                                                },
                                            },
                                            "uncountableTransports": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        **unauthorized,
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "For load balancers: 200 while serving, 503 while shutting down",
                    "security": [],
                    "responses": {
                        "200": {"description": '{"status": "ok"}'},
                        "503": {"description": '{"status": "shutting down"}'},
                    },
                }
            },
        },
    }
    if authenticated:
        document["components"] = {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    return document
