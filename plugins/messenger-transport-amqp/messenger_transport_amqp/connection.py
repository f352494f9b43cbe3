"""The connection role: one pika ``BlockingConnection`` and channel per transport object,
reconnected with backoff, used by one thread at a time.

pika's ``BlockingConnection`` is not thread-safe, and only does I/O (heartbeats included)
while one of its methods runs. So every use goes through :attr:`AmqpConnection.lock`, and a
small daemon thread (:class:`_Pump`) takes the lock when nobody holds it and the connection
was idle for a second, and lets pika process its events: heartbeats keep flowing while a
handler runs for minutes and the transport's thread does not touch the connection, and the
acknowledgements held back go out (the worker's ``keepalive`` does the same on demand).
Strictly one thread at a time uses pika, so this is safe.

Each new channel is a new *generation*: delivery tags of an older one mean nothing any more
(RabbitMQ put those messages back when the old channel died).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pika  # type: ignore[import-untyped]
from pika import exceptions as pika_errors
from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from messenger_core.dsn import mask_dsn
from messenger_core.errors import TransportError
from messenger_transport_amqp.options import AmqpOptions
from messenger_transport_amqp.reconnect import RETRYABLE, ReconnectPolicy
from messenger_transport_amqp.topology import Topology

__all__ = ["CONSUMER_SLICE", "AmqpConnection", "logger", "parameters_of"]

logger = logging.getLogger("messenger.transport.amqp")
"""The logger of every role of the transport."""

T = TypeVar("T")

CONSUMER_SLICE = 0.5
"""Seconds a ``get()`` of a consumer that was connected before keeps reconnecting before it
returns nothing (the backoff goes on across calls): the worker sees stop requests meanwhile."""


def parameters_of(options: AmqpOptions) -> pika.ConnectionParameters:
    """pika's connection parameters for ``options``."""
    ssl_options = None
    if options.tls:
        context = ssl.create_default_context(cafile=options.cacert)
        if options.cert:
            context.load_cert_chain(options.cert, options.key)
        if not options.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        ssl_options = pika.SSLOptions(context, server_hostname=options.host)
    properties = {"connection_name": options.connection_name} if options.connection_name else None
    extra: dict[str, int] = {}
    if options.frame_max is not None:
        extra["frame_max"] = options.frame_max
    if options.channel_max is not None:
        extra["channel_max"] = options.channel_max
    return pika.ConnectionParameters(
        host=options.host,
        port=options.port,
        virtual_host=options.vhost,
        credentials=pika.PlainCredentials(options.user, options.password),
        heartbeat=options.heartbeat,
        socket_timeout=options.connect_timeout,
        stack_timeout=options.connect_timeout + 5,
        blocked_connection_timeout=None,
        connection_attempts=1,
        ssl_options=ssl_options,
        client_properties=properties,
        **extra,
    )


