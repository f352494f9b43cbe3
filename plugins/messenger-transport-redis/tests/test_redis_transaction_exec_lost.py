"""``redis_transaction`` with the connection really lost during ``EXEC``: exactly once.

The worker talks to Redis through :mod:`exec_cutting_proxy`, which loses the connection at the
first ``EXEC`` (a handler's writes and the message's ``XACK``/``XDEL``): after Redis applied
it (the reply lost), before Redis got it (nothing applied), or with the ``EXEC`` arriving after
the client's read timed out. Each time the handler's write exists exactly once in the end, and
the message is handled once more exactly when the first try was not applied. A Redis user
that may not end the lost connection (``CLIENT KILL``) gets a warning that the doubt remains.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from exec_cutting_proxy import Cut, exec_cutting_proxy
from messenger_transport_redis import current_pipeline
from redis_test_support import REDIS_DSN, RedisServer, Stream, unique_stream

from messenger_core import Messenger
from messenger_core.dsn import Dsn, DsnHost
from messenger_core.testing.cutting_proxy import CuttingProxy
from messenger_core.worker_stats import WorkerStats


@attrs.frozen
class Job:
    """Counted in the hash ``<stream>:counts`` through the pipeline."""

    id: int


def _upstream() -> tuple[str, int]:
    """The test Redis's host and port; skips for a socket, TLS or Sentinel (no TCP proxy)."""
    dsn = Dsn.parse(REDIS_DSN)
    if dsn.scheme != "redis" or len(dsn.hosts) != 1 or "sentinel_master" in dsn.options:
        pytest.skip("the EXEC-cutting proxy relays plain TCP to one Redis")
    host = dsn.hosts[0]
    return host.host, host.port or 6379


class App:
    """A ``jobs`` transport reaching Redis through ``proxy``, the middleware on the bus; the
    handler notes, at each try, the count its write already has (read directly, not through
    the proxy)."""

    def __init__(
        self,
        stream: Stream,
        proxy: CuttingProxy,
        client: Any,
        *,
        max_retries: int = 2,
        user: tuple[str, str] | None = None,
        **options: str,
    ) -> None:
        self.key = f"{stream.name}:counts"
        self.stream = stream
        self.client = client
        dsn = stream.dsn()
        dsn = attrs.evolve(
            dsn,
            user=user[0] if user else dsn.user,
            password=user[1] if user else dsn.password,
            hosts=(DsnHost("127.0.0.1", proxy.port),),
            options={**dsn.options, "redeliver_timeout": "1", "claim_interval": "100", **options},
        )
        retry = {"max_retries": max_retries, "delay": 0}
        config = {
            "transports": {
                "jobs": {"dsn": dsn.to_url(mask_password=False), "retry_strategy": retry}
            },
            "routing": {Job: "jobs"},
            "buses": {"messenger.bus.default": {"middleware": ["redis_transaction"]}},
        }
        self.messenger = messenger = Messenger(config=config)
        self.seen: list[int] = []
        """The count of the message's write when each try started."""

        @messenger.handler
        def on_job(message: Job) -> None:
            self.seen.append(int(client.hget(self.key, str(message.id)) or 0))
            current_pipeline().hincrby(self.key, str(message.id), 1)

    def counts(self) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.client.hgetall(self.key).items()}

    def consume(self, **limits: Any) -> WorkerStats:
        return self.messenger.worker(["jobs"]).run(sleep=0.01, **limits)

    def assert_settled_for_good(self) -> None:
        """Not pending, not in the stream, no retry copy waiting; and nothing comes back after
        ``redeliver_timeout`` (1 s) and a claim (every 0.1 s)."""
        name = self.stream.name
        assert self.client.xpending(name, "symfony")["pending"] == 0
        assert self.client.xlen(name) == 0, "delete_after_ack: the entry was deleted"
        assert self.client.zcard(self.stream.queue) == 0, "no retry copy is waiting"
        again = self.consume(time_limit=1.5)
        assert (again.received, again.failed) == (0, 0)

    def close(self) -> None:
        self.messenger.close()
        self.client.delete(self.key)


