"""Fixtures of the AMQP transport's tests: an exchange and queue of each test's own on the
real RabbitMQ, and a RabbitMQ node of the session's own for the restart tests.

RabbitMQ is the one named by ``MESSENGER_TEST_AMQP_DSN`` (default: the local broker); tests
skip when it is unreachable, or fail under ``MESSENGER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from amqp_test_support import Exchange, RabbitNode, own_rabbit_node, require_amqp


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    """A fresh exchange (and its queue and delays exchange) on the test broker, deleted
    afterwards."""
    require_amqp()
    made = Exchange()
    yield made
    made.close()


@pytest.fixture(scope="session")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """A RabbitMQ node of the test session's own on spare ports (started once: a start takes
    seconds); tests that stop it start it again."""
    yield from own_rabbit_node(tmp_path_factory.mktemp("rabbitmq-node"))
