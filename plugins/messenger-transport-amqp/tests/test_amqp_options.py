"""DSNs and options: Symfony's names and defaults, both forms (DSN query, configuration
tables), and clear errors for mistakes."""

from __future__ import annotations

from typing import Any

import pytest
from amqp_test_support import make_serializer
from messenger_transport_amqp import AmqpTransport, AmqpTransportFactory, parse_options
from messenger_transport_amqp.connection import parameters_of

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.plugins import TRANSPORTS_GROUP, PluginRegistry


def options(dsn: str, **configured: Any) -> Any:
    return parse_options(Dsn.parse(dsn), configured)


def test_defaults_are_symfonys() -> None:
    parsed = options("amqp://localhost")
    assert (parsed.host, parsed.port, parsed.vhost) == ("localhost", 5672, "/")
    assert (parsed.user, parsed.password) == ("guest", "guest")
    assert parsed.exchange.name == "messages"
    assert parsed.exchange.type == "fanout"
    assert list(parsed.queues) == ["messages"]
    assert parsed.queues["messages"].binding_keys == (None,)
    assert parsed.delay.exchange_name == "delays"
    assert parsed.delay.queue_name_pattern == "delay_%exchange_name%_%routing_key%_%delay%"
    assert parsed.auto_setup is True
    assert parsed.confirm_timeout is None


@pytest.mark.parametrize(
    ("dsn", "vhost", "exchange"),
    [
        ("amqp://h/%2f/orders", "/", "orders"),
        ("amqp://h/%2F/orders", "/", "orders"),
        ("amqp://h/shop/orders", "shop", "orders"),
        ("amqp://h/shop%2fprod/orders", "shop/prod", "orders"),
        ("amqp://h/shop", "shop", "messages"),
        ("amqp://h/%2f", "/", "messages"),
        ("amqp://h//orders", "orders", "messages"),  # PHP's trim('/'): as Symfony reads it
        ("amqp://h", "/", "messages"),
    ],
)
def test_the_path_names_the_virtual_host_and_the_exchange(
    dsn: str, vhost: str, exchange: str
) -> None:
    parsed = options(dsn)
    assert (parsed.vhost, parsed.exchange.name) == (vhost, exchange)
    assert list(parsed.queues) == [exchange]  # Symfony's default queue: the DSN's exchange


def test_credentials_host_and_port() -> None:
    parsed = options("amqp://us%40er:p%2Fss@rabbit.internal:5673/%2f/orders")
    assert (parsed.user, parsed.password) == ("us@er", "p/ss")
    assert (parsed.host, parsed.port) == ("rabbit.internal", 5673)
    assert "p/ss" not in repr(parsed)
    transport = AmqpTransportFactory().create(
        Dsn.parse("amqp://u:secret@h/%2f/orders"), {}, make_serializer()
    )
    assert "secret" not in repr(transport)


def test_amqps_uses_tls_on_5671() -> None:
    parsed = options("amqps://h/%2f/x?verify=false")
    assert (parsed.tls, parsed.port, parsed.verify) == (True, 5671, False)
    assert parameters_of(parsed).ssl_options is not None
    assert parameters_of(options("amqp://h")).ssl_options is None


def test_nested_options_from_the_dsn_query() -> None:
    parsed = options(
        "amqp://h/%2f/orders?exchange[type]=topic&exchange[default_publish_routing_key]=eu"
        "&queues[orders_eu][binding_keys][0]=eu.*&queues[orders_eu][binding_keys][1]=all"
        "&queues[orders_eu][arguments][x-max-priority]=10"
        "&queues[orders_eu][arguments][x-queue-type]=quorum"
        "&delay[exchange_name]=my_delays&prefetch_count=7&confirm_timeout=0.5&heartbeat=30"
        "&auto_setup=false&connection_name=shop-worker"
    )
    assert parsed.exchange.type == "topic"
    assert parsed.exchange.default_publish_routing_key == "eu"
    queue = parsed.queues["orders_eu"]
    assert list(parsed.queues) == ["orders_eu"]
    assert queue.binding_keys == ("eu.*", "all")
    assert queue.arguments == {"x-max-priority": 10, "x-queue-type": "quorum"}
    assert parsed.delay.exchange_name == "my_delays"
    assert (parsed.prefetch_count, parsed.confirm_timeout, parsed.heartbeat) == (7, 0.5, 30)
    assert parsed.auto_setup is False
    assert parameters_of(parsed).client_properties == {"connection_name": "shop-worker"}


def test_configuration_tables_win_over_the_query() -> None:
    parsed = options(
        "amqp://h/%2f/orders?exchange[type]=topic&prefetch_count=7",
        exchange={"type": "direct", "arguments": {"alternate-exchange": "ae"}},
        prefetch_count=9,
        queues={"a": {"binding_keys": ["x"]}, "b": {}},
    )
    assert parsed.exchange.type == "direct"
    assert parsed.exchange.arguments == {"alternate-exchange": "ae"}
    assert parsed.prefetch_count == 9
    assert list(parsed.queues) == ["a", "b"]
    assert parsed.queues["b"].binding_keys == (None,)


@pytest.mark.parametrize(
    ("dsn", "configured", "message"),
    [
        ("amqp://h?prefetch_cout=3", {}, "'prefetch_cout' (did you mean 'prefetch_count'?)"),
        ("amqp://h", {"exchange": {"nmae": "x"}}, "'nmae' (did you mean 'name'?)"),
        ("amqp://h?queues[q][binding_key]=a", {}, "did you mean 'binding_keys'"),
        ("amqp://h?delay[exchange]=d", {}, "did you mean 'exchange_name'"),
        ("amqp://h?prefetch_count=0", {}, "'prefetch_count' must be an integer from 1"),
        ("amqp://h?confirm_timeout=-1", {}, "'confirm_timeout' must be a number of seconds"),
        ("amqp://h?auto_setup=maybe", {}, "'auto_setup' must be a boolean"),
        ("amqp://h?exchange[type]=fan", {}, "'exchange[type]' must be one of"),
        ("amqp://h?queues[q][arguments][x-max-priority]=high", {}, "x-max-priority"),
        ("amqp://h/a/b/c", {}, "too many parts"),
        ("amqp://h?delay[queue_name_pattern]=d_%exchange_name%", {}, "must contain %delay%"),
    ],
)
def test_mistakes_are_configuration_errors(dsn: str, configured: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=None) as raised:
        options(dsn, **configured)
    assert message in str(raised.value)


def test_an_unknown_option_lists_the_known_ones_and_masks_the_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        options("amqp://u:secret@h/%2f/x?heartbeet=1")
    text = str(raised.value)
    assert "did you mean 'heartbeat'" in text
    assert "secret" not in text
    assert "confirm_timeout" in text


def test_the_entry_points_serve_amqp_and_amqps() -> None:
    registry = PluginRegistry()
    for scheme in ("amqp", "amqps"):
        factory = registry.load(TRANSPORTS_GROUP, scheme)
        if isinstance(factory, type):
            factory = factory()
        transport = factory.create(Dsn.parse(f"{scheme}://h/%2f/x"), {}, make_serializer())
        assert isinstance(transport, AmqpTransport)
        transport.close()
