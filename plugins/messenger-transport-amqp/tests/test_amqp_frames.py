"""The frames the sender writes itself (:mod:`messenger_transport_amqp.frames`) are those pika
writes, byte for byte; bodies larger than a frame arrive whole through the real RabbitMQ."""

from __future__ import annotations

import math
import time

import pika
import pytest
from amqp_test_support import Exchange, Order, order, raw_channel, receive
from messenger_transport_amqp.frames import PublishFrames, encode_properties
from pika import frame, spec


def pika_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    properties: pika.BasicProperties,
    body: bytes,
    frame_max: int,
) -> bytes:
    """What pika's connection writes for ``basic_publish`` (Connection._send_message)."""
    pieces = [
        frame.Method(channel, spec.Basic.Publish(exchange=exchange, routing_key=routing_key)),
        frame.Header(channel, len(body), properties),
    ]
    size = frame_max - spec.FRAME_HEADER_SIZE - spec.FRAME_END_SIZE
    pieces += [
        frame.Body(channel, body[start : start + size])
        for start in range(0, math.ceil(len(body) / size) * size, size)
    ]
    return b"".join(piece.marshal() for piece in pieces)


PROPERTIES = [
    pika.BasicProperties(),
    pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        timestamp=1_800_000_000,
        headers={"type": "App\\Message\\Order", "X-Message-Stamp-A": "[{}]", "é": "ü"},
    ),
    pika.BasicProperties(priority=3, correlation_id="c", reply_to="r", expiration="60000"),
]
BODIES = [b"", b"x", b'{"id":1}' * 100, bytes(range(256)) * 64]


@pytest.mark.parametrize("properties", PROPERTIES)
@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{len(b)}B")
@pytest.mark.parametrize("frame_max", [4096, 131072])
def test_the_frames_are_pikas_byte_for_byte(
    properties: pika.BasicProperties, body: bytes, frame_max: int
) -> None:
    frames = PublishFrames()
    ours = frames.message(
        7, "orders", "eu.fr", encode_properties(properties), body, frame_max=frame_max
    )
    assert ours == pika_frames(7, "orders", "eu.fr", properties, body, frame_max)


def test_encoded_properties_are_kept_per_key_and_built_once() -> None:
    frames = PublishFrames()
    built: list[int] = []

    def build() -> pika.BasicProperties:
        built.append(1)
        return PROPERTIES[1]

    first = frames.properties(("k", 1), build)
    assert frames.properties(("k", 1), build) is first
    assert len(built) == 1
    frames.properties(("k", 2), build)
    assert len(built) == 2
    assert first == encode_properties(PROPERTIES[1])


def test_a_body_larger_than_a_frame_arrives_whole(exchange: Exchange) -> None:
    # The smallest frame AMQP allows, so that a 100 KB body spans 25 body frames.
    transport = exchange.transport(frame_max=4096)
    transport.setup()
    text = "".join(chr(0x41 + n % 26) for n in range(100_000))
    transport.send(order(1, text))
    transport.send_batch([order(2, "small"), order(3, text)])  # type: ignore[attr-defined]
    messages = [envelope.message for envelope in receive(transport, 3, timeout=10)]
    assert messages == [Order(1, text), Order(2, "small"), Order(3, text)]


def test_properties_differ_with_the_second_they_were_sent_in(exchange: Exchange) -> None:
    transport = exchange.transport()
    transport.setup()
    transport.send(order(1, "a"))
    time.sleep(1.1)
    transport.send(order(2, "b"))
    with raw_channel() as channel:
        stamps = []
        for _ in range(2):
            method, properties, _body = channel.basic_get(exchange.name, auto_ack=True)
            assert method is not None
            stamps.append(properties.timestamp)
    assert stamps[1] > stamps[0]
