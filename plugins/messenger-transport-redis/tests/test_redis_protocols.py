"""The Redis transport and stop signal implement the core's optional-capability Protocols, so
the worker and the application find them (renaming a method breaks this test)."""

from __future__ import annotations

from messenger_transport_redis import RedisStopSignal, RedisTransport

from messenger_core.stop_signal import ClosableStopSignal
from messenger_core.transport import FlushingReceiver, ReleasingReceiver


def test_the_transport_flushes_and_releases() -> None:
    # Method-only Protocols: checked on the class, without a server.
    assert issubclass(RedisTransport, FlushingReceiver)
    assert issubclass(RedisTransport, ReleasingReceiver)


def test_the_stop_signal_is_closable() -> None:
    assert issubclass(RedisStopSignal, ClosableStopSignal)
