"""The ``timing`` middleware: how long each dispatch takes, a stamp, and a warning when slow.

A copy-me example of a middleware plugin. Name it in a bus's configuration::

    [messenger.buses."messenger.bus.default"]
    middleware = [{ name = "timing", options = { slow_ms = 500 } }]

Options (all optional):

- ``slow_ms`` (number >= 0, default 1000): dispatches that take at least this long are logged
  at WARNING on the ``logger``; 0 logs every dispatch;
- ``stamp`` (boolean, default true): add a :class:`HandlingTimeStamp` to the returned envelope;
- ``logger`` (default ``messenger.timing``): the logger's name.

On a worker a dispatch is the handling of a received message; in the application that
dispatches, it is the handling (no route) or the sending (routed).
"""

from __future__ import annotations

import difflib
import logging
import time
from typing import Any

import attrs

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import NonSendableStamp, ReceivedStamp
from messenger_core.transport_options import parse_bool, parse_number

__all__ = ["HandlingTimeStamp", "TimingMiddleware"]

OPTIONS = ("slow_ms", "stamp", "logger")


@attrs.frozen(kw_only=True)
class HandlingTimeStamp(NonSendableStamp):
    """How long the rest of the bus's chain took for this dispatch, in milliseconds.

    A ``NonSendableStamp``: it describes this process's work and is never serialized.
    """

    milliseconds: float


class TimingMiddleware:
    """Times the rest of the chain; stamps the result and logs slow dispatches.

    The class is the factory the ``messenger.middleware`` entry point names: the core calls it
    once per bus, with a :class:`MiddlewareContext`, when the bus is built. Bad options are a
    :class:`ConfigurationError` then, so the worker refuses to start instead of failing every
    message.
    """

    def __init__(self, context: MiddlewareContext) -> None:
        options = dict(context.options)
        _reject_unknown(options)
        self.bus_name = context.bus_name
        self.slow_ms = parse_number("slow_ms", options.get("slow_ms", 1000), minimum=0)
        self.stamp = parse_bool("stamp", options.get("stamp", True))
        name = options.get("logger", "messenger.timing")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"option 'logger' must be a logger name, got {name!r}")
        self.logger = logging.getLogger(name)

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        """Pass ``envelope`` on, and time it."""
        started = time.perf_counter()
        result = next(envelope)
        milliseconds = (time.perf_counter() - started) * 1000
        if milliseconds >= self.slow_ms:
            received = envelope.last(ReceivedStamp)
            source = f" from {received.transport_name}" if received else ""
            self.logger.warning(
                "bus %s: %s%s took %.1f ms (slow_ms=%g)",
                self.bus_name,
                type(envelope.message).__qualname__,
                source,
                milliseconds,
                self.slow_ms,
            )
        if self.stamp:
            result = result.with_(HandlingTimeStamp(milliseconds=milliseconds))
        return result


def _reject_unknown(options: dict[str, Any]) -> None:
    for name in options:
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(
                f"unknown option {name!r}{hint} for the timing middleware; known options: "
                f"{', '.join(OPTIONS)}"
            )
