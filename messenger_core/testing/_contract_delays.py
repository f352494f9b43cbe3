"""The transport contract's test of delayed messages."""

from __future__ import annotations

import time

from messenger_core.envelope import Envelope
from messenger_core.stamps import DelayStamp
from messenger_core.testing._contract_support import (
    ContractBase,
    ContractMessage,
    _assert_nothing,
    _receive_one,
    _require,
)
from messenger_core.transport import Transport


class DelayContract(ContractBase):
    """Delayed messages (``DelayStamp``)."""

    def test_delay_holds_a_message_back_without_blocking_others(self, transport: Transport) -> None:
        _require(transport, "delay")
        before_send = time.monotonic()
        transport.send(Envelope(ContractMessage(1, "delayed"), [DelayStamp(delay_ms=1500)]))
        transport.send(Envelope(ContractMessage(2, "now")))

        immediate = _receive_one(transport, self.receive_timeout)
        assert immediate.message == ContractMessage(2, "now"), "the delayed message came first"
        transport.ack(immediate)
        # Half a second of slack for clocks of a server that decides availability.
        _assert_nothing(
            transport,
            seconds=max(0.0, before_send + 1.0 - time.monotonic()),
            why=" before the delay (1.5 s) ran out",
        )
        delayed = _receive_one(transport, self.receive_timeout + 1.5)
        assert delayed.message == ContractMessage(1, "delayed")
        transport.ack(delayed)