class AmqpConnection:
    """The connection, the channel and the reconnect policy of one transport.

    Contract: nothing connects before the first operation; :meth:`run` runs an operation with
    the channel while holding :attr:`lock`, reconnecting (and declaring the topology again,
    with ``auto_setup``) after a lost connection, for ``reconnect_timeout`` by default; an
    error RabbitMQ raises on the channel (a queue declared with other arguments, a missing
    exchange) is a :class:`TransportError`. ``on_open`` callbacks run on each new channel.
    """

    def __init__(self, options: AmqpOptions) -> None:
        self.options = options
        self.where = options.where
        self.lock = threading.RLock()
        self.topology = Topology(options)
        self.reconnect = ReconnectPolicy(options.where, options.reconnect_timeout, logger=logger)
        self.generation = 0
        """Incremented with each new channel."""
        self.closed = False
        self.on_open: list[Callable[[BlockingChannel], None]] = []
        self.on_idle: list[Callable[[BlockingChannel], None]] = []
        """Run when the connection is pumped while idle (and by ``keepalive``)."""
        self._parameters = parameters_of(options)
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self.last_io = time.monotonic()
        self._pump: _Pump | None = None

    @property
    def connected(self) -> bool:
        """Whether a channel is open now (as far as pika knows)."""
        channel = self._channel
        return channel is not None and channel.is_open

    def check_open(self) -> None:
        """Raise :class:`TransportError` once the transport is closed."""
        if self.closed:
            raise TransportError(f"the AMQP transport for {self.where} is closed")

    def run(
        self, operation: Callable[[BlockingChannel], T], what: str, *, budget: float | None = None
    ) -> T:
        """``operation(channel)`` under the lock, through the reconnect policy."""
        self.check_open()
        with self.lock:
            try:
                channel = self._channel
                if channel is not None and channel.is_open and not self.reconnect.in_outage:
                    # The common case, without the policy's closures and clock reads (a
                    # few microseconds a send): a failure here goes the long way below.
                    try:
                        return operation(channel)
                    except RETRYABLE as error:
                        self.reconnect.failed(what, error)
                        self.drop()
                return self.reconnect.run(
                    lambda: operation(self._ensure()), what, budget=budget, on_error=self.drop
                )
            except pika_errors.ChannelClosedByBroker as error:
                self._channel = None  # RabbitMQ closed it: the next operation opens another
                raise self.error(what, error) from error
            except pika_errors.AMQPChannelError as error:
                self.drop()
                raise self.error(what, error) from error
            finally:
                self.last_io = time.monotonic()

    def settle(self, operation: Callable[[BlockingChannel], None], what: str) -> None:
        """``operation(channel)`` on the current channel only (acknowledgements belong to the
        channel the messages came on): if it is gone, or goes now, the settlement is lost and
        RabbitMQ delivers those messages again."""
        with self.lock:
            channel = self._channel
            if channel is None or not channel.is_open:
                logger.warning(
                    "could not %s: the channel to %s is gone; RabbitMQ delivers those "
                    "messages again",
                    what,
                    self.where,
                )
                return
            try:
                operation(channel)
            except (*RETRYABLE, pika_errors.AMQPChannelError) as error:
                self.drop()
                logger.warning(
                    "could not %s: the connection to %s failed (%s); RabbitMQ delivers those "
                    "messages again",
                    what,
                    self.where,
                    error,
                )
            finally:
                self.last_io = time.monotonic()

    def setup(self) -> None:
        """Declare the exchange, the queues and the delays exchange (idempotent)."""

        def declare(channel: BlockingChannel) -> None:
            self.topology.declare(channel)
            self.topology.declare_delay_exchange(channel)

        self.run(declare, "set up the exchange and queues")

    def pump(self) -> None:
        """Let pika process its events now (heartbeats, deliveries), then run the ``on_idle``
        callbacks (acknowledgements held back go out); under the lock."""
        with self.lock:
            connection, channel = self._connection, self._channel
            if connection is not None and connection.is_open:
                try:
                    connection.process_data_events(0)
                    if channel is not None and channel.is_open:
                        for callback in self.on_idle:
                            callback(channel)
                except (*RETRYABLE, pika_errors.AMQPChannelError) as error:
                    logger.debug("the connection to %s failed: %s", self.where, error)
                self.last_io = time.monotonic()

    def _ensure(self) -> BlockingChannel:
        channel = self._channel
        if channel is not None and channel.is_open:
            return channel
        if self._connection is not None and self._connection.is_open:
            channel = self._connection.channel()  # only the channel was closed (by RabbitMQ)
        else:
            self.drop()
            self._connection = pika.BlockingConnection(self._parameters)
            channel = self._connection.channel()
            self._start_pump()
        self.generation += 1
        self.topology.forget()
        self._channel = channel
        for callback in self.on_open:  # first: what the old channel held is void now
            callback(channel)
        if self.options.auto_setup:
            self.topology.declare(channel)
        return channel

    def drop(self) -> None:
        """Forget the connection (closing it if it still looks open)."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception as error:  # already broken: nothing to save
                logger.debug("closing a broken connection to %s: %s", self.where, error)

    def close(self) -> None:
        """Close the connection and stop the pump. Idempotent."""
        self.closed = True
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.stop()
        with self.lock:
            self.drop()

    def _start_pump(self) -> None:
        if self._pump is None:
            # A quarter of the heartbeat timeout, and at least every second: acknowledgements
            # held back go out soon after a handler starts running long.
            heartbeat = self.options.heartbeat
            interval = 1.0 if heartbeat == 0 else min(1.0, max(0.2, (heartbeat or 60) / 4))
            self._pump = _Pump(self, interval)

    def error(self, what: str, error: BaseException) -> TransportError:
        """The one clear error for a failed ``what``."""
        return TransportError(
            f"RabbitMQ at {self.where} could not {what} (exchange "
            f"{self.options.exchange.name!r}): {mask_dsn(str(error) or repr(error))}"
        )


class _Pump:
    """A daemon thread that lets pika process events while nobody else uses the connection."""

    def __init__(self, connection: AmqpConnection, interval: float) -> None:
        self._connection = connection
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="messenger-amqp-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        connection = self._connection
        while not self._stopped.wait(self.interval):
            if time.monotonic() - connection.last_io < self.interval:
                continue  # the transport's own thread talked to RabbitMQ lately
            if not connection.lock.acquire(blocking=False):
                continue  # in use: whoever holds it does the I/O
            try:
                if not self._stopped.is_set():
                    connection.pump()
            except Exception as error:  # never let the thread die
                logger.debug("pumping the connection to %s failed: %s", connection.where, error)
            finally:
                connection.lock.release()
