"""Symfony's topology and wire layout, checked behind the transport's back with plain pika:
exchange and queues, message properties and headers, delay and retry queues, redelivery,
rejection, push consumption, publisher confirms, handing back on close."""

from __future__ import annotations

import time
from typing import Any

import pika
import pytest
from amqp_test_support import (
    Exchange,
    Order,
    order,
    raw_channel,
    ready_count,
    receive,
)
from messenger_transport_amqp import AmqpReceivedStamp, AmqpStamp

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.stamps import DelayStamp, RedeliveryStamp, TransportRedeliveredStamp


def raw_get(queue: str) -> tuple[Any, Any, bytes]:
    """One message from ``queue`` (acknowledged), with its method and properties."""
    with raw_channel() as channel:
        deadline = time.monotonic() + 5
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return method, properties, body
            assert time.monotonic() < deadline, f"nothing in {queue}"
            time.sleep(0.02)


def declare_fails(declare: Any) -> bool:
    """Whether declaring again with other settings is refused (the existing ones differ)."""
    with raw_channel() as channel:
        try:
            declare(channel)
        except pika.exceptions.ChannelClosedByBroker as error:
            code = error.reply_code
        else:
            return False
    assert code == 406, code
    return True


def test_the_message_as_symfony_publishes_it(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    before = int(time.time())
    transport.send(order(1, "wire", RedeliveryStamp(retry_count=1)))
    method, properties, body = raw_get(exchange.name)

    assert body == b'{"id":1,"text":"wire"}'
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    assert before <= properties.timestamp <= time.time() + 1
    assert "Content-Type" not in properties.headers
    assert properties.headers["type"] == "tests.Order"
    assert all(isinstance(value, str) for value in properties.headers.values())
    assert any(name.startswith("X-Message-Stamp-") for name in properties.headers)
    assert (method.exchange, method.routing_key) == (exchange.name, "")


def test_exchange_and_queue_are_durable_and_the_exchange_fanout(exchange: Exchange) -> None:
    exchange.transport().setup()
    name = exchange.name
    assert not declare_fails(lambda ch: ch.exchange_declare(name, "fanout", durable=True))
    assert declare_fails(lambda ch: ch.exchange_declare(name, "direct", durable=True))
    assert not declare_fails(lambda ch: ch.queue_declare(name, durable=True))
    assert declare_fails(lambda ch: ch.queue_declare(name, durable=False))
    assert not declare_fails(
        lambda ch: ch.exchange_declare(exchange.delays, "direct", durable=True)
    )


def test_amqp_stamp_sets_routing_key_and_properties(exchange: Exchange) -> None:
    eu, us = exchange.queues = (f"{exchange.name}.eu", f"{exchange.name}.us")
    queues = {eu: {"binding_keys": ["orders.eu"]}, us: {"binding_keys": ["orders.us"]}}
    transport = exchange.transport(exchange={"type": "direct"}, queues=queues)
    transport.setup()
    stamp = AmqpStamp(
        routing_key="orders.eu",
        attributes={"priority": 3, "message_id": "m-1", "headers": {"tenant": "t1"}},
    )
    transport.send(order(1, "", stamp))
    method, properties, _ = raw_get(eu)
    assert method.routing_key == "orders.eu"
    assert (properties.priority, properties.message_id) == (3, "m-1")
    assert properties.headers["tenant"] == "t1"
    assert properties.headers["type"] == "tests.Order"
    assert ready_count(us) == (0, 0)


def test_a_message_published_by_another_client_is_received(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    with raw_channel() as channel:  # as Symfony's AmqpSender publishes
        channel.basic_publish(
            exchange.name,
            "",
            b'{"id":7,"text":"from php"}',
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, headers={"type": "tests.Order"}
            ),
        )
    [received] = receive(transport, 1)
    assert received.message == Order(7, "from php")
    stamp = received.last(AmqpReceivedStamp)
    assert stamp is not None
    assert stamp.queue_name == exchange.name
    assert not stamp.redelivered
    assert received.last(TransportRedeliveredStamp) is None
    transport.ack(received)


def test_consumption_is_pushed_and_shows_a_consumer(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    transport.send(order(1))
    [received] = receive(transport, 1)
    assert ready_count(exchange.name) == (0, 1)  # basic.consume, not basic.get
    transport.ack(received)


def test_delay_queue_named_and_declared_as_symfony_does(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    transport.send(order(1, "later", DelayStamp(delay_ms=1200)))
    delay_queue = f"delay_{exchange.name}__1200_delay"
    assert ready_count(delay_queue) == (1, 0)
    arguments = {
        "x-message-ttl": 1200,
        "x-expires": 11200,
        "x-dead-letter-exchange": exchange.name,
        "x-dead-letter-routing-key": "",
    }
    assert not declare_fails(
        lambda ch: ch.queue_declare(delay_queue, durable=True, arguments=arguments)
    )
    assert declare_fails(
        lambda ch: ch.queue_declare(
            delay_queue, durable=True, arguments={**arguments, "x-expires": 60000}
        )
    )
    assert ready_count(exchange.name) == (0, 0)
    [received] = receive(transport, 1, timeout=5)
    assert received.message == Order(1, "later")
    transport.ack(received)


def test_a_retry_waits_in_a_retry_queue_and_comes_back_to_its_queue_only(
    exchange: Exchange,
) -> None:
    first, second = exchange.queues = (f"{exchange.name}.1", f"{exchange.name}.2")
    transport = exchange.transport(queues={first: {}, second: {}})
    transport.setup()
    transport.send(order(1))
    [failed] = receive(transport, 1)
    queue = failed.last(AmqpReceivedStamp).queue_name  # type: ignore[union-attr]
    other = second if queue == first else first
    # What the worker's failure policy does: a sendable copy with a delay, then reject.
    copy = Envelope(failed.message, [RedeliveryStamp(retry_count=1), DelayStamp(delay_ms=1000)])
    transport.send(copy)
    transport.reject(failed)
    retry_queue = f"delay_{exchange.name}_{queue}_1000_retry"
    arguments = {
        "x-message-ttl": 1000,
        "x-expires": 11000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }
    assert not declare_fails(
        lambda ch: ch.queue_declare(retry_queue, durable=True, arguments=arguments)
    )
    messages = receive(transport, 3, timeout=3)
    assert [(e.last(AmqpReceivedStamp).queue_name, e.message) for e in messages] == [  # type: ignore[union-attr]
        (other, Order(1)),  # the fanout's first copy, never handled there
        (queue, Order(1)),  # the retry, back in its own queue only
    ]
    for envelope in messages:
        transport.ack(envelope)


def test_the_redelivered_flag_becomes_a_stamp(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    transport.send(order(1))
    connection = pika.BlockingConnection(
        pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f")
    )
    channel = connection.channel()
    method, _, _ = channel.basic_get(exchange.name)
    assert method is not None
    connection.close()  # never acknowledged: RabbitMQ puts it back, flagged
    [received] = receive(transport, 1)
    assert received.last(TransportRedeliveredStamp) is not None
    transport.ack(received)


def test_reject_is_a_nack_without_requeue(exchange: Exchange) -> None:
    dead = f"{exchange.name}.dead"
    with raw_channel() as channel:
        channel.exchange_declare(dead, "fanout")
        channel.queue_declare(dead)
        channel.queue_bind(dead, dead)
    try:
        queues = {exchange.name: {"arguments": {"x-dead-letter-exchange": dead}}}
        transport = exchange.transport(queues=queues)
        transport.setup()
        transport.send(order(1))
        transport.reject(receive(transport, 1)[0])
        _, properties, _ = raw_get(dead)  # dead-lettered: rejected, not requeued
        assert properties.headers["x-death"][0]["reason"] == "rejected"
        assert ready_count(exchange.name) == (0, 1)
    finally:
        with raw_channel() as channel:
            channel.queue_delete(dead)
            channel.exchange_delete(dead)


def test_a_consumer_whose_queue_is_deleted_consumes_it_again(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    transport.send(order(1))
    transport.ack(receive(transport, 1)[0])
    with raw_channel() as channel:
        channel.queue_delete(exchange.name)  # RabbitMQ cancels the consumer
    assert receive(transport, 1, timeout=0.3) == []  # the next get() declares it again
    transport.send(order(2))
    [received] = receive(transport, 1)
    assert received.message == Order(2)
    transport.ack(received)
    assert ready_count(exchange.name) == (0, 1)


def test_settling_twice_is_an_error(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    transport.send(order(1))
    [received] = receive(transport, 1)
    transport.ack(received)
    with pytest.raises(TransportError, match="settled already"):
        transport.reject(received)
    with pytest.raises(TransportError, match="no AmqpReceivedStamp"):
        transport.ack(order(2))


def test_acknowledgements_are_sent_and_nothing_comes_back(exchange: Exchange) -> None:
    transport = exchange.transport(prefetch_count=10)
    transport.setup()
    transport.send_batch([order(number) for number in range(30)])
    received: list[Envelope] = []
    deadline = time.monotonic() + 5
    while len(received) < 30 and time.monotonic() < deadline:
        for envelope in transport.get():  # a window of 10: acknowledging lets more in
            received.append(envelope)
            transport.ack(envelope)
    transport.flush()
    transport.close()
    assert ready_count(exchange.name) == (0, 0)
    assert sorted(e.message.id for e in received) == list(range(30))


def test_closing_hands_back_unseen_messages_as_new(exchange: Exchange) -> None:
    transport = exchange.transport(prefetch_count=10)
    transport.setup()
    transport.send_batch([order(number) for number in range(5)])
    [held] = receive(transport, 1)
    deadline = time.monotonic() + 5
    while transport.message_count() < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    transport.close()  # 4 buffered, never handed out; one handed out, not settled
    other = exchange.transport()
    back = receive(other, 5)
    redelivered = {e.message.id for e in back if e.last(TransportRedeliveredStamp)}
    assert sorted(e.message.id for e in back) == list(range(5))
    assert redelivered == {held.message.id}
    for envelope in back:
        other.ack(envelope)


def test_get_from_queues_consumes_only_those(exchange: Exchange) -> None:
    a, b = exchange.queues = (f"{exchange.name}.a", f"{exchange.name}.b")
    transport = exchange.transport(queues={a: {}, b: {}})
    transport.setup()
    transport.send(order(1))
    [received] = receive_from(transport, [b])
    assert received.last(AmqpReceivedStamp).queue_name == b  # type: ignore[union-attr]
    assert ready_count(a) == (1, 0)
    transport.ack(received)
    with pytest.raises(ConfigurationError, match="are not queues"):
        transport.get_from_queues([f"{exchange.name}.c"])


def receive_from(transport: Any, queues: list[str]) -> list[Envelope]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = transport.get_from_queues(queues)
        if got:
            return list(got)
    return []


# -- publisher confirms ------------------------------------------------------------------------
def test_a_batch_is_confirmed_before_send_batch_returns(exchange: Exchange) -> None:
    transport = exchange.transport(confirm_timeout=5)
    transport.setup()
    transport.send_batch([order(number) for number in range(200)])
    assert ready_count(exchange.name) == (200, 0)


def test_a_nack_is_an_error(exchange: Exchange) -> None:
    queues = {exchange.name: {"arguments": {"x-max-length": 1, "x-overflow": "reject-publish"}}}
    transport = exchange.transport(confirm_timeout=5, queues=queues)
    transport.setup()
    transport.send(order(1))
    with pytest.raises(TransportError, match="refused"):
        transport.send(order(2))
    with pytest.raises(TransportError, match="refused"):
        transport.send_batch([order(3), order(4)])
    assert ready_count(exchange.name) == (1, 0)


def test_no_confirm_in_time_is_an_error(exchange: Exchange) -> None:
    transport = exchange.transport(confirm_timeout=1e-9)
    transport.setup()
    with pytest.raises(TransportError, match="did not confirm"):
        transport.send(order(1))
