"""``await bus.dispatch_async(message)`` to Redis: sent through ``redis.asyncio`` on the loop.

Against the real server. The transport is a :class:`RedisTransport` that records the thread of
each send (``send`` or ``send_async``): the native path sends on the loop's thread, the thread
path in a ``messenger-dispatch`` thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from messenger_transport_redis import RedisTransport, endpoint_of, parse_options
from messenger_transport_redis.reconnect import RedisUnreachableError
from redis_test_support import Order, Stream

from messenger_core import DelayStamp, Envelope, MessageBus, Messenger
from messenger_core._bus_middleware import middleware_context
from messenger_core.dsn import Dsn
from messenger_core.errors import TransportError
from messenger_core.middleware import Next
from messenger_core.middleware.stack import build_stack
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.testing.async_send import RecordingSends, sent_on_loop
from messenger_core.testing.services import free_port


class RecordingRedisTransport(RecordingSends, RedisTransport):
    """The Redis transport, recording where each send ran."""


def _transport(messenger: Messenger, dsn: Dsn, **options: Any) -> RecordingRedisTransport:
    parsed = parse_options(dsn.with_options(options), dsn.path if dsn.hosts else "", dsn=dsn)
    transport = RecordingRedisTransport(endpoint_of(dsn, parsed), parsed, messenger.serializer())
    messenger.add_transport("redis", transport)
    return transport


@pytest.fixture
def messenger() -> Iterator[Messenger]:
    messenger = Messenger(autoload=False)
    messenger.register_message(Order)
    yield messenger
    messenger.close()


@pytest.fixture
def transport(messenger: Messenger, stream: Stream) -> RecordingRedisTransport:
    transport = _transport(messenger, stream.dsn())
    messenger.route(Order, "redis")
    return transport


def _consume(messenger: Messenger, count: int) -> list[Order]:
    handled: list[Order] = []

    def on_order(message: Order) -> None:
        handled.append(message)

    messenger.handler(on_order)
    messenger.worker(["redis"]).run(limit=count, time_limit=15, sleep=0.05)
    return handled


def test_the_entry_is_the_one_dispatch_adds_and_a_worker_consumes_it(
    messenger: Messenger, transport: RecordingRedisTransport, redis_client: Any, stream: Stream
) -> None:
    native = asyncio.run(messenger.bus.dispatch_async(Order(1, "native")))
    assert sent_on_loop(transport.calls, 1)
    synchronous = messenger.bus.dispatch(Order(1, "native"))

    assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]
    entries = redis_client.xrange(stream.name)
    assert [entry_id.decode() for entry_id, _ in entries] == [
        e.last(TransportMessageIdStamp).id  # type: ignore[union-attr]
        for e in (native, synchronous)
    ]
    assert entries[0][1] == entries[1][1]  # the very same field, byte for byte
    assert _consume(messenger, 2) == [Order(1, "native"), Order(1, "native")]


def test_concurrent_sends_on_one_loop_each_get_their_own_entry(
    messenger: Messenger, transport: RecordingRedisTransport, redis_client: Any, stream: Stream
) -> None:
    async def main() -> list[Envelope]:
        return await asyncio.gather(*(messenger.bus.dispatch_async(Order(n)) for n in range(50)))

    envelopes = asyncio.run(main())
    assert sent_on_loop(transport.calls, 50)
    # Each envelope has the id of the entry holding its own message (the replies of the
    # commands written together went to their own callers).
    numbers = {
        entry_id.decode(): json.loads(json.loads(fields[b"message"])["body"])["id"]
        for entry_id, fields in redis_client.xrange(stream.name)
    }
    assert len(numbers) == 50
    assert {
        e.last(TransportMessageIdStamp).id: e.message.id  # type: ignore[union-attr]
        for e in envelopes
    } == numbers


def test_a_delayed_message_waits_in_the_delay_queue_as_dispatch_puts_it(
    messenger: Messenger, transport: RecordingRedisTransport, redis_client: Any, stream: Stream
) -> None:
    delay = DelayStamp(delay_ms=300)
    native = asyncio.run(messenger.bus.dispatch_async(Order(2), delay))
    assert sent_on_loop(transport.calls, 1)
    synchronous = messenger.bus.dispatch(Order(2), delay)
    assert native.last(TransportMessageIdStamp) is None  # no entry yet, as from send
    assert [type(s) for s in native.stamps] == [type(s) for s in synchronous.stamps]

    members = redis_client.zrange(stream.queue, 0, -1, withscores=True)
    assert len(members) == 2
    documents = [json.loads(member) for member, _ in members]
    assert all(document.pop("uniqid") for document in documents)
    assert documents[0] == documents[1]
    assert abs(members[0][1] - members[1][1]) < 1000  # both due in 300 ms
    assert redis_client.xlen(stream.name) == 0
    assert _consume(messenger, 2) == [Order(2), Order(2)]


def test_each_event_loop_gets_a_client_of_its_own_closed_with_the_loop(
    messenger: Messenger, transport: RecordingRedisTransport, redis_client: Any, stream: Stream
) -> None:
    clients = transport._async_sender._held  # (the per-loop clients, to see them closed)

    async def send(number: int) -> Envelope:
        envelope = await messenger.bus.dispatch_async(Order(number))
        assert len(clients._entries) >= 1
        return envelope

    asyncio.run(send(1))
    assert clients._entries == {}  # closed as its loop shut down
    asyncio.run(send(2))
    in_thread: list[Envelope] = []
    threads = [
        threading.Thread(target=lambda n=n: in_thread.append(asyncio.run(send(n))), name=f"t{n}")
        for n in (3, 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(in_thread) == 2
    assert clients._entries == {}
    assert sorted(transport.calls) == sorted(
        [("send_async", threading.main_thread().name)] * 2
        + [("send_async", "t3"), ("send_async", "t4")]
    )
    assert redis_client.xlen(stream.name) == 4


def test_a_closed_transport_refuses_as_dispatch_does(
    messenger: Messenger, transport: RecordingRedisTransport
) -> None:
    asyncio.run(messenger.bus.dispatch_async(Order(1)))  # a client is made, then closed
    transport.close()
    with pytest.raises(TransportError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Order(1))
    assert "is closed" in str(native.value)
    assert str(native.value) == str(synchronous.value)


def test_an_error_reply_raises_what_dispatch_raises(
    messenger: Messenger, redis_client: Any, stream: Stream
) -> None:
    redis_client.set(stream.name, "not a stream")
    _transport(messenger, stream.dsn(), auto_setup="false")
    messenger.route(Order, "redis")
    with pytest.raises(TransportError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    with pytest.raises(TransportError) as synchronous:
        messenger.bus.dispatch(Order(1))
    assert "WRONGTYPE" in str(native.value)
    assert str(native.value) == str(synchronous.value)

    async def concurrent() -> list[Any]:
        sends = (messenger.bus.dispatch_async(Order(n)) for n in range(10))
        return await asyncio.gather(*sends, return_exceptions=True)

    # Written together, each command's error reply goes to its own caller.
    errors = asyncio.run(concurrent())
    assert [str(error) for error in errors] == [str(synchronous.value)] * 10


def test_an_unreachable_server_raises_what_dispatch_raises(messenger: Messenger) -> None:
    dsn = Dsn.parse(f"redis://127.0.0.1:{free_port()}/nowhere")
    _transport(messenger, dsn, reconnect_timeout="0.3")
    messenger.route(Order, "redis")
    started = time.monotonic()
    with pytest.raises(RedisUnreachableError) as native:
        asyncio.run(messenger.bus.dispatch_async(Order(1)))
    assert time.monotonic() - started < 5
    with pytest.raises(RedisUnreachableError) as synchronous:
        messenger.bus.dispatch(Order(1))
    assert str(native.value).split(":")[0] == str(synchronous.value).split(":")[0]


def _unknown(envelope: Envelope, next: Next) -> Envelope:
    return next(envelope)


def test_a_middleware_that_did_not_opt_in_sends_in_a_thread(
    messenger: Messenger, transport: RecordingRedisTransport, redis_client: Any, stream: Stream
) -> None:
    name = messenger.config.default_bus
    bus = MessageBus(name, build_stack(middleware_context(messenger, name), [_unknown]))
    envelope = asyncio.run(bus.dispatch_async(Order(5)))
    assert len(transport.calls) == 1
    kind, thread = transport.calls[0]
    assert kind == "send"
    assert thread.startswith("messenger-dispatch")
    assert envelope.last(TransportMessageIdStamp) is not None
    assert redis_client.xlen(stream.name) == 1
