"""The transport contract's broker-restart test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from messenger_core.envelope import Envelope
from messenger_core.testing._contract_support import (
    _POLL_INTERVAL,
    _RESTART_DOWNTIME,
    _RESTART_MESSAGES,
    ContractBase,
    ContractMessage,
    TransportPool,
    _message,
)
from messenger_core.transport import Transport


class RestartContract(ContractBase):
    """A consumer survives a restart of the server."""

    # -- the server restarts ---------------------------------------------------------------
    def test_a_consumer_carries_on_after_the_server_restarts(
        self,
        transport: Transport,
        contract_transports: TransportPool,
        restart_service: Callable[[float], None] | None,
    ) -> None:
        if restart_service is None:
            pytest.skip("the transport's tests give no way to restart its server")
        before = _RESTART_MESSAGES // 3
        for number in range(before):
            transport.send(Envelope(ContractMessage(number, "before the restart")))

        received: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        stop = threading.Event()

        def consume() -> None:
            # The consumer never stops calling get() and ack(), as a worker would: neither
            # may raise because the server went away for a moment.
            consumer = contract_transports.new(**self.redelivery_options)
            while not stop.is_set():
                try:
                    got = list(consumer.get())
                    for envelope in got:
                        consumer.ack(envelope)
                        with lock:
                            received.append(_message(envelope).id)
                        time.sleep(_POLL_INTERVAL)  # some work: the restart finds it busy
                except BaseException as error:
                    errors.append(error)
                    return
                if not got:
                    time.sleep(_POLL_INTERVAL)

        thread = threading.Thread(target=consume, name="contract-restart-consumer")
        thread.start()
        try:
            deadline = time.monotonic() + self.receive_timeout
            while len(received) < before // 2 and time.monotonic() < deadline and not errors:
                time.sleep(_POLL_INTERVAL)
            assert received, f"nothing was received within {self.receive_timeout} s"
            restart_service(_RESTART_DOWNTIME)
            # The producer's connection broke too: sending must reconnect.
            for number in range(before, _RESTART_MESSAGES):
                transport.send(Envelope(ContractMessage(number, "after the restart")))
            deadline = time.monotonic() + self.restart_wait
            while time.monotonic() < deadline and not errors:
                with lock:
                    if set(received) >= set(range(_RESTART_MESSAGES)):
                        break
                time.sleep(_POLL_INTERVAL)
        finally:
            stop.set()
            thread.join()
        if errors:
            raise AssertionError(
                f"the consumer failed after the server restarted: {errors[0]!r}"
            ) from errors[0]
        missing = sorted(set(range(_RESTART_MESSAGES)) - set(received))
        assert not missing, (
            f"never received within {self.restart_wait} s of the restart: {missing} "
            f"(received: {sorted(received)})"
        )
