"""The "stop workers" signal in Redis: shared by every host.

Each signal object stands for a process on its own host: two objects built from one DSN share
nothing but the Redis server. The last test runs real ``messenger`` processes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from messenger_transport_redis import RedisTransportFactory
from messenger_transport_redis.stop_signal import DEFAULT_KEY, RedisStopSignal
from redis_test_support import REDIS_DSN, raw_client, require_redis

from messenger_core import ConfigurationError
from messenger_core.dsn import Dsn
from messenger_core.errors import TransportError
from messenger_core.testing.stop_workers import StopSignalContract

DEADLINE = 60.0
"""Seconds any one wait on a process may take before the test fails (a loaded machine)."""

MakeSignal = Callable[..., RedisStopSignal]


@pytest.fixture
def signal_dsn() -> Iterator[str]:
    """The DSN (password included) of the test server with a key of the test's own."""
    require_redis()
    key = f"messenger-test-stop-{uuid.uuid4().hex[:16]}"
    parsed = Dsn.parse(REDIS_DSN)
    yield attrs.evolve(parsed, options={**parsed.options, "key": key}).to_url(mask_password=False)
    client: Any = raw_client()
    try:
        client.delete(key)
    finally:
        client.close()


@pytest.fixture
def make_signal(signal_dsn: str) -> Iterator[MakeSignal]:
    """Builds signals on ``signal_dsn`` (one per "host") that look at every call."""
    made: list[RedisStopSignal] = []

    def make(dsn: str | None = None, **options: str) -> RedisStopSignal:
        signal = RedisTransportFactory().create_stop_signal(Dsn.parse(dsn or signal_dsn), options)
        signal.CHECK_INTERVAL = 0.0  # look now, not within a second
        made.append(signal)
        return signal

    yield make
    for signal in made:
        signal.close()


class TestRedisStopSignalContract(StopSignalContract):
    """The core's stop-signal contract, on the ``signal_dsn`` fixture above."""


def _key(signal_dsn: str) -> str:
    return Dsn.parse(signal_dsn).options["key"]


def test_the_path_is_ignored_and_the_connection_options_count(
    make_signal: MakeSignal, signal_dsn: str
) -> None:
    parsed = Dsn.parse(signal_dsn)
    if not parsed.hosts:
        pytest.skip("the test server is a unix socket: the DSN's path is the socket's")
    with_a_stream = attrs.evolve(parsed, path="/messages/symfony")
    other_database = attrs.evolve(parsed, options={**parsed.options, "dbindex": "1"})
    same = make_signal(with_a_stream.to_url(mask_password=False))
    elsewhere = make_signal(other_database.to_url(mask_password=False))
    started = time.time()

    make_signal().request()

    assert same.requested_since(started)
    assert not elsewhere.requested_since(started)


def test_the_request_is_a_time_in_the_key(make_signal: MakeSignal, signal_dsn: str) -> None:
    worker_host = make_signal()
    started = time.time()
    client: Any = raw_client()
    try:
        client.set(_key(signal_dsn), repr(time.time()))  # as an operator might, by hand
        assert worker_host.requested_since(started)
        make_signal().request()
        assert float(client.get(_key(signal_dsn))) >= started
    finally:
        client.close()


# -- an unreachable server or a bad value ------------------------------------------------------

UNREACHABLE = "redis://:s3cret@127.0.0.1:1?timeout=2"


def test_a_worker_carries_on_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    signal = RedisStopSignal.from_dsn(Dsn.parse(UNREACHABLE))
    signal.CHECK_INTERVAL = signal.FAILURE_INTERVAL = 0.0
    try:
        with caplog.at_level(logging.DEBUG, logger="messenger.transport.redis"):
            assert not signal.requested_since(0.0)
            assert not signal.requested_since(0.0)
    finally:
        signal.close()

    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, "one warning per outage, not one per look"
    assert "cannot read the stop signal" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text
    assert ":***@127.0.0.1:1" in warnings[0].getMessage()


def test_requesting_a_stop_when_redis_is_down_is_a_clear_error() -> None:
    signal = RedisStopSignal.from_dsn(Dsn.parse(UNREACHABLE))
    try:
        with pytest.raises(TransportError, match=r"cannot request the stop") as raised:
            signal.request()
    finally:
        signal.close()
    assert "s3cret" not in str(raised.value)
    assert ":***@127.0.0.1:1" in str(raised.value)


def test_a_value_that_is_not_a_time_is_reported_and_ignored(
    make_signal: MakeSignal, signal_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker_host = make_signal()
    client: Any = raw_client()
    try:
        client.set(_key(signal_dsn), "please stop")
    finally:
        client.close()

    with caplog.at_level(logging.WARNING, logger="messenger.transport.redis"):
        assert not worker_host.requested_since(0.0)
    assert "cannot read the stop signal" in caplog.text
    assert "ValueError" in caplog.text


# -- configuration -----------------------------------------------------------------------------


def test_defaults_and_connection_options() -> None:
    signal = RedisTransportFactory().create_stop_signal(
        Dsn.parse("rediss://db.internal:6380/messages?dbindex=3"), {"timeout": "2"}
    )
    assert signal.options.key == DEFAULT_KEY == "messenger:stop-workers"
    assert signal.options.connection.dbindex == 3
    assert signal.options.connection.timeout == 2.0
    assert "rediss://db.internal:6380" in repr(signal)


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("redis://localhost?kye=stop", r"unknown option 'kye' .*did you mean 'key'"),
        (
            "redis://localhost?stream=messages",
            r"'stream' is an option of the Redis transport, not of the Redis stop signal",
        ),
        ("redis://localhost?key=", r"'key' must be a non-empty string"),
        ("redis://localhost?dbindex=-1", r"'dbindex' must be an integer >= 0"),
        ("redis://localhost?ssl_cert_reqs=none", r"ssl_\* options need a rediss:// DSN"),
    ],
)
def test_bad_configuration_is_refused(dsn: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisTransportFactory().create_stop_signal(Dsn.parse(dsn), {})
