"""Writing ``basic.publish`` frames: what pika's publish writes, with less work per message.

pika encodes a message's properties (its headers table above all) on every publish, which is
more than half of what its blocking ``basic_publish`` costs, and writes the method, header and
body frames as three chunks, one system call each. The messages a transport sends mostly
repeat their properties (the headers of a message type, ``delivery_mode`` 2, the timestamp
of the current second), so :class:`PublishFrames` encodes each distinct set once and keeps the
bytes; it then joins the frames of a message into one chunk. The bytes are those pika writes
(AMQP 0-9-1, section 4.2: frame type, channel, size, payload, frame end): the tests compare
them with pika's own frames.

Writing the chunk uses the connection pika's channel sits on (private, as publishing many
messages before one wait for confirms already does, see :mod:`.sender`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable

import pika  # type: ignore[import-untyped]
from pika import exceptions as pika_errors
from pika import frame, spec
from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

__all__ = ["PublishFrames", "encode_properties"]

_FRAME_END = bytes((spec.FRAME_END,))
_HEADER = struct.Struct(">BHIHxxQ")
"""A content header frame up to its properties: type, channel, payload size, class id,
weight (always 0) and body size."""
_BODY = struct.Struct(">BHI")
"""A body frame up to its payload: type, channel, payload size."""
_FRAME_OVERHEAD = 8
"""Bytes of a frame that are not payload: 7 of header, 1 of frame end."""
_CACHED = 512
"""Distinct method frames or property sets kept at most (then the cache starts again)."""


def encode_properties(properties: pika.BasicProperties) -> bytes:
    """The properties as a content header frame carries them (flags, then each value)."""
    return b"".join(properties.encode())


class PublishFrames:
    """Builds and writes the frames of ``basic.publish`` messages, caching what repeats."""

    def __init__(self) -> None:
        self._methods: dict[tuple[int, str, str], bytes] = {}
        self._properties: dict[Hashable, bytes] = {}

    def properties(self, key: Hashable, build: Callable[[], pika.BasicProperties]) -> bytes:
        """The encoded properties ``build()`` returns, built once per ``key`` (which must
        determine them: equal keys, equal properties)."""
        encoded = self._properties.get(key)
        if encoded is None:
            if len(self._properties) >= _CACHED:
                self._properties.clear()
            encoded = self._properties[key] = encode_properties(build())
        return encoded

    def message(
        self,
        channel_number: int,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        *,
        frame_max: int,
    ) -> bytes:
        """The method, header and body frames of one message, as one chunk; the body is cut
        into frames of at most ``frame_max`` bytes (the connection's negotiated maximum)."""
        key = (channel_number, exchange, routing_key)
        method = self._methods.get(key)
        if method is None:
            if len(self._methods) >= _CACHED:
                self._methods.clear()
            publish = spec.Basic.Publish(exchange=exchange, routing_key=routing_key)
            method = self._methods[key] = frame.Method(channel_number, publish).marshal()
        size = len(body)
        header = _HEADER.pack(
            spec.FRAME_HEADER,
            channel_number,
            12 + len(properties),
            spec.BasicProperties.INDEX,
            size,
        )
        pieces = [method, header, properties, _FRAME_END]
        chunk = frame_max - _FRAME_OVERHEAD
        if size <= chunk:
            if size:
                pieces += (_BODY.pack(spec.FRAME_BODY, channel_number, size), body, _FRAME_END)
        else:
            view = memoryview(body)
            for start in range(0, size, chunk):
                part = view[start : start + chunk]
                pieces += (_BODY.pack(spec.FRAME_BODY, channel_number, len(part)), part)
                pieces.append(_FRAME_END)
        return b"".join(pieces)

    @staticmethod
    def write(channel: BlockingChannel | pika.channel.Channel, chunks: list[bytes]) -> None:
        """Hand ``chunks`` to the connection under ``channel`` (pika's blocking channel or
        its async one). Buffered, not flushed on the blocking channel: its next operation, or
        :func:`flush`, writes them out; the async one's transport writes them from its loop."""
        impl = getattr(channel, "_impl", channel)  # the blocking channel wraps an async one
        connection = impl.connection
        if not impl.is_open or not connection.is_open:
            # What pika's basic_publish raises: the reconnect policy knows it.
            raise pika_errors.ChannelWrongStateError("Channel is closed.")
        connection._output_marshaled_frames(chunks)

    @staticmethod
    def frame_max(channel: BlockingChannel | pika.channel.Channel) -> int:
        """The largest frame the connection under ``channel`` may send (negotiated)."""
        impl = getattr(channel, "_impl", channel)
        return int(impl.connection.params.frame_max)

    @staticmethod
    def flush(channel: BlockingChannel) -> None:
        """Write out what is buffered, as the blocking channel's ``basic_publish`` does after
        buffering a message."""
        channel._flush_output()
