"""Retries and the failure transport: the strategy on its own, then through a worker.

Every worker here consumes ``memory://`` transports in this process. Retry delays are a few
milliseconds and the jitter is 0, so the ``DelayStamp`` of each retry is exact.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from messenger_core import (
    ConfigurationError,
    DelayStamp,
    Envelope,
    ErrorDetailsStamp,
    HandlerFailedError,
    Messenger,
    RecoverableMessageError,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    TransportError,
    UndecodableMessage,
    UnrecoverableMessageError,
)
from messenger_core.config import RetryStrategyConfig
from messenger_core.dsn import Dsn
from messenger_core.failure_policy import Backoff
from messenger_core.message_types import type_name_of
from messenger_core.retry import (
    MultiplierRetryStrategy,
    RetryStrategy,
    find_error,
    is_unrecoverable,
    retry_count_of,
    retry_strategy_from_config,
)
from messenger_core.serialization.json import (
    DECODING_ERROR_HEADER,
    STAMP_HEADER_PREFIX,
    JsonSerializerFactory,
)
from messenger_core.serializer import Serializer
from messenger_core.stamps import HandledByStamp
from messenger_core.transport import TransportMessage
from messenger_core.transports.memory import MemoryTransport
from messenger_core.worker import HISTORY

# -- messages and helpers ---------------------------------------------------------------------


@attrs.frozen
class PlaceOrder:
    order_id: int


@attrs.frozen
class Poison:
    """Encoded by :class:`PoisonSerializer` as a body no JSON decoder accepts."""

    note: str = "poison"


@attrs.frozen
class Foreign:
    """Encoded by :class:`PoisonSerializer` under a type name nobody registered."""


POISON_BODY = b'{"order_id": 1'

FAST_RETRY = {"max_retries": 3, "delay": 2, "multiplier": 2, "max_delay": 0, "jitter": 0}


def envelope_after(retries: int) -> Envelope:
    """An envelope that was retried ``retries`` times already."""
    if retries == 0:
        return Envelope(PlaceOrder(1))
    return Envelope(PlaceOrder(1), [RedeliveryStamp(retry_count=retries)])


@pytest.fixture(autouse=True)
def own_stop_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep these workers away from a ``messenger stop-workers`` run elsewhere on this host."""
    monkeypatch.setenv("MESSENGER_STOP_SIGNAL_FILE", str(tmp_path / "stop-workers"))


def make_messenger(
    transport_config: Mapping[str, Any] | None = None,
    *,
    failure_transport: str | None = "failed",
    retry: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Messenger:
    """``async`` (routed ``PlaceOrder``) and ``failed`` memory transports unless told otherwise."""
    if transport_config is None:
        transport_config = {
            "async": {"dsn": "memory://", "retry_strategy": dict(retry or FAST_RETRY)},
            "failed": "memory://",
        }
    config: dict[str, Any] = {"transports": dict(transport_config)}
    if failure_transport:
        config["failure_transport"] = failure_transport
    messenger = Messenger(config, autoload=False, **kwargs)
    if "async" in transport_config:
        messenger.route(PlaceOrder, "async")
    return messenger


def memory(messenger: Messenger, name: str) -> MemoryTransport:
    transport = messenger.get_transport(name)
    assert isinstance(transport, MemoryTransport)
    return transport


def consume(messenger: Messenger, *names: str, **limits: Any) -> Any:
    """Run a worker on ``names`` (default ``async``) until a limit; never sleeps long when idle."""
    limits.setdefault("sleep", 0.001)
    limits.setdefault("time_limit", 30)  # a safety net: every test stops on another limit
    worker = messenger.worker(list(names) or ["async"])
    stats = worker.run(handle_signals=False, **limits)
    assert stats.stop_reason is not None
    assert not stats.stop_reason.startswith("time limit"), "the worker ran into the safety net"
    return stats


# -- MultiplierRetryStrategy ------------------------------------------------------------------


def test_the_defaults_are_those_of_the_design() -> None:
    strategy = MultiplierRetryStrategy()

    assert (strategy.max_retries, strategy.delay_ms, strategy.multiplier) == (3, 1000, 2.0)
    assert (strategy.max_delay_ms, strategy.jitter) == (0, 0.1)
    config = retry_strategy_from_config(RetryStrategyConfig())
    assert config == strategy


@pytest.mark.parametrize(("retries", "retryable"), [(0, True), (1, True), (2, True), (3, False)])
def test_a_message_is_retried_max_retries_times(retries: int, retryable: bool) -> None:
    strategy = MultiplierRetryStrategy(max_retries=3)

    assert strategy.is_retryable(envelope_after(retries), ValueError()) is retryable


def test_no_retries_at_all_with_max_retries_0() -> None:
    assert not MultiplierRetryStrategy(max_retries=0).is_retryable(envelope_after(0), ValueError())


@pytest.mark.parametrize(("retries", "delay"), [(0, 1000), (1, 2000), (2, 4000), (3, 8000)])
def test_each_retry_waits_delay_times_multiplier_to_the_retry_count(
    retries: int, delay: int
) -> None:
    strategy = MultiplierRetryStrategy(delay_ms=1000, multiplier=2, jitter=0)

    assert strategy.waiting_time_ms(envelope_after(retries), ValueError()) == delay


def test_a_fractional_multiplier_is_rounded_to_whole_milliseconds() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=100, multiplier=1.5, jitter=0)

    delays = [strategy.waiting_time_ms(envelope_after(n), ValueError()) for n in range(4)]

    assert delays == [100, 150, 225, 338]  # 337.5 rounds to the even 338


