"""The encrypting serializer: wraps a transport's serializer, encrypts the encrypted buses'
messages on the way out and decrypts them on the way in.

It wraps every transport (through the ``messenger_transport_serializer`` hook), so a message
of an encrypted bus leaves the process encrypted whatever transport it is routed to: retries,
the failure transport and ``failed retry`` included.
"""

from __future__ import annotations

import binascii

from messenger_core.envelope import Envelope, new_envelope
from messenger_core.errors import MessageDecodingError, MessengerError
from messenger_core.serializer import Serializer, StampDecodingSerializer
from messenger_core.stamps import (
    BusNameStamp,
    DelayStamp,
    ErrorDetailsStamp,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    Stamp,
    TransportNamesStamp,
)
from messenger_core.transport import TransportMessage, UndecodableMessage
from messenger_encryption.format_v1 import EncryptedMessageV1, from_v1
from messenger_encryption.keyring import KeyRing
from messenger_encryption.message import TYPE_NAME, DecryptedStamp, EncryptedMessage, pack, unpack
from messenger_encryption.outer import OuterCodec, decode64, encode64, outer_codec
from messenger_encryption.sealed import Sealed, from_bytes
from messenger_encryption.settings import EncryptionSettings

__all__ = ["PUBLIC_STAMPS", "EncryptingSerializer", "PlaintextRefusedError"]

PUBLIC_STAMPS: tuple[type[Stamp], ...] = (
    BusNameStamp,
    DelayStamp,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    TransportNamesStamp,
)
"""Stamps that stay readable: the transport and the worker act on them. Every other stamp
(error details, whose texts may quote the message; handlers already run; the application's
own stamps) is encrypted with the message."""

# Read from outside the ciphertext on the way in: the public stamps, and the error details a
# worker adds in clear when it parks a message it could not decrypt (the reason only).
_OUTER_STAMPS = frozenset((*PUBLIC_STAMPS, ErrorDetailsStamp))
_PUBLIC = frozenset(PUBLIC_STAMPS)


class PlaintextRefusedError(MessengerError):
    """A message of a bus that is not encrypted was sent to a transport that requires
    encryption (``require_encryption``)."""