@contextmanager
def app_behind(
    stream: Stream,
    client: Any,
    cut: Cut,
    *,
    delay: float = 0.0,
    upstream: tuple[str, int] | None = None,
    **options: Any,
) -> Iterator[tuple[App, CuttingProxy]]:
    """An :class:`App` whose Redis connections go through a proxy cutting ``cut`` (to the test
    Redis, or to ``upstream``)."""
    with exec_cutting_proxy(upstream or _upstream(), cut, delay=delay) as proxy:
        app = App(stream, proxy, client, **options)
        try:
            yield app, proxy
        finally:
            app.close()


def test_an_exec_applied_whose_reply_is_lost_counts_as_handled_once(
    stream: Stream, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with app_behind(stream, redis_client, Cut.AFTER) as (app, proxy):
        app.messenger.bus.dispatch(Job(1))
        with caplog.at_level(logging.WARNING, "messenger"):
            stats = app.consume(limit=1, time_limit=20)
        assert proxy.cut_done.is_set(), "the connection was cut after the EXEC"
        assert proxy.applied is True, "Redis ran the EXEC"
        assert (stats.handled, stats.failed, stats.retried, stats.parked) == (1, 0, 0, 0)
        assert app.seen == [0], "handled once"
        assert app.counts() == {1: 1}
        assert "the transaction was applied, its reply lost" in caplog.text
        app.assert_settled_for_good()
        assert app.seen == [0], "not handled again"
        assert app.counts() == {1: 1}


# With max_retries 0 too: a lost connection is no failure of the message's, it is retried.
@pytest.mark.parametrize("max_retries", [2, 0])
def test_an_exec_that_never_reached_redis_is_handled_again_and_applied_once(
    stream: Stream, redis_client: Any, max_retries: int
) -> None:
    with app_behind(stream, redis_client, Cut.BEFORE, max_retries=max_retries) as (
        app,
        proxy,
    ):
        app.messenger.bus.dispatch(Job(1))
        stats = app.consume(limit=2, time_limit=20)
        assert proxy.cut_done.is_set(), "the connection was cut before the EXEC"
        assert proxy.applied is False
        assert app.seen == [0, 0], "the second try found nothing of the first"
        assert (stats.handled, stats.failed, stats.parked, stats.rejected) == (1, 1, 0, 0)
        assert app.counts() == {1: 1}
        app.assert_settled_for_good()
        assert app.counts() == {1: 1}


def test_an_exec_arriving_after_the_read_timed_out_is_applied_at_most_once(
    stream: Stream, redis_client: Any
) -> None:
    # The EXEC reaches Redis 2.5 s late, the client gave up after read_timeout (1 s): the
    # doubt must be settled so that the late EXEC cannot apply after the message was retried.
    with app_behind(stream, redis_client, Cut.LATE, delay=2.5, read_timeout="1") as (
        app,
        proxy,
    ):
        app.messenger.bus.dispatch(Job(1))
        stats = app.consume(limit=2, time_limit=20)
        assert proxy.cut_done.wait(10), "the late EXEC was passed on"
        assert app.counts() == {1: 1}
        assert proxy.applied is False, "its connection was ended before it came"
        assert app.seen == [0, 0], "the second try found nothing of the first"
        assert (stats.handled, stats.failed, stats.parked, stats.rejected) == (1, 1, 0, 0)
        app.assert_settled_for_good()
        assert app.counts() == {1: 1}


def test_a_user_that_may_not_end_the_connection_is_told_the_doubt_remains(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A Redis of the test's own: an ACL user that may do all but CLIENT KILL.
    admin = redis_server.client()
    admin.execute_command(
        "ACL", "SETUSER", "worker", "on", ">secret", "~*", "&*", "+@all", "-client|kill"
    )
    stream = Stream(unique_stream(), base_dsn=redis_server.dsn)
    try:
        with app_behind(
            stream,
            admin,
            Cut.LATE,
            delay=2.5,
            upstream=("127.0.0.1", redis_server.port),
            user=("worker", "secret"),
            read_timeout="1",
        ) as (app, proxy):
            app.messenger.bus.dispatch(Job(1))
            with caplog.at_level(logging.WARNING, "messenger"):
                stats = app.consume(limit=2, time_limit=20)
            assert proxy.cut_done.wait(10)
            assert "could not end the connection of a transaction" in caplog.text
            assert "NOPERM" in caplog.text or "permission" in caplog.text.lower()
            assert (stats.handled, stats.failed, stats.parked) == (1, 1, 0)
    finally:
        stream.close()
        admin.close()
