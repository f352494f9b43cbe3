"""``await bus.dispatch_async(message)`` to RabbitMQ: published through pika's asyncio adapter
on the loop.

Against the real broker. The transport is an :class:`AmqpTransport` that records the thread of
each send (``send`` or ``send_async``): the native path sends on the loop's thread, the thread
path in a ``messenger-dispatch`` thread.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from amqp_test_support import Exchange, Order, raw_channel, ready_count
from messenger_transport_amqp import AmqpTransport, parse_options
from messenger_transport_amqp.reconnect import AmqpUnreachableError

from messenger_core import DelayStamp, Envelope, Messenger
from messenger_core.dsn import Dsn
from messenger_core.errors import TransportError
from messenger_core.testing.async_send import RecordingSends, sent_on_loop
from messenger_core.testing.services import free_port


class RecordingAmqpTransport(RecordingSends, AmqpTransport):
    """The AMQP transport, recording where each send ran."""


@pytest.fixture
def messenger() -> Iterator[Messenger]:
    messenger = Messenger(autoload=False)
    messenger.register_message(Order, "tests.Order")
    yield messenger
    messenger.close()


def _transport(
    messenger: Messenger, exchange: Exchange, dsn: str | None = None, **options: Any
) -> RecordingAmqpTransport:
    parsed = parse_options(Dsn.parse(dsn or exchange.dsn()), exchange.options(**options))
    transport = RecordingAmqpTransport(parsed, messenger.serializer())
    exchange._made.append(transport)  # closed after the test
    messenger.add_transport("amqp", transport)
    messenger.route(Order, "amqp")
    return transport


def _consume(messenger: Messenger, count: int) -> list[Order]:
    handled: list[Order] = []

    def on_order(message: Order) -> None:
        handled.append(message)

    messenger.handler(on_order)
    messenger.worker(["amqp"]).run(limit=count, time_limit=15, handle_signals=False)
    return handled


def _get(queue: str) -> tuple[Any, bytes]:
    with raw_channel() as channel:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
    assert method is not None, f"no message in {queue}"
    return properties, body


def test_the_message_is_the_one_dispatch_publishes_and_a_worker_consumes_it(
    messenger: Messenger, exchange: Exchange
) -> None:
    transport = _transport(messenger, exchange)
    native = asyncio.run(messenger.bus.dispatch_async(Order(1, "native")))
    assert sent_on_loop(transport.calls, 1)
    synchronous = messenger.bus.dispatch(Order(1, "native"))
    assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]

    (native_properties, native_body), (sync_properties, sync_body) = (
        _get(exchange.name),
        _get(exchange.name),
    )
    assert native_body == sync_body
    assert native_properties.headers == sync_properties.headers
    assert native_properties.headers  # (the serializer's headers: the message's type)
    assert native_properties.content_type == sync_properties.content_type == "application/json"
    assert native_properties.delivery_mode == sync_properties.delivery_mode == 2
    assert abs(native_properties.timestamp - sync_properties.timestamp) <= 2

    asyncio.run(messenger.bus.dispatch_async(Order(2, "native")))
    messenger.bus.dispatch(Order(2, "sync"))
    assert sorted(_consume(messenger, 2), key=lambda o: o.text) == [
        Order(2, "native"),
        Order(2, "sync"),
    ]


def test_concurrent_sends_on_one_loop_each_arrive_once(
    messenger: Messenger, exchange: Exchange
) -> None:
    transport = _transport(messenger, exchange)

    async def main() -> list[Envelope]:
        return await asyncio.gather(*(messenger.bus.dispatch_async(Order(n)) for n in range(50)))

    asyncio.run(main())
    assert sent_on_loop(transport.calls, 50)
    assert ready_count(exchange.name) == (50, 0)
    assert sorted(o.id for o in _consume(messenger, 50)) == list(range(50))


def test_a_delayed_message_waits_in_the_delay_queue_dispatch_puts_it_in(
    messenger: Messenger, exchange: Exchange
) -> None:
    transport = _transport(messenger, exchange)
    delay = DelayStamp(delay_ms=2000)
    asyncio.run(messenger.bus.dispatch_async(Order(3, "native"), delay))
    assert sent_on_loop(transport.calls, 1)
    messenger.bus.dispatch(Order(3, "sync"), delay)
    queue = transport._connection.topology.delay_queue_name(
        2000, transport.options.exchange.default_publish_routing_key, False
    )
    assert ready_count(queue) == (2, 0)  # both in the one delay queue
    assert ready_count(exchange.name) == (0, 0)
    started = time.monotonic()
    handled = _consume(messenger, 2)
    assert sorted(o.text for o in handled) == ["native", "sync"]
    assert time.monotonic() - started > 1.0  # (they waited for the delay)


def test_with_confirm_timeout_each_send_waits_for_its_confirm(
    messenger: Messenger, exchange: Exchange
) -> None:
    transport = _transport(messenger, exchange, confirm_timeout=5)
    clients = transport._async_sender._clients

    async def main() -> list[Envelope]:
        sent = await asyncio.gather(*(messenger.bus.dispatch_async(Order(n)) for n in range(20)))
        client = await clients.get()
        assert client._confirms == {}  # in confirm mode, and every confirm came
        assert client._next_tag == 21
        return sent

    assert len(asyncio.run(main())) == 20
    assert sent_on_loop(transport.calls, 20)
    assert ready_count(exchange.name) == (20, 0)  # confirmed: stored


def test_each_event_loop_gets_a_connection_of_its_own_closed_with_the_loop(
    messenger: Messenger, exchange: Exchange
) -> None:
    transport = _transport(messenger, exchange)
    clients = transport._async_sender._clients
    seen: list[Any] = []

    async def send(number: int) -> Envelope:
        envelope = await messenger.bus.dispatch_async(Order(number))
        seen.append(await clients.get())
        return envelope

    asyncio.run(send(1))
    asyncio.run(send(2))
    threads = [
        threading.Thread(target=lambda n=n: asyncio.run(send(n)), name=f"t{n}") for n in (3, 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clients._entries == {}
    assert len({id(client) for client in seen}) == 4
    assert all(client.connection.is_closed for client in seen)
    assert sorted(transport.calls) == sorted(
        [("send_async", threading.main_thread().name)] * 2
        + [("send_async", "t3"), ("send_async", "t4")]
    )
    assert ready_count(exchange.name) == (4, 0)


def test_closing_the_transport_closes_the_running_loop_s_connection(
    messenger: Messenger, exchange: Exchange
) -> None:
    transport = _transport(messenger, exchange)

    async def main() -> Any:
        await messenger.bus.dispatch_async(Order(1))
        client = await transport._async_sender._clients.get()
        transport.close()
        for _ in range(100):
            if client.connection.is_closed:
                break
            await asyncio.sleep(0.02)
        return client

    client = asyncio.run(main())
    assert client.connection.is_closed
    assert ready_count(exchange.name) == (1, 0)


def test_a_lost_connection_is_opened_again_on_the_next_send(
    messenger: Messenger, exchange: Exchange
) -> None:
    # (Confirmed: the first message is stored before its connection drops.)
    transport = _transport(messenger, exchange, confirm_timeout=5)
    clients = transport._async_sender._clients

    async def main() -> None:
        await messenger.bus.dispatch_async(Order(1))
        first = await clients.get()
        # The socket drops under pika, as in a network failure.
        first.connection._transport._sock.shutdown(socket.SHUT_RDWR)
        for _ in range(100):
            if not first.usable:
                break
            await asyncio.sleep(0.02)
        await messenger.bus.dispatch_async(Order(2))
        assert await clients.get() is not first

    asyncio.run(main())
    assert ready_count(exchange.name) == (2, 0)


def test_a_closed_transport_refuses_as_dispatch_does(
    messenger: Messenger, exchange: Exchange
) -> None:
    transport = _transport(messenger, exchange)
    asyncio.run(messenger.bus.dispatch_async(Order(1)))
    transport.close()
    with pytest.raises(TransportError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Order(1))
    assert "is closed" in str(native.value)
    assert str(native.value) == str(synchronous.value)


def test_an_unreachable_broker_raises_what_dispatch_raises_in_bounded_time(
    messenger: Messenger, exchange: Exchange
) -> None:
    port = free_port()  # nothing listens there
    dsn = f"amqp://guest:guest@127.0.0.1:{port}/%2f/{exchange.name}"
    _transport(messenger, exchange, dsn, reconnect_timeout=1, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(AmqpUnreachableError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    assert time.monotonic() - started < 5
    with pytest.raises(AmqpUnreachableError) as synchronous:
        messenger.bus.dispatch(Order(1))
    # The same error, but for pika's wording of the refusal (its two adapters differ).
    for error in (native.value, synchronous.value):
        text = str(error)
        assert text.startswith(f"RabbitMQ at 127.0.0.1:{port}/%2F is unreachable (")
        assert "Connection refused" in text
        assert "could not publish a message, tried for" in text
        assert "(reconnect_timeout=1)" in text


def test_a_nack_raises_what_dispatch_raises(messenger: Messenger, exchange: Exchange) -> None:
    queues = {exchange.name: {"arguments": {"x-max-length": 1, "x-overflow": "reject-publish"}}}
    _transport(messenger, exchange, confirm_timeout=5, queues=queues)
    asyncio.run(messenger.bus.dispatch_async(Order(1)))  # the one the queue takes
    with pytest.raises(TransportError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(2)))
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Order(3))
    assert "refused (nack) 1 of 1 message(s)" in str(native.value)
    assert str(native.value) == str(synchronous.value)
    assert ready_count(exchange.name) == (1, 0)


def test_no_confirm_in_time_raises_what_dispatch_raises(
    messenger: Messenger, exchange: Exchange
) -> None:
    _transport(messenger, exchange, confirm_timeout=1e-9)
    with pytest.raises(TransportError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Order(2))
    assert "did not confirm 1 confirm(s) within 1e-09 s" in str(native.value)
    assert str(native.value) == str(synchronous.value)


_EXIT_AT_ONCE = """
import asyncio, os, sys
from amqp_test_support import Order
from messenger_transport_amqp import AmqpTransportFactory
from messenger_core import Messenger

options = {"delay": {"exchange_name": sys.argv[2]}}
messenger = Messenger(
    {"transports": {"amqp": {"dsn": sys.argv[1], "options": options}}},
    autoload=False,
    transports={"amqp": AmqpTransportFactory},
)
messenger.register_message(Order, "tests.Order")
messenger.route(Order, "amqp")

async def main() -> None:
    for number in range(200):
        await messenger.bus.dispatch_async(Order(number, "x" * 2000))
    # No close, no further turn of the loop: what dispatch_async returned for must be written.
    os._exit(0)

asyncio.run(main())
"""


def test_a_process_ending_right_after_dispatch_async_loses_nothing(exchange: Exchange) -> None:
    exchange.transport().setup()
    finished = subprocess.run(
        [sys.executable, "-c", _EXIT_AT_ONCE, exchange.dsn(), exchange.delays],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    deadline = time.monotonic() + 10
    while ready_count(exchange.name)[0] < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready_count(exchange.name)[0] == 200
