"""Raw AMQP clients doing by hand what the AMQP transport does, for ``bench/amqp.py``.

Two clients with the same methods, so that they can be compared with each other (the
``--clients`` mode) and the transport with them: pika's ``BlockingConnection`` (the client the
plugin is written on) and py-amqp (the ``amqp`` package, kombu's lower layer). Each works on
one durable fanout exchange bound to one durable queue, and publishes persistent messages
(``delivery_mode`` 2) with a pre-encoded body and headers of the size the transport sends.
Every method returns a :class:`Measure` (messages per second, CPU time per message).
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
from _workload import envelope, serializer


@dataclass(frozen=True)
class Measure:
    """``count`` messages in ``wall`` seconds, using ``cpu`` seconds of this process (every
    thread): on a busy machine the CPU time per message varies less than the rate."""

    count: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.count / self.wall

    @property
    def cpu_us(self) -> float:
        """Microseconds of this process's CPU per message."""
        return self.cpu / self.count * 1e6


class Stopwatch:
    """Started when made; :meth:`measure` reads it."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def measure(self, count: int) -> Measure:
        return Measure(count, time.perf_counter() - self.wall, time.process_time() - self.cpu)


def encoded() -> tuple[bytes, dict[str, str], str]:
    """The body, the headers (minus ``Content-Type``) and the content type the transport sends."""
    message = serializer().encode(envelope(0))
    headers = {k: v for k, v in message.headers.items() if k.lower() != "content-type"}
    return message.body, headers, message.headers.get("Content-Type", "application/json")


class Broker:
    """Host, port, credentials and virtual host of an ``amqp://`` URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5672
        self.user = unquote(parts.username or "guest")
        self.password = unquote(parts.password or "guest")
        segments = parts.path.split("/")
        self.vhost = unquote(segments[1]) if len(segments) > 1 and segments[1] else "/"


