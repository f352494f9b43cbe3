"""The AMQP transport: RabbitMQ, in Symfony Messenger's topology and wire layout.

:class:`AmqpTransport` is a facade over the roles, each in its own module:

- :mod:`.connection` (:class:`~.connection.AmqpConnection`): one pika connection and channel,
  a lock around every use, the heartbeat pump, and the reconnect policy (:mod:`.reconnect`);
- :mod:`.topology`: the exchange, the queues, the delays exchange and the delay queues;
- :mod:`.sender` (:class:`~.sender.AmqpSender`): publishing, publisher confirms per batch;
  :mod:`.async_sender` the same from an event loop, through pika's asyncio adapter;
- :mod:`.receiver` (:class:`~.receiver.AmqpReceiver`): push consumption, handing back on
  close;
- :mod:`.settling` (:class:`~.settling.Settler`): acknowledgements held back and sent as
  multiple-acks, rejections;
- :mod:`.options`, :mod:`.stamps`: the DSN and options, ``AmqpStamp``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_core.serializer import Serializer
from messenger_core.transport import TransportCapabilities
from messenger_transport_amqp.async_sender import AsyncAmqpSender
from messenger_transport_amqp.connection import AmqpConnection, logger
from messenger_transport_amqp.options import AmqpOptions
from messenger_transport_amqp.receiver import AmqpReceiver
from messenger_transport_amqp.sender import AmqpSender

__all__ = ["AmqpTransport"]

_SYNC_TIMEOUT = 15.0
"""Seconds counting and closing wait for confirms of the messages sent before (RabbitMQ
confirms a persistent message once it is on disk: seconds on a busy machine)."""


class AmqpTransport:
    """Messages published to an exchange and consumed from its queues on RabbitMQ.

    Build it with :class:`~messenger_transport_amqp.factory.AmqpTransportFactory` from a DSN.
    One transport object is one connection (and one consumer per queue): every call may come
    from any thread, one at a time (a lock serialises them). Every envelope ``get()`` returns
    must be acknowledged or rejected through this object.

    Listing is not possible on AMQP (a queue can only be consumed, not browsed): a failure
    transport on AMQP keeps failed messages, but ``messenger failed show`` and ``failed retry``
    by id cannot reach them.
    """

    capabilities: ClassVar[TransportCapabilities] = TransportCapabilities(
        delay=True,
        fifo=True,
        message_count=True,
        listing=False,
        keepalive=True,
        redelivery=True,
        concurrent_consumers=True,
        batch_send=True,
        setup=True,
        queues=True,
    )
    waits_for_messages: ClassVar[bool] = True
    """``get()`` lets pika wait briefly for a delivery (:class:`WaitingReceiver`)."""

    def __init__(self, options: AmqpOptions, serializer: Serializer) -> None:
        self._options = options
        self.serializer = serializer
        self._connection = connection = AmqpConnection(options)
        self._receiver = AmqpReceiver(connection, serializer)
        self._sender = AmqpSender(connection, serializer, self._receiver.origin_of)
        self._async_sender = AsyncAmqpSender(connection, self._sender)

    def __repr__(self) -> str:
        return (
            f"AmqpTransport({self._options.where!r}, exchange={self._options.exchange.name!r}, "
            f"queues={list(self._options.queue_names)!r})"
        )

    @property
    def options(self) -> AmqpOptions:
        """The validated options."""
        return self._options

    # -- sending -------------------------------------------------------------------------------
    def send(self, envelope: Envelope) -> Envelope:
        """Publish the message (to the delays exchange with a positive ``DelayStamp``); with
        ``confirm_timeout``, return once RabbitMQ confirmed it. Raises
        :class:`~messenger_transport_amqp.reconnect.AmqpUnreachableError` after
        ``reconnect_timeout`` without RabbitMQ."""
        return self._sender.send(envelope)

    sends_async = True
    """AsyncSender: :meth:`send_async` publishes through pika's asyncio adapter
    (``dispatch_async`` needs no thread)."""

    async def send_async(self, envelope: Envelope) -> Envelope:
        """:meth:`send`, awaited on the running event loop through a connection of that
        loop's own (see :mod:`.async_sender`): the same frames, confirms and errors."""
        return await self._async_sender.send(envelope)

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Publish all ``envelopes``; with ``confirm_timeout``, wait for one round of
        confirms for the whole batch. Not atomic: after a lost connection the whole batch is
        published again (the messages that got through are then stored twice)."""
        return self._sender.send_batch(envelopes)

    # -- receiving -----------------------------------------------------------------------------
    def get(self) -> list[Envelope]:
        """At most one message from the transport's queues (in configuration order); may wait
        0.1 s. Raises :class:`~messenger_core.errors.BrokerUnreachableError` if RabbitMQ
        cannot be reached at start-up; once connected, an outage makes it return nothing
        until RabbitMQ is back."""
        return self._receiver.get()

    def get_from_queues(self, queue_names: Sequence[str]) -> list[Envelope]:
        """Like :meth:`get`, from ``queue_names`` only (``messenger consume --queues``)."""
        return self._receiver.get(queue_names)

    # -- settling ------------------------------------------------------------------------------
    def ack(self, envelope: Envelope) -> None:
        """Acknowledge (held back briefly and sent as a multiple-ack; see :meth:`flush`)."""
        self._receiver.ack(envelope)

    def reject(self, envelope: Envelope) -> None:
        """Remove the message for good: ``basic.nack`` with ``requeue=false`` (to the queue's
        dead-letter exchange, if it has one)."""
        self._receiver.reject(envelope)

    def flush(self) -> None:
        """Send the acknowledgements held back now."""
        self._receiver.flush()

    def release(self, envelope: Envelope) -> None:
        """Put a received message back unsettled (it comes again, flagged redelivered)."""
        self._receiver.release(envelope)

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        """Keep the connection alive while ``envelope``'s handler runs: let pika exchange
        heartbeats now. RabbitMQ holds an unacknowledged message as long as its channel lives,
        so there is no per-message reservation to extend; a background thread does this too
        whenever the connection is idle, so this is only a prompt."""
        self._connection.check_open()
        self._connection.pump()

    # -- counting, setup, closing --------------------------------------------------------------
    def message_count(self) -> int:
        """Messages waiting: ready in the transport's queues (summed, as Symfony counts them)
        plus those RabbitMQ pushed to this transport that it has not handed out yet. Not
        those other consumers hold, nor those waiting in delay queues. Messages this transport
        just sent are counted once confirmed with ``confirm_timeout``; without it, a classic
        queue counts them (the count is asked on the same channel, after them), a quorum
        queue may count them a moment later (it counts what its replicas agreed on)."""
        self._sender.confirm_from_now()
        try:
            self._sender.sync(_SYNC_TIMEOUT)  # confirmed: the messages sent are counted
        except TransportError as error:  # an estimate all the same
            logger.warning("counting messages: %s", error)

        def count(channel: BlockingChannel) -> int:
            ready = sum(
                int(channel.queue_declare(name, passive=True).method.message_count)
                for name in self._options.queue_names
            )
            channel.connection.process_data_events(0)  # deliveries sent before the answers
            return ready + self._receiver.buffered

        return self._connection.run(count, "count messages")

    def setup(self) -> None:
        """Declare the exchange, the queues (bound) and the delays exchange. Idempotent; a
        queue that exists with other arguments is a :class:`TransportError`."""
        self._connection.setup()

    def close(self) -> None:
        """Send held-back acknowledgements, hand back what was fetched and not handled (see
        :mod:`.receiver`), close the connection and every event loop's async one. Idempotent."""
        connection = self._connection
        if connection.closed:
            return
        self._async_sender.close()
        with connection.lock:
            try:
                self._sender.sync(_SYNC_TIMEOUT)  # a producer's last messages reach RabbitMQ
            except TransportError as error:
                logger.warning("closing: %s", error)
            if connection.connected and self._receiver.holds_deliveries:
                try:
                    connection.settle(
                        lambda channel: self._receiver.hand_back(channel, self._sender),
                        "hand back unhandled messages",
                    )
                except TransportError as error:
                    logger.warning(
                        "could not hand back unhandled messages (%s); RabbitMQ delivers them "
                        "again, flagged redelivered",
                        error,
                    )
            connection.close()