def test_max_delay_caps_the_wait() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=100, multiplier=10, max_delay_ms=5000, jitter=0)

    delays = [strategy.waiting_time_ms(envelope_after(n), ValueError()) for n in range(5)]

    assert delays == [100, 1000, 5000, 5000, 5000]


def test_max_delay_0_means_no_cap() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=100, multiplier=10, max_delay_ms=0, jitter=0)

    assert strategy.waiting_time_ms(envelope_after(4), ValueError()) == 1_000_000


def test_jitter_spreads_the_wait_within_its_fraction_either_way() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=1000, multiplier=2, jitter=0.1)
    random.seed(1234)

    first = [strategy.waiting_time_ms(envelope_after(0), ValueError()) for _ in range(500)]
    third = [strategy.waiting_time_ms(envelope_after(2), ValueError()) for _ in range(500)]

    assert all(900 <= delay <= 1100 for delay in first)
    assert all(3600 <= delay <= 4400 for delay in third)
    # Spread over the range, not a constant and not one-sided.
    assert min(first) < 950
    assert max(first) > 1050
    assert len(set(first)) > 50


def test_jitter_is_applied_after_the_cap() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=1000, multiplier=10, max_delay_ms=2000, jitter=0.5)
    random.seed(99)

    delays = [strategy.waiting_time_ms(envelope_after(3), ValueError()) for _ in range(300)]

    assert all(1000 <= delay <= 3000 for delay in delays)
    assert max(delays) > 2000  # jitter may exceed the cap, it spreads the capped value


def test_a_recoverable_error_brings_its_own_delay() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=1000, jitter=0)

    error = RecoverableMessageError("rate limited", retry_delay_ms=1234)

    assert strategy.waiting_time_ms(envelope_after(2), error) == 1234


def test_a_recoverable_error_without_a_delay_waits_as_usual() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=1000, jitter=0)

    assert strategy.waiting_time_ms(envelope_after(1), RecoverableMessageError("x")) == 2000


def test_a_recoverable_error_inside_a_handler_failure_brings_its_delay_too() -> None:
    strategy = MultiplierRetryStrategy(delay_ms=1000, jitter=0)
    failure = HandlerFailedError(
        Envelope(PlaceOrder(1)),
        [("a", ValueError("boom")), ("b", RecoverableMessageError("later", retry_delay_ms=77))],
    )

    assert strategy.waiting_time_ms(envelope_after(0), failure) == 77