class RawPika:
    """pika's ``BlockingConnection``, used as one would by hand."""

    name = "pika"

    def __init__(self, url: str, exchange: str, queue: str) -> None:
        broker = Broker(url)
        params = pika.ConnectionParameters(
            host=broker.host,
            port=broker.port,
            virtual_host=broker.vhost,
            credentials=pika.PlainCredentials(broker.user, broker.password),
        )
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        self.exchange, self.queue = exchange, queue
        self.channel.exchange_declare(exchange, "fanout", durable=True)
        self.channel.queue_declare(queue, durable=True)
        self.channel.queue_bind(queue, exchange)
        self.body, headers, content_type = encoded()
        self.properties = pika.BasicProperties(
            content_type=content_type, headers=headers, delivery_mode=2
        )

    def publish(self, count: int) -> Measure:
        """``count`` persistent messages, no confirms."""
        publish, exchange, body, properties = (
            self.channel.basic_publish,
            self.exchange,
            self.body,
            self.properties,
        )
        started = Stopwatch()
        for _ in range(count):
            publish(exchange, "", body, properties)
        return started.measure(count)

    def publish_batch(self, count: int, batch_size: int) -> Measure:
        """``count`` messages, no confirms, written to the socket once per ``batch_size`` (the
        channel underneath: the blocking one writes each message at once)."""
        publish = self.channel._impl.basic_publish
        exchange, body, properties = self.exchange, self.body, self.properties
        started = Stopwatch()
        for start in range(0, count, batch_size):
            for _ in range(min(batch_size, count - start)):
                publish(exchange, "", body, properties)
            self.connection._flush_output()
        return started.measure(count)

    def publish_confirm_each(self, count: int) -> Measure:
        """``count`` messages, each waiting for its confirm (pika's ``confirm_delivery``)."""
        channel = self.connection.channel()
        channel.confirm_delivery()
        exchange, body, properties = self.exchange, self.body, self.properties
        try:
            started = Stopwatch()
            for _ in range(count):
                channel.basic_publish(exchange, "", body, properties)
            return started.measure(count)
        finally:
            channel.close()

    def publish_batch_confirm(self, count: int, batch_size: int) -> Measure:
        """``count`` messages, one confirm round per ``batch_size``: pika's blocking API has no
        such call, so confirm mode is set on the channel underneath and the acks are awaited
        with the connection's event loop (what a transport on pika has to do)."""
        channel = self.connection.channel()
        state = {"selected": False, "published": 0, "confirmed": 0, "nacked": 0}

        def on_confirm(frame: Any) -> None:
            method = frame.method
            tag = method.delivery_tag
            if isinstance(method, pika.spec.Basic.Nack):
                state["nacked"] += 1
            state["confirmed"] = tag if method.multiple else max(state["confirmed"], tag)

        def on_select(_frame: Any) -> None:
            state["selected"] = True

        channel._impl.confirm_delivery(ack_nack_callback=on_confirm, callback=on_select)
        wait_until(self.connection, lambda: bool(state["selected"]))
        publish = channel._impl.basic_publish
        exchange, body, properties = self.exchange, self.body, self.properties
        try:
            started = Stopwatch()
            for start in range(0, count, batch_size):
                for _ in range(min(batch_size, count - start)):
                    publish(exchange, "", body, properties)
                state["published"] += min(batch_size, count - start)
                wait_until(self.connection, lambda: state["confirmed"] >= state["published"])
            elapsed = started.measure(count)
            assert not state["nacked"], state
            return elapsed
        finally:
            channel.close()

    def consume(self, count: int, prefetch: int, ack_every: int) -> Measure:
        """Receive ``count`` messages with ``basic.consume`` and a prefetch window, acking each
        (``ack_every`` 1) or with one multiple-ack per ``ack_every``."""
        channel = self.connection.channel()
        channel.basic_qos(prefetch_count=prefetch)
        received = 0

        def on_message(channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
            nonlocal received
            if received == count:  # prefetched beyond the count: left to the next consumer
                return
            received += 1
            if ack_every == 1:
                channel.basic_ack(method.delivery_tag)
            elif received % ack_every == 0 or received == count:
                channel.basic_ack(method.delivery_tag, multiple=True)

        started = Stopwatch()
        tag = channel.basic_consume(self.queue, on_message)
        while received < count:
            self.connection.process_data_events(time_limit=1)
        elapsed = started.measure(count)
        channel.basic_cancel(tag)
        channel.close()
        return elapsed

    def message_count(self) -> int:
        return int(self.channel.queue_declare(self.queue, passive=True).method.message_count)

    def delete(self) -> None:
        self.channel.queue_delete(self.queue)
        self.channel.exchange_delete(self.exchange)

    def close(self) -> None:
        self.connection.close()


def wait_until(
    connection: pika.BlockingConnection, done: Callable[[], bool], timeout: float = 30
) -> None:
    """Run pika's I/O loop until ``done()``: its public ``process_data_events`` returns early
    only for a consumer's deliveries, not for a confirm or a reply on the channel underneath."""
    expired: list[bool] = []
    timer = connection.call_later(timeout, lambda: expired.append(True))
    connection._flush_output(done, lambda: bool(expired))
    connection.remove_timeout(timer)
    if not done():
        raise TimeoutError(f"AMQP broker did not answer within {timeout} s")


def import_py_amqp() -> ModuleType:
    """The ``amqp`` package (py-amqp), not ``bench/amqp.py``, which a script run from this
    directory would find first."""
    here = Path(__file__).resolve().parent
    saved = sys.path[:]
    sys.path[:] = [entry for entry in saved if Path(entry or ".").resolve() != here]
    try:
        return importlib.import_module("amqp")
    finally:
        sys.path[:] = saved


class RawPyAmqp:
    """py-amqp (the ``amqp`` package), used as one would by hand."""

    name = "py-amqp"

    def __init__(self, url: str, exchange: str, queue: str) -> None:
        amqp = import_py_amqp()
        broker = Broker(url)
        self.amqp = amqp
        self.connection = amqp.Connection(
            host=f"{broker.host}:{broker.port}",
            userid=broker.user,
            password=broker.password,
            virtual_host=broker.vhost,
        )
        self.connection.connect()
        self.channel = self.connection.channel()
        self.exchange, self.queue = exchange, queue
        self.channel.exchange_declare(exchange, "fanout", durable=True, auto_delete=False)
        self.channel.queue_declare(queue, durable=True, auto_delete=False)
        self.channel.queue_bind(queue, exchange)
        self.body, self.headers, self.content_type = encoded()

    def message(self) -> Any:
        return self.amqp.Message(
            self.body,
            content_type=self.content_type,
            application_headers=self.headers,
            delivery_mode=2,
        )

    def publish(self, count: int) -> Measure:
        publish, exchange, message = self.channel.basic_publish, self.exchange, self.message()
        started = Stopwatch()
        for _ in range(count):
            publish(message, exchange, "")
        return started.measure(count)

    def publish_batch(self, count: int, batch_size: int) -> Measure:
        """py-amqp writes each message to the socket as it is published: no batching."""
        return self.publish(count)

    def publish_confirm_each(self, count: int) -> Measure:
        channel = self.connection.channel()
        channel.confirm_select()
        publish, exchange, message = channel.basic_publish_confirm, self.exchange, self.message()
        try:
            started = Stopwatch()
            for _ in range(count):
                publish(message, exchange, "")
            return started.measure(count)
        finally:
            channel.close()

    def publish_batch_confirm(self, count: int, batch_size: int) -> Measure:
        channel = self.connection.channel()
        channel.confirm_select()
        state = {"confirmed": 0, "nacked": 0}

        def on_ack(tag: int, multiple: bool) -> None:
            state["confirmed"] = max(state["confirmed"], tag)

        def on_nack(tag: int, multiple: bool) -> None:
            state["nacked"] += 1
            on_ack(tag, multiple)

        channel.events["basic_ack"].add(on_ack)
        channel.events["basic_nack"].add(on_nack)
        publish, exchange, message = channel.basic_publish, self.exchange, self.message()
        published = 0
        try:
            started = Stopwatch()
            for start in range(0, count, batch_size):
                for _ in range(min(batch_size, count - start)):
                    publish(message, exchange, "")
                published += min(batch_size, count - start)
                while state["confirmed"] < published:
                    self.connection.drain_events(timeout=5)
            elapsed = started.measure(count)
            assert not state["nacked"], state
            return elapsed
        finally:
            channel.close()

    def consume(self, count: int, prefetch: int, ack_every: int) -> Measure:
        channel = self.connection.channel()
        channel.basic_qos(0, prefetch, False)
        received = 0

        def on_message(message: Any) -> None:
            nonlocal received
            if received == count:  # prefetched beyond the count: left to the next consumer
                return
            received += 1
            if ack_every == 1:
                channel.basic_ack(message.delivery_tag)
            elif received % ack_every == 0 or received == count:
                channel.basic_ack(message.delivery_tag, multiple=True)

        started = Stopwatch()
        tag = channel.basic_consume(self.queue, callback=on_message)
        while received < count:
            self.connection.drain_events(timeout=1)
        elapsed = started.measure(count)
        channel.basic_cancel(tag)
        channel.close()
        return elapsed

    def message_count(self) -> int:
        return int(self.channel.queue_declare(self.queue, passive=True).message_count)

    def delete(self) -> None:
        self.channel.queue_delete(self.queue)
        self.channel.exchange_delete(self.exchange)

    def close(self) -> None:
        self.connection.close()


CLIENTS: dict[str, type[RawPika] | type[RawPyAmqp]] = {"pika": RawPika, "py-amqp": RawPyAmqp}
