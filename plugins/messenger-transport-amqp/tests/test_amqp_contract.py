"""The AMQP transport passes the core's transport contract suite, on a real RabbitMQ."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import pytest
from amqp_test_support import Exchange, RabbitNode, receive, require_amqp

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_core.testing import (
    ContractMessage,
    TransportContract,
    TransportPool,
    restart_test_only,
)
from messenger_core.transport import Transport


class TestAmqpTransport(TransportContract):
    """Default options: no publisher confirms, prefetch window of 50."""

    redelivery_options: ClassVar[Mapping[str, Any]] = {}
    redelivery_wait = 5.0
    receive_timeout = 5.0
    transport_options: ClassVar[Mapping[str, Any]] = {}

    @pytest.fixture
    def make_transport(
        self, contract_serializer: Serializer, exchange: Exchange
    ) -> Callable[..., Transport]:
        def make(**options: Any) -> Transport:
            return exchange.transport(contract_serializer, **{**self.transport_options, **options})

        return make

    def test_keepalive_keeps_a_message_reserved(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        """Replaces the contract's test: RabbitMQ has no per-message reservation that runs
        out (an unacknowledged message stays with its consumer as long as its connection
        lives), so the contract's "the other message comes back meanwhile" cannot happen.
        What keepalive must do here: keep the connection, and so the reservation, alive
        while a handler runs far longer than the heartbeat timeout."""
        consumer = contract_transports.new(heartbeat=1)
        assert hasattr(consumer, "keepalive")
        transport.send(Envelope(ContractMessage(1, "kept alive")))
        [held] = receive(consumer, 1)  # type: ignore[arg-type]
        stop = threading.Event()

        def keep() -> None:  # as the worker's keepalive thread does
            while not stop.wait(0.5):
                consumer.keepalive(held)  # type: ignore[attr-defined]

        thread = threading.Thread(target=keep)
        thread.start()
        try:
            time.sleep(4)  # a handler running for 4 heartbeat timeouts
        finally:
            stop.set()
            thread.join()
        other = contract_transports.new()
        assert receive(other, 1, timeout=0.5) == []  # type: ignore[arg-type]
        consumer.ack(held)


class _SameKeepalive(TestAmqpTransport):
    def test_keepalive_keeps_a_message_reserved(
        self, transport: Transport, contract_transports: TransportPool
    ) -> None:
        pytest.skip("keepalive does not depend on this variant: tested in TestAmqpTransport")


class TestAmqpTransportConfirmed(_SameKeepalive):
    """Publisher confirms: every send and batch waits for RabbitMQ's confirms. (The prefetch
    window stays the default: the suite receives up to 50 messages before settling them, and
    a consumer never holds more than its window.)"""

    transport_options: ClassVar[Mapping[str, Any]] = {"confirm_timeout": 5}


class TestAmqpQuorumQueue(_SameKeepalive):
    """A quorum queue (``x-queue-type: quorum``), with publisher confirms."""

    @pytest.fixture
    def make_transport(
        self, contract_serializer: Serializer, exchange: Exchange
    ) -> Callable[..., Transport]:
        queues = {exchange.name: {"arguments": {"x-queue-type": "quorum"}}}

        def make(**options: Any) -> Transport:
            return exchange.transport(
                contract_serializer, queues=queues, confirm_timeout=5, **options
            )

        return make


@restart_test_only
class TestAmqpTransportOnOwnNode(_SameKeepalive):
    """The contract's broker-restart test on a RabbitMQ node of the tests' own (spare ports),
    which it stops and starts. The node runs the same RabbitMQ as the shared broker, where
    :class:`TestAmqpTransport` runs the rest of the contract: only the restart test runs here."""

    restart_wait = 30.0

    @pytest.fixture
    def make_transport(
        self, contract_serializer: Serializer, rabbit_node: RabbitNode
    ) -> Iterator[Callable[..., Transport]]:
        require_amqp(rabbit_node.dsn)
        exchange = Exchange(base_dsn=rabbit_node.dsn)

        def make(**options: Any) -> Transport:
            return exchange.transport(contract_serializer, **options)

        yield make
        exchange.close()

    @pytest.fixture
    def restart_service(self, rabbit_node: RabbitNode) -> Callable[[float], None]:
        return rabbit_node.restart