@pytest.mark.parametrize(
    "arguments",
    [
        {"max_retries": -1},
        {"delay_ms": -5},
        {"multiplier": 0.5},
        {"max_delay_ms": -1},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_nonsensical_settings_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        MultiplierRetryStrategy(**arguments)


def test_the_retry_count_comes_from_the_last_redelivery_stamp() -> None:
    envelope = Envelope(
        PlaceOrder(1), [RedeliveryStamp(retry_count=1), RedeliveryStamp(retry_count=2)]
    )

    assert retry_count_of(envelope) == 2
    assert retry_count_of(Envelope(PlaceOrder(1))) == 0


# -- unrecoverable and recoverable errors ----------------------------------------------------


def failure_of(*errors: BaseException) -> HandlerFailedError:
    return HandlerFailedError(
        Envelope(PlaceOrder(1)), [(f"handler{i}", e) for i, e in enumerate(errors)]
    )


def test_unrecoverable_means_every_failing_handler_said_so() -> None:
    assert is_unrecoverable(UnrecoverableMessageError("no"))
    assert is_unrecoverable(failure_of(UnrecoverableMessageError("a")))
    assert is_unrecoverable(failure_of(UnrecoverableMessageError("a"), UnrecoverableMessageError()))
    assert not is_unrecoverable(failure_of(UnrecoverableMessageError("a"), ValueError("b")))
    assert not is_unrecoverable(ValueError("b"))


def test_find_error_looks_inside_a_handler_failure() -> None:
    recoverable = RecoverableMessageError("r")

    assert find_error(recoverable, RecoverableMessageError) is recoverable
    assert find_error(failure_of(ValueError(), recoverable), RecoverableMessageError) is recoverable
    assert find_error(failure_of(ValueError()), RecoverableMessageError) is None
    assert find_error(KeyError(), RecoverableMessageError) is None


# -- strategies from configuration -------------------------------------------------------------


@attrs.frozen
class AlwaysTwice:
    """A custom strategy: two retries, 5 ms apart."""

    def is_retryable(self, envelope: Envelope, error: BaseException) -> bool:
        return retry_count_of(envelope) < 2

    def waiting_time_ms(self, envelope: Envelope, error: BaseException) -> int:
        return 5


ALWAYS_TWICE = AlwaysTwice()


class Namespace:
    """Holds a strategy one attribute deeper (``module:Namespace.strategy``)."""

    strategy = AlwaysTwice()


class NotAStrategy:
    pass


def service(attribute: str) -> str:
    return f"{__name__}:{attribute}"


def test_the_multiplier_strategy_is_built_from_the_configured_numbers() -> None:
    config = RetryStrategyConfig(max_retries=5, delay=10, multiplier=3, max_delay=100, jitter=0)

    strategy = retry_strategy_from_config(config)

    assert strategy == MultiplierRetryStrategy(
        max_retries=5, delay_ms=10, multiplier=3, max_delay_ms=100, jitter=0
    )


@pytest.mark.parametrize("attribute", ["AlwaysTwice", "ALWAYS_TWICE", "Namespace.strategy"])
def test_a_custom_strategy_is_a_class_or_an_object_named_module_colon_attribute(
    attribute: str,
) -> None:
    strategy = retry_strategy_from_config(RetryStrategyConfig(service=service(attribute)))

    assert isinstance(strategy, AlwaysTwice)
    assert isinstance(strategy, RetryStrategy)


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("no_such_module_for_messenger_tests:Strategy", "cannot be loaded"),
        (service("Missing"), "cannot be loaded"),
        (service("NotAStrategy"), "is not a retry strategy"),
    ],
)
def test_a_custom_strategy_that_cannot_be_used_is_a_configuration_error(
    name: str, complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        retry_strategy_from_config(RetryStrategyConfig(service=name))


def test_a_worker_uses_the_custom_strategy_of_its_transport() -> None:
    messenger = make_messenger(retry={"service": service("AlwaysTwice")})
    messenger.handler(lambda message: 1 / 0, handles=PlaceOrder, name="divide")
    messenger.bus.dispatch(PlaceOrder(1))

    consume(messenger, failure_limit=3)

    retries = memory(messenger, "async").sent[1:]
    assert [e.last(DelayStamp) for e in retries] == [DelayStamp(delay_ms=5)] * 2
    assert [retry_count_of(e) for e in retries] == [1, 2]
    assert len(memory(messenger, "failed").sent) == 1


def test_a_worker_refuses_to_start_with_a_broken_custom_strategy() -> None:
    # Fail fast on what is configured: not at the first failure, hours later.
    messenger = make_messenger(retry={"service": service("NotAStrategy")})

    with pytest.raises(ConfigurationError, match="is not a retry strategy"):
        messenger.worker(["async"])


# -- retries through a worker ----------------------------------------------------------------


def test_a_failing_message_is_retried_with_growing_delays_then_parked() -> None:
    messenger = make_messenger(retry={**FAST_RETRY, "delay": 3, "multiplier": 2})
    calls: list[PlaceOrder] = []

    @messenger.handler(name="place")
    def place(message: PlaceOrder) -> None:
        calls.append(message)
        raise ValueError(f"stock service down for order {message.order_id}")

    messenger.bus.dispatch(PlaceOrder(7))
    stats = consume(messenger, failure_limit=4)

    async_, failed = memory(messenger, "async"), memory(messenger, "failed")
    assert calls == [PlaceOrder(7)] * 4
    assert (stats.failed, stats.retried, stats.handled) == (4, 3, 0)
    # The original, then one copy per retry: DelayStamp and RedeliveryStamp on each copy.
    retries = async_.sent[1:]
    assert [e.all(DelayStamp) for e in retries] == [
        (DelayStamp(delay_ms=3),),
        (DelayStamp(delay_ms=6),),
        (DelayStamp(delay_ms=12),),
    ]
    assert [e.last(RedeliveryStamp).retry_count for e in retries] == [1, 2, 3]  # type: ignore[union-attr]
    assert all(e.last(RedeliveryStamp).redelivered_at is not None for e in retries)  # type: ignore[union-attr]
    assert all(e.message == PlaceOrder(7) for e in retries)
    # Each received message is rejected once its copy is stored; none is acknowledged.
    assert len(async_.rejected) == 4
    assert async_.acknowledged == []
    assert async_.message_count() == 0
    # The last failure parks the message with where it came from and why.
    [parked] = failed.sent
    assert parked.message == PlaceOrder(7)
    assert parked.last(SentToFailureTransportStamp) == SentToFailureTransportStamp(
        original_receiver_name="async"
    )
    assert parked.last(DelayStamp) is None
    details = parked.last(ErrorDetailsStamp)
    assert details is not None
    assert details.exception_class == "builtins.ValueError"
    assert "stock service down for order 7" in details.message
    assert details.traceback is not None
    assert "ValueError" in details.traceback
    assert details.failed_at is not None


def test_a_message_that_succeeds_on_retry_is_acknowledged_and_not_parked() -> None:
    messenger = make_messenger()
    attempts: list[int] = []

    @messenger.handler
    def flaky(message: PlaceOrder) -> str:
        attempts.append(message.order_id)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "placed"

    messenger.bus.dispatch(PlaceOrder(1))
    stats = consume(messenger, limit=3)

    assert (stats.handled, stats.failed, stats.retried) == (1, 2, 2)
    assert len(memory(messenger, "async").acknowledged) == 1
    assert memory(messenger, "async").acknowledged[0].last(RedeliveryStamp).retry_count == 2  # type: ignore[union-attr]
    assert memory(messenger, "failed").sent == []


def test_the_history_of_retries_is_capped() -> None:
    messenger = make_messenger(retry={**FAST_RETRY, "max_retries": HISTORY + 3, "delay": 0})
    messenger.handler(lambda message: 1 / 0, handles=PlaceOrder, name="divide")
    messenger.bus.dispatch(PlaceOrder(1))

    consume(messenger, failure_limit=HISTORY + 4)

    [parked] = memory(messenger, "failed").sent
    redeliveries = parked.all(RedeliveryStamp)
    assert [s.retry_count for s in redeliveries] == list(range(4, HISTORY + 4))[-HISTORY:]
    assert len(parked.all(ErrorDetailsStamp)) == HISTORY
    # Every retry copy on the way was capped too.
    assert all(len(e.all(RedeliveryStamp)) <= HISTORY for e in memory(messenger, "async").sent)
    assert all(len(e.all(ErrorDetailsStamp)) <= HISTORY for e in memory(messenger, "async").sent)


def test_error_details_are_capped_in_size() -> None:
    messenger = make_messenger(retry={**FAST_RETRY, "max_retries": 0})

    def recurse(depth: int) -> None:
        if depth == 0:
            raise RuntimeError("x" * 50_000)
        recurse(depth - 1)

    @messenger.handler
    def deep(message: PlaceOrder) -> None:
        recurse(200)

    messenger.bus.dispatch(PlaceOrder(1))
    consume(messenger, failure_limit=1)

    [parked] = memory(messenger, "failed").sent
    details = parked.last(ErrorDetailsStamp)
    assert details is not None
    assert details.exception_class == "builtins.RuntimeError"
    assert len(details.message) <= ErrorDetailsStamp.MAX_MESSAGE + len("...(truncated)")
    assert details.message.endswith("...(truncated)")
    assert details.traceback is not None
    assert len(details.traceback) <= ErrorDetailsStamp.MAX_TRACEBACK + len("...(truncated)\n")
    # The end of the traceback is kept: it names the error.
    assert details.traceback.startswith("...(truncated)")
    assert details.traceback.rstrip().endswith("x" * 20)


def test_a_recoverable_error_is_always_retried_after_its_own_delay() -> None:
    # max_retries = 0: an ordinary error would be parked at once.
    messenger = make_messenger(retry={**FAST_RETRY, "max_retries": 0})
    attempts: list[int] = []

    @messenger.handler
    def rate_limited(message: PlaceOrder) -> None:
        attempts.append(1)
        if len(attempts) <= 4:
            raise RecoverableMessageError("rate limited", retry_delay_ms=len(attempts))

    messenger.bus.dispatch(PlaceOrder(1))
    stats = consume(messenger, limit=5)

    assert (stats.handled, stats.retried) == (1, 4)
    delays = [e.last(DelayStamp) for e in memory(messenger, "async").sent[1:]]
    assert delays == [DelayStamp(delay_ms=n) for n in (1, 2, 3, 4)]
    assert memory(messenger, "failed").sent == []


def test_an_unrecoverable_error_goes_straight_to_the_failure_transport() -> None:
    messenger = make_messenger(retry={**FAST_RETRY, "max_retries": 10})
    calls: list[int] = []

    @messenger.handler
    def reject(message: PlaceOrder) -> None:
        calls.append(1)
        raise UnrecoverableMessageError("order 1 does not exist")

    messenger.bus.dispatch(PlaceOrder(1))
    stats = consume(messenger, failure_limit=1)

    assert calls == [1]
    assert (stats.failed, stats.retried) == (1, 0)
    assert len(memory(messenger, "async").sent) == 1  # no retry copy
    assert len(memory(messenger, "async").rejected) == 1
    [parked] = memory(messenger, "failed").sent
    details = parked.last(ErrorDetailsStamp)
    assert details is not None
    assert details.exception_class == "messenger_core.errors.UnrecoverableMessageError"
    assert "order 1 does not exist" in details.message


def test_one_unrecoverable_and_one_ordinary_failure_is_retried() -> None:
    messenger = make_messenger()

    @messenger.handler(name="a")
    def gone(message: PlaceOrder) -> None:
        raise UnrecoverableMessageError("gone")

    @messenger.handler(name="b")
    def flaky(message: PlaceOrder) -> None:
        raise TimeoutError("slow")

    messenger.bus.dispatch(PlaceOrder(1))
    stats = consume(messenger, failure_limit=1)

    assert stats.retried == 1
    assert retry_count_of(memory(messenger, "async").sent[-1]) == 1
    assert memory(messenger, "failed").sent == []


def test_a_retry_skips_the_handlers_that_already_succeeded() -> None:
    messenger = make_messenger()
    calls: list[str] = []

    @messenger.handler(name="reserve-stock", priority=10)
    def reserve(message: PlaceOrder) -> None:
        calls.append("reserve")

    @messenger.handler(name="send-mail")
    def mail(message: PlaceOrder) -> None:
        calls.append("mail")
        if calls.count("mail") == 1:
            raise ConnectionError("smtp down")

    messenger.bus.dispatch(PlaceOrder(1))
    stats = consume(messenger, limit=2)

    assert calls == ["reserve", "mail", "mail"]
    assert stats.handled == 1
    retry = memory(messenger, "async").sent[1]
    assert retry.all(HandledByStamp) == (HandledByStamp(handler_name="reserve-stock"),)


def test_a_retry_skips_succeeded_handlers_across_a_serializing_transport() -> None:
    messenger = make_messenger(
        {
            "async": {"dsn": "memory://?serialize=true", "retry_strategy": FAST_RETRY},
            "failed": "memory://?serialize=true",
        }
    )
    calls: list[str] = []
    messenger.handler(lambda m: calls.append("a"), handles=PlaceOrder, name="a")

    @messenger.handler(name="b")
    def fails_once(message: PlaceOrder) -> None:
        calls.append("b")
        if calls.count("b") == 1:
            raise ValueError("once")

    messenger.bus.dispatch(PlaceOrder(1))
    consume(messenger, limit=2)

    assert calls == ["a", "b", "b"]


# -- the failure transport ---------------------------------------------------------------------


def test_a_transport_s_own_failure_transport_wins_over_the_global_one() -> None:
    messenger = make_messenger(
        {
            "async": {"dsn": "memory://", "failure_transport": "async_failed"},
            "other": "memory://",
            "async_failed": "memory://",
            "failed": "memory://",
        }
    )

    def never(message: Any) -> None:
        raise UnrecoverableMessageError("no")

    messenger.handler(never, handles=(PlaceOrder, Poison))
    messenger.route(Poison, "other")
    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(Poison())
    worker = messenger.worker(["async", "other"])

    assert worker.failure_transport_for("async") == "async_failed"
    assert worker.failure_transport_for("other") == "failed"
    worker.run(failure_limit=2, sleep=0.001, handle_signals=False, time_limit=30)

    assert [e.message for e in memory(messenger, "async_failed").sent] == [PlaceOrder(1)]
    assert [e.message for e in memory(messenger, "failed").sent] == [Poison()]


def test_without_a_failure_transport_a_message_that_failed_for_good_is_rejected_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger = make_messenger(
        {"async": {"dsn": "memory://", "retry_strategy": {**FAST_RETRY, "max_retries": 0}}},
        failure_transport=None,
    )
    messenger.handler(lambda m: 1 / 0, handles=PlaceOrder, name="divide")
    messenger.bus.dispatch(PlaceOrder(1))

    with caplog.at_level(logging.ERROR, logger="messenger.worker"):
        consume(messenger, failure_limit=1)

    assert len(memory(messenger, "async").rejected) == 1
    assert memory(messenger, "async").message_count() == 0
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "no failure transport is configured" in record.getMessage()
    assert "PlaceOrder" in record.getMessage()


class BrokenTransport(MemoryTransport):
    """A memory transport whose ``send`` fails while ``broken`` is set."""

    broken = True

    def send(self, envelope: Envelope) -> Envelope:
        if self.broken:
            raise TransportError("disk full")
        return super().send(envelope)


class BrokenTransportFactory:
    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> BrokenTransport:
        return BrokenTransport(serializer)


class RecordingBackoff(Backoff):
    """A short back-off without jitter that records each pause it hands out."""

    def __init__(self, recorded: list[float]) -> None:
        super().__init__(initial=0.001, maximum=1.0, jitter=0.0)
        self.recorded = recorded

    def next_delay(self, key: Hashable) -> float:
        delay = super().next_delay(key)
        self.recorded.append(delay)
        return delay


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses of every worker's receivers (in units of 1 ms: a real back-off is longer)."""
    import messenger_core.worker as worker_module  # noqa: PLC0415

    recorded: list[float] = []
    monkeypatch.setattr(worker_module, "Backoff", lambda: RecordingBackoff(recorded))
    return recorded


def test_when_the_failure_transport_fails_the_message_stays_and_the_worker_backs_off(
    pauses: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    messenger = make_messenger(
        {
            "async": {
                "dsn": "memory://?redeliver_timeout=0.05",
                "retry_strategy": {**FAST_RETRY, "max_retries": 0},
            },
            "failed": "broken://",
        },
        transports={"broken": BrokenTransportFactory()},
    )
    attempts: list[int] = []

    @messenger.handler
    def never(message: PlaceOrder) -> None:
        attempts.append(1)
        raise ValueError("bad order")

    messenger.bus.dispatch(PlaceOrder(1))
    async_ = memory(messenger, "async")
    failed = messenger.get_transport("failed")
    assert isinstance(failed, BrokenTransport)

    with caplog.at_level(logging.ERROR, logger="messenger.worker"):
        consume(messenger, failure_limit=2)

    # Neither acknowledged nor rejected: it came back after its reservation expired.
    assert attempts == [1, 1]
    assert async_.acknowledged == []
    assert async_.rejected == []
    assert async_.message_count() == 1
    assert [round(p * 1000) for p in pauses] == [1, 2]  # doubling back-off
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "could not be stored in the failure transport" in errors[0]
    assert "disk full" in errors[0]

    # Once the failure transport works again, the message lands there.
    failed.broken = False
    consume(messenger, failure_limit=1)

    assert async_.message_count() == 0
    assert len(async_.rejected) == 1
    assert [e.message for e in failed.sent] == [PlaceOrder(1)]


def test_when_the_retry_copy_cannot_be_sent_the_original_stays(pauses: list[float]) -> None:
    messenger = make_messenger(
        {"async": {"dsn": "broken://", "retry_strategy": FAST_RETRY}, "failed": "memory://"},
        transports={"broken": BrokenTransportFactory()},
    )
    messenger.handler(lambda m: 1 / 0, handles=PlaceOrder, name="divide")
    async_ = messenger.get_transport("async")
    assert isinstance(async_, BrokenTransport)
    async_.broken = False
    messenger.bus.dispatch(PlaceOrder(1))
    async_.broken = True

    consume(messenger, failure_limit=1)

    assert async_.rejected == []
    assert async_.acknowledged == []
    assert async_.message_count() == 1
    assert [round(p * 1000) for p in pauses] == [1]


def test_the_back_off_starts_again_after_the_failure_transport_recovered(
    pauses: list[float],
) -> None:
    messenger = make_messenger(
        {
            "async": {
                "dsn": "memory://?redeliver_timeout=0.02",
                "retry_strategy": {**FAST_RETRY, "max_retries": 0},
            },
            "failed": "broken://",
        },
        transports={"broken": BrokenTransportFactory()},
    )
    messenger.handler(lambda m: 1 / 0, handles=PlaceOrder, name="divide")
    failed = messenger.get_transport("failed")
    assert isinstance(failed, BrokenTransport)
    worker = messenger.worker(["async"])

    def run_until_failures(count: int) -> None:
        worker.run(failure_limit=count, sleep=0.001, handle_signals=False, time_limit=30)

    messenger.bus.dispatch(PlaceOrder(1))
    run_until_failures(2)  # two failed attempts to park it: 1 ms, then 2 ms
    failed.broken = False
    run_until_failures(1)  # parked
    failed.broken = True
    messenger.bus.dispatch(PlaceOrder(2))
    run_until_failures(1)  # storing fails again: the back-off starts from 1 ms

    assert [round(p * 1000) for p in pauses] == [1, 2, 1]


# -- messages that cannot be decoded -------------------------------------------------------


class PoisonSerializer:
    """JSON, except for :class:`Poison` (a truncated body) and :class:`Foreign` (a bad type)."""

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner

    def encode(self, envelope: Envelope) -> TransportMessage:
        if isinstance(envelope.message, Poison):
            decoy = self.inner.encode(Envelope(PlaceOrder(1), envelope.stamps))
            return attrs.evolve(decoy, body=POISON_BODY)
        if isinstance(envelope.message, Foreign):
            decoy = self.inner.encode(Envelope(PlaceOrder(1), envelope.stamps))
            return attrs.evolve(decoy, headers={**decoy.headers, "type": "os.system"})
        return self.inner.encode(envelope)

    def decode(self, message: TransportMessage) -> Envelope:
        return self.inner.decode(message)


def poison_serializer(registry: Any, options: Mapping[str, Any]) -> PoisonSerializer:
    return PoisonSerializer(JsonSerializerFactory()(registry, options))


def test_an_undecodable_message_is_parked_raw_with_the_reason_and_the_worker_goes_on() -> None:
    messenger = make_messenger(
        {
            "async": {"dsn": "memory://?serialize=true", "serializer": "poison"},
            "failed": "memory://?serialize=true",
        },
        serializers={"poison": poison_serializer},
    )
    handled: list[PlaceOrder] = []
    messenger.handler(handled.append, handles=PlaceOrder, name="place")
    messenger.route(Poison, "async")
    messenger.bus.dispatch(PlaceOrder(1))
    messenger.bus.dispatch(Poison())
    messenger.bus.dispatch(PlaceOrder(2))

    stats = consume(messenger, limit=3)

    assert handled == [PlaceOrder(1), PlaceOrder(2)]
    assert (stats.handled, stats.failed, stats.retried) == (2, 1, 0)  # never retried
    assert memory(messenger, "async").message_count() == 0
    [parked] = memory(messenger, "failed").sent
    # Still undecodable when read back: the raw body and the original headers, plus the
    # worker's stamps and the reason as headers.
    assert isinstance(parked.message, UndecodableMessage)
    assert parked.message.body == POISON_BODY
    headers = parked.message.headers
    assert headers["type"] == f"{__name__}.PlaceOrder"
    assert "not JSON" in headers[DECODING_ERROR_HEADER]
    [details] = stamp_header(headers, ErrorDetailsStamp)
    assert details["exception_class"] == "messenger_core.errors.MessageDecodingError"
    assert "not JSON" in details["message"]
    [origin] = stamp_header(headers, SentToFailureTransportStamp)
    assert origin == {"original_receiver_name": "async"}


def stamp_header(headers: Mapping[str, str], stamp: type[Any]) -> list[dict[str, Any]]:
    """The stamps of class ``stamp`` in their JSON header."""
    value: list[dict[str, Any]] = json.loads(headers[STAMP_HEADER_PREFIX + type_name_of(stamp)])
    return value


def test_an_undecodable_message_in_a_non_serializing_failure_transport_keeps_its_stamps() -> None:
    messenger = make_messenger(
        {
            "async": {"dsn": "memory://?serialize=true", "serializer": "poison"},
            "failed": "memory://",
        },
        serializers={"poison": poison_serializer},
    )
    messenger.handler(lambda m: None, handles=PlaceOrder, name="place")
    messenger.route(Poison, "async")
    messenger.bus.dispatch(Poison())

    consume(messenger, limit=1)

    [parked] = memory(messenger, "failed").sent
    assert isinstance(parked.message, UndecodableMessage)
    assert parked.message.body == POISON_BODY
    details = parked.last(ErrorDetailsStamp)
    assert details is not None
    assert details.exception_class == "messenger_core.errors.MessageDecodingError"
    assert parked.message.reason in details.message
    assert parked.last(SentToFailureTransportStamp) == SentToFailureTransportStamp(
        original_receiver_name="async"
    )


def test_a_message_of_an_unknown_type_is_parked_and_its_type_never_imported() -> None:
    messenger = make_messenger(
        {
            "async": {"dsn": "memory://?serialize=true", "serializer": "poison"},
            "failed": "memory://?serialize=true",
        },
        serializers={"poison": poison_serializer},
    )
    handled: list[Any] = []
    messenger.handler(handled.append, handles=PlaceOrder, name="place")
    messenger.route(Foreign, "async")
    messenger.bus.dispatch(Foreign())
    messenger.bus.dispatch(PlaceOrder(6))

    consume(messenger, limit=2)

    assert handled == [PlaceOrder(6)]
    [parked] = memory(messenger, "failed").sent
    assert isinstance(parked.message, UndecodableMessage)
    assert parked.message.headers["type"] == "os.system"
    [details] = stamp_header(parked.message.headers, ErrorDetailsStamp)
    assert "'os.system'" in details["message"]
    assert "not registered" in details["message"]
