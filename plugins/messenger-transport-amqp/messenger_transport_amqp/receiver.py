"""The receiving role: push consumption (``basic.consume``) with a prefetch window.

RabbitMQ pushes up to ``prefetch_count`` unacknowledged messages per queue; pika hands them
to the receiver's delivery callback, which only buffers them. ``get()`` returns one buffered
message (after each message the worker goes back to its first receiver, so priorities
hold), or lets pika wait a little for one to arrive (a :class:`WaitingReceiver`).

Settling is :mod:`.settling`'s; acknowledgements held back are written before ``get()``
waits.

On close, the consumers are cancelled while the deliveries RabbitMQ still pushes are buffered
(not rejected, as pika's ``basic_cancel`` would); buffered messages the worker never saw are
then published again as new messages (confirmed, then the originals acknowledged), so that they
do not come back flagged as redelivered; a message handed out and never settled is put back
(``basic.nack requeue=true``), flagged redelivered.

When the connection is lost instead, RabbitMQ puts back everything the channel held, all
flagged redelivered, also the buffered messages nobody saw. The receiver remembers those
(by body and headers); when one of them comes back to it, it is not stamped
``TransportRedeliveredStamp``: it was never handled, and the reject-redelivered middleware
would send it through a retry (or, with no retries left, to the failure transport) for
nothing. (Two identical messages, one handled and one not, may then be told apart wrongly:
the handled one runs again, which at-least-once allows.)
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import pika  # type: ignore[import-untyped]
from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.serializer import Serializer
from messenger_core.stamps import TransportMessageIdStamp, TransportRedeliveredStamp
from messenger_core.transport import TransportMessage
from messenger_core.wire import decode_stored
from messenger_transport_amqp.connection import CONSUMER_SLICE, AmqpConnection, logger
from messenger_transport_amqp.reconnect import AmqpUnreachableError
from messenger_transport_amqp.sender import AmqpSender, Publication
from messenger_transport_amqp.settling import Delivery, Settler
from messenger_transport_amqp.stamps import AmqpReceivedStamp

__all__ = ["AmqpReceiver"]

_WAIT = 0.1
"""Seconds a ``get()`` with nothing buffered lets pika wait for a delivery."""
_UNSEEN_LIMIT = 10_000
"""At most about this many messages lost with a channel are remembered as never seen."""
_DRAIN_WAIT = 0.005
"""Seconds a ``get()`` that just ran dry waits for deliveries still on the wire."""
_CANCEL_TIMEOUT = 10.0
"""Seconds closing waits for RabbitMQ to confirm cancelling the consumers."""
_handed_out: list[Any] = [0, None]
"""Messages handed out by every AMQP receiver of the process, and the last receiver that
handed one out (see ``_wait_time``)."""


class AmqpReceiver:
    """Consumes the transport's queues on its connection's channel."""

    def __init__(self, connection: AmqpConnection, serializer: Serializer) -> None:
        self._connection = connection
        self._serializer = serializer
        self._options = options = connection.options
        self._queues = options.queue_names
        self._buffers: dict[str, deque[Delivery]] = {name: deque() for name in self._queues}
        self._settler = Settler(connection)
        self._consuming: dict[str, str] = {}  # queue -> consumer tag, on the current channel
        self._by_message: dict[int, Delivery] = {}  # id(message) -> delivery, while handed
        self._redeclare = False  # a consumer was cancelled by RabbitMQ
        self._unseen: Counter[tuple[bytes, str]] = Counter()  # lost with a channel, never seen
        self._last_count = -1
        self._empty_before = False
        self.received_once = False
        connection.on_open.append(self._on_open)

    # -- consuming -----------------------------------------------------------------------------
    def _on_open(self, channel: BlockingChannel) -> None:
        """A new channel: what the old one had buffered RabbitMQ puts back by itself."""
        if sum(self._unseen.values()) > _UNSEEN_LIMIT:
            self._unseen.clear()  # they went to other consumers long ago
        for buffer in self._buffers.values():
            self._unseen.update(_fingerprint(d) for d in buffer if not d.redelivered)
            buffer.clear()
        self._settler.reset()
        self._consuming.clear()
        self._by_message.clear()
        channel.add_on_cancel_callback(self._on_cancel)

    def _on_cancel(self, frame: Any) -> None:
        """RabbitMQ cancelled a consumer (its queue was deleted, or a node of a cluster went
        away): consume it again on the next ``get()``, declaring it again with
        ``auto_setup``, instead of going quiet."""
        tag = frame.method.consumer_tag
        for queue, consumer_tag in list(self._consuming.items()):
            if consumer_tag == tag:
                del self._consuming[queue]
                self._redeclare = True
                logger.warning(
                    "RabbitMQ cancelled the consumer of queue %s (was it deleted?); "
                    "consuming it again",
                    queue,
                )

    def _subscribe(self, channel: BlockingChannel, queues: Sequence[str]) -> None:
        if self._redeclare:
            self._redeclare = False
            if self._options.auto_setup:
                self._connection.topology.declare(channel)
        for queue in queues:
            if queue not in self._consuming:
                if not self._consuming:
                    channel.basic_qos(prefetch_count=self._options.prefetch_count)
                self._consuming[queue] = channel.basic_consume(
                    queue, self._delivery_callback(queue, self._connection.generation)
                )

    def _delivery_callback(self, queue: str, generation: int) -> Any:
        buffer, received = self._buffers[queue], self._settler.received

        def on_delivery(
            _channel: BlockingChannel, method: Any, properties: Any, body: bytes
        ) -> None:
            delivery = Delivery(
                queue,
                method.delivery_tag,
                generation,
                method.routing_key,
                method.redelivered,
                properties,
                body,
            )
            received(delivery)
            buffer.append(delivery)

        return on_delivery

    def get(self, queues: Sequence[str] | None = None) -> list[Envelope]:
        """At most one envelope from ``queues`` (default: all, in configuration order)."""
        names = self._queues if queues is None else self._check(queues)
        connection = self._connection
        connection.check_open()
        if not self.received_once:  # start-up: a clear error (after reconnect_timeout)
            delivery = connection.run(lambda ch: self._get_on(ch, names), "receive messages")
            self.received_once = True
        else:
            budget = min(self._options.reconnect_timeout, CONSUMER_SLICE)
            try:
                delivery = connection.run(
                    lambda ch: self._get_on(ch, names), "receive messages", budget=budget
                )
            except AmqpUnreachableError:
                return []  # logged once; the next get() tries again
        return [] if delivery is None else [self._envelope(delivery)]

    def _get_on(self, channel: BlockingChannel, names: Sequence[str]) -> Delivery | None:
        self._subscribe(channel, names)
        delivery = self._pop(names)
        if delivery is None:
            self._settler.send_acks(channel)
            channel.connection.process_data_events(time_limit=self._wait_time())
            delivery = self._pop(names)
        self._empty_before = delivery is None
        return delivery

    def _wait_time(self) -> float:
        """How long an empty ``get()`` lets pika wait for a delivery (it returns as soon as
        one arrives): 0.1 s when nothing happened since this receiver's last call (an idle
        worker); a few milliseconds when this receiver handed out the last message in the
        process (it just ran dry: more may be on the wire, and a lower-priority receiver
        should not go first); else not at all (a worker serving a lower-priority receiver
        comes back here between its messages)."""
        count, last_by = _handed_out
        quiet, self._last_count = self._last_count == count, count
        if quiet and self._empty_before:
            return _WAIT
        return _DRAIN_WAIT if last_by is self and not self._empty_before else 0.0

    def _pop(self, names: Sequence[str]) -> Delivery | None:
        buffers = self._buffers
        for name in names:
            buffer = buffers[name]
            if buffer:
                delivery = buffer.popleft()
                delivery.handed = True
                _handed_out[0] += 1
                _handed_out[1] = self
                return delivery
        return None

    def _envelope(self, delivery: Delivery) -> Envelope:
        properties = delivery.properties
        headers = {
            str(name): value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            for name, value in (properties.headers or {}).items()
            if value is not None
        }
        if properties.content_type and "Content-Type" not in headers:
            headers["Content-Type"] = properties.content_type
        delivery_id = f"{delivery.generation}.{delivery.tag}"
        envelope = decode_stored(
            TransportMessage(delivery.body, headers, delivery_id),
            self._serializer,
            TransportMessageIdStamp(id=delivery_id),
        )
        received = AmqpReceivedStamp(
            queue_name=delivery.queue,
            routing_key=delivery.routing_key,
            redelivered=delivery.redelivered,
            delivery_tag=delivery.tag,
            generation=delivery.generation,
        )
        envelope = envelope.with_(received)
        if delivery.redelivered and not self._was_unseen(delivery):
            envelope = envelope.with_(TransportRedeliveredStamp())
        self._by_message[id(envelope.message)] = delivery
        self.received_once = True
        return envelope

    def _was_unseen(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` was buffered and never handed out when a channel was lost."""
        if not self._unseen:
            return False
        key = _fingerprint(delivery)
        if not self._unseen[key]:
            return False
        self._unseen[key] -= 1
        if not self._unseen[key]:
            del self._unseen[key]
        return True

    def _check(self, queues: Sequence[str]) -> Sequence[str]:
        unknown = [name for name in queues if name not in self._buffers]
        if unknown:
            raise ConfigurationError(
                f"queue(s) {', '.join(map(repr, unknown))} are not queues of the AMQP transport "
                f"for exchange {self._options.exchange.name!r}; its queues: "
                f"{', '.join(self._queues)}"
            )
        return queues

    # -- settling ------------------------------------------------------------------------------
    def origin_of(self, envelope: Envelope) -> AmqpReceivedStamp | None:
        """Where a message handed out by this receiver (and not settled yet) came from; found
        by the message object, which a retry's copy shares with the received envelope."""
        delivery = self._by_message.get(id(envelope.message))
        if delivery is None or not delivery.handed:
            return None
        return AmqpReceivedStamp(
            queue_name=delivery.queue,
            routing_key=delivery.routing_key,
            redelivered=delivery.redelivered,
            delivery_tag=delivery.tag,
            generation=delivery.generation,
        )

    def ack(self, envelope: Envelope) -> None:
        """Acknowledge (held back briefly, see :mod:`.settling`)."""
        self._by_message.pop(id(envelope.message), None)
        self._settler.ack(_stamp_of(envelope, "acknowledge"))

    def reject(self, envelope: Envelope) -> None:
        """Remove the message for good (``basic.nack``, ``requeue=false``), at once."""
        self._by_message.pop(id(envelope.message), None)
        self._settler.nack(_stamp_of(envelope, "reject"), requeue=False)

    def release(self, envelope: Envelope) -> None:
        """Put a handed-out message back at once (``basic.nack requeue=true``; it comes back
        flagged redelivered)."""
        self._by_message.pop(id(envelope.message), None)
        self._settler.nack(_stamp_of(envelope, "release"), requeue=True)

    def flush(self) -> None:
        """Send the acknowledgements held back."""
        self._settler.flush()

    # -- closing -------------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Messages pushed to this receiver and not handed out yet."""
        return sum(len(buffer) for buffer in self._buffers.values())

    @property
    def holds_deliveries(self) -> bool:
        """Whether this receiver consumes or holds messages on the current channel."""
        return bool(self._consuming or self._settler.outstanding)

    def hand_back(self, channel: BlockingChannel, sender: AmqpSender) -> None:
        """On close: acknowledgements out, consumers cancelled (what RabbitMQ pushes until it
        confirms a cancel is buffered too), buffered messages published again as new ones
        (then acknowledged), messages handed out and not settled put back."""
        settler = self._settler
        settler.send_acks(channel)
        self._cancel_consumers(channel)
        unseen = [
            d for b in self._buffers.values() for d in b if not d.redelivered or self._was_unseen(d)
        ]
        for buffer in self._buffers.values():
            buffer.clear()
        if unseen:
            # Straight to the queue it came from (default exchange), as it was; confirmed
            # first, then the originals acknowledged (a copy RabbitMQ did not store leaves its
            # original unacknowledged: it comes back, flagged redelivered, not lost).
            sender.publish_confirmed(
                channel, [Publication("", d.queue, d.body, d.properties) for d in unseen]
            )
            for delivery in unseen:
                settler.forget(delivery)
                channel.basic_ack(delivery.tag)
        settler.requeue_all(channel)

    def _cancel_consumers(self, channel: BlockingChannel) -> None:
        """Cancel every consumer, buffering the deliveries RabbitMQ sends until it confirms.

        pika's ``basic_cancel`` rejects (requeue) every delivery that arrives between
        ``basic.cancel`` and ``cancel-ok``, and the acknowledgements just sent opened the
        prefetch window, so RabbitMQ is pushing right then: the rejected messages would
        come back flagged redelivered though nobody saw them, and the next worker's
        reject-redelivered middleware would fail them. So ``basic.cancel`` is sent through
        the channel's private ``_rpc`` (pika has no public way to cancel without rejecting),
        deliveries keep reaching the callback, which buffers them, until ``cancel-ok``:
        AMQP promises none after it. The public ``basic_cancel`` then only makes pika forget
        the consumer (RabbitMQ answers ``cancel-ok`` for a tag it no longer knows, and
        pushes nothing more for it)."""
        impl = channel._impl
        waiting: set[str] = set(self._consuming.values())
        for tag in list(waiting):
            impl._rpc(
                pika.spec.Basic.Cancel(consumer_tag=tag),
                lambda frame: waiting.discard(frame.method.consumer_tag),
                [(pika.spec.Basic.CancelOk, {"consumer_tag": tag})],
            )
        deadline = time.monotonic() + _CANCEL_TIMEOUT
        while waiting and time.monotonic() < deadline:
            channel.connection.process_data_events(time_limit=0.05)
        channel.connection.process_data_events(0)  # dispatch what came before cancel-ok
        if waiting:
            logger.warning(
                "RabbitMQ at %s did not confirm cancelling %d consumer(s) within %g s",
                self._connection.where,
                len(waiting),
                _CANCEL_TIMEOUT,
            )
        for tag in self._consuming.values():
            channel.basic_cancel(tag)
        self._consuming.clear()


def _stamp_of(envelope: Envelope, what: str) -> AmqpReceivedStamp:
    stamp = envelope.last(AmqpReceivedStamp)
    if stamp is None:
        raise TransportError(
            f"cannot {what} a message that was not received from this transport "
            "(it has no AmqpReceivedStamp)"
        )
    return stamp


def _fingerprint(delivery: Delivery) -> tuple[bytes, str]:
    """What tells a message apart without an id: its body and headers."""
    headers = delivery.properties.headers or {}
    return delivery.body, repr(sorted(headers.items(), key=lambda item: str(item[0])))
