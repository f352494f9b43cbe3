"""The ``sync://`` transport: "sending" a message handles it at once, as if just received.

Route a message to a ``sync://`` transport to make the synchronous handling explicit in the
configuration (and easy to switch to a real transport later): the envelope is re-dispatched on
its bus with a ``ReceivedStamp``, so ``from_transport`` handlers and receiving middleware
behave as they do in a worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.serializer import Serializer
from messenger_core.stamps import BusNameStamp, ReceivedStamp, SentStamp
from messenger_core.transport import TransportCapabilities

if TYPE_CHECKING:
    from messenger_core.app import Messenger

__all__ = ["SyncTransport", "SyncTransportFactory"]


class SyncTransport:
    """Handles every message it is sent, on the bus named by the envelope's ``BusNameStamp``."""

    capabilities: ClassVar[TransportCapabilities] = TransportCapabilities()

    def __init__(self, messenger: Messenger, name: str = "sync") -> None:
        self.messenger = messenger
        self.received_stamp = ReceivedStamp(transport_name=name)
        self._received_stamps: dict[str, ReceivedStamp] = {}

    def send(self, envelope: Envelope) -> Envelope:
        """Dispatch the envelope again, as received: its handlers run now.

        The ``ReceivedStamp`` names the transport the message was sent to (its ``SentStamp``),
        so that ``from_transport`` handlers for that name run, as in a worker.
        """
        bus_stamp = envelope.last(BusNameStamp)
        bus = self.messenger.get_bus(bus_stamp.bus_name) if bus_stamp else self.messenger.bus
        sent = envelope.last(SentStamp)
        received = self.received_stamp
        if sent is not None:
            name = sent.sender_name
            received = self._received_stamps.get(name) or self._received_stamps.setdefault(
                name, ReceivedStamp(transport_name=name)
            )
        return bus.dispatch(envelope.with_(received))

    def get(self) -> Iterable[Envelope]:
        """A sync transport has nothing to receive."""
        raise TransportError(
            "the sync:// transport handles messages when they are sent; it cannot be consumed"
        )

    def ack(self, envelope: Envelope) -> None:
        """See :meth:`get`."""
        raise TransportError("the sync:// transport cannot acknowledge messages")

    def reject(self, envelope: Envelope) -> None:
        """See :meth:`get`."""
        raise TransportError("the sync:// transport cannot reject messages")

    def close(self) -> None:
        """Nothing to release."""


class SyncTransportFactory:
    """Creates ``sync://`` transports; it needs the application to dispatch on its buses."""

    def __init__(self, messenger: Messenger | None = None) -> None:
        self.messenger = messenger

    def for_application(self, messenger: Messenger) -> SyncTransportFactory:
        """A factory bound to ``messenger`` (called by the application before ``create``)."""
        return SyncTransportFactory(messenger)

    def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer) -> SyncTransport:
        """A sync transport; it takes no options (in the DSN or in ``options``)."""
        merged = dsn.with_options(options)
        if merged:
            raise ConfigurationError(
                f"the sync:// transport takes no options, got {sorted(merged)}"
            )
        if self.messenger is None:
            raise ConfigurationError("the sync:// transport needs the application: use Messenger")
        return SyncTransport(self.messenger)
