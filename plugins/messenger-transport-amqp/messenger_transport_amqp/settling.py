"""The settling role: acknowledgements held back and sent as multiple-acks, rejections.

A rejection is sent at once (``basic.nack``, ``requeue=false``; ``requeue=true`` to release).
Acknowledgements are held back briefly and sent with one ``basic.ack multiple=true`` for the
oldest outstanding deliveries once they are all acknowledged (a delivery still held by the
worker, or buffered and not handed out, stops the run there: those after it are acknowledged
one by one). They are written when half the prefetch window is acknowledged, before a
``get()`` waits, on ``flush()`` and on close. Settlements only ever go to the channel the
messages came on: after a reconnect they are dropped (logged), and RabbitMQ delivers those
messages again. An acknowledgement lost so only means the message comes again.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs
import pika  # type: ignore[import-untyped]
from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from messenger_core.errors import TransportError
from messenger_transport_amqp.connection import AmqpConnection, logger
from messenger_transport_amqp.stamps import AmqpReceivedStamp

__all__ = ["Delivery", "Settler"]


@attrs.define(slots=True)
class Delivery:
    """One message RabbitMQ pushed, until it is settled."""

    queue: str
    tag: int
    generation: int
    routing_key: str
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes
    handed: bool = False
    """Handed out by ``get()`` (not only buffered)."""
    acked: bool = False
    """Acknowledged, the acknowledgement not sent yet."""


class Settler:
    """The outstanding deliveries of the current channel, in delivery order."""

    def __init__(self, connection: AmqpConnection) -> None:
        self._connection = connection
        self.outstanding: OrderedDict[int, Delivery] = OrderedDict()
        self._unsent = 0
        self._batch = max(1, connection.options.prefetch_count // 2)

    def reset(self) -> None:
        """A new channel: RabbitMQ put back what the old one held."""
        self.outstanding.clear()
        self._unsent = 0

    def received(self, delivery: Delivery) -> None:
        """``delivery`` was pushed (called by pika, holding the connection's lock)."""
        self.outstanding[delivery.tag] = delivery

    def forget(self, delivery: Delivery) -> None:
        """``delivery`` is being settled by the caller itself (handing back on close)."""
        del self.outstanding[delivery.tag]

    def ack(self, stamp: AmqpReceivedStamp) -> None:
        """Acknowledge (held back until a batch is due)."""
        with self._connection.lock:
            delivery = self._find(stamp, "acknowledge")
            if delivery is None:
                return
            delivery.acked = True
            self._unsent += 1
            if self._unsent >= self._batch:
                self._connection.settle(self.send_acks, "acknowledge messages")

    def nack(self, stamp: AmqpReceivedStamp, *, requeue: bool) -> None:
        """``basic.nack``, at once: removed for good, or put back with ``requeue``."""
        with self._connection.lock:
            delivery = self._find(stamp, "release" if requeue else "reject")
            if delivery is None:
                return
            del self.outstanding[delivery.tag]

            def nack(channel: BlockingChannel) -> None:
                channel.basic_nack(delivery.tag, requeue=requeue)

            self._connection.settle(nack, "release a message" if requeue else "reject a message")

    def flush(self) -> None:
        """Send the acknowledgements held back."""
        with self._connection.lock:
            if self._unsent:
                self._connection.settle(self.send_acks, "acknowledge messages")

    def send_acks(self, channel: BlockingChannel) -> None:
        """Acknowledge the acknowledged outstanding deliveries: one multiple-ack for the
        oldest ones, one ack each for those behind a delivery still held."""
        if not self._unsent:
            return
        outstanding = self.outstanding
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
        self._unsent = 0

    def requeue_all(self, channel: BlockingChannel) -> None:
        """Put back every outstanding delivery (closing)."""
        for tag in list(self.outstanding):
            channel.basic_nack(tag, requeue=True)
        self.outstanding.clear()

    def _find(self, stamp: AmqpReceivedStamp, what: str) -> Delivery | None:
        """The outstanding delivery ``stamp`` names; ``None`` (logged) if its channel is
        gone."""
        delivery = self.outstanding.get(stamp.delivery_tag)
        if stamp.generation != self._connection.generation:
            logger.warning(
                "could not %s a message from queue %s: the channel it came on is gone; "
                "RabbitMQ delivers it again (flagged redelivered)",
                what,
                stamp.queue_name,
            )
            return None
        if delivery is None or not delivery.handed or delivery.acked:
            raise TransportError(
                f"cannot {what} a message from queue {stamp.queue_name}: it was settled "
                "already (or never handed out by this transport)"
            )
        return delivery
