"""The sending role: publishing in Symfony's wire layout, with publisher confirms.

A message is published with its body as the body, its headers (strings) as the ``headers``
table except ``Content-Type``, which becomes the ``content_type`` property, ``delivery_mode``
2 and the current ``timestamp``; an :class:`~messenger_transport_amqp.stamps.AmqpStamp` adds
the routing key and properties. With a ``DelayStamp`` it goes to the delays exchange and waits
in its delay queue (see :mod:`.topology`); a retry (a received message re-sent with a
``RedeliveryStamp``) waits in a ``_retry`` queue that sends it back to its own queue only.

The channel is in confirm mode only with ``confirm_timeout`` (confirms cost RabbitMQ work
and this process CPU on every message): a send, or a whole batch, then returns only once
RabbitMQ confirmed every message (one wait per batch); a ``nack`` or no answer in time raises
:class:`~messenger_core.errors.TransportError`. Without it, a send returns once the message is
written to the socket, as in Symfony; closing still loses nothing (pika writes everything and
RabbitMQ handles a channel's frames in order before it answers the close). Counting messages
needs to know that the messages sent before are in their queues, which only confirms tell (a
queue answers a count before it takes in the publishes it already received): so the first
``message_count()`` puts the transport in confirm mode, for the sends after it (a process
that counts sends little, a producer that never counts pays nothing). A send interrupted by a lost
connection is published again on a new one (at-least-once: it may then be stored twice).

The frames are written by :class:`~messenger_transport_amqp.frames.PublishFrames`, which
encodes each distinct set of properties once; a send then returns once they are written to
the socket, as pika's ``basic_publish`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import pika  # type: ignore[import-untyped]
from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.serializer import Serializer
from messenger_core.stamps import DelayStamp, RedeliveryStamp
from messenger_transport_amqp.connection import AmqpConnection, logger
from messenger_transport_amqp.frames import PublishFrames, encode_properties
from messenger_transport_amqp.stamps import AmqpReceivedStamp, AmqpStamp

__all__ = ["AmqpSender", "Publication"]

PERSISTENT = 2
_SELECT_TIMEOUT = 10.0
_HAND_BACK_TIMEOUT = 15.0
"""Seconds closing waits for the confirms of the unhandled messages it publishes again."""


@attrs.frozen
class Publication:
    """One message ready to publish."""

    exchange: str
    routing_key: str
    body: bytes
    properties: bytes | pika.BasicProperties
    """Encoded (see :mod:`.frames`), or as pika gives them for a message received."""
    delay_ms: int = 0
    final_routing_key: str | None = None
    retry: bool = False


class AmqpSender:
    """Publishes envelopes to the transport's exchange (or its delay queues)."""

    def __init__(
        self,
        connection: AmqpConnection,
        serializer: Serializer,
        origin_of: Callable[[Envelope], AmqpReceivedStamp | None],
    ) -> None:
        self._connection = connection
        self._serializer = serializer
        self._origin_of = origin_of
        self._options = options = connection.options
        self._confirm_timeout = options.confirm_timeout
        # Confirm-mode bookkeeping of the current channel.
        self._next_tag = 1
        self._pending: set[int] = set()
        self._nacked: list[int] = []
        self._select_ok = False
        self._confirming = False
        self._always_confirm = options.confirm_timeout is not None
        self._waiting = False
        self._frames = PublishFrames()
        connection.on_open.append(self._on_open)

    # -- building ------------------------------------------------------------------------------
    def publication(self, envelope: Envelope) -> Publication:
        """What to publish for ``envelope``."""
        message = self._serializer.encode(envelope)
        stamp = envelope.last(AmqpStamp)
        timestamp = int(time.time())
        if stamp is None or not stamp.attributes:
            # The properties follow from the headers and the second alone: encoded once.
            key = (timestamp, tuple(message.headers.items()))
            properties: bytes | pika.BasicProperties = self._frames.properties(
                key, lambda: _properties(message.headers, {}, timestamp)
            )
        else:
            properties = _properties(message.headers, stamp.attributes, timestamp)

        routing_key = stamp.routing_key if stamp is not None else None
        if routing_key is None:
            routing_key = self._options.exchange.default_publish_routing_key
        retry = False
        if envelope.last(RedeliveryStamp) is not None:
            origin = self._origin_of(envelope)
            if origin is not None:  # Symfony: a retry goes back to the queue it failed in
                routing_key, retry = origin.queue_name, True
        delay = envelope.last(DelayStamp)
        delay_ms = delay.delay_ms if delay is not None and delay.delay_ms > 0 else 0
        if delay_ms:
            name = self._connection.topology.delay_queue_name(delay_ms, routing_key, retry)
            return Publication(
                self._options.delay.exchange_name,
                name,
                message.body,
                properties,
                delay_ms,
                routing_key,
                retry,
            )
        return Publication(self._options.exchange.name, routing_key or "", message.body, properties)

    # -- publishing ----------------------------------------------------------------------------
    def send(self, envelope: Envelope) -> Envelope:
        """Publish one message (and wait for its confirm, with ``confirm_timeout``)."""
        self.publish([self.publication(envelope)])
        return envelope

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Publish all ``envelopes``, then wait for one round of confirms."""
        if envelopes:
            self.publish([self.publication(envelope) for envelope in envelopes])
        return list(envelopes)

    def publish(self, publications: Sequence[Publication]) -> None:
        """Publish ``publications`` through the reconnect policy (all again after a lost
        connection)."""
        what = "publish messages" if len(publications) > 1 else "publish a message"
        self._connection.run(lambda channel: self.publish_on(channel, publications), what)

    def publish_confirmed(
        self, channel: BlockingChannel, publications: Sequence[Publication]
    ) -> None:
        """Publish on ``channel`` now and wait for RabbitMQ's confirms, whatever
        ``confirm_timeout`` is (handing back on close: the originals are acknowledged next)."""
        self.publish_on(channel, publications, self._confirm_timeout or _HAND_BACK_TIMEOUT)

    def publish_on(
        self,
        channel: BlockingChannel,
        publications: Sequence[Publication],
        confirm_timeout: float | None = None,
    ) -> None:
        """Publish on ``channel`` now (holding the connection's lock), waiting for confirms
        with ``confirm_timeout`` (default: the option)."""
        if confirm_timeout is None:
            confirm_timeout = self._confirm_timeout
        elif not self._confirming:
            self._select_confirms(channel)  # handing back on close: wait for these once
        confirming = self._confirming
        topology = self._connection.topology
        frames = self._frames
        number, frame_max = channel.channel_number, frames.frame_max(channel)
        chunks = []
        first = self._next_tag
        for each in publications:
            if each.delay_ms:
                topology.declare_delay_queue(
                    channel, each.delay_ms, each.final_routing_key, each.retry
                )
            properties = each.properties
            if not isinstance(properties, bytes):
                properties = encode_properties(properties)
            chunks.append(
                frames.message(
                    number,
                    each.exchange,
                    each.routing_key,
                    properties,
                    each.body,
                    frame_max=frame_max,
                )
            )
        if confirming:  # counted before writing: writing may read their confirms
            self._pending.update(range(first, first + len(chunks)))
            self._next_tag += len(chunks)
        frames.write(channel, [b"".join(chunks)] if len(chunks) > 1 else chunks)
        frames.flush(channel)
        if confirm_timeout is None:
            if self._nacked:
                self._report_nacks()
            return
        self._await_confirms(channel, first, confirm_timeout)

    def sync(self, timeout: float) -> None:
        """Wait (holding the connection's lock) until RabbitMQ confirmed every message sent so
        far on the current channel: they are in their queues then."""
        connection = self._connection
        with connection.lock:
            if self._pending and connection.connected:

                def wait(channel: BlockingChannel) -> None:
                    self._wait(channel, lambda: not self._pending, timeout, "earlier messages")
                    self._report_nacks()

                connection.run(wait, "wait for confirms", budget=0)

    def _report_nacks(self) -> None:
        nacked, self._nacked = self._nacked, []
        if nacked:
            logger.error(
                "RabbitMQ at %s refused (nack) %d message(s) published to exchange %r: they "
                "are not stored (set confirm_timeout to get this error from send())",
                self._connection.where,
                len(nacked),
                self._options.exchange.name,
            )

    # -- confirms ------------------------------------------------------------------------------
    def _on_open(self, channel: BlockingChannel) -> None:
        """A new channel: not in confirm mode, unless ``confirm_timeout`` (or counting)
        asks for it."""
        self._next_tag, self._pending, self._nacked = 1, set(), []
        self._confirming = False
        if self._always_confirm:
            self._select_confirms(channel)

    def confirm_from_now(self) -> None:
        """Track confirms of every message sent from now on (counting messages asked for
        it): :meth:`sync` then waits for them."""
        connection = self._connection
        with connection.lock:
            self._always_confirm = True
            if connection.connected and not self._confirming:
                connection.run(self._select_confirms, "select confirm mode", budget=0)

    def _select_confirms(self, channel: BlockingChannel) -> None:
        """Put the channel in confirm mode; its delivery tags start at 1."""
        self._next_tag, self._pending, self._nacked = 1, set(), []
        self._select_ok = False
        self._confirming = True

        def selected(_frame: Any) -> None:
            self._select_ok = True
            if self._waiting:
                channel.connection.call_later(0, _nothing)  # wake the wait below

        channel._impl.confirm_delivery(
            ack_nack_callback=lambda frame: self._on_confirm(channel, frame), callback=selected
        )
        # Not confirm_timeout: that bounds confirms of messages, and may be tiny.
        self._wait(channel, lambda: self._select_ok, _SELECT_TIMEOUT, "confirm mode")

    def _on_confirm(self, channel: BlockingChannel, frame: Any) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        settled = {t for t in self._pending if t <= tag} if multiple else {tag} & self._pending
        self._pending -= settled
        if isinstance(method, pika.spec.Basic.Nack):
            self._nacked.extend(settled)
        if self._waiting and not self._pending:
            channel.connection.call_later(0, _nothing)  # wake the wait for confirms

    def _await_confirms(self, channel: BlockingChannel, first: int, timeout: float) -> None:
        count = self._next_tag - first
        self._wait(channel, lambda: not self._pending, timeout, f"{count} confirm(s)")
        nacked, self._nacked = self._nacked, []
        if nacked:
            raise TransportError(
                f"RabbitMQ at {self._connection.where} refused (nack) {len(nacked)} of "
                f"{count} message(s) published to exchange "
                f"{self._options.exchange.name!r}; they are not stored"
            )

    def _wait(
        self, channel: BlockingChannel, ready: Callable[[], bool], timeout: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout
        connection = channel.connection
        self._waiting = True
        try:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    unconfirmed = len(self._pending)
                    self._pending.clear()
                    raise TransportError(
                        f"RabbitMQ at {self._connection.where} did not confirm {what} within "
                        f"{timeout:g} s ({unconfirmed} unconfirmed): they may or may not be "
                        "stored"
                    )
                connection.process_data_events(time_limit=remaining)
        finally:
            self._waiting = False


def _properties(
    headers: Mapping[str, str], attributes: Mapping[str, Any], timestamp: int
) -> pika.BasicProperties:
    """Symfony's layout: the headers but ``Content-Type``, which is the ``content_type``
    property, ``delivery_mode`` 2 and ``timestamp``, unless an ``AmqpStamp``'s ``attributes``
    set them (its ``headers`` are added to the serializer's, which win)."""
    given = dict(attributes)
    table = {**dict(given.pop("headers", None) or {}), **headers}
    content_type = table.pop("Content-Type", None)
    if content_type is not None:
        given.setdefault("content_type", content_type)
    given.setdefault("delivery_mode", PERSISTENT)
    given.setdefault("timestamp", timestamp)
    return pika.BasicProperties(headers=table, **given)


def _nothing() -> None:
    """A timer callback whose only purpose is to end ``process_data_events``."""
