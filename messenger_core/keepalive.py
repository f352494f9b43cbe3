"""Keepalive: one background thread that keeps the reservations of the messages being handled.

With ``keepalive_interval`` a worker hands each message it handles from a
:class:`~messenger_core.transport.KeepaliveReceiver` to a :class:`Keepalive`. While the
handler runs longer than the interval, the thread calls the receiver's ``keepalive`` every
half interval (asking for twice the interval), so that a slow handler does not see its message
redelivered to another worker. A keepalive that fails is logged; the handler carries on. A
worker with ``--concurrency`` has several messages watched at once.
"""

from __future__ import annotations

import logging
import threading
import time

from messenger_core._describe import describe_message
from messenger_core.envelope import Envelope
from messenger_core.logging_json import message_fields
from messenger_core.stamps import ReceivedStamp
from messenger_core.transport import KeepaliveReceiver

__all__ = ["Keepalive"]

logger = logging.getLogger("messenger.worker")


class Keepalive:
    """One daemon thread that extends the reservations of the messages being handled."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # id(envelope) -> (envelope, receiver, monotonic time its handling started)
        self._current: dict[int, tuple[Envelope, KeepaliveReceiver, float]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="messenger-keepalive", daemon=True)
        self._thread.start()

    def watch(self, envelope: Envelope, receiver: KeepaliveReceiver) -> None:
        """``envelope`` from ``receiver`` is being handled from now on."""
        with self._lock:
            self._current[id(envelope)] = (envelope, receiver, time.monotonic())

    def clear(self, envelope: Envelope) -> None:
        """``envelope`` is settled (or given up): stop extending it."""
        with self._lock:
            self._current.pop(id(envelope), None)

    def stop(self) -> None:
        """End the thread (at its next wake-up)."""
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval / 2):
            with self._lock:
                watched = list(self._current.values())
            now = time.monotonic()
            for envelope, receiver, started in watched:
                if now - started >= self.interval:
                    self._extend(envelope, receiver)

    def _extend(self, envelope: Envelope, receiver: KeepaliveReceiver) -> None:
        try:
            receiver.keepalive(envelope, self.interval * 2)
        except Exception as error:
            received = envelope.last(ReceivedStamp)
            logger.warning(
                "keepalive for %s from %s failed: %s",
                describe_message(envelope),
                received.transport_name if received else "its transport",
                error,
                extra=message_fields(envelope),
            )
