"""The testing kit, used as an application's tests use it: pytest runs small test files
(pytester) against a small shop application whose transports would need real servers."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SHOP = """
import attrs

from messenger_core import Messenger
from messenger_core.errors import UnrecoverableMessageError


@attrs.frozen
class OrderPlaced:
    order_id: int


@attrs.frozen
class SendInvoice:
    order_id: int


@attrs.frozen
class ChargeCard:
    order_id: int
    failures: int  # how many attempts fail before one works


@attrs.frozen
class Audit:
    what: str


messenger = Messenger(
    {
        # Unreachable on purpose: a test that touched them would fail.
        "transports": {
            "async": {
                "dsn": "redis://127.0.0.1:1/orders",
                "retry_strategy": {"max_retries": 2, "delay": 60000},
            },
            "failed": "sqlite:////nonexistent/dir/failed.db",
            "audit": "memory://",
            "now": "sync://",
        },
        "failure_transport": "failed",
        "routing": {OrderPlaced: "async", SendInvoice: "async", ChargeCard: "async",
                    Audit: "audit"},
    }
)

handled = []
attempts = {}


@messenger.handler
def place(message: OrderPlaced) -> None:
    handled.append(message)
    messenger.bus.dispatch(SendInvoice(message.order_id))


@messenger.handler
def invoice(message: SendInvoice) -> None:
    handled.append(message)


@messenger.handler
def charge(message: ChargeCard) -> None:
    attempts[message.order_id] = attempts.get(message.order_id, 0) + 1
    if message.failures < 0:
        raise UnrecoverableMessageError("card refused")
    if attempts[message.order_id] <= message.failures:
        raise ConnectionError("payment service down")
    handled.append(message)


@messenger.handler
def audit(message: Audit) -> None:
    handled.append(message)
"""

CONFTEST = """
import pytest

import shop


@pytest.fixture
def messenger_app():
    shop.handled.clear()
    shop.attempts.clear()
    return shop.messenger
"""


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(shop=SHOP)
    pytester.makeconftest(CONFTEST)
    pytester.syspathinsert()
    return pytester


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=textwrap.dedent(source))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_queue_assertions_and_process_all(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        from messenger_core.stamps import BusNameStamp
        from shop import OrderPlaced, SendInvoice, handled

        def test_order(messenger_test, messenger_app):
            messenger_app.bus.dispatch(OrderPlaced(order_id=1))
            assert handled == []
            messenger_test.queue("async").assert_count(1).assert_contains(OrderPlaced)
            messenger_test.queue("async").assert_not_contains(SendInvoice)
            messenger_test.queue("failed").assert_empty()
            assert messenger_test.queue("async").messages() == [OrderPlaced(order_id=1)]
            assert messenger_test.queue("async").sent[0].last(BusNameStamp) is not None

            assert messenger_test.process_all() == 2  # the order, then the invoice it sent
            assert handled == [OrderPlaced(1), SendInvoice(1)]
            queue = messenger_test.queue("async").assert_empty()
            queue.acknowledged.assert_count(2).assert_contains(SendInvoice)
            queue.acknowledged.assert_contains(OrderPlaced(order_id=1), count=1)
            queue.rejected.assert_empty()
            queue.sent.assert_contains(lambda m: getattr(m, "order_id", None) == 1, count=2)
        """,
    )
    result.assert_outcomes(passed=1)


def test_a_failed_assertion_says_what_is_there(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        from shop import OrderPlaced, SendInvoice

        def test_order(messenger_test):
            messenger_test.dispatch(OrderPlaced(order_id=7))
            messenger_test.queue("async").assert_contains(SendInvoice)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected a message matching SendInvoice in queue 'async', "
            "found 0; it holds: OrderPlaced(order_id=7)*"
        ]
    )


def test_process_n_runs_the_real_worker_n_times(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        import pytest
        from shop import OrderPlaced, SendInvoice, handled

        def test_one_at_a_time(messenger_test):
            messenger_test.dispatch(OrderPlaced(order_id=1))
            assert messenger_test.process(1) == 1
            assert handled == [OrderPlaced(1)]
            messenger_test.queue("async").assert_count(1).assert_contains(SendInvoice)
            messenger_test.process(1)
            with pytest.raises(AssertionError, match="only 0 were waiting"):
                messenger_test.process(1)
        """,
    )
    result.assert_outcomes(passed=1)


def test_retries_skip_their_delay_and_are_visible(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        from messenger_core.stamps import DelayStamp, RedeliveryStamp
        from shop import ChargeCard, attempts, handled

        def test_retried_then_handled(messenger_test):
            messenger_test.dispatch(ChargeCard(order_id=3, failures=2))
            assert messenger_test.process_all() == 3  # two failures, retried at once, then ok
            assert attempts[3] == 3 and handled == [ChargeCard(3, 2)]
            queue = messenger_test.queue("async").assert_empty()
            queue.rejected.assert_count(2)  # the failed originals; copies were sent again
            retries = [e.last(RedeliveryStamp) for e in queue.sent[1:]]
            assert [s.retry_count for s in retries] == [1, 2]
            assert queue.sent.stamps(DelayStamp)[0].delay_ms >= 50000  # kept, not waited for
            messenger_test.failed().assert_empty()
        """,
    )
    result.assert_outcomes(passed=1)


