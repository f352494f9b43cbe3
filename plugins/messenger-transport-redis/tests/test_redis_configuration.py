"""DSNs and options: what the factory accepts, what it refuses and what it builds.

None of these tests needs a Redis server: building a transport does not connect.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

import pytest
import redis
from messenger_transport_redis import (
    KNOWN_OPTIONS,
    RedisTransport,
    RedisTransportFactory,
    RedisTransportOptions,
    describe,
    endpoint_of,
    parse_options,
)
from redis.connection import SSLConnection, UnixDomainSocketConnection
from redis.sentinel import SentinelConnectionPool
from redis_test_support import make_serializer

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError


def create(dsn: str, **options: Any) -> RedisTransport:
    return RedisTransportFactory().create(Dsn.parse(dsn), options, make_serializer())


def pool_kwargs(transport: RedisTransport) -> dict[str, Any]:
    client = transport._endpoint.client(transport.options)
    try:
        return dict(client.connection_pool.connection_kwargs)
    finally:
        client.close()


# -- the path and the options ------------------------------------------------------------------
def test_defaults_follow_symfony_except_for_the_consumer_name() -> None:
    options = create("redis://localhost").options
    assert options == RedisTransportOptions()
    assert (options.stream, options.group, options.consumer) == ("messages", "symfony", None)
    assert options.queue == "messages__queue"
    assert (options.delete_after_ack, options.delete_after_reject) == (True, True)
    assert options.auto_setup is True
    assert (options.redeliver_timeout, options.claim_interval) == (3600.0, 60_000)
    assert (options.fetch_size, options.stream_max_entries, options.dbindex) == (10, 0, 0)


def test_the_path_names_stream_group_and_consumer() -> None:
    options = create("redis://localhost:6379/orders/billing/worker-1").options
    assert (options.stream, options.group, options.consumer) == ("orders", "billing", "worker-1")
    assert create("redis://localhost/orders/").options.stream == "orders"
    assert create("redis://localhost/").options.stream == "messages"


def test_query_options_are_typed() -> None:
    options = create(
        "redis://localhost/jobs?fetch_size=10&auto_setup=false&redeliver_timeout=1.5"
        "&claim_interval=100&stream_max_entries=1000&dbindex=2&delete_after_ack=0"
        "&delete_after_reject=no&timeout=2&read_timeout=3&reconnect_timeout=0"
    ).options
    assert options.fetch_size == 10
    assert options.auto_setup is False
    assert options.redeliver_timeout == 1.5
    assert options.claim_interval == 100
    assert options.stream_max_entries == 1000
    assert options.dbindex == 2
    assert options.delete_after_ack is False
    assert options.delete_after_reject is False
    assert (options.timeout, options.read_timeout, options.reconnect_timeout) == (2, 3, 0)


def test_configuration_options_override_the_query() -> None:
    assert create("redis://localhost/jobs?fetch_size=5", fetch_size=7).options.fetch_size == 7
    assert create("redis://localhost", stream="jobs", consumer="c").options.stream == "jobs"


def test_a_name_given_in_the_path_and_as_a_different_option_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"stream is given twice.*'jobs'.*'other'"):
        create("redis://localhost/jobs", stream="other")
    assert create("redis://localhost/jobs", stream="jobs").options.stream == "jobs"


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("redis://localhost/a/b/c/d", "too many parts"),
        ("redis://localhost/a//c", "empty group"),
    ],
)
def test_malformed_paths_are_refused(dsn: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create(dsn)


def test_an_unknown_option_is_named_with_a_suggestion_and_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        create("redis://localhost/jobs?fetch_sise=10")
    message = str(caught.value)
    assert "unknown option 'fetch_sise'" in message
    assert "did you mean 'fetch_size'?" in message
    for known in KNOWN_OPTIONS:
        assert known in message


def test_an_unknown_option_names_the_dsn_without_its_password() -> None:
    dsn = Dsn.parse("redis://:s3cret@cache.example/jobs?fetch_sise=10")
    with pytest.raises(ConfigurationError) as caught:
        parse_options(dsn.options, dsn.path, dsn=dsn)
    assert "for the Redis transport redis://:***@cache.example/jobs" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("fetch_size", "0"),
        ("fetch_size", "ten"),
        ("fetch_size", 1.5),
        ("fetch_size", 100_000),
        ("redeliver_timeout", "0"),
        ("redeliver_timeout", "-1"),
        ("redeliver_timeout", "nan"),
        ("claim_interval", "-5"),
        ("auto_setup", "maybe"),
        ("auto_setup", 2),
        ("delete_after_ack", "yes please"),
        ("stream_max_entries", "-1"),
        ("dbindex", "x"),
        ("stream", ""),
        ("group", 5),
        ("read_timeout", "0.5"),
        ("timeout", "0"),
        ("ssl_cert_reqs", "sometimes"),
    ],
)
def test_bad_values_are_refused_naming_the_option(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=repr(name)):
        create("rediss://localhost/jobs", **{name: value})


# -- endpoints ---------------------------------------------------------------------------------
def test_a_host_dsn_with_credentials_and_a_database() -> None:
    transport = create("redis://user:p%40ss@cache.example:6380/jobs?dbindex=3")
    endpoint = transport._endpoint
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("cache.example", 6380, False)
    assert (endpoint.username, endpoint.password) == ("user", "p@ss")
    kwargs = pool_kwargs(transport)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example", 6380, 3)
    assert (kwargs["username"], kwargs["password"]) == ("user", "p@ss")
    assert kwargs["socket_keepalive"] is True
    assert kwargs["socket_timeout"] == transport.options.read_timeout


def test_a_dsn_without_host_means_localhost() -> None:
    endpoint = create("redis://")._endpoint
    assert (endpoint.host, endpoint.port, endpoint.unix_socket) == ("127.0.0.1", 6379, None)


def test_a_user_without_password_is_the_password_as_in_symfony() -> None:
    transport = create("redis://s3cret@localhost/jobs")
    assert (transport._endpoint.username, transport._endpoint.password) == (None, "s3cret")
    assert "s3cret" not in repr(transport)
    assert "s3cret" not in describe(Dsn.parse("redis://s3cret@localhost/jobs"))


def test_a_unix_socket_path_with_the_stream_as_an_option() -> None:
    transport = create("redis://:s3cret@/var/run/redis/redis.sock?stream=jobs&dbindex=1")
    assert transport._endpoint.unix_socket == "/var/run/redis/redis.sock"
    assert transport.options.stream == "jobs"
    client = transport._endpoint.client(transport.options)
    try:
        pool = client.connection_pool
        assert pool.connection_class is UnixDomainSocketConnection
        assert pool.connection_kwargs["path"] == "/var/run/redis/redis.sock"
        assert pool.connection_kwargs["db"] == 1
        assert pool.connection_kwargs["password"] == "s3cret"
    finally:
        client.close()
    assert create("redis:///tmp/redis.sock").options.stream == "messages"


def test_rediss_is_tls_with_its_options() -> None:
    transport = create(
        "rediss://user:pw@cache.example/jobs?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=optional"
    )
    assert transport._endpoint.tls
    client = transport._endpoint.client(transport.options)
    try:
        pool = client.connection_pool
        assert pool.connection_class is SSLConnection
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        assert pool.connection_kwargs["ssl_cert_reqs"] == "optional"
        assert pool.connection_kwargs["ssl_check_hostname"] is False
    finally:
        client.close()


def test_tls_options_need_rediss_and_a_tcp_host() -> None:
    with pytest.raises(ConfigurationError, match="rediss://"):
        create("redis://localhost/jobs?ssl_ca_certs=/etc/ca.pem")
    with pytest.raises(ConfigurationError, match="unix socket"):
        create("rediss:///var/run/redis.sock")


def test_several_hosts_with_sentinel_master_are_the_sentinels() -> None:
    transport = create("redis://:pw@s1:26379,s2,[::1]:26380/jobs/workers?sentinel_master=main")
    endpoint = transport._endpoint
    assert endpoint.sentinels == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (transport.options.stream, transport.options.group) == ("jobs", "workers")
    client = endpoint.client(transport.options)  # asks no sentinel until the first command
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "main"
        assert pool.connection_kwargs["password"] == "pw"
    finally:
        client.close()


def test_several_hosts_without_sentinel_master_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="sentinel_master"):
        create("redis://h1:6379,h2:6379/jobs")
    with pytest.raises(ConfigurationError, match="sentinel_master needs"):
        create("redis:///var/run/redis.sock?sentinel_master=main")


def test_other_schemes_are_refused_with_the_password_masked() -> None:
    options = parse_options({})
    with pytest.raises(ConfigurationError) as caught:
        endpoint_of(Dsn.parse("amqp://user:s3cret@host/jobs"), options)
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)


def test_building_a_transport_does_not_connect() -> None:
    transport = create("redis://127.0.0.1:1/jobs")
    assert isinstance(transport, RedisTransport)
    transport.close()


def test_every_transport_object_gets_its_own_consumer_name() -> None:
    names = {create("redis://localhost/jobs").consumer for _ in range(20)}
    assert len(names) == 20
    assert all(f"-{os.getpid()}-" in name for name in names)
    assert create("redis://localhost/jobs/g/fixed").consumer == "fixed"


def test_the_factory_is_published_for_redis_and_rediss() -> None:
    published = {ep.name: ep.value for ep in entry_points(group="messenger.transports")}
    for scheme in ("redis", "rediss"):
        assert published[scheme] == "messenger_transport_redis.factory:RedisTransportFactory"


def test_a_client_switches_off_redis_py_retries() -> None:
    transport = create("redis://localhost/jobs")
    client = transport._endpoint.client(transport.options)
    try:
        assert isinstance(client, redis.Redis)
        assert client.connection_pool.connection_kwargs["retry"]._retries == 0
    finally:
        client.close()
