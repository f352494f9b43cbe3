"""Structured logs: one JSON object per line, naming the message and transport of each line.

``messenger --log-format json ...`` (or ``MESSENGER_LOG_FORMAT=json``) writes every log line
as a JSON object: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the fields
passed with ``extra=`` (the worker passes ``message_id``, ``message_type`` and ``transport``),
and ``exception`` when there is a traceback. DSN passwords are masked.

The worker's own lines name their message and transport explicitly. Lines logged *while* a
worker handles a message (by a transport, a middleware, or the application's handlers) get
the same fields from a context that :class:`MessageLogContext` keeps, through
:class:`ContextFilter`. An application that configures logging itself uses them so::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logging.getLogger().addHandler(handler)
    install(messenger)   # the worker's messages become the context of the lines
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from messenger_core.dsn import mask_dsn
from messenger_core.envelope import Envelope
from messenger_core.hookspecs import hookimpl
from messenger_core.stamps import ReceivedStamp, TransportMessageIdStamp
from messenger_core.transport import UndecodableMessage

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.worker import Worker

__all__ = [
    "FORMATS",
    "MESSAGE_ID",
    "MESSAGE_TYPE",
    "TRANSPORT",
    "ContextFilter",
    "JsonFormatter",
    "MessageLogContext",
    "current_fields",
    "install",
    "message_fields",
    "worker_fields",
]

MESSAGE_ID = "message_id"
MESSAGE_TYPE = "message_type"
TRANSPORT = "transport"
FORMATS = ("text", "json")
"""The values of ``--log-format``."""

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "messenger_log_context", default=_EMPTY
)
# What the context goes back to between messages: the worker's transport, if only one.
_base: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "messenger_log_base", default=_EMPTY
)

# Attributes every LogRecord has: anything else on a record came with ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def message_fields(envelope: Envelope | None, transport: str | None = None) -> dict[str, str]:
    """The log fields of ``envelope`` (its transport id and type) and of ``transport``
    (default: the transport it was received from); only those that are known."""
    fields: dict[str, str] = {}
    if envelope is not None:
        message = envelope.message
        if isinstance(message, UndecodableMessage):
            kind = message.headers.get("type")
            if kind:
                fields[MESSAGE_TYPE] = kind
        else:
            cls = type(message)
            fields[MESSAGE_TYPE] = f"{cls.__module__}.{cls.__qualname__}"
        stamp = envelope.last(TransportMessageIdStamp)
        if stamp is not None:
            fields[MESSAGE_ID] = str(stamp.id)
        if transport is None:
            received = envelope.last(ReceivedStamp)
            if received is not None:
                transport = received.transport_name
    if transport is not None:
        fields[TRANSPORT] = transport
    return fields


def worker_fields(transport_names: Sequence[str]) -> dict[str, str]:
    """The log fields of a worker's own lines: its transport, if it consumes only one."""
    return {TRANSPORT: transport_names[0]} if len(transport_names) == 1 else {}


_receiving: dict[str, Mapping[str, str]] = {}


def receiving_from(transport_name: str) -> None:
    """The worker of this thread is about to receive from ``transport_name``: what a transport
    logs while receiving (an outage, a reconnection, a claimed message) names it."""
    fields = _receiving.get(transport_name)
    if fields is None:
        fields = _receiving[transport_name] = MappingProxyType({TRANSPORT: transport_name})
    _context.set(fields)  # until a message is received, or the worker idles


def current_fields() -> Mapping[str, str]:
    """The fields of the message the worker of this thread is handling (empty if none)."""
    return _context.get()


class ContextFilter(logging.Filter):
    """Adds the current message's fields to each record that does not have them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record."""
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module); passwords in DSNs are masked."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_dsn(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = _jsonable(value)
        if record.exc_info:
            document["exception"] = mask_dsn(self.formatException(record.exc_info))
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask_dsn(value)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return mask_dsn(str(value))


class MessageLogContext:
    """Worker hooks keeping the context :class:`ContextFilter` reads: the transport while a
    worker consumes only one, and the message from its receipt until it is settled."""

    @hookimpl
    def messenger_worker_started(self, worker: Worker) -> None:
        """The transport, if the worker consumes one only."""
        _base.set(worker_fields(worker.transport_names))
        _context.set(_base.get())

    @hookimpl
    def messenger_message_received(self, envelope: Envelope, transport_name: str) -> None:
        """The message being handled, until it is settled."""
        _context.set(message_fields(envelope, transport_name))

    @hookimpl
    def messenger_message_handled(self, envelope: Envelope, transport_name: str) -> None:
        """Settled (acknowledged)."""
        _context.set(_base.get())

    @hookimpl
    def messenger_message_retried(
        self, envelope: Envelope, transport_name: str, retry_count: int
    ) -> None:
        """Settled (sent again for retry)."""
        _context.set(_base.get())

    @hookimpl
    def messenger_worker_idle(self, worker: Worker) -> None:
        """Nothing is being handled (a message parked in the failure transport ends here)."""
        _context.set(_base.get())

    @hookimpl
    def messenger_worker_stopped(self, worker: Worker) -> None:
        """Out of the worker."""
        _base.set(_EMPTY)
        _context.set(_EMPTY)


def install(messenger: Messenger) -> MessageLogContext:
    """Keep the log context for ``messenger``'s workers (once per application)."""
    for plugin in messenger.hooks.manager.get_plugins():
        if isinstance(plugin, MessageLogContext):
            return plugin
    plugin = MessageLogContext()
    messenger.hooks.register(plugin)
    return plugin
