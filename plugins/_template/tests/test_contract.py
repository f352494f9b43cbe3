"""The template transport passes the core's transport contract suite."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from messenger_transport_example import ExampleTransportFactory

from messenger_core.dsn import Dsn
from messenger_core.serializer import Serializer
from messenger_core.testing import TransportContract
from messenger_core.transport import Transport


class TestExampleTransport(TransportContract):
    redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 1}
    redelivery_wait = 5.0
    receive_timeout = 5.0

    @pytest.fixture
    def make_transport(
        self, contract_serializer: Serializer, tmp_path: Path
    ) -> Callable[..., Transport]:
        dsn = Dsn.parse(f"example://{tmp_path / 'spool'}")

        def make(**options: Any) -> Transport:
            return ExampleTransportFactory().create(dsn, options, contract_serializer)

        return make
