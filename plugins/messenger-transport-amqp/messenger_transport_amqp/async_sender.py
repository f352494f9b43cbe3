"""Sending from an event loop: the sender's publications through pika's asyncio adapter.

``await bus.dispatch_async(message)`` sends through here, without a dispatch thread (see
:mod:`messenger_core.async_bus`). What is published is the sync sender's
(:meth:`~messenger_transport_amqp.sender.AmqpSender.publication`: the same serializer,
exchange, routing key, encoded properties and delay queue), written as the same frames
(:class:`~messenger_transport_amqp.frames.PublishFrames`). Each running event loop has an
``AsyncioConnection`` and a channel of its own
(:class:`~messenger_core.async_clients.PerEventLoop`, closed with the loop or the transport),
opened on its first send there: with ``auto_setup`` the exchange and queues are declared on it
then, and a delay queue before a delayed message goes into it, as the sync side does (the calls
are :class:`~messenger_transport_amqp.topology.Topology`'s, made on the async channel). A
channel RabbitMQ closed (a publish to a missing exchange) is replaced on the next send.

Without ``confirm_timeout`` a send returns once its frames are written to the socket, as on the
sync side (pika writes from a callback of the loop: the send waits for it); with it, the channel is
in confirm mode and a send waits for RabbitMQ's answer for its own delivery tag: a ``nack`` or
no answer in time is a :class:`~messenger_core.errors.TransportError`. A lost connection is
dropped and the message published again on a new one through the sync sender's reconnect policy
(:meth:`~messenger_transport_amqp.reconnect.ReconnectPolicy.run_async`): the same budget and
:class:`~messenger_transport_amqp.reconnect.AmqpUnreachableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pika  # type: ignore[import-untyped]
from pika import exceptions as pika_errors
from pika.adapters.asyncio_connection import AsyncioConnection  # type: ignore[import-untyped]

from messenger_core.async_clients import PerEventLoop
from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_transport_amqp.connection import AmqpConnection, logger, parameters_of
from messenger_transport_amqp.frames import PublishFrames, encode_properties
from messenger_transport_amqp.reconnect import RETRYABLE
from messenger_transport_amqp.sender import AmqpSender, Publication
from messenger_transport_amqp.topology import Declaration, Topology

__all__ = ["AsyncAmqpSender"]

_SELECT_TIMEOUT = 10.0
"""Seconds to wait for RabbitMQ to put a new channel in confirm mode (as the sync side)."""
_CLOSE_TIMEOUT = 5.0
"""Seconds closing a loop's connection waits for RabbitMQ's answer."""


class AsyncAmqpSender:
    """Publishes envelopes as :class:`AmqpSender` does, awaited on the running event loop.

    Contract: :meth:`send` publishes what ``AmqpSender.send`` publishes and returns what it
    returns (the envelope), raising the same errors.
    """

    def __init__(self, connection: AmqpConnection, sender: AmqpSender) -> None:
        self._connection = connection
        self._sender = sender
        self._frames = PublishFrames()
        self._clients: PerEventLoop[_Client] = PerEventLoop(self._open, _close)

    async def send(self, envelope: Envelope) -> Envelope:
        """Publish one message (and wait for its confirm, with ``confirm_timeout``)."""
        connection = self._connection
        connection.check_open()
        publication = self._sender.publication(envelope)
        what = "publish a message"
        try:
            await connection.reconnect.run_async(
                lambda: self._publish(publication), what, on_error=_nothing
            )
        except pika_errors.AMQPChannelError as error:  # RabbitMQ refused a declaration
            raise connection.error(what, error) from error
        return envelope

    def close(self) -> None:
        """Close the connections of every event loop (see :meth:`PerEventLoop.close`)."""
        self._clients.close()

    async def _publish(self, publication: Publication) -> None:
        clients = self._clients
        client = await clients.get()
        if not client.usable:  # lost since its last use: a new one
            clients.discard(client)
            client = await clients.get()
        try:
            await self._publish_on(client, publication)
        except BaseException:
            if not client.usable:
                clients.discard(client)
            raise

    async def _publish_on(self, client: _Client, publication: Publication) -> None:
        if publication.delay_ms:
            await client.declare(
                client.topology.delay_queue_declarations(
                    publication.delay_ms, publication.final_routing_key, publication.retry
                )
            )
        elif client.declaring is not None and not client.declaring.done():
            await asyncio.shield(client.declaring)  # its frames must go before this one's
        properties = publication.properties
        if not isinstance(properties, bytes):
            properties = encode_properties(properties)
        channel = client.channel
        frames = self._frames
        chunk = frames.message(
            channel.channel_number,
            publication.exchange,
            publication.routing_key,
            properties,
            publication.body,
            frame_max=frames.frame_max(channel),
        )
        confirmed = client.expect_confirm()
        frames.write(channel, [chunk])
        if confirmed is not None:
            await self._confirmed(client, confirmed)
        else:
            await client.written()

    async def _confirmed(self, client: _Client, confirmed: asyncio.Future[bool]) -> None:
        connection = self._connection
        timeout = connection.options.confirm_timeout
        assert timeout is not None  # (confirms are expected with it only)
        try:
            acked = await asyncio.wait_for(asyncio.shield(confirmed), timeout)
        except TimeoutError:
            client.forget(confirmed)
            raise TransportError(
                f"RabbitMQ at {connection.where} did not confirm 1 confirm(s) within "
                f"{timeout:g} s (1 unconfirmed): they may or may not be stored"
            ) from None
        if not acked:
            raise TransportError(
                f"RabbitMQ at {connection.where} refused (nack) 1 of 1 message(s) published to "
                f"exchange {connection.options.exchange.name!r}; they are not stored"
            )

    async def _open(self) -> _Client:
        options = self._connection.options
        client = _Client(Topology(options))
        await client.connect(parameters_of(options))
        try:
            if options.confirm_timeout is not None:
                await client.select_confirms()
            if options.auto_setup:
                await client.declare(client.topology.declarations())
        except BaseException:
            await _close(client)
            raise
        return client


class _Client:
    """One event loop's connection and channel, with pika's callbacks turned into futures.

    Every future waiting on it fails when the channel or the connection closes: with a
    :data:`RETRYABLE` error when the connection went (the message is published again on a new
    one), with RabbitMQ's own error when it closed the channel (a declaration it refused).
    Only used from its loop.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        """The declarations made on this channel (delay queues declared lately)."""
        self.connection: Any = None
        self.channel: Any = None
        self.declaring: asyncio.Task[None] | None = None
        """The last declarations: a publication waits until they are answered."""
        self.closed: asyncio.Future[None] | None = None
        self._waiting: set[asyncio.Future[Any]] = set()
        self._confirms: dict[int, asyncio.Future[bool]] | None = None  # delivery tag -> acked
        self._next_tag = 1

    @property
    def usable(self) -> bool:
        """Whether the connection and the channel are open (as far as pika knows)."""
        channel = self.channel
        return channel is not None and channel.is_open and self.connection.is_open

    async def written(self) -> None:
        """Return once what was handed to the connection is written to the socket (pika
        writes it from a callback of the loop): a send without confirms returns then, as the
        sync side's does, so that a process ending right after it loses nothing. A connection
        lost first raises (the send is tried again on a new one)."""
        while True:
            # pika's stream transport (private): the bytes it has not written yet.
            transport = getattr(self.connection, "_transport", None)
            if transport is None or not self.connection.is_open:
                raise pika_errors.StreamLostError(
                    "the connection closed before the message was written"
                )
            if not transport.get_write_buffer_size():
                return
            await asyncio.sleep(0)

    async def connect(self, parameters: pika.ConnectionParameters) -> None:
        """Open the connection and the channel."""
        loop = asyncio.get_running_loop()
        opened = self._future()
        self.closed = loop.create_future()

        def on_open_error(_connection: Any, error: BaseException) -> None:
            if not isinstance(error, BaseException):  # (a text, in old pika versions)
                error = pika_errors.AMQPConnectionError(error)
            _fail(opened, error)

        self.connection = AsyncioConnection(
            parameters,
            on_open_callback=lambda connection: _settle(opened, connection),
            on_open_error_callback=on_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=loop,
        )
        await opened
        channel_opened = self._future()
        self.connection.channel(on_open_callback=lambda channel: _settle(channel_opened, channel))
        self.channel = await channel_opened
        self.channel.add_on_close_callback(self._on_channel_closed)

    async def select_confirms(self) -> None:
        """Put the channel in confirm mode; its delivery tags start at 1."""
        selected = self._future()
        self._confirms, self._next_tag = {}, 1
        self.channel.confirm_delivery(
            ack_nack_callback=self._on_confirm, callback=lambda frame: _settle(selected, frame)
        )
        # Not confirm_timeout: that bounds confirms of messages, and may be tiny.
        try:
            await asyncio.wait_for(selected, _SELECT_TIMEOUT)
        except TimeoutError:
            raise TransportError("RabbitMQ did not select confirm mode in time") from None

    async def declare(self, calls: list[Declaration]) -> None:
        """Make ``calls`` on the channel, one after the other (pika queues an RPC sent while
        another waits, but a publication is written at once: it waits for them here)."""
        if not calls:
            if self.declaring is not None and not self.declaring.done():
                await asyncio.shield(self.declaring)
            return
        previous = self.declaring

        async def run() -> None:
            if previous is not None and not previous.done():
                await previous
            for method, args, kwargs in calls:
                answered = self._future()
                getattr(self.channel, method)(
                    *args, callback=lambda frame, f=answered: _settle(f, frame), **kwargs
                )
                await answered

        task = self.declaring = asyncio.get_running_loop().create_task(run())
        await asyncio.shield(task)

    def expect_confirm(self) -> asyncio.Future[bool] | None:
        """In confirm mode: the future of the next message's confirm (its delivery tag is the
        next one); ``None`` otherwise."""
        confirms = self._confirms
        if confirms is None:
            return None
        future = self._future()
        confirms[self._next_tag] = future
        self._next_tag += 1
        return future

    def forget(self, future: asyncio.Future[Any]) -> None:
        """Stop tracking a confirm no one waits for any more."""
        self._waiting.discard(future)
        if self._confirms is not None:
            for tag in [t for t, f in self._confirms.items() if f is future]:
                del self._confirms[tag]

    def _future(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        return future

    def _on_confirm(self, frame: Any) -> None:
        confirms = self._confirms
        if confirms is None:
            return
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        tags = [t for t in confirms if t <= tag] if multiple else [tag]
        acked = not isinstance(method, pika.spec.Basic.Nack)
        for each in tags:
            future = confirms.pop(each, None)
            if future is not None:
                _settle(future, acked)

    def _on_channel_closed(self, _channel: Any, error: BaseException) -> None:
        if not isinstance(error, pika_errors.ChannelClosedByBroker):
            # The connection went, or was closed: publishing again on a new one may help.
            error = pika_errors.ChannelWrongStateError(f"Channel is closed ({error!r}).")
        self._fail_all(error)

    def _on_connection_closed(self, _connection: Any, error: BaseException) -> None:
        if not isinstance(error, RETRYABLE):
            error = pika_errors.StreamLostError(repr(error))
        self._fail_all(error)
        if self.closed is not None:
            _settle(self.closed, None)

    def _fail_all(self, error: BaseException) -> None:
        waiting, self._waiting = self._waiting, set()
        for future in waiting:
            _fail(future, error)
        if self._confirms is not None:
            self._confirms.clear()


async def _close(client: _Client) -> None:
    """Close ``client``'s connection and wait (briefly) until it is closed."""
    connection, closed = client.connection, client.closed
    if connection is None or closed is None:
        return
    if connection.is_open:
        try:
            connection.close()
        except Exception as error:  # closing, or broken under pika already
            logger.debug("closing an async connection: %s", error)
    elif not connection.is_closing:
        return  # never opened: nothing to wait for
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(closed), _CLOSE_TIMEOUT)


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # (retrieved: no warning if no one awaits it any more)


def _nothing() -> None:
    """Nothing to undo after a failed attempt: ``_publish`` dropped the broken client."""
