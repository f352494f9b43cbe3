"""An undecodable message's stamps come from its serializer, never from re-parsed headers.

``decode_or_quarantine`` asks a :class:`StampDecodingSerializer` for the stamps of a message it
cannot decode; ``messenger failed`` describes such a message by those stamps, like any other.
"""

from __future__ import annotations

from datetime import UTC, datetime

import attrs

from messenger_core import Messenger
from messenger_core.cli.failed import FailedMessage
from messenger_core.envelope import Envelope
from messenger_core.errors import MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.serializer import StampDecodingSerializer, decode_or_quarantine
from messenger_core.stamps import (
    ErrorDetailsStamp,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    Stamp,
    TransportMessageIdStamp,
)
from messenger_core.transport import TransportMessage, UndecodableMessage

FAILED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@attrs.frozen
class Gone:
    n: int


def test_the_json_serializer_is_a_stamp_decoding_serializer() -> None:
    assert isinstance(JsonSerializer(MessageTypeRegistry()), StampDecodingSerializer)


class _StampsOnly:
    """Cannot decode any message, but reads its stamps (from a header of its own format)."""

    def encode(self, envelope: Envelope) -> TransportMessage:
        raise NotImplementedError

    def decode(self, message: TransportMessage) -> Envelope:
        raise MessageDecodingError("never")

    def decode_stamps(self, message: TransportMessage) -> list[Stamp]:
        return [RedeliveryStamp(retry_count=int(message.headers["retries"]))]


def test_decode_or_quarantine_keeps_the_stamps_a_serializer_reads() -> None:
    message = TransportMessage(b"x", {"retries": "3"})
    envelope = decode_or_quarantine(_StampsOnly(), message)
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.all(RedeliveryStamp) == (RedeliveryStamp(retry_count=3),)


def test_failed_describes_an_undecodable_message_by_its_envelope_stamps() -> None:
    """The stamps the worker added (not written in the raw headers, as in a failure transport
    that does not serialize) are what the failed commands show."""
    message = UndecodableMessage(b'{"n":1}', {"type": "gone.Gone"}, "not registered")
    envelope = Envelope(
        message,
        (
            TransportMessageIdStamp(id="7"),
            RedeliveryStamp(retry_count=2, redelivered_at=FAILED_AT),
            ErrorDetailsStamp(exception_class="app.Boom", message="it broke", failed_at=FAILED_AT),
            SentToFailureTransportStamp(original_receiver_name="async"),
        ),
    )

    failed = FailedMessage.of(Messenger(autoload=False), envelope)

    assert failed.undecodable
    assert (failed.id, failed.type_name, failed.full_type) == ("7", "gone.Gone", "gone.Gone")
    assert failed.error == "Boom: it broke"
    assert failed.failed_at == FAILED_AT
    assert failed.original_transport == "async"
    assert failed.retries == 2


def test_failed_reads_the_stamps_the_json_serializer_decoded_on_receipt() -> None:
    registry = MessageTypeRegistry()
    registry.register(Gone, "gone.Gone")
    serializer = JsonSerializer(registry)
    stamps = (
        ErrorDetailsStamp(exception_class="app.Boom", message="it broke", failed_at=FAILED_AT),
        SentToFailureTransportStamp(original_receiver_name="async"),
    )
    encoded = serializer.encode(Envelope(Gone(1), stamps))
    # Read back by a serializer that no longer knows the message type.
    envelope = decode_or_quarantine(JsonSerializer(MessageTypeRegistry()), encoded)

    failed = FailedMessage.of(Messenger(autoload=False), envelope)

    assert failed.undecodable
    assert failed.error == "Boom: it broke"
    assert failed.failed_at == FAILED_AT
    assert failed.original_transport == "async"


def test_an_undecodable_message_without_error_stamps_shows_its_reason() -> None:
    message = UndecodableMessage(b"?", {}, "the body is not JSON")
    failed = FailedMessage.of(Messenger(autoload=False), Envelope(message))
    assert failed.error == "MessageDecodingError: the body is not JSON"
    assert failed.type_name == "(no type header)"
    assert failed.failed_at is None


def test_retries_shown_are_the_highest_count_even_when_parking_added_a_zero() -> None:
    # Symfony's failure listener adds RedeliveryStamp(0) after the retries it counted.
    envelope = Envelope(
        Gone(1),
        [
            RedeliveryStamp(retry_count=1),
            RedeliveryStamp(retry_count=2),
            RedeliveryStamp(retry_count=0),
        ],
    )

    assert FailedMessage.of(Messenger(), envelope).retries == 2
