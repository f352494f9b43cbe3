"""The transport contract's tests of message counts, listing and find."""

from __future__ import annotations

from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.testing._contract_support import (
    ContractBase,
    ContractMessage,
    _contract_ids,
    _id_of,
    _receive,
    _receive_one,
    _require,
)
from messenger_core.transport import ListableReceiver, MessageCountAware, Transport


class ListingContract(ContractBase):
    """Counting, listing and finding waiting messages."""

    # -- counting and listing --------------------------------------------------------------
    def test_message_count_counts_waiting_messages(self, transport: Transport) -> None:
        _require(transport, "message_count")
        assert isinstance(transport, MessageCountAware)
        assert transport.message_count() == 0
        for number in range(3):
            transport.send(Envelope(ContractMessage(number, "counted")))
        assert transport.message_count() == 3
        for envelope in _receive(transport, 3, self.receive_timeout):
            transport.ack(envelope)
        assert transport.message_count() == 0
        transport.send(Envelope(ContractMessage(3, "counted")))
        assert transport.message_count() == 1
        transport.reject(_receive_one(transport, self.receive_timeout))
        assert transport.message_count() == 0

    def test_listing_all_and_find(self, transport: Transport) -> None:
        _require(transport, "listing")
        assert isinstance(transport, ListableReceiver)
        assert list(transport.all()) == []
        gone = transport.send(Envelope(ContractMessage(0, "acknowledged")))
        transport.ack(_receive_one(transport, self.receive_timeout))
        for number in range(1, 4):
            transport.send(Envelope(ContractMessage(number, "listed")))

        listed = list(transport.all())
        assert _contract_ids(listed) == [1, 2, 3]
        ids = [_id_of(envelope) for envelope in listed]
        assert len(set(ids)) == 3
        assert _contract_ids(list(transport.all(limit=2))) == [1, 2]

        found = transport.find(ids[1])
        assert found is not None
        assert found.message == ContractMessage(2, "listed")
        assert _id_of(found) == ids[1]
        gone_id = gone.last(TransportMessageIdStamp)
        if gone_id is not None:
            assert transport.find(gone_id.id) is None, "found an acknowledged message"

        # Listing and finding do not reserve: all three can still be received.
        received = _receive(transport, 3, self.receive_timeout)
        assert sorted(_contract_ids(received)) == [1, 2, 3]
        for envelope in received:
            transport.ack(envelope)
        assert transport.find(ids[0]) is None, "found an acknowledged message"
        assert list(transport.all()) == []
