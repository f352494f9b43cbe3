"""The transport under a real worker (in this process): receivers in priority order, a time
limit on an idle queue, ``--queues``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from amqp_test_support import Exchange, Order, order, require_amqp

from messenger_core import Messenger


@pytest.fixture
def two_exchanges() -> Iterator[tuple[Exchange, Exchange]]:
    require_amqp()
    made = Exchange(), Exchange()
    yield made
    for each in made:
        each.close()


def app(high: Exchange, low: Exchange, **low_options: Any) -> tuple[Messenger, list[str]]:
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
