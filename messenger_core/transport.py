"""What a transport is: the wire format, the protocols and the optional capabilities.

A transport moves :class:`TransportMessage` objects (bytes plus string headers); its
serializer turns envelopes into them and back. A transport plugin implements
:class:`Transport` (and whichever optional protocols it supports), declares what it can do in
:class:`TransportCapabilities`, and publishes a :class:`TransportFactory` in the
``messenger.transports`` entry-point group under each DSN scheme it serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs

from messenger_core.envelope import Envelope

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.dsn import Dsn
    from messenger_core.serializer import Serializer

__all__ = [
    "ApplicationBoundFactory",
    "AsyncSender",
    "BatchSender",
    "FlushingReceiver",
    "KeepaliveReceiver",
    "ListableReceiver",
    "MessageCountAware",
    "QueueReceiver",
    "Receiver",
    "ReleasingReceiver",
    "Sender",
    "SetupableTransport",
    "StopSignalFactory",
    "Transport",
    "TransportCapabilities",
    "TransportFactory",
    "TransportMessage",
    "UndecodableMessage",
    "WaitingReceiver",
]


@attrs.frozen
class TransportMessage:
    """A message as it travels: an opaque body and string headers.

    ``id`` is set by the transport on messages it received (``None`` before sending).
    """

    body: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict)
    id: str | None = None


@attrs.frozen
class UndecodableMessage:
    """Stands in for a message its serializer could not decode.

    A receiver yields it (in an envelope, with the usual id stamps) instead of raising, so that
    the worker can park the raw body and headers in the failure transport with ``reason`` and
    carry on. Serializers encode it back to exactly ``body`` and ``headers``, so a later retry,
    once the cause is fixed, sees the original bytes.
    """

    body: bytes
    headers: Mapping[str, str]
    reason: str


@attrs.frozen(kw_only=True)
class TransportCapabilities:
    """What a transport supports beyond send / get / ack / reject.

    The contract suite in :mod:`messenger_core.testing` runs the tests each flag promises.
    """

    delay: bool = False
    """``DelayStamp`` is honoured: a delayed message is not received before its time."""
    fifo: bool = False
    """Messages sent one after another by one sender are received in that order."""
    message_count: bool = False
    """Implements :class:`MessageCountAware`."""
    listing: bool = False
    """Implements :class:`ListableReceiver` (needed for a failure transport's ``failed show``)."""
    keepalive: bool = False
    """Implements :class:`KeepaliveReceiver`."""
    redelivery: bool = False
    """A message received but never acknowledged (its consumer died) is delivered again."""
    concurrent_consumers: bool = False
    """Several consumers (threads or processes) may receive from one queue without loss."""
    batch_send: bool = False
    """Implements :class:`BatchSender`."""
    setup: bool = False
    """Implements :class:`SetupableTransport`."""
    queues: bool = False
    """Implements :class:`QueueReceiver`."""


@runtime_checkable
class Sender(Protocol):
    """Something messages can be sent to."""

    def send(self, envelope: Envelope) -> Envelope:
        """Store ``envelope``; return it with any stamps the transport adds (e.g. an id)."""
        ...


@runtime_checkable
class AsyncSender(Protocol):
    """A sender that can also send from an event loop without blocking it (through the
    broker's async client), which ``await bus.dispatch_async(message)`` then uses instead of a
    dispatch thread (see :mod:`messenger_core.async_bus`).

    :meth:`send_async` stores the envelope exactly as :meth:`Sender.send` would (the same
    record, the same serializer) and returns exactly what ``send`` returns (the same stamps,
    such as a ``TransportMessageIdStamp``), raising the same errors; it returns no sooner than
    ``send`` would (the message at least written to the broker's socket: a process ending
    right after it must not lose it). It may be awaited on any
    event loop, one after another or at once (clients bound to a loop are kept per loop), and
    raises :class:`~messenger_core.errors.TransportError` once the transport is closed.
    """

    @property
    def sends_async(self) -> bool:
        """Whether :meth:`send_async` sends natively for this object now (an attribute or a
        property): a transport class may have an async client for some of its databases only
        (the SQL transport: PostgreSQL). When false, ``dispatch_async`` uses a thread."""
        ...

    async def send_async(self, envelope: Envelope) -> Envelope:
        """:meth:`Sender.send`, awaited without blocking the running event loop."""
        ...


@runtime_checkable
class Receiver(Protocol):
    """Something messages can be received from.

    Each envelope yielded by :meth:`get` must later be passed to :meth:`ack` or :meth:`reject`
    exactly once, by the same receiver object.
    """

    def get(self) -> Iterable[Envelope]:
        """Messages available now (possibly none). May wait briefly for one to arrive.

        A receiver whose ``get()`` itself waits for messages to arrive (a notification, a
        blocking read) may say so with ``waits_for_messages`` (:class:`WaitingReceiver`): a
        worker then does not sleep between empty rounds.
        """
        ...

    def ack(self, envelope: Envelope) -> None:
        """The message was handled (or re-sent for retry): remove it for good."""
        ...

    def reject(self, envelope: Envelope) -> None:
        """Give up on the message: remove it for good without handling it."""
        ...


@runtime_checkable
class Transport(Sender, Receiver, Protocol):
    """A sender and a receiver over one queue, with its declared capabilities."""

    capabilities: ClassVar[TransportCapabilities]

    def close(self) -> None:
        """Release connections. The transport is not used afterwards."""
        ...


@runtime_checkable
class SetupableTransport(Protocol):
    """A transport that can create what it needs (tables, streams, exchanges)."""

    def setup(self) -> None:
        """Create the transport's storage if it does not exist. Safe to call repeatedly."""
        ...


@runtime_checkable
class MessageCountAware(Protocol):
    """A receiver that can say how many messages are waiting."""

    def message_count(self) -> int:
        """The number of messages waiting (delayed ones included), an estimate where noted."""
        ...


@runtime_checkable
class ListableReceiver(Protocol):
    """A receiver whose messages can be listed and fetched by id (a failure transport)."""

    def all(self, limit: int | None = None) -> Iterable[Envelope]:
        """Waiting messages, oldest first, each with a ``TransportMessageIdStamp``."""
        ...

    def find(self, id: str) -> Envelope | None:
        """The message with this id, or ``None``. Finding does not reserve it."""
        ...


@runtime_checkable
class KeepaliveReceiver(Protocol):
    """A receiver that can extend the reservation of a message whose handler runs long."""

    def keepalive(self, envelope: Envelope, seconds: float | None = None) -> None:
        """Tell the transport the message is still being worked on."""
        ...


@runtime_checkable
class BatchSender(Protocol):
    """A sender that can store several envelopes in one operation."""

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store all ``envelopes`` (all or none where the transport allows); return them sent."""
        ...


@runtime_checkable
class QueueReceiver(Protocol):
    """A receiver that can restrict :meth:`Receiver.get` to some of its queues."""

    def get_from_queues(self, queue_names: Sequence[str]) -> Iterable[Envelope]:
        """Like :meth:`Receiver.get`, but only from ``queue_names``."""
        ...


@runtime_checkable
class FlushingReceiver(Protocol):
    """A receiver that holds acknowledgements back to write several at once (SQL, Redis).

    A worker calls :meth:`flush` when it stops, so that the messages it handled are settled
    then rather than when the transport is closed.
    """

    def flush(self) -> None:
        """Write the acknowledgements (and rejections) held back so far."""
        ...


@runtime_checkable
class WaitingReceiver(Protocol):
    """A receiver whose ``get()`` itself waits for a message to arrive (a notification such
    as PostgreSQL's LISTEN, a blocking read).

    While every receiver of a worker waits so, the worker does not sleep between empty rounds:
    its own sleep would only delay a message arriving meanwhile. The worker asks after each
    empty round, so the answer may change (a LISTEN connection that failed).
    """

    @property
    def waits_for_messages(self) -> bool:
        """Whether ``get()`` waits for messages now (an attribute or a property)."""
        ...


@runtime_checkable
class ReleasingReceiver(Protocol):
    """A receiver that can hand an unsettled message back for delivery soon (Redis: its
    consumer's pending list), instead of after its redelivery timeout.

    A worker calls :meth:`release` when it could neither retry nor park a failed message (the
    store is down): the message is then neither acknowledged nor rejected.
    """

    def release(self, envelope: Envelope) -> None:
        """Let ``envelope`` (received from this receiver) be delivered again soon."""
        ...


class TransportFactory(Protocol):
    """Builds transports for one or more DSN schemes; published as an entry point."""

    def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer) -> Transport:
        """A transport for ``dsn``.

        ``options`` are the configuration's, unmerged: merge once, ``dsn.with_options(options)``
        (they win over the DSN's query); raise a ``ConfigurationError`` for unknown ones.
        """
        ...


@runtime_checkable
class StopSignalFactory(Protocol):
    """A transport factory that can also keep the "stop workers" signal in its store.

    The configuration key ``stop_signal`` takes a DSN; its scheme's transport factory builds
    the signal, so that ``messenger stop-workers`` reaches workers on every host using that
    store. The result is a :class:`messenger_core.stop_signal.StopSignal`.
    """

    def create_stop_signal(self, dsn: Dsn, options: Mapping[str, Any]) -> Any:
        """A stop signal kept in the store ``dsn`` names."""
        ...


@runtime_checkable
class ApplicationBoundFactory(Protocol):
    """A transport factory that needs the application (the ``sync://`` transport dispatches on
    its buses).

    Before calling ``create``, the application calls :meth:`for_application` on the factory it
    loaded and uses the factory this returns.
    """

    def for_application(self, messenger: Messenger) -> TransportFactory:
        """A factory bound to ``messenger``."""
        ...
