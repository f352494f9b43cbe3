"""The Python application of the interop tests, the counterpart of ``php/bootstrap.php``.

``messenger --app interop_app:from_environment consume ...`` builds it from the settings file
named by ``MESSENGER_INTEROP_SETTINGS``; the tests build it with :func:`build_messenger` to
dispatch. Settings (JSON, written by the tests):

- ``transports``: ``{name: {dsn, options?, retry_strategy?}}``; ``failure_transport``: a name;
- ``handled_file``: where the handler appends one JSON line per attempt (the same keys as the
  PHP handler's, so that both sides' lines are read alike);
- ``fail``: ``{ids: [order_id...], below_retry: null (always) or n (while retry_count < n)}``;
- ``sleep_ms``: how long the handler takes (so that workers sharing a queue both get some);
- ``audit``: a second handler, which records ``audited`` and never fails (a retry must skip
  it once it succeeded, wherever the retry went in between).
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from messenger_core import Messenger
from messenger_core.envelope import Envelope
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import BusNameStamp, ReceivedStamp, RedeliveryStamp

PHP_CLASS = "App\\Message\\OrderPlaced"
SETTINGS_VARIABLE = "MESSENGER_INTEROP_SETTINGS"

_current: contextvars.ContextVar[Envelope | None] = contextvars.ContextVar(
    "interop_envelope", default=None
)


@attrs.frozen
class OrderPlaced:
    """``App\\Message\\OrderPlaced`` on the PHP side (``orderId``, ``amount``, ``placedAt``)."""

    order_id: str
    amount: int
    placed_at: datetime


class CurrentEnvelope:
    """Keeps the envelope being handled, so that the handler can record its retry count."""

    def __init__(self, context: MiddlewareContext) -> None:
        del context

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        token = _current.set(envelope)
        try:
            return next(envelope)
        finally:
            _current.reset(token)


class Recorder:
    """The handler: records each attempt; fails for the configured ids."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.file = Path(settings["handled_file"])
        fail = settings.get("fail") or {}
        self.fail_ids = frozenset(fail.get("ids", ()))
        self.below_retry: int | None = fail.get("below_retry")
        self.sleep = float(settings.get("sleep_ms", 0)) / 1000

    def audit(self, message: OrderPlaced) -> None:
        record = {"side": "python", "pid": os.getpid(), "at": time.time(), "outcome": "audited"}
        self._write({**record, "orderId": message.order_id})

    def _write(self, record: dict[str, Any]) -> None:
        with self.file.open("a", encoding="utf-8") as log:  # one short O_APPEND write
            log.write(json.dumps(record) + "\n")

    def __call__(self, message: OrderPlaced) -> None:
        if self.sleep:
            time.sleep(self.sleep)
        envelope = _current.get()
        redelivery = envelope.last(RedeliveryStamp) if envelope else None
        retry_count = redelivery.retry_count if redelivery else 0
        fail = message.order_id in self.fail_ids and (
            self.below_retry is None or retry_count < self.below_retry
        )
        received = envelope.last(ReceivedStamp) if envelope else None
        bus = envelope.last(BusNameStamp) if envelope else None
        record = {
            "side": "python",
            "pid": os.getpid(),
            "at": time.time(),
            "outcome": "failed" if fail else "handled",
            "orderId": message.order_id,
            "amount": message.amount,
            "placedAt": message.placed_at.isoformat(timespec="microseconds"),
            "retryCount": retry_count,
            "receiver": received.transport_name if received else None,
            "busName": bus.bus_name if bus else None,
        }
        self._write(record)
        if fail:
            raise RuntimeError(f"order {message.order_id} refused by Python")


def build_messenger(settings: dict[str, Any]) -> Messenger:
    """The application: the ``symfony`` serializer on every transport, OrderPlaced routed to
    ``async`` and registered under its PHP class name."""
    transports = {
        name: {"serializer": "symfony", **transport}
        for name, transport in settings["transports"].items()
    }
    config = {
        "failure_transport": settings.get("failure_transport"),
        "transports": transports,
        "routing": {OrderPlaced: "async"},
        "buses": {"messenger.bus.default": {"middleware": ["interop_current_envelope"]}},
    }
    messenger = Messenger(config=config, middleware={"interop_current_envelope": CurrentEnvelope})
    messenger.register_message(OrderPlaced, PHP_CLASS)
    recorder = Recorder(settings)

    @messenger.handler
    def on_order_placed(message: OrderPlaced) -> None:
        recorder(message)

    if settings.get("audit"):

        @messenger.handler
        def audit(message: OrderPlaced) -> None:
            recorder.audit(message)

    return messenger


def from_environment() -> Messenger:
    """The application ``messenger --app interop_app:from_environment`` runs."""
    return build_messenger(json.loads(Path(os.environ[SETTINGS_VARIABLE]).read_text()))
