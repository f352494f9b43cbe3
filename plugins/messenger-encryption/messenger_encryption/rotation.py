"""Re-encrypting what a transport holds with the newest key (``messenger encryption rotate``).

Each listed message encrypted with an older key is sent again (the transport's serializer
encrypts it with the newest key) and then the old copy is removed: at worst a crash between
the two leaves both copies, never none (at-least-once, as everywhere in messenger).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from messenger_core.stamps import NonSendableStamp
from messenger_core.transport import ListableReceiver, UndecodableMessage
from messenger_encryption.message import FORMAT_VERSION, DecryptedStamp

if TYPE_CHECKING:
    from messenger_core.app import Messenger

__all__ = ["RotationReport", "rotate_transport"]


@attrs.define
class RotationReport:
    """What rotating one transport did."""

    transport_name: str
    listable: bool = True
    rotated: int = 0
    """Re-encrypted with the newest key."""
    current: int = 0
    """Already encrypted with the newest key."""
    plaintext: int = 0
    """Not of an encrypted bus: left as they are."""
    unreadable: int = 0
    """Could not be decrypted here (unknown key, altered): left as they are."""


def rotate_transport(messenger: Messenger, name: str, encrypting_key_id: str) -> RotationReport:
    """Re-encrypt the messages of transport ``name`` not encrypted with ``encrypting_key_id``."""
    report = RotationReport(name)
    transport = messenger.get_transport(name)
    if not isinstance(transport, ListableReceiver):
        report.listable = False
        return report
    # Listed first, in full: the copies sent below must not be listed again.
    for envelope in list(transport.all()):
        if isinstance(envelope.message, UndecodableMessage):
            report.unreadable += 1
            continue
        decrypted = envelope.last(DecryptedStamp)
        if decrypted is None:
            report.plaintext += 1
            continue
        if decrypted.key_id == encrypting_key_id and decrypted.format_version == FORMAT_VERSION:
            report.current += 1
            continue
        transport.send(envelope.without_stamps_of(NonSendableStamp))
        transport.reject(envelope)
        report.rotated += 1
    return report
