"""The reconnect policy on its own, with a fake clock: backoff, jitter, budgets, log lines."""

from __future__ import annotations

import itertools
import logging
import random

import pytest
import redis
from messenger_transport_redis.reconnect import Backoff, ReconnectPolicy, RedisUnreachableError

logger = logging.getLogger("messenger.transport.redis.test")


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(fake: FakeTime, timeout: float = 3.0) -> ReconnectPolicy:
    return ReconnectPolicy(
        "redis://:***@host:6379",
        timeout,
        logger=logger,
        rng=random.Random(7),
        clock=fake.clock,
        sleep=fake.sleep,
    )


def refuse() -> None:
    raise redis.ConnectionError("Connection refused")


def test_waits_double_up_to_the_maximum_with_bounded_jitter() -> None:
    backoff = Backoff(first=0.05, maximum=2.0, jitter=0.2)
    nominal: list[float] = []
    delay = None
    for _ in range(10):
        delay = backoff.next(delay)
        nominal.append(delay)
    assert nominal[:3] == [0.05, 0.1, 0.2]
    assert nominal[-1] == 2.0
    rng = random.Random(1)
    spread = [backoff.jittered(1.0, rng) for _ in range(200)]
    assert all(0.8 <= wait <= 1.2 for wait in spread)
    assert len(set(spread)) > 100, "jittered, not constant"


def test_an_unreachable_server_is_reported_after_the_whole_budget() -> None:
    fake = FakeTime()
    with pytest.raises(RedisUnreachableError) as raised:
        policy(fake, timeout=3.0).run(refuse, "connect")
    message = str(raised.value)
    assert "tried for 3.0 s" in message
    assert "reconnect_timeout=3" in message
    assert "Connection refused" in message
    assert "redis://:***@host:6379" in message
    assert max(fake.sleeps) <= 2.0 * 1.2, "bounded backoff"


def test_one_warning_per_outage_and_one_info_line_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    reconnect = policy(fake)
    reconnect.run(lambda: None, "connect")  # Redis answered once: later failures are outages
    failures = 30

    def operation() -> None:
        nonlocal failures
        if failures:
            failures -= 1
            refuse()

    with caplog.at_level(logging.DEBUG, logger=logger.name):
        for _ in range(200):  # a consumer polling with short budgets through a long outage
            try:
                reconnect.run(operation, "receive messages", budget=0.5)
                break
            except RedisUnreachableError:
                continue
    assert failures == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "went away" in warnings[0].getMessage()
    assert len(infos) == 1
    assert "reachable again" in infos[0].getMessage()
    assert not reconnect.in_outage


def test_the_backoff_goes_on_across_short_budgets() -> None:
    fake = FakeTime()
    reconnect = policy(fake, timeout=60)
    reconnect.run(lambda: None, "connect")
    calls: list[float] = []

    def failing() -> None:
        calls.append(fake.now)
        refuse()

    for _ in range(40):
        with pytest.raises(RedisUnreachableError):
            reconnect.run(failing, "receive messages", budget=0.5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert gaps[-1] >= 2.0 * 0.8, "attempts slowed down to the maximum wait, not reset per call"
