"""The transport under a real worker (in this process): receivers in priority order, a time
limit on an idle queue, ``--queues``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from amqp_test_support import Exchange, Order, order, ready_count, receive, require_amqp
from messenger_transport_amqp import AmqpStamp

from messenger_core import Messenger
from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportNamesStamp, TransportRedeliveredStamp


@pytest.fixture
def two_exchanges() -> Iterator[tuple[Exchange, Exchange]]:
    require_amqp()
    made = Exchange(), Exchange()
    yield made
    for each in made:
        each.close()


def app(
    high: Exchange, low: Exchange, pause: float = 0.0, **low_options: Any
) -> tuple[Messenger, list[str]]:
    handled: list[str] = []
    messenger = Messenger(
        {
            "transports": {
                "high": {"dsn": high.dsn(), "options": high.options()},
                "low": {"dsn": low.dsn(), "options": low.options(**low_options)},
            },
        },
    )

    messenger.register_message(Order, "tests.Order")  # as the tests' own serializer names it

    @messenger.handler
    def on_order(message: Order) -> None:
        handled.append(message.text)
        if pause:
            time.sleep(pause)

    return messenger, handled


def test_a_worker_serves_its_receivers_in_priority_order(
    two_exchanges: tuple[Exchange, Exchange],
) -> None:
    high, low = two_exchanges
    messenger, handled = app(high, low)
    with messenger:
        senders = high.transport(), low.transport()
        for each in senders:
            each.setup()
        low.transport().send_batch([order(n, "low") for n in range(5)])
        high.transport().send_batch([order(n, "high") for n in range(5)])
        messenger.worker(["high", "low"]).run(limit=10, handle_signals=False)
    # Priority holds among the messages that arrived: the first round may find the high
    # queue's deliveries not arrived yet (it just started consuming) and take a low one.
    positions = [index for index, text in enumerate(handled) if text == "high"]
    assert len(positions) == 5
    assert positions[-1] <= 5, handled


def test_a_time_limit_stops_a_worker_on_an_idle_queue(
    two_exchanges: tuple[Exchange, Exchange],
) -> None:
    high, low = two_exchanges
    messenger, handled = app(high, low)
    with messenger:
        started = time.monotonic()
        messenger.worker(["high", "low"]).run(time_limit=1, handle_signals=False)
        took = time.monotonic() - started
    assert 0.9 <= took < 5
    assert handled == []


def test_a_worker_consumes_the_queues_it_is_given(
    two_exchanges: tuple[Exchange, Exchange],
) -> None:
    high, low = two_exchanges
    a, b = low.queues = (f"{low.name}.a", f"{low.name}.b")
    messenger, handled = app(high, low, queues={a: {}, b: {}})
    with messenger:
        low.transport(queues={a: {}, b: {}}).send(order(1, "both"))
        messenger.worker(["low"], queues=[b]).run(limit=1, handle_signals=False)
    assert handled == ["both"]
    assert low.transport(queues={a: {}, b: {}}).message_count() == 1  # still in queue a


def test_an_amqp_stamp_given_to_dispatch_routes_the_message(
    two_exchanges: tuple[Exchange, Exchange],
) -> None:
    high, low = two_exchanges
    eu, us = low.queues = (f"{low.name}.eu", f"{low.name}.us")
    queues = {eu: {"binding_keys": ["eu"]}, us: {"binding_keys": ["us"]}}
    messenger, _ = app(high, low, exchange={"type": "direct"}, queues=queues)
    with messenger:
        low.transport(exchange={"type": "direct"}, queues=queues).setup()
        messenger.bus.dispatch(
            Order(1, "to eu"),
            TransportNamesStamp(transport_names=("low",)),
            AmqpStamp(routing_key="eu"),
        )
    assert ready_count(eu) == (1, 0)
    assert ready_count(us) == (0, 0)


@pytest.mark.parametrize(
    ("prefetch", "stop"),
    [(50, {"limit": 120}), (1000, {"limit": 120}), (50, {"time_limit": 0.3})],
    ids=["prefetch-50-limit", "prefetch-1000-limit", "prefetch-50-time-limit"],
)
def test_a_worker_that_stops_leaves_its_unhandled_messages_unflagged(
    two_exchanges: tuple[Exchange, Exchange], prefetch: int, stop: dict[str, Any]
) -> None:
    """A worker stopping on a backlog has just acknowledged its last messages, so RabbitMQ
    is pushing more while it cancels its consumer: those, and all it had buffered, must
    come back as new messages to the next receiver (no TransportRedeliveredStamp, which the
    reject-redelivered middleware would fail), none lost, none twice."""
    high, low = two_exchanges
    total = prefetch + 400
    messenger, handled = app(high, low, 0.001, prefetch_count=prefetch)
    with messenger:
        sender = low.transport()
        sender.setup()
        sender.send_batch([order(n, str(n)) for n in range(total)])
        messenger.worker(["low"]).run(handle_signals=False, **stop)
    assert 0 < len(handled) < total
    receiver = low.transport(prefetch_count=prefetch)
    rest: list[Envelope] = []
    deadline = time.monotonic() + 20
    while len(rest) < total - len(handled) and time.monotonic() < deadline:
        for envelope in receiver.get():  # acknowledged as they come: the window moves on
            rest.append(envelope)
            receiver.ack(envelope)
    redelivered = [e for e in rest if e.last(TransportRedeliveredStamp) is not None]
    assert redelivered == []
    texts = handled + [e.message.text for e in rest]
    assert sorted(texts, key=int) == [str(n) for n in range(total)]  # none lost, none twice
    assert receive(receiver, 1, timeout=0.5) == []
