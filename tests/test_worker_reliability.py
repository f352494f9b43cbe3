"""A worker survives failing transports and failure stores (issue 9, points 2 to 4).

The transports here are small test transports over ``memory://`` that fail on purpose (a
receiver whose broker is "down", a failure store that refuses writes), not mocks of a broker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any

import attrs
import pytest

from messenger_core import Envelope, Messenger, UnrecoverableMessageError
from messenger_core.dsn import Dsn
from messenger_core.errors import BrokerUnreachableError
from messenger_core.failure_policy import Backoff, is_encoding_error
from messenger_core.serialization.json import DECODING_ERROR_HEADER
from messenger_core.serializer import Serializer
from messenger_core.transport import UndecodableMessage
from messenger_core.transports.memory import MemoryTransport


@attrs.frozen
class Order:
    id: int


@attrs.frozen
class Note:
    text: str


@attrs.frozen
class Reading:
    value: float


class Outage:
    """Switch shared by the failing transports of one test."""

    def __init__(self) -> None:
        self.down = True


class FlakyTransport(MemoryTransport):
    """``memory://`` whose ``get``/``ack``/``send`` raise ``ConnectionError`` while it is down.

    ``fail`` names the operations that fail.
    """

    outage: Outage
    fail: frozenset[str] = frozenset()

    def _check(self, operation: str) -> None:
        if operation in self.fail and self.outage.down:
            raise ConnectionError(f"{operation}: connection refused")
        if f"{operation}-unreachable" in self.fail and self.outage.down:
            raise BrokerUnreachableError(f"{operation}: never reached the broker, tried for 3 s")

    def get(self) -> list[Envelope]:
        self._check("get")
        return super().get()

    def ack(self, envelope: Envelope) -> None:
        self._check("ack")
        super().ack(envelope)

    def send(self, envelope: Envelope) -> Envelope:
        self._check("send")
        return super().send(envelope)


class FlakyFactory:
    """Scheme ``flaky://?fail=get,ack`` (plus the memory options)."""

    def __init__(self, outage: Outage) -> None:
        self.outage = outage

    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> FlakyTransport:
        merged = dsn.with_options(options)
        transport = FlakyTransport(
            serializer,
            serialize=merged.get("serialize") == "true",
            redeliver_timeout=float(merged.get("redeliver_timeout", 3600)),
        )
        transport.outage = self.outage
        transport.fail = frozenset(filter(None, str(merged.get("fail", "")).split(",")))
        return transport


def make_messenger(transports: Mapping[str, str], outage: Outage) -> Messenger:
    config = {
        "failure_transport": "failed",
        "transports": {
            name: {"dsn": dsn, "retry_strategy": {"max_retries": 0}}
            for name, dsn in transports.items()
        },
    }
    return Messenger(config, autoload=False, transports={"flaky": FlakyFactory(outage)})


def quick_worker(messenger: Messenger, names: list[str]) -> Any:
    worker = messenger.worker(names)
    worker.backoff = Backoff(initial=0.01, maximum=0.05, jitter=0.1)
    return worker


def run_in_thread(worker: Any, **limits: Any) -> threading.Thread:
    limits.setdefault("time_limit", 60)
    limits.setdefault("sleep", 0.005)
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False, **limits})
    thread.start()
    return thread


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.005)


# -- the failure store is down ----------------------------------------------------------------


def test_while_the_failure_store_is_down_the_other_transports_are_served() -> None:
    outage = Outage()
    messenger = make_messenger(
        {
            "async": "memory://?redeliver_timeout=0.05",
            "other": "memory://",
            "failed": "flaky://?fail=send",
        },
        outage,
    )
    attempts: list[int] = []
    handled: list[int] = []

    @messenger.handler
    def bad(message: Order) -> None:
        attempts.append(message.id)
        raise UnrecoverableMessageError("never works")

    @messenger.handler
    def fine(message: Note) -> None:
        handled.append(int(message.text))

    messenger.route(Order, "async")
    messenger.route(Note, "other")
    messenger.bus.dispatch(Order(1))
    worker = quick_worker(messenger, ["async", "other"])  # async first: the higher priority
    thread = run_in_thread(worker)
    try:
        wait_for(lambda: len(attempts) >= 2)  # parking failed at least once
        for number in range(50):
            messenger.bus.dispatch(Note(str(number)))
        wait_for(lambda: len(handled) == 50)  # served while the store is still down
        async_ = messenger.get_transport("async")
        assert isinstance(async_, MemoryTransport)
        assert async_.rejected == []
        assert async_.acknowledged == []
        assert worker.backoff.failures("async") >= 1

        outage.down = False
        failed = messenger.get_transport("failed")
        assert isinstance(failed, MemoryTransport)
        wait_for(lambda: len(failed.sent) == 1)
        wait_for(lambda: len(async_.rejected) == 1)
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert [e.message for e in failed.sent] == [Order(1)]
    assert async_.message_count() == 0
    assert worker.backoff.failures("async") == 0  # storing works again: backoff reset


