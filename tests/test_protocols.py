"""Each optional capability is a declared Protocol, and each built-in that has the method or
attribute satisfies it: renaming one breaks this test (the plugins' classes are checked in their
own tests: test_sql_protocols.py, test_redis_protocols.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_query_typing import run_mypy

import messenger_core.middleware
import messenger_core.stop_signal
import messenger_core.transport
from messenger_core import Messenger
from messenger_core.middleware import BareDispatchAware, BindableMiddleware, StampWrappingMiddleware
from messenger_core.middleware.add_bus_name import AddBusNameStampMiddleware
from messenger_core.middleware.dispatch_after_current_bus import DispatchAfterCurrentBusMiddleware
from messenger_core.middleware.failed_message_processing import FailedMessageProcessingMiddleware
from messenger_core.middleware.handle import HandleMessageMiddleware
from messenger_core.middleware.logging import LoggingMiddleware
from messenger_core.middleware.reject_redelivered import RejectRedeliveredMessageMiddleware
from messenger_core.middleware.send import SendMessageMiddleware
from messenger_core.stop_signal import ClosableStopSignal, FileStopSignal
from messenger_core.transport import ApplicationBoundFactory
from messenger_core.transports.memory import MemoryTransportFactory
from messenger_core.transports.sync import SyncTransportFactory


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            messenger_core.transport,
            ["FlushingReceiver", "WaitingReceiver", "ReleasingReceiver", "ApplicationBoundFactory"],
        ),
        (messenger_core.stop_signal, ["ClosableStopSignal"]),
        (
            messenger_core.middleware,
            ["BindableMiddleware", "StampWrappingMiddleware", "BareDispatchAware"],
        ),
    ],
)
def test_the_protocols_are_public_documented_and_runtime_checkable(
    module: Any, names: list[str]
) -> None:
    for name in names:
        protocol = getattr(module, name)
        assert name in module.__all__
        assert protocol.__doc__
        assert not isinstance(object(), protocol)  # a TypeError unless runtime_checkable


def _built_in_middleware() -> dict[str, Any]:
    messenger = Messenger(autoload=False)
    return {
        "add_bus_name": AddBusNameStampMiddleware("bus"),
        "reject_redelivered": RejectRedeliveredMessageMiddleware(),
        "dispatch_after_current_bus": DispatchAfterCurrentBusMiddleware(),
        "failed_message_processing": FailedMessageProcessingMiddleware(),
        "send": SendMessageMiddleware(messenger.router, messenger.get_transport),
        "handle": HandleMessageMiddleware("bus", messenger.handlers),
        "logging": LoggingMiddleware(),
    }


@pytest.mark.parametrize(
    ("protocol", "implemented_by"),
    [
        (
            BindableMiddleware,
            {
                "add_bus_name",
                "reject_redelivered",
                "dispatch_after_current_bus",
                "failed_message_processing",
                "send",
                "handle",
            },
        ),
        (StampWrappingMiddleware, {"add_bus_name"}),
        (BareDispatchAware, {"add_bus_name", "reject_redelivered", "failed_message_processing"}),
    ],
)
def test_the_built_in_middleware_implement_their_protocols(
    protocol: type, implemented_by: set[str]
) -> None:
    implementing = {n for n, m in _built_in_middleware().items() if isinstance(m, protocol)}
    assert implementing == implemented_by


def test_the_bare_dispatch_aware_built_ins_say_true() -> None:
    middleware = _built_in_middleware()
    for name in ("add_bus_name", "reject_redelivered", "failed_message_processing"):
        assert middleware[name].noop_for_bare_messages is True


def test_the_sync_transport_factory_is_bound_to_the_application() -> None:
    assert isinstance(SyncTransportFactory(), ApplicationBoundFactory)
    assert not isinstance(MemoryTransportFactory(), ApplicationBoundFactory)


def test_the_file_stop_signal_has_nothing_to_close(tmp_path: Any) -> None:
    assert not isinstance(FileStopSignal(tmp_path / "stop"), ClosableStopSignal)


@pytest.mark.slow
def test_mypy_strict_accepts_the_built_ins_as_their_protocols(tmp_path: Path) -> None:
    output, status = run_mypy(
        Path(__file__).parent / "typing_snippets" / "protocols_ok.py", tmp_path
    )

    assert status == 0, output
