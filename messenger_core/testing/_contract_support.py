"""Shared pieces of the transport contract suite: its messages, serializer, transport pool,
polling helpers and the base class of its parts.

The public names are re-exported by :mod:`messenger_core.testing.contract`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
import pytest

from messenger_core.envelope import Envelope
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import Serializer
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import Receiver, Transport, TransportMessage

POISON_BODY = b"{not json"
"""The body a :class:`PoisonMessage` is sent with: no JSON serializer can decode it."""

_POLL_INTERVAL = 0.02
"""Seconds between two ``get()`` calls while polling."""
_QUIET_PERIOD = 0.3
"""Seconds during which a consumer must receive nothing to show a message is not available."""
_CONCURRENT_MESSAGES = 200
_CONCURRENT_CONSUMERS = 4
_BATCH_SIZE = 50
_FIFO_MESSAGES = 20
_RESTART_DOWNTIME = 2.0
"""Seconds the server stays down in the broker-restart test."""
_RESTART_MESSAGES = 30


@attrs.frozen
class ContractMessage:
    """The message the suite sends: an ``id`` to track it by and some text."""

    id: int
    text: str


@attrs.frozen
class PoisonMessage:
    """Sent through ``contract_serializer``, this becomes a message that cannot be decoded."""

    note: str = "poison"


class PoisonInjectingSerializer:
    """Wraps a serializer so that a :class:`PoisonMessage` is encoded as an undecodable body.

    The poison keeps the headers (message type, stamps) of a :class:`ContractMessage`, so a
    transport cannot tell it apart until its serializer tries to decode it.
    """

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner

    def encode(self, envelope: Envelope) -> TransportMessage:
        """Encode with the wrapped serializer; a poison message gets :data:`POISON_BODY`."""
        if isinstance(envelope.message, PoisonMessage):
            decoy = self.inner.encode(Envelope(ContractMessage(-1, "poison"), envelope.stamps))
            return attrs.evolve(decoy, body=POISON_BODY)
        return self.inner.encode(envelope)

    def decode(self, message: TransportMessage) -> Envelope:
        """Decode with the wrapped serializer."""
        return self.inner.decode(message)


def make_contract_serializer() -> Serializer:
    """The JSON serializer knowing :class:`ContractMessage`, turning poison into bad bodies."""
    registry = MessageTypeRegistry()
    # The name it had when defined in messenger_core.testing.contract: the wire stays the same.
    registry.register(ContractMessage, "messenger_core.testing.contract.ContractMessage")
    return PoisonInjectingSerializer(JsonSerializer(registry))


class TransportPool:
    """Builds transports with ``make_transport`` and closes them all at the end of a test.

    Thread-safe: consumer threads build their own transports through it.
    """

    def __init__(self, make: Callable[..., Transport]) -> None:
        self._make = make
        self._open: list[Transport] = []
        self._lock = threading.Lock()

    def new(self, **options: Any) -> Transport:
        """A new transport (a new consumer) over the test's queue."""
        transport = self._make(**options)
        with self._lock:
            self._open.append(transport)
        return transport

    def close(self, transport: Transport) -> None:
        """Close ``transport`` now (a consumer that goes away); it is not closed again."""
        with self._lock:
            self._open = [each for each in self._open if each is not transport]
        transport.close()

    def close_all(self) -> None:
        """Close every transport still open, newest first; raise the first error, if any."""
        with self._lock:
            transports, self._open = self._open, []
        errors: list[BaseException] = []
        for transport in reversed(transports):
            try:
                transport.close()
            except Exception as error:  # close the others anyway
                errors.append(error)
        if errors:
            raise errors[0]


def _require(transport: Transport, flag: str) -> None:
    if not getattr(type(transport).capabilities, flag):
        pytest.skip(f"transport does not declare {flag}")


def _message(envelope: Envelope) -> Any:
    return envelope.message


def _id_of(envelope: Envelope) -> str:
    stamp = envelope.last(TransportMessageIdStamp)
    assert stamp is not None, f"received envelope has no TransportMessageIdStamp: {envelope!r}"
    return stamp.id


def _receive(receiver: Receiver, count: int, timeout: float) -> list[Envelope]:
    """Poll ``receiver`` until ``count`` envelopes came or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    received: list[Envelope] = []
    while True:
        got = list(receiver.get())
        received.extend(got)
        if len(received) >= count or time.monotonic() >= deadline:
            return received
        if not got:
            time.sleep(_POLL_INTERVAL)


def _receive_one(receiver: Receiver, timeout: float) -> Envelope:
    received = _receive(receiver, 1, timeout)
    assert received, f"no message received within {timeout} s"
    assert len(received) == 1, f"expected one message, got {len(received)}: {received!r}"
    return received[0]


def _assert_nothing(receiver: Receiver, seconds: float = _QUIET_PERIOD, why: str = "") -> None:
    """``receiver`` receives nothing for ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        received = list(receiver.get())
        assert not received, f"expected no message{why}, got {received!r}"
        if time.monotonic() >= deadline:
            return
        time.sleep(_POLL_INTERVAL)


def _contract_ids(envelopes: list[Envelope]) -> list[int]:
    ids = []
    for envelope in envelopes:
        assert isinstance(envelope.message, ContractMessage), envelope
        ids.append(envelope.message.id)
    return ids


class ContractBase:
    """What every part of the contract suite reads from the class combining them.

    :class:`~messenger_core.testing.contract.TransportContract` gives the values and the
    fixtures; subclasses of it may override them.
    """

    redelivery_options: ClassVar[Mapping[str, Any]]
    redelivery_wait: ClassVar[float]
    receive_timeout: ClassVar[float]
    serializes_messages: ClassVar[bool]
    restart_wait: ClassVar[float]
