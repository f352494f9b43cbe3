"""The steps of one message in a worker: receive it, dispatch it, settle it with its receiver.

:class:`MessageSteps` is the part of :class:`~messenger_core.worker.Worker` that deals with one
message; the worker runs the steps in a row (:meth:`MessageSteps.handle`), or, with
``concurrency`` above 1, a :class:`~messenger_core.concurrency.HandlerPool` runs
:meth:`MessageSteps.dispatch_received` on its threads and the worker's thread the others.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from messenger_core._awaitables import HandlerTimeoutError, deadline
from messenger_core._describe import describe_message
from messenger_core.envelope import Envelope
from messenger_core.errors import HandlerFailedError, MessageDecodingError
from messenger_core.failure_policy import FailurePolicy, failure_transport_for
from messenger_core.keepalive import Keepalive
from messenger_core.logging_json import message_fields
from messenger_core.stamps import BusNameStamp, ConsumedByWorkerStamp, ReceivedStamp
from messenger_core.transport import KeepaliveReceiver, Receiver, UndecodableMessage
from messenger_core.worker_signals import WorkerInterrupted
from messenger_core.worker_stats import WorkerStats

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.bus import MessageBus

__all__ = ["MessageSteps"]

logger = logging.getLogger("messenger.worker")


class MessageSteps:
    """One message's way through a worker (the worker sets these attributes)."""

    messenger: Messenger
    stats: WorkerStats
    failure_policy: FailurePolicy
    forced_bus: MessageBus | None
    keepalive_interval: float | None
    handler_timeout: float | None
    _keepalive: Keepalive | None
    _announce_each_message: bool
    _received_stamps: dict[str, tuple[ReceivedStamp, ConsumedByWorkerStamp]]

    def handle(self, envelope: Envelope, transport_name: str, receiver: Receiver) -> None:
        """Dispatch one received envelope and settle it with its receiver."""
        received = self.receive(envelope, transport_name, receiver)
        if received is None:
            return
        envelope = received
        keepalive = self._watch(envelope, receiver) if self.keepalive_interval else None
        try:
            handled = self.dispatch_received(envelope)
        except Exception as error:
            self.settle_failure(envelope, transport_name, receiver, error)
            return
        except WorkerInterrupted:
            logger.warning(
                "%s from %s was interrupted and not acknowledged: it comes back when its "
                "reservation expires",
                describe_message(envelope),
                transport_name,
                extra=message_fields(envelope, transport_name),
            )
            raise
        finally:
            if keepalive:
                keepalive.clear(envelope)
        self.settle_success(handled, envelope, transport_name, receiver)

    def receive(
        self, envelope: Envelope, transport_name: str, receiver: Receiver
    ) -> Envelope | None:
        """Count and stamp a received envelope; ``None`` if it was undecodable (then settled)."""
        self.stats.received += 1
        envelope = envelope.with_(*self._received_stamps[transport_name])
        if self._announce_each_message:
            self.messenger.hooks.message_received(envelope, transport_name)
        if isinstance(envelope.message, UndecodableMessage):
            error = MessageDecodingError.from_message(envelope.message.reason)
            self.failure_policy.settle(envelope, transport_name, receiver, error, envelope)
            return None
        return envelope

    def dispatch_received(self, envelope: Envelope) -> Envelope:
        """Run a received envelope through its bus (any thread); raise if it failed or ran
        over ``handler_timeout`` (async handlers are cancelled at it)."""
        limit = self.handler_timeout
        if limit is None:
            return self._bus_for(envelope).dispatch(envelope)
        started = time.monotonic()
        with deadline(limit):
            handled = self._bus_for(envelope).dispatch(envelope)
        took = time.monotonic() - started
        if took > limit:
            # A synchronous handler cannot be interrupted: its overrun is found now.
            raise HandlerTimeoutError(
                f"handling {describe_message(envelope)} took {took:.3g}s, over the "
                f"handler timeout of {limit:g}s"
            )
        return handled

    def settle_success(
        self, handled: Envelope, received: Envelope, transport_name: str, receiver: Receiver
    ) -> None:
        """Acknowledge a message its handlers handled (``received``: as it was received)."""
        receiver.ack(received)
        self.stats.handled += 1
        if self._announce_each_message:
            self.messenger.hooks.message_handled(handled, transport_name)

    def settle_failure(
        self, received: Envelope, transport_name: str, receiver: Receiver, error: Exception
    ) -> None:
        """Retry or park a message whose handling raised ``error``."""
        failed = error.envelope if isinstance(error, HandlerFailedError) else received
        self.failure_policy.settle(received, transport_name, receiver, error, failed)

    def unwatch(self, envelope: Envelope) -> None:
        """Stop keeping ``envelope``'s reservation alive (it is settled)."""
        if self._keepalive is not None:
            self._keepalive.clear(envelope)

    def _bus_for(self, envelope: Envelope) -> MessageBus:
        if self.forced_bus is not None:
            return self.forced_bus
        stamp = envelope.last(BusNameStamp)
        return self.messenger.get_bus(stamp.bus_name) if stamp else self.messenger.bus

    def failure_transport_for(self, transport_name: str) -> str | None:
        """The failure transport of ``transport_name`` (its own, else the global one)."""
        return failure_transport_for(self.messenger, transport_name)

    def watch(self, envelope: Envelope, receiver: Receiver) -> None:
        """Keep ``envelope``'s reservation alive while it is handled (with a keepalive)."""
        if self.keepalive_interval:
            self._watch(envelope, receiver)

    def _watch(self, envelope: Envelope, receiver: Receiver) -> Keepalive | None:
        if not self.keepalive_interval or not isinstance(receiver, KeepaliveReceiver):
            return None
        if self._keepalive is None:
            self._keepalive = Keepalive(self.keepalive_interval)
        self._keepalive.watch(envelope, receiver)
        return self._keepalive