def test_failures_end_in_the_failure_transport(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        import pytest
        from messenger_core.stamps import ErrorDetailsStamp, SentToFailureTransportStamp
        from messenger_core.testing.kit import ProcessingError
        from shop import ChargeCard, attempts

        def test_retries_exhausted(messenger_test):
            messenger_test.dispatch(ChargeCard(order_id=4, failures=99))
            messenger_test.process_all()
            assert attempts[4] == 3  # max_retries = 2
            failed = messenger_test.failed().assert_count(1).assert_contains(ChargeCard)
            envelope = failed.waiting.first(ChargeCard)
            assert envelope.last(ErrorDetailsStamp).message == "payment service down"
            assert envelope.last(SentToFailureTransportStamp).original_receiver_name == "async"

        def test_unrecoverable_is_not_retried(messenger_test):
            messenger_test.dispatch(ChargeCard(order_id=5, failures=-1))
            with pytest.raises(ProcessingError, match="card refused"):
                messenger_test.process_all(raise_errors=True)
            assert attempts[5] == 1
            messenger_test.failed().assert_contains(ChargeCard(5, -1))
        """,
    )
    result.assert_outcomes(passed=2)


def test_sync_mode_handles_at_dispatch(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        import pytest
        from messenger_core.testing.kit import ProcessingError
        from shop import ChargeCard, OrderPlaced, SendInvoice, handled

        @pytest.mark.messenger(sync=True)
        def test_marker(messenger_test):
            messenger_test.dispatch(OrderPlaced(order_id=1))
            assert handled == [OrderPlaced(1), SendInvoice(1)]
            messenger_test.queue("async").assert_empty().acknowledged.assert_count(2)

        def test_switch(messenger_test):
            messenger_test.handle_synchronously(raise_errors=True)
            with pytest.raises(ProcessingError, match="payment service down"):
                messenger_test.dispatch(ChargeCard(order_id=2, failures=99))
            messenger_test.failed().assert_count(1)
            messenger_test.handle_synchronously(False)
            messenger_test.dispatch(OrderPlaced(order_id=3))
            messenger_test.queue("async").assert_count(1)
        """,
    )
    result.assert_outcomes(passed=2)


def test_keep_delays_and_serialize_options(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        import pytest
        from messenger_core.errors import ConfigurationError
        from messenger_core.stamps import DelayStamp
        from messenger_core.testing.kit import RecordingTransport
        from messenger_core.transports.memory import MemoryTransport
        from shop import Audit, OrderPlaced

        @pytest.mark.messenger(keep=["audit"])
        def test_keep(messenger_test, messenger_app):
            real = messenger_app.get_transport("audit")
            assert isinstance(real, MemoryTransport)
            assert not isinstance(real, RecordingTransport)
            with pytest.raises(ConfigurationError, match="not in memory"):
                messenger_test.queue("audit")
            messenger_test.dispatch(Audit("x"))
            assert [e.message for e in real.sent] == [Audit("x")]

        @pytest.mark.messenger(delays=True)
        def test_delays(messenger_test):
            messenger_test.dispatch(OrderPlaced(order_id=1), DelayStamp(delay_ms=60000))
            assert messenger_test.process_all() == 0
            messenger_test.queue("async").assert_count(1)

        @pytest.mark.messenger(serialize=True)
        def test_serialize(messenger_test):
            messenger_test.dispatch(OrderPlaced(order_id=1))
            assert messenger_test.process_all() == 2

        @pytest.mark.messenger(colour="red")
        def test_unknown_option(messenger_test):
            pass
        """,
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*unknown option(s) colour*"])


def test_the_application_is_restored_after_each_test(shop: pytest.Pytester) -> None:
    result = run(
        shop,
        """
        from messenger_core.testing.kit import RecordingTransport
        import shop

        def test_uses_kit(messenger_test):
            assert isinstance(shop.messenger.get_transport("async"), RecordingTransport)

        def test_after():
            assert not any(
                isinstance(shop.messenger.transports.built(name), RecordingTransport)
                for name in shop.messenger.transport_names
            )
        """,
    )
    result.assert_outcomes(passed=2)


def test_the_application_from_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(shop=SHOP)
    pytester.syspathinsert()
    pytester.makeini("[pytest]\nmessenger_app = shop:messenger\n")
    result = run(
        pytester,
        """
        from shop import OrderPlaced

        def test_order(messenger_test):
            messenger_test.dispatch(OrderPlaced(order_id=1))
            messenger_test.queue("async").assert_count(1)
        """,
    )
    result.assert_outcomes(passed=1)


def test_no_application_is_a_clear_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESSENGER_APP", raising=False)
    result = run(pytester, "def test_it(messenger_test):\n    pass\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*messenger_app: no application*set the messenger_app ini*"])


def test_the_plugin_is_inert_unless_used(pytester: pytest.Pytester) -> None:
    result = run(pytester, "def test_plain():\n    assert True\n", "--strict-markers")
    result.assert_outcomes(passed=1)
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.messenger(keep=*"])
    disabled = run(pytester, "def test_it(messenger_test):\n    pass\n", "-p", "no:messenger")
    disabled.stdout.fnmatch_lines(["*fixture 'messenger_test' not found*"])


DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
_EXAMPLE = re.compile(r"<!-- kit-test: (\S+) -->\n```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_testing_page_examples_pass(pytester: pytest.Pytester) -> None:
    """docs/testing.md: its application and its test files, as a user would save them."""
    examples = _EXAMPLE.findall(DOCS_PAGE.read_text(encoding="utf-8"))
    assert [name for name, _ in examples][:2] == ["shop.py", "test_orders.py"]
    for name, code in examples:
        pytester.path.joinpath(name).write_text(code, encoding="utf-8")
    pytester.makeini("[pytest]\nmessenger_app = shop:messenger\n")
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
