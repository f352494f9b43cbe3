"""What a serializer is: the mapping between envelopes and :class:`TransportMessage`.

Serializers are published in the ``messenger.serializers`` entry-point group as a
:class:`SerializerFactory`. They must:

- drop :class:`~messenger_core.stamps.NonSendableStamp` stamps;
- resolve the message class only through the :class:`MessageTypeRegistry`, never by importing
  a name found in a header;
- raise :class:`~messenger_core.errors.MessageDecodingError` for input they cannot decode (a
  receiver turns that into an :class:`~messenger_core.transport.UndecodableMessage`; so does
  :func:`decode_or_quarantine` with any other exception, as a last resort);
- refuse on input what they could not encode again, so that a message that was read can
  always be retried or parked;
- encode an :class:`~messenger_core.transport.UndecodableMessage` back to its original body
  and headers (plus the envelope's stamps), so a parked message keeps its raw form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from messenger_core.envelope import Envelope
from messenger_core.errors import MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.stamps import Stamp
from messenger_core.transport import TransportMessage, UndecodableMessage

__all__ = ["Serializer", "SerializerFactory", "StampDecodingSerializer", "decode_or_quarantine"]


@runtime_checkable
class Serializer(Protocol):
    """Turns envelopes into transport messages and back."""

    def encode(self, envelope: Envelope) -> TransportMessage:
        """The wire form of ``envelope`` (sendable stamps only)."""
        ...

    def decode(self, message: TransportMessage) -> Envelope:
        """The envelope ``message`` was made from; raises ``MessageDecodingError``."""
        ...


@runtime_checkable
class StampDecodingSerializer(Protocol):
    """A serializer that can read a message's stamps alone (an optional capability).

    :func:`decode_or_quarantine` asks it for the stamps of a message it cannot decode, so that
    the parked :class:`~messenger_core.transport.UndecodableMessage` still carries its error
    details and original transport (which ``messenger failed show`` then lists).
    """

    def decode_stamps(self, message: TransportMessage) -> list[Stamp]:
        """The stamps in ``message``'s headers; raises ``MessageDecodingError`` if they
        cannot be read."""
        ...


class SerializerFactory(Protocol):
    """Builds a serializer that knows the application's message types."""

    def __call__(self, registry: MessageTypeRegistry, options: Mapping[str, Any]) -> Serializer:
        """A serializer resolving types through ``registry``, configured by ``options``."""
        ...


def decode_or_quarantine(serializer: Serializer, message: TransportMessage) -> Envelope:
    """Decode ``message``; if it cannot be decoded, wrap its raw form in ``UndecodableMessage``
    (with the stamps, if the serializer is a :class:`StampDecodingSerializer` that can read them).

    Receivers call this so that one bad entry never stops a worker nor gets lost: *any*
    exception the serializer raises (not only ``MessageDecodingError``: a ``RecursionError``
    from absurdly nested input, an ``AttributeError`` from a header that is not a string, a bug
    in a third-party serializer) quarantines that one message, with the reason.
    """
    try:
        return serializer.decode(message)
    except MessageDecodingError as error:
        reason = str(error)
    except Exception as error:
        # Worded as the transports' own last-resort handlers word it.
        reason = f"the serializer failed: {type(error).__name__}: {_one_line(error)}"
    quarantined = UndecodableMessage(
        _raw_body(message.body), _raw_headers(message.headers), _encodable(reason)
    )
    # Keep the stamps when the serializer can read them alone (error details, the original
    # transport...): a parked message must still say why and where from.
    stamps: list[Stamp] = []
    if isinstance(serializer, StampDecodingSerializer):
        try:
            stamps = list(serializer.decode_stamps(message))
        except Exception:
            stamps = []
    return Envelope(quarantined, stamps)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _encodable(text: str) -> str:
    """``text`` with any character UTF-8 cannot hold (a lone surrogate) backslash-escaped."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _raw_body(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):  # a transport handing over text: keep it, as UTF-8
        return body.encode("utf-8", "backslashreplace")
    return repr(body).encode("utf-8", "backslashreplace")


def _raw_headers(headers: object) -> dict[str, str]:
    """The headers as strings that can be written again (parking must not fail on them)."""
    try:
        items = list(headers.items())  # type: ignore[attr-defined]
    except Exception:
        return {}
    return {
        _encodable(key if isinstance(key, str) else str(key)): _encodable(
            value if isinstance(value, str) else str(value)
        )
        for key, value in items
    }
