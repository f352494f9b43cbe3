"""The ``redis_transaction`` middleware: handlers' writes and the ``XACK`` in one MULTI/EXEC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from messenger_transport_redis import NoPipelineError, RedisTransport, current_pipeline
from redis_test_support import Stream, receive

from messenger_core import Envelope, Messenger
from messenger_core.errors import ConfigurationError
from messenger_core.stamps import ReceivedStamp


@attrs.frozen
class Job:
    """A message whose handler counts its id through the pipeline."""

    id: int
    fail: bool = False


@attrs.frozen
class Local:
    """Not routed: handled where it is dispatched."""


class Boom(Exception):
    """A handler failed after queueing a write."""


class App:
    """An application with a ``jobs`` Redis stream and the middleware on the default bus;
    handlers count ids in the hash ``<stream>:counts``."""

    def __init__(self, stream: Stream, middleware: Any = "redis_transaction", **more: Any):
        self.key = f"{stream.name}:counts"
        dsn = attrs.evolve(stream.dsn(), options={**stream.dsn().options, "redeliver_timeout": "2"})
        config = {
            "transports": {
                "jobs": {"dsn": str(dsn), "retry_strategy": {"max_retries": 2, "delay": 0}},
                **more,
            },
            "routing": {Job: "jobs"},
            "buses": {"messenger.bus.default": {"middleware": [middleware]}},
        }
        self.messenger = messenger = Messenger(config=config)
        self.errors: list[str] = []
        failed_once: set[int] = set()

        @messenger.handler
        def on_job(message: Job) -> None:
            try:
                pipeline = current_pipeline()
            except NoPipelineError as error:
                self.errors.append(str(error))
                return
            pipeline.hincrby(self.key, str(message.id), 1)
            if message.fail and message.id not in failed_once:
                failed_once.add(message.id)
                raise Boom(f"job {message.id} fails once, after queueing its write")

        @messenger.handler
        def on_local(message: Local) -> None:
            try:
                current_pipeline()
            except NoPipelineError as error:
                self.errors.append(str(error))

    @property
    def jobs(self) -> RedisTransport:
        transport = self.messenger.get_transport("jobs")
        assert isinstance(transport, RedisTransport)
        return transport

    def counts(self, client: Any) -> dict[int, int]:
        return {int(k): int(v) for k, v in client.hgetall(self.key).items()}

    def close(self, client: Any) -> None:
        self.messenger.close()
        client.delete(self.key)


@pytest.fixture
def app(stream: Stream, redis_client: Any) -> Iterator[App]:
    made = App(stream)
    yield made
    made.close(redis_client)


def test_the_handlers_writes_are_applied_with_the_acknowledgement(
    app: App, stream: Stream, redis_client: Any
) -> None:
    for number in range(5):
        app.messenger.bus.dispatch(Job(number))
    stats = app.messenger.worker(["jobs"]).run(limit=5, sleep=0.01)
    assert stats.handled == 5
    assert app.errors == []
    assert app.counts(redis_client) == dict.fromkeys(range(5), 1)
    assert redis_client.xpending(stream.name, "symfony")["pending"] == 0
    assert redis_client.xlen(stream.name) == 0, "delete_after_ack: XDEL was in the EXEC"
    assert app.jobs.message_count() == 0


def test_the_worker_s_ack_after_the_exec_sends_nothing(
    app: App, stream: Stream, redis_client: Any
) -> None:
    app.messenger.bus.dispatch(Job(1))
    transport = app.jobs
    [received] = receive(transport, 1)
    transport.flush()
    assert transport.atomic.is_pending(received)
    app.messenger.bus.dispatch(received.with_(ReceivedStamp(transport_name="jobs")))
    assert not transport.atomic.is_pending(received), "acknowledged in the EXEC"
    assert app.counts(redis_client) == {1: 1}
    transport.ack(received)
    assert transport._settler.idle, "the ack wrote nothing"
    assert transport._settler.outstanding == set()


def test_a_failing_handler_s_writes_are_discarded_and_the_retry_counts_once(
    app: App, redis_client: Any
) -> None:
    app.messenger.bus.dispatch(Job(1, fail=True))
    app.messenger.bus.dispatch(Job(2))
    stats = app.messenger.worker(["jobs"]).run(limit=3, sleep=0.01)
    assert stats.handled == 2
    assert app.counts(redis_client) == {1: 1, 2: 1}
    assert app.jobs.message_count() == 0


def test_messages_from_another_transport_get_a_pipeline_on_the_named_one(
    stream: Stream, redis_client: Any
) -> None:
    middleware = {"name": "redis_transaction", "options": {"transport": "jobs"}}
    app = App(stream, middleware=middleware, memory={"dsn": "memory://"})
    try:
        memory = app.messenger.get_transport("memory")
        memory.send(Envelope(Job(1)))
        memory.send(Envelope(Job(2, fail=True)))
        stats = app.messenger.worker(["memory"]).run(limit=3, sleep=0.01)
        assert stats.handled == 2
        assert app.errors == []
        assert app.counts(redis_client) == {1: 1, 2: 1}
    finally:
        app.close(redis_client)


def test_without_the_option_messages_from_another_transport_have_no_pipeline(
    stream: Stream, redis_client: Any
) -> None:
    app = App(stream, memory={"dsn": "memory://"})
    try:
        app.messenger.get_transport("memory").send(Envelope(Job(1)))
        app.messenger.worker(["memory"]).run(limit=1, sleep=0.01)
        assert len(app.errors) == 1
        assert "no pipeline" in app.errors[0]
    finally:
        app.close(redis_client)


def test_a_dispatched_message_handled_at_once_has_no_pipeline(app: App) -> None:
    app.messenger.bus.dispatch(Local())
    assert len(app.errors) == 1
    assert "no pipeline" in app.errors[0]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"transactional": True}, "unknown option 'transactional'"),
        ({"transport": "nope"}, "option 'transport' must name a configured Redis transport"),
    ],
)
def test_bad_options_stop_the_bus_being_built(
    stream: Stream, redis_client: Any, options: dict[str, Any], expected: str
) -> None:
    app = App(stream, middleware={"name": "redis_transaction", "options": options})
    try:
        with pytest.raises(ConfigurationError, match=expected):
            app.messenger.bus.dispatch(Job(1))
    finally:
        app.close(redis_client)


@attrs.frozen
class Pair:
    """Two handlers count it: ``id`` and ``id + 1000``; the second fails the first time."""

    id: int


def test_a_retry_runs_again_the_handlers_whose_writes_were_discarded(
    app: App, redis_client: Any
) -> None:
    failed: list[int] = []

    @app.messenger.handler
    def first(message: Pair) -> None:
        current_pipeline().hincrby(app.key, str(message.id), 1)

    @app.messenger.handler
    def second(message: Pair) -> None:
        current_pipeline().hincrby(app.key, str(message.id + 1000), 1)
        if not failed:
            failed.append(message.id)
            raise Boom("the second handler fails once")

    app.jobs.send(Envelope(Pair(5)))
    stats = app.messenger.worker(["jobs"]).run(limit=2, sleep=0.01)
    assert stats.handled == 1
    assert failed == [5]
    assert app.counts(redis_client) == {5: 1, 1005: 1}, "the first handler ran again"