class EncryptingSerializer:
    """A serializer decorator: ``inner`` does the encoding, this adds the encryption.

    :param inner: the transport's configured serializer; it encodes the message (with its
        sensitive stamps) to bytes, and then the :class:`EncryptedMessage` that carries them.
    :param transport_name: authenticated with every message, so a ciphertext moved to
        another transport does not decrypt.
    :param keyring: the process's keys.
    :param settings: which buses are encrypted, and where plaintext is refused.
    :param failure_transport: whether this transport is a failure transport: there, a message
        parked raw (the worker could not decrypt it) is still bound to the transport it was
        sent to, which its ``SentToFailureTransportStamp`` names, and is decrypted as such.
    """

    def __init__(
        self,
        inner: Serializer,
        transport_name: str,
        keyring: KeyRing,
        settings: EncryptionSettings,
        *,
        failure_transport: bool = False,
    ) -> None:
        self.inner = inner
        self.transport_name = transport_name
        self.keyring = keyring
        self.failure_transport = failure_transport
        self._buses = frozenset(settings.buses)
        self._require = settings.requires_encryption(transport_name)
        self._decrypted: dict[bytes | tuple[int, str, str], DecryptedStamp] = {}
        # The outer message written and read here rather than by a second run of the inner
        # serializer, where the serializer allows it (see the outer module).
        self._outer: OuterCodec | None = outer_codec(inner)

    def __repr__(self) -> str:
        return (
            f"EncryptingSerializer({self.inner!r}, transport={self.transport_name!r}, "
            f"buses={sorted(self._buses)}, keyring={self.keyring!r})"
        )

    # -- out ------------------------------------------------------------------------------------
    def encode(self, envelope: Envelope) -> TransportMessage:
        """``envelope`` as the inner serializer writes it; encrypted if its bus is."""
        message = envelope.message
        # A parked message that could not be read keeps its raw form (its ciphertext).
        if message.__class__ is UndecodableMessage:
            return self.inner.encode(envelope)
        bus = envelope.last(BusNameStamp)
        if bus is None or bus.bus_name not in self._buses:
            if self._require:
                raise PlaintextRefusedError(
                    f"transport {self.transport_name!r} requires encryption, but this "
                    f"{type(message).__name__} was dispatched on bus "
                    f"{bus.bus_name if bus else None!r}, which is not encrypted"
                )
            return self.inner.encode(envelope)
        public: list[Stamp] = []
        sensitive: list[Stamp] = []
        for stamp in envelope.stamps:
            (public if stamp.__class__ in _PUBLIC else sensitive).append(stamp)
        plaintext = pack(self.inner.encode(new_envelope(message, tuple(sensitive))))
        sealed = self.keyring.seal(
            plaintext, transport_name=self.transport_name, bus_name=bus.bus_name
        )
        if self._outer is not None:
            return self._outer.encode(sealed, tuple(public))
        outer = EncryptedMessage(encode64(sealed).decode("ascii"))
        return self.inner.encode(new_envelope(outer, tuple(public)))

    # -- in -------------------------------------------------------------------------------------
    def decode(self, message: TransportMessage) -> Envelope:
        """The envelope ``message`` holds, decrypted; ``MessageDecodingError`` if it cannot be
        decrypted, or is plaintext where ciphertext is required."""
        codec = self._outer
        if codec is not None:
            read = codec.read(message)
            if read is not None:  # an encrypted message read without the inner serializer
                sealed, public = read
                return self._decrypt(sealed, public.bus_name, public.kept, public.stamps)
        outer = self.inner.decode(message)
        encrypted = outer.message
        bus = outer.last(BusNameStamp)
        if not isinstance(encrypted, EncryptedMessage | EncryptedMessageV1):
            if self._require:
                raise MessageDecodingError(
                    f"a plaintext message on transport {self.transport_name!r}, which requires "
                    "encryption: refused"
                )
            if bus is not None and bus.bus_name in self._buses:
                raise MessageDecodingError(
                    f"a plaintext message on encrypted bus {bus.bus_name!r}: refused (was it "
                    "sent by a process without the encryption plugin?)"
                )
            return outer
        if bus is None:
            raise MessageDecodingError(
                "an encrypted message without a bus name: it cannot be authenticated",
                type_name=TYPE_NAME,
            )
        kept = tuple(s for s in outer.stamps if s.__class__ in _OUTER_STAMPS)
        if isinstance(encrypted, EncryptedMessageV1):
            return self._decrypt(from_v1(encrypted), bus.bus_name, kept, outer.stamps)
        if codec is not None:
            codec.remember(message, outer.stamps, bus.bus_name, kept)
        return self._decrypt(_unbase64(encrypted.sealed), bus.bus_name, kept, outer.stamps)

    def _decrypt(
        self,
        sealed: bytes | Sealed,
        bus_name: str,
        kept: tuple[Stamp, ...],
        outer_stamps: tuple[Stamp, ...],
    ) -> Envelope:
        """The envelope inside ``sealed``, with the ``kept`` readable stamps before its own."""
        try:
            plaintext = self.keyring.open(
                sealed, transport_name=self.transport_name, bus_name=bus_name
            )
        except MessageDecodingError:
            # A message the worker could not decrypt is parked raw, still bound to the
            # transport it was sent to, which the parking stamp names. Only in a failure
            # transport: elsewhere that stamp would let a ciphertext move between queues.
            parked = new_envelope(None, outer_stamps).last(SentToFailureTransportStamp)
            if (
                not self.failure_transport
                or parked is None
                or parked.original_receiver_name == self.transport_name
            ):
                raise
            plaintext = self.keyring.open(
                sealed, transport_name=parked.original_receiver_name, bus_name=bus_name
            )
        try:
            inner = self.inner.decode(unpack(plaintext))
        except MessageDecodingError:
            # The inner reason may quote the message (a field, a value, its type), and this
            # reason is stored in clear when the message is parked: withhold it.
            raise MessageDecodingError(
                "decrypted, but the message inside cannot be decoded by this application "
                "(its type is not registered here, or its fields do not match; details "
                "withheld because they would quote the message)",
                type_name=TYPE_NAME,
            ) from None
        # Stamps are values: one per format, algorithm and key id (the sealed bytes' header
        # without a one-time key), built once.
        stamp_key = sealed[: 3 + sealed[2]] if isinstance(sealed, bytes) else sealed[:3]
        decrypted = self._decrypted.get(stamp_key)
        if decrypted is None:
            parts = from_bytes(sealed) if isinstance(sealed, bytes) else sealed
            decrypted = DecryptedStamp(
                key_id=parts.key_id, algorithm=parts.algorithm, format_version=parts.version
            )
            if len(self._decrypted) >= 64:
                self._decrypted.clear()
            self._decrypted[stamp_key] = decrypted
        return new_envelope(inner.message, (*kept, *inner.stamps, decrypted))

    def decode_stamps(self, message: TransportMessage) -> list[Stamp]:
        """The readable stamps of ``message`` (those of a plaintext message, the public ones
        of an encrypted one)."""
        if isinstance(self.inner, StampDecodingSerializer):
            return list(self.inner.decode_stamps(message))
        return []


def _unbase64(text: str) -> bytes:
    """The bytes of an :class:`EncryptedMessage`'s text; ``MessageDecodingError`` if it is not
    base64."""
    try:
        return decode64(text.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise MessageDecodingError(
            "the encrypted message is not base64", type_name=TYPE_NAME
        ) from None
