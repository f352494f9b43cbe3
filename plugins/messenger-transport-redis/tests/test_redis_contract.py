"""The Redis transport passes the core's transport contract suite, on a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pytest
from redis_test_support import Stream

from messenger_core.serializer import Serializer
from messenger_core.testing import TransportContract
from messenger_core.transport import Transport


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
