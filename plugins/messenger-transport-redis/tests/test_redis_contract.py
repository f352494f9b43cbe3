"""The Redis transport passes the core's transport contract suite, on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import attrs
import pytest
from redis_test_support import RedisServer, Stream, unique_stream

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_core.testing import TransportContract
from messenger_core.transport import Transport


@attrs.frozen
class _Probe:
    id: int


class TestRedisTransport(TransportContract):
    """``fetch_size`` 1: one entry per get(), every acknowledgement sent at once."""

    redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 1, "claim_interval": 50}
    redelivery_wait = 5.0
    receive_timeout = 5.0
    transport_options: ClassVar[Mapping[str, Any]] = {"fetch_size": 1}

    @pytest.fixture
    def make_transport(
        self, contract_serializer: Serializer, stream: Stream
    ) -> Callable[..., Transport]:
        def make(**options: Any) -> Transport:
            return stream.transport(contract_serializer, **{**self.transport_options, **options})

        return make


class TestRedisTransportBatched(TestRedisTransport):
    """Default options (``fetch_size`` 10): several entries per get(), acknowledgements sent
    in batches."""

    transport_options: ClassVar[Mapping[str, Any]] = {}


class TestRedisTransportOnOwnServer(TestRedisTransportBatched):
    """The contract on a ``redis-server`` of the test's own (spare port, append-only file
    fsynced after every command), so that the broker-restart test can stop and start it."""

    @pytest.fixture
    def make_transport(
        self, contract_serializer: Serializer, redis_server: RedisServer
    ) -> Iterator[Callable[..., Transport]]:
        stream = Stream(unique_stream(), base_dsn=redis_server.dsn)

        def make(**options: Any) -> Transport:
            return stream.transport(contract_serializer, **{**self.transport_options, **options})

        yield make
        stream.close()

    @pytest.fixture
    def restart_service(self, redis_server: RedisServer) -> Callable[[float], None]:
        """Stop the server (SIGTERM), wait ``downtime`` seconds, start it again on the same
        port and data."""

        def restart(downtime: float) -> None:
            redis_server.restart(downtime)

        return restart

    def test_restart_service_keeps_the_messages_and_transports_carry_on(
        self,
        make_transport: Callable[..., Transport],
        restart_service: Callable[[float], None],
    ) -> None:
        transport = make_transport()
        transport.send(Envelope(_Probe(1)))
        restart_service(1.0)
        transport.send(Envelope(_Probe(2)))
        received: list[Envelope] = []
        deadline = time.monotonic() + 20
        while len(received) < 2 and time.monotonic() < deadline:
            received.extend(transport.get())
        assert sorted(envelope.message.id for envelope in received) == [1, 2]
