"""The receiving role: push consumption (``basic.consume``) with a prefetch window.

RabbitMQ pushes up to ``prefetch_count`` unacknowledged messages per queue; pika hands them
to :meth:`AmqpReceiver._on_delivery`, which only buffers them. ``get()`` returns one buffered
message (after each message the worker goes back to its first receiver, so priorities
hold), or lets pika wait a little for one to arrive (a :class:`WaitingReceiver`).

Settling: a rejection is sent at once (``basic.nack``, ``requeue=false``); acknowledgements
are held back briefly and sent with one ``basic.ack multiple=true`` for the oldest
outstanding deliveries once they are all acknowledged (a delivery still held by the worker or
buffered stops the run there: those after it are acknowledged one by one). They are written
before ``get()`` waits, when half the prefetch window is acknowledged, on :meth:`flush` and on
close. An acknowledgement lost to a crash only means the message comes again.

On close, buffered messages the worker never saw are published again as new messages (and
the originals acknowledged), so that they do not come back flagged as redelivered; a message
handed out and never settled is put back (``basic.nack requeue=true``), flagged redelivered.

When the connection is lost instead, RabbitMQ puts back everything the channel held, all
flagged redelivered, also the buffered messages nobody saw. The receiver remembers those
(by body and headers); when one of them comes back to it, it is not stamped
``TransportRedeliveredStamp``: it was never handled, and the reject-redelivered middleware
would send it through a retry (or, with no retries left, to the failure transport) for
nothing. (Two identical messages, one handled and one not, may then be told apart wrongly:
the handled one runs again, which at-least-once allows.)
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import attrs
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
from messenger_transport_amqp.stamps import AmqpReceivedStamp

__all__ = ["AmqpReceiver"]

_WAIT = 0.1
"""Seconds a ``get()`` with nothing buffered lets pika wait for a delivery."""
_handed_out = [0]
"""Messages handed out by every AMQP receiver of the process (see ``_wait_time``)."""


@attrs.define(slots=True)
class _Delivery:
    queue: str
    tag: int
    generation: int
    routing_key: str
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes
    handed: bool = False
    acked: bool = False


class AmqpReceiver:
    """Consumes the transport's queues on its connection's channel."""

    def __init__(self, connection: AmqpConnection, serializer: Serializer) -> None:
        self._connection = connection
        self._serializer = serializer
        self._options = options = connection.options
        self._queues = options.queue_names
        self._buffers: dict[str, deque[_Delivery]] = {name: deque() for name in self._queues}
        self._outstanding: OrderedDict[int, _Delivery] = OrderedDict()
        self._consuming: dict[str, str] = {}  # queue -> consumer tag, on the current channel
        self._unsent_acks = 0
        self._ack_batch = max(1, options.prefetch_count // 2)
        self._by_message: dict[int, _Delivery] = {}  # id(message) -> delivery, while handed
        self._unseen: Counter[tuple[bytes, str]] = Counter()  # lost with a channel, never seen
        self._last_count = -1
        self._empty_before = False
        self.received_once = False
        connection.on_open.append(self._on_open)

    # -- consuming -----------------------------------------------------------------------------
    def _on_open(self, channel: BlockingChannel) -> None:
        """A new channel: what the old one had buffered RabbitMQ puts back by itself."""
        for buffer in self._buffers.values():
            self._unseen.update(_fingerprint(d) for d in buffer if not d.redelivered)
            buffer.clear()
        self._outstanding.clear()
        self._consuming.clear()
        self._unsent_acks = 0
        self._by_message.clear()

    def _subscribe(self, channel: BlockingChannel, queues: Sequence[str]) -> None:
        for queue in queues:
            if queue not in self._consuming:
                if not self._consuming:
                    channel.basic_qos(prefetch_count=self._options.prefetch_count)
                self._consuming[queue] = channel.basic_consume(
                    queue, self._delivery_callback(queue, self._connection.generation)
                )

    def _delivery_callback(self, queue: str, generation: int) -> Any:
        buffer, outstanding = self._buffers[queue], self._outstanding

        def on_delivery(
            _channel: BlockingChannel, method: Any, properties: Any, body: bytes
        ) -> None:
            delivery = _Delivery(
                queue,
                method.delivery_tag,
                generation,
                method.routing_key,
                method.redelivered,
                properties,
                body,
            )
            outstanding[method.delivery_tag] = delivery
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

    def _get_on(self, channel: BlockingChannel, names: Sequence[str]) -> _Delivery | None:
        self._subscribe(channel, names)
        delivery = self._pop(names)
        if delivery is None:
            self._send_acks(channel)
            channel.connection.process_data_events(time_limit=self._wait_time())
            delivery = self._pop(names)
        self._empty_before = delivery is None
        return delivery

    def _wait_time(self) -> float:
        """How long an empty ``get()`` waits: not at all if a message was handed out anywhere
        in this process since this receiver's last call (a worker serving a lower-priority
        receiver comes back here between its messages), else briefly."""
        count = _handed_out[0]
        quiet, self._last_count = self._last_count == count, count
        return _WAIT if quiet and self._empty_before else 0.0

    def _pop(self, names: Sequence[str]) -> _Delivery | None:
        buffers = self._buffers
        for name in names:
            buffer = buffers[name]
            if buffer:
                delivery = buffer.popleft()
                delivery.handed = True
                _handed_out[0] += 1
                return delivery
        return None

    def _envelope(self, delivery: _Delivery) -> Envelope:
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

    def _was_unseen(self, delivery: _Delivery) -> bool:
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
        """Acknowledge (held back briefly, see the module documentation)."""
        with self._connection.lock:
            delivery = self._settling(envelope, "acknowledge")
            if delivery is None:
                return
            delivery.acked = True
            self._unsent_acks += 1
            if self._unsent_acks >= self._ack_batch:
                self._connection.settle(self._send_acks, "acknowledge messages")

    def reject(self, envelope: Envelope) -> None:
        """Remove the message for good (``basic.nack``, ``requeue=false``), at once."""
        with self._connection.lock:
            delivery = self._settling(envelope, "reject")
            if delivery is None:
                return
            del self._outstanding[delivery.tag]

            def nack(channel: BlockingChannel) -> None:
                channel.basic_nack(delivery.tag, requeue=False)

            self._connection.settle(nack, "reject a message")

    def flush(self) -> None:
        """Send the acknowledgements held back."""
        with self._connection.lock:
            if self._unsent_acks:
                self._connection.settle(self._send_acks, "acknowledge messages")

    def release(self, envelope: Envelope) -> None:
        """Put a handed-out message back at once (``basic.nack requeue=true``; it comes back
        flagged redelivered)."""
        with self._connection.lock:
            delivery = self._settling(envelope, "release")
            if delivery is None:
                return
            del self._outstanding[delivery.tag]

            def requeue(channel: BlockingChannel) -> None:
                channel.basic_nack(delivery.tag, requeue=True)

            self._connection.settle(requeue, "release a message")

    def _settling(self, envelope: Envelope, what: str) -> _Delivery | None:
        """The outstanding delivery of ``envelope``; ``None`` (logged) if its channel is gone."""
        stamp = envelope.last(AmqpReceivedStamp)
        if stamp is None:
            raise TransportError(
                f"cannot {what} a message that was not received from this transport "
                "(it has no AmqpReceivedStamp)"
            )
        self._by_message.pop(id(envelope.message), None)
        delivery = self._outstanding.get(stamp.delivery_tag)
        if stamp.generation != self._connection.generation or delivery is None:
            logger.warning(
                "could not %s a message from queue %s: the channel it came on is gone; "
                "RabbitMQ delivers it again (flagged redelivered)",
                what,
                stamp.queue_name,
            )
            return None
        if not delivery.handed or delivery.acked:
            raise TransportError(f"cannot {what} a message twice")
        return delivery

    def _send_acks(self, channel: BlockingChannel) -> None:
        """Acknowledge the acknowledged outstanding deliveries: one multiple-ack for the
        oldest ones, one ack each for those behind a delivery still held."""
        if not self._unsent_acks:
            return
        outstanding = self._outstanding
        last = None
        while outstanding:
            tag, delivery = next(iter(outstanding.items()))
            if not delivery.acked:
                break
            outstanding.popitem(last=False)
            last = tag
        if last is not None:
            channel.basic_ack(last, multiple=True)
        stragglers = [tag for tag, delivery in outstanding.items() if delivery.acked]
        for tag in stragglers:
            del outstanding[tag]
            channel.basic_ack(tag)
        self._unsent_acks = 0

    # -- closing -------------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Messages pushed to this receiver and not handed out yet."""
        return sum(len(buffer) for buffer in self._buffers.values())

    @property
    def holds_deliveries(self) -> bool:
        """Whether this receiver consumes or holds messages on the current channel."""
        return bool(self._consuming or self._outstanding)

    def hand_back(self, channel: BlockingChannel, sender: AmqpSender) -> None:
        """On close: acknowledgements out, buffered messages published again as new ones (then
        acknowledged), messages handed out and not settled put back."""
        self._send_acks(channel)
        channel.connection.process_data_events(0)  # what arrived is buffered, not nacked
        for consumer_tag in list(self._consuming.values()):
            channel.basic_cancel(consumer_tag)
        self._consuming.clear()
        unseen = [d for b in self._buffers.values() for d in b if not d.redelivered]
        for buffer in self._buffers.values():
            buffer.clear()
        if unseen:
            # Straight to the queue it came from (default exchange), as it was; confirmed
            # first when the transport confirms, then the originals acknowledged.
            sender.publish_on(
                channel, [Publication("", d.queue, d.body, d.properties) for d in unseen]
            )
            for delivery in unseen:
                channel.basic_ack(delivery.tag)
                del self._outstanding[delivery.tag]
        for tag in list(self._outstanding):
            channel.basic_nack(tag, requeue=True)
        self._outstanding.clear()


def _fingerprint(delivery: _Delivery) -> tuple[bytes, str]:
    """What tells a message apart without an id: its body and headers."""
    headers = delivery.properties.headers or {}
    return delivery.body, repr(sorted(headers.items(), key=lambda item: str(item[0])))
