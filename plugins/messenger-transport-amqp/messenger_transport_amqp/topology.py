"""Symfony Messenger's AMQP topology: the exchange, its queues and the delay queues.

- the exchange (``fanout`` by default) and each configured queue, durable, bound with each of
  its binding keys (none: bound with the empty key);
- the ``delays`` exchange (``direct``, durable);
- per delay, routing key and purpose, a durable queue named by ``delay[queue_name_pattern]``
  (``delay_%exchange_name%_%routing_key%_%delay%``) plus ``_delay`` or ``_retry``, bound to
  the delays exchange with its own name, whose messages expire after the delay
  (``x-message-ttl``) and are dead-lettered back: a delayed message to the exchange with its
  routing key (every bound queue gets it), a retried one through the default exchange straight
  to the queue it failed in. The queue itself expires 10 s after its messages
  (``x-expires``), unless declared again: every publish into it declares it, as Symfony does
  (at most every few seconds here, which keeps the lease well ahead of the messages).
"""

from __future__ import annotations

import time
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from messenger_transport_amqp.options import AmqpOptions

__all__ = ["DELAY_QUEUE_LEASE", "Declaration", "Topology"]

Declaration = tuple[str, tuple[Any, ...], dict[str, Any]]
"""One declaration: the name of the channel's method (``exchange_declare``, ``queue_declare``,
``queue_bind``: the blocking and the async channel take the same arguments), its positional
and keyword arguments."""

DELAY_QUEUE_LEASE = 10_000
"""Milliseconds a delay queue outlives its messages' TTL (Symfony's ``x-expires`` margin)."""
_REDECLARE_AFTER = 4.0
"""Seconds after which a delay queue is declared again before publishing into it: well within
its 10 s lease, so it can never expire with a message just published into it."""


class Topology:
    """Declares the transport's exchanges and queues; knows the delay queues' names."""

    def __init__(self, options: AmqpOptions) -> None:
        self.options = options
        self._delay_declared: dict[str, float] = {}  # delay queue -> when declared (monotonic)
        self._delay_exchange_declared = False

    def forget(self) -> None:
        """A new channel: declare everything again when needed."""
        self._delay_declared.clear()
        self._delay_exchange_declared = False

    def declare(self, channel: BlockingChannel) -> None:
        """Declare the exchange and the queues, and bind them (idempotent)."""
        run(channel, self.declarations())

    def declarations(self) -> list[Declaration]:
        """The calls :meth:`declare` makes (the async sender makes them on its own channel)."""
        exchange = self.options.exchange
        calls: list[Declaration] = [
            (
                "exchange_declare",
                (exchange.name,),
                {
                    "exchange_type": exchange.type,
                    "durable": True,
                    "arguments": dict(exchange.arguments) or None,
                },
            )
        ]
        for name, queue in self.options.queues.items():
            calls.append(
                (
                    "queue_declare",
                    (name,),
                    {"durable": True, "arguments": dict(queue.arguments) or None},
                )
            )
            for key in queue.binding_keys:
                calls.append(
                    (
                        "queue_bind",
                        (name, exchange.name),
                        {
                            # pika would bind with the queue's name for None
                            "routing_key": key or "",
                            "arguments": dict(queue.binding_arguments) or None,
                        },
                    )
                )
        return calls

    def declare_delay_exchange(self, channel: BlockingChannel) -> None:
        """Declare the ``delays`` exchange (``direct``, durable)."""
        run(channel, [self._delay_exchange()])
        self._delay_exchange_declared = True

    def _delay_exchange(self) -> Declaration:
        name = self.options.delay.exchange_name
        return ("exchange_declare", (name,), {"exchange_type": "direct", "durable": True})

    def delay_queue_name(self, delay_ms: int, routing_key: str | None, retry: bool) -> str:
        """Symfony's name of the queue where a message waits ``delay_ms``."""
        pattern = self.options.delay.queue_name_pattern
        name = (
            pattern.replace("%delay%", str(delay_ms))
            .replace("%exchange_name%", self.options.exchange.name)
            .replace("%routing_key%", routing_key or "")
        )
        return name + ("_retry" if retry else "_delay")

    def delay_queue_arguments(
        self, delay_ms: int, routing_key: str | None, retry: bool
    ) -> dict[str, Any]:
        """Symfony's arguments of that queue: TTL, lease, where its messages go back to."""
        return {
            "x-message-ttl": delay_ms,
            "x-expires": delay_ms + DELAY_QUEUE_LEASE,
            # A retry goes back to the one queue it failed in (through the default exchange),
            # a delayed message to the exchange, for every queue bound there.
            "x-dead-letter-exchange": "" if retry else self.options.exchange.name,
            "x-dead-letter-routing-key": routing_key or "",
        }

    def declare_delay_queue(
        self, channel: BlockingChannel, delay_ms: int, routing_key: str | None, retry: bool
    ) -> str:
        """Declare and bind the delay queue (again if its lease may run short); its name."""
        run(channel, self.delay_queue_declarations(delay_ms, routing_key, retry))
        return self.delay_queue_name(delay_ms, routing_key, retry)

    def delay_queue_declarations(
        self, delay_ms: int, routing_key: str | None, retry: bool
    ) -> list[Declaration]:
        """The calls :meth:`declare_delay_queue` makes now (none if the queue was declared
        lately), counted as made: the caller makes them on this topology's channel, and a
        failure there ends the channel, and with it this record (:meth:`forget`)."""
        name = self.delay_queue_name(delay_ms, routing_key, retry)
        now = time.monotonic()
        if now - self._delay_declared.get(name, -_REDECLARE_AFTER) < _REDECLARE_AFTER:
            return []
        calls: list[Declaration] = []
        if self.options.auto_setup and not self._delay_exchange_declared:
            calls.append(self._delay_exchange())
            self._delay_exchange_declared = True
        arguments = self.delay_queue_arguments(delay_ms, routing_key, retry)
        calls.append(("queue_declare", (name,), {"durable": True, "arguments": arguments}))
        calls.append(
            ("queue_bind", (name, self.options.delay.exchange_name), {"routing_key": name})
        )
        self._delay_declared[name] = now
        return calls


def run(channel: BlockingChannel, calls: list[Declaration]) -> None:
    """Make ``calls`` on the blocking ``channel`` (each waits for RabbitMQ's answer)."""
    for method, args, kwargs in calls:
        getattr(channel, method)(*args, **kwargs)
