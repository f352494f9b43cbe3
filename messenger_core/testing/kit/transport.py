"""The transport every swapped transport becomes in a test: ``memory://`` that skips delays."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transports.memory import MemoryTransport

__all__ = ["RecordingTransport"]


class RecordingTransport(MemoryTransport):
    """An in-memory transport standing in for transport ``name`` during a test.

    It records what was sent, acknowledged and rejected, like every
    :class:`~messenger_core.transports.memory.MemoryTransport`. Unless ``delays`` is true, a
    message is available at once whatever its ``DelayStamp`` says (the stamp stays on the
    envelope, for assertions): a retry is then processed in the same ``process_all()``
    instead of seconds later. ``on_send`` is called with the transport's name after every
    send (the synchronous mode of :class:`~messenger_core.testing.kit.MessengerTest`).
    """

    def __init__(
        self,
        serializer: Serializer,
        *,
        name: str,
        serialize: bool = False,
        delays: bool = False,
    ) -> None:
        super().__init__(serializer, serialize=serialize)
        self.name = name
        self.delays = delays
        self.on_send: Callable[[str], None] | None = None

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Queue ``envelopes``, available at once unless :attr:`delays` is true."""
        if self.delays:
            sent = super().send_batch(envelopes)
        else:
            # The memory queue takes the delay apart from the envelope: give it none.
            ids = self.queue._put([(self._store_form(envelope), 0.0) for envelope in envelopes])
            sent = [
                envelope.with_(TransportMessageIdStamp(id=id))
                for envelope, id in zip(envelopes, ids, strict=True)
            ]
        if self.on_send is not None:
            self.on_send(self.name)
        return sent

    def __repr__(self) -> str:
        return f"RecordingTransport({self.name!r}, {super().__repr__()})"
