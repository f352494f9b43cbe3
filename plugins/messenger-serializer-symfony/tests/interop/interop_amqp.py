"""RabbitMQ for the interop tests: a test's exchange, its queue and its delay queues, looked at
with a plain pika channel behind both sides' backs.

Each test has an exchange of its own, ``interop_<token>``, with the queue Symfony and the AMQP
plugin make by default (named after the exchange) and a delays exchange of its own
(``delay[exchange_name]``), so that no two tests share a delay queue. AMQP cannot browse a
queue: :func:`peek_headers` takes every waiting message and publishes an exact copy back,
confirmed (putting a message back with ``basic.nack`` would flag it redelivered, and both
sides' reject-redelivered middleware would then send it through a retry).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from messenger_core.testing.services import service_dsn

AMQP_DSN = service_dsn("MESSENGER_TEST_AMQP_DSN", "amqp://guest:guest@127.0.0.1:5672/%2f")
"""The broker and virtual host (no exchange segment: each test names its own)."""

DELAYS_MS = (100, 1000, 2000, 3000)
"""The delays and retry delays the tests use: their delay queues are looked at and deleted
(any other one expires by itself 10 s after its messages, as Symfony declares them)."""


def _pika() -> Any:
    """pika, imported when an AMQP test runs (the other backends do not need it)."""
    import pika  # type: ignore[import-untyped]  # noqa: PLC0415

    return pika


@contextmanager
def channel() -> Iterator[Any]:
    """A plain pika channel on the test broker."""
    pika = _pika()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_DSN))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def probe() -> None:
    with channel():
        pass


def queue_names(exchange: str, routing_key: str = "") -> list[str]:
    """The test's queue (named after the exchange), then the delay and retry queues it may
    have, as Symfony names them: ``delay_<exchange>_<routing key>_<ms>_delay`` for a delayed
    message, ``delay_<exchange>_<queue>_<ms>_retry`` for a retry."""
    names = [exchange]
    for delay in DELAYS_MS:
        names.append(f"delay_{exchange}_{routing_key}_{delay}_delay")
        names.append(f"delay_{exchange}_{exchange}_{delay}_retry")
    return names


def _ready(connection: Any, names: list[str]) -> dict[str, int]:
    """The ready messages of each of the queues ``names`` that exists."""
    pika = _pika()
    counts = {}
    for name in names:
        current = connection.channel()
        try:
            counts[name] = current.queue_declare(name, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:  # 404: not declared (yet)
            continue
        current.close()
    return counts


def ready_counts(names: list[str]) -> dict[str, int]:
    """The ready messages of each of the queues ``names`` that exists (a stopped consumer's
    unacknowledged messages are ready again)."""
    with channel() as current:
        return _ready(current.connection, names)


def peek_headers(names: list[str]) -> list[dict[str, Any]]:
    """The headers (with ``Content-Type`` from the property, as both sides read them) of every
    message waiting in the queues ``names``, left in place (copies, in the same order). No
    consumer may run meanwhile."""
    found: list[dict[str, Any]] = []
    with channel() as current:
        current.confirm_delivery()
        for name, ready in _ready(current.connection, names).items():
            taken = []
            # Taken without acknowledgements: RabbitMQ 3.10 loses some acknowledgements of
            # basic.get deliveries from a quorum queue when the connection closes right after.
            for _ in range(ready):  # not "until empty": the copies go to the same queue
                method, properties, body = current.basic_get(name, auto_ack=True)
                if method is None:
                    break
                taken.append((properties, body))
            for properties, body in taken:
                headers = dict(properties.headers or {})
                if properties.content_type:
                    headers["Content-Type"] = properties.content_type
                found.append(headers)
                current.basic_publish("", name, body, properties)  # confirmed
    return found


def delete(exchanges: list[str], names: list[str]) -> None:
    """Delete these exchanges and queues (deleting what does not exist is fine)."""
    with channel() as current:
        for name in names:
            current.queue_delete(name)
        for exchange in exchanges:
            current.exchange_delete(exchange)