def test_a_worker_paused_on_a_long_backoff_stops_at_once() -> None:
    outage = Outage()
    messenger = make_messenger({"async": "memory://", "failed": "flaky://?fail=send"}, outage)
    messenger.handler(lambda m: 1 / 0, handles=Order, name="divide")
    messenger.route(Order, "async")
    messenger.bus.dispatch(Order(1))
    worker = messenger.worker(["async"])
    worker.backoff = Backoff(initial=600, maximum=600)  # would block for ten minutes
    thread = run_in_thread(worker, sleep=600)
    wait_for(lambda: worker.backoff.failures("async") == 1)

    stopped_at = time.monotonic()
    worker.stop()
    thread.join(30)

    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 10  # generous: a sleep slice is 50 ms


# -- the receiver's broker is down ------------------------------------------------------------


@pytest.mark.parametrize("failing", ["get", "ack"])
def test_an_error_from_get_or_ack_pauses_that_receiver_only(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    outage = Outage()
    messenger = make_messenger(
        {
            "async": f"flaky://?fail={failing}&redeliver_timeout=0.05",
            "other": "memory://",
            "failed": "memory://",
        },
        outage,
    )
    orders: list[int] = []
    notes: list[str] = []
    messenger.handler(lambda m: orders.append(m.id), handles=Order, name="orders")
    messenger.handler(lambda m: notes.append(m.text), handles=Note, name="notes")
    messenger.route(Order, "async")
    messenger.route(Note, "other")
    messenger.bus.dispatch(Order(1))
    worker = quick_worker(messenger, ["async", "other"])

    with caplog.at_level(logging.ERROR, logger="messenger.worker"):
        thread = run_in_thread(worker)
        try:
            wait_for(lambda: worker.backoff.failures("async") >= 2)
            messenger.bus.dispatch(Note("served meanwhile"))
            wait_for(lambda: notes == ["served meanwhile"])
            outage.down = False
            async_ = messenger.get_transport("async")
            assert isinstance(async_, MemoryTransport)
            wait_for(lambda: async_.message_count() == 0)
        finally:
            worker.stop()
            thread.join(30)

    assert not thread.is_alive()
    assert 1 in orders  # handled once the broker is back (with ack failing: more than once)
    assert len(async_.acknowledged) == 1
    assert worker.backoff.failures("async") == 0  # it works again: the backoff starts over
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("receiving from or settling with async failed" in e for e in errors)
    assert any(f"{failing}: connection refused" in e for e in errors)


def test_a_worker_whose_only_receiver_keeps_failing_does_not_die() -> None:
    outage = Outage()
    messenger = make_messenger({"async": "flaky://?fail=get", "failed": "memory://"}, outage)
    worker = quick_worker(messenger, ["async"])

    stats = worker.run(time_limit=0.5, sleep=0.005, handle_signals=False)

    assert stats.stop_reason is not None
    assert stats.stop_reason.startswith("time limit")
    assert worker.backoff.failures("async") >= 2


# -- a message that decodes but cannot be encoded again ---------------------------------------


@pytest.mark.parametrize(
    ("message", "what"),
    [(Note("lone \ud800 surrogate"), "UnicodeEncodeError"), (Reading(math.inf), "ValueError")],
)
def test_a_message_that_cannot_be_encoded_is_parked_raw_not_retried(
    message: Any, what: str
) -> None:
    outage = Outage()
    messenger = make_messenger({"async": "memory://", "failed": "memory://?serialize=true"}, outage)
    attempts: list[Any] = []

    def fails(message: Any) -> None:
        attempts.append(message)
        raise RuntimeError("handler failed")

    messenger.handler(fails, handles=(Note, Reading))
    messenger.route(Note, "async")
    messenger.route(Reading, "async")
    messenger.bus.dispatch(message)
    worker = quick_worker(messenger, ["async"])

    worker.run(failure_limit=1, sleep=0.005, handle_signals=False, time_limit=30)

    async_ = messenger.get_transport("async")
    failed = messenger.get_transport("failed")
    assert isinstance(async_, MemoryTransport)
    assert isinstance(failed, MemoryTransport)
    assert len(attempts) == 1
    assert len(async_.rejected) == 1
    assert async_.message_count() == 0
    [parked] = failed.sent
    assert isinstance(parked.message, UndecodableMessage)
    # Read back from the (serializing) failure transport: the reason it was parked raw is in
    # the decoding error header, its repr is the body.
    reason = parked.message.headers[DECODING_ERROR_HEADER]
    assert "cannot be encoded again" in reason
    assert what in reason
    assert parked.message.body.startswith(type(message).__qualname__.encode() + b"(")
    assert type(message).__qualname__ in parked.message.headers["type"]
    assert worker.backoff.failures("async") == 0  # not taken for an outage


def test_a_retry_copy_that_cannot_be_encoded_is_parked_instead() -> None:
    outage = Outage()
    messenger = Messenger(
        {
            "failure_transport": "failed",
            "transports": {
                "async": {"dsn": "memory://", "retry_strategy": {"max_retries": 3, "delay": 0}},
                "failed": "memory://?serialize=true",
            },
        },
        autoload=False,
        transports={"flaky": FlakyFactory(outage)},
    )
    attempts: list[Any] = []

    def fails(message: Note) -> None:
        attempts.append(message)
        raise RuntimeError("handler failed")

    messenger.handler(fails)
    messenger.route(Note, "async")
    messenger.bus.dispatch(Note("\udfff"))
    async_ = messenger.get_transport("async")
    assert isinstance(async_, MemoryTransport)
    async_.serialize = True  # the retry copy goes through the serializer, and fails there

    worker = quick_worker(messenger, ["async"])
    worker.run(failure_limit=1, sleep=0.005, handle_signals=False, time_limit=30)

    failed = messenger.get_transport("failed")
    assert isinstance(failed, MemoryTransport)
    assert len(attempts) == 1
    [parked] = failed.sent
    assert isinstance(parked.message, UndecodableMessage)
    assert async_.message_count() == 0


def test_encoding_errors_are_told_from_outages() -> None:
    assert is_encoding_error(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"))
    assert is_encoding_error(ValueError("Out of range float values are not JSON compliant"))
    assert is_encoding_error(TypeError("Object of type set is not JSON serializable"))
    assert not is_encoding_error(ConnectionRefusedError("refused"))
    assert not is_encoding_error(TimeoutError("timed out"))
    assert not is_encoding_error(RuntimeError("driver error"))
    wrapped = RuntimeError("send failed")
    wrapped.__cause__ = ValueError("cannot encode")
    assert is_encoding_error(wrapped)


# -- Backoff ------------------------------------------------------------------------------------


def test_backoff_grows_caps_spreads_and_resets() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, jitter=0.0)
    key: Hashable = "async"

    assert [backoff.next_delay(key) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.next_delay("other") == 1.0  # counted per key
    backoff.reset(key)
    assert backoff.next_delay(key) == 1.0

    spread = Backoff(initial=10.0, maximum=10.0, jitter=0.2)
    delays = {spread.next_delay("k") for _ in range(50)}
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len(delays) > 1


# -- the broker was never there ----------------------------------------------------------------


def test_a_broker_never_reached_by_get_stops_the_worker_with_its_error() -> None:
    # Transports raise BrokerUnreachableError from get() only when they never reached their
    # broker: a wrong DSN or a stopped server at start-up must be shown, not waited out.
    messenger = make_messenger(
        {"async": "flaky://?fail=get-unreachable", "failed": "memory://"}, Outage()
    )
    worker = quick_worker(messenger, ["async"])

    with pytest.raises(BrokerUnreachableError, match="never reached the broker"):
        worker.run(handle_signals=False, time_limit=30, sleep=0.005)


def test_an_unreachable_broker_while_settling_pauses_the_receiver_only() -> None:
    outage = Outage()
    messenger = make_messenger(
        {"async": "flaky://?fail=ack-unreachable&redeliver_timeout=0.05", "failed": "memory://"},
        outage,
    )
    handled: list[int] = []
    messenger.handler(lambda m: handled.append(m.id), handles=Order, name="record")
    messenger.route(Order, "async")
    messenger.bus.dispatch(Order(1))
    worker = quick_worker(messenger, ["async"])
    thread = run_in_thread(worker)
    try:
        wait_for(lambda: worker.backoff.failures("async") >= 1)
        assert thread.is_alive()
        outage.down = False
        wait_for(lambda: messenger.get_transport("async").message_count() == 0)
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert set(handled) == {1}


# -- optional receiver capabilities (transport.FlushingReceiver, ReleasingReceiver) -----------


class CapableTransport(FlakyTransport):
    """A flaky ``memory://`` that also flushes and releases, recording both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flushes = 0
        self.released: list[Envelope] = []

    def flush(self) -> None:
        self._check("flush")
        self.flushes += 1

    def release(self, envelope: Envelope) -> None:
        self.released.append(envelope)


class CapableFactory(FlakyFactory):
    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> FlakyTransport:
        transport = CapableTransport(serializer)
        transport.outage = self.outage
        transport.fail = frozenset(
            filter(None, str(dsn.with_options(options).get("fail", "")).split(","))
        )
        return transport


def capable_messenger(transports: Mapping[str, str], outage: Outage) -> Messenger:
    config = {
        "failure_transport": "failed",
        "transports": {
            name: {"dsn": dsn, "retry_strategy": {"max_retries": 0}}
            for name, dsn in transports.items()
        },
    }
    factories = {"flaky": FlakyFactory(outage), "capable": CapableFactory(outage)}
    return Messenger(config, autoload=False, transports=factories)


def test_a_message_that_cannot_be_stored_is_released_by_a_receiver_that_can() -> None:
    outage = Outage()
    messenger = capable_messenger({"async": "capable://", "failed": "flaky://?fail=send"}, outage)
    messenger.handler(lambda m: 1 / 0, handles=Order, name="divide")
    messenger.route(Order, "async")
    messenger.bus.dispatch(Order(1))

    stats = quick_worker(messenger, ["async"]).run(limit=1, sleep=0.001, handle_signals=False)

    receiver = messenger.get_transport("async")
    assert isinstance(receiver, CapableTransport)
    assert stats.unsettled == 1
    assert [e.message for e in receiver.released] == [Order(1)]
    assert receiver.rejected == []


def test_a_worker_flushes_its_receivers_when_it_stops_and_survives_a_failing_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage()
    messenger = capable_messenger(
        {"async": "capable://", "other": "capable://?fail=flush", "failed": "memory://"}, outage
    )
    messenger.handler(lambda m: None, handles=Order, name="fine")
    messenger.route(Order, "async")
    messenger.bus.dispatch(Order(1))

    stats = quick_worker(messenger, ["async", "other"]).run(
        limit=1, sleep=0.001, handle_signals=False
    )

    assert stats.handled == 1
    good, bad = messenger.get_transport("async"), messenger.get_transport("other")
    assert isinstance(good, CapableTransport)
    assert isinstance(bad, CapableTransport)
    assert (good.flushes, bad.flushes) == (1, 0)
    assert "could not write the pending acknowledgements of other" in caplog.text


def test_a_lower_priority_receiver_writes_its_acks_before_the_worker_goes_back_up() -> None:
    # The first receiver may keep the worker busy for long: a lower one's held-back
    # acknowledgements must not wait for its next turn (a crash would redeliver them).
    messenger = capable_messenger(
        {"high": "capable://", "low": "capable://", "failed": "memory://"}, Outage()
    )
    messenger.handler(lambda m: None, handles=Order, name="fine")
    messenger.route(Order, "low")
    messenger.bus.dispatch(Order(1))
    messenger.bus.dispatch(Order(2))
    high, low = messenger.get_transport("high"), messenger.get_transport("low")
    assert isinstance(high, CapableTransport)
    assert isinstance(low, CapableTransport)

    flushes_at_handling: list[int] = []
    worker = quick_worker(messenger, ["high", "low"])
    worker.on_message = lambda _: flushes_at_handling.append(low.flushes)
    stats = worker.run(limit=2, sleep=0.001, handle_signals=False)

    assert stats.handled == 2
    # The first message's ack was written when the worker went back to "high", before the
    # second was handled; the second's when the worker stopped.
    assert flushes_at_handling == [0, 1]
    assert low.flushes == 2
    assert high.flushes == 1  # the first receiver is read again at once: only the stop's flush
