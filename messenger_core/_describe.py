"""How log lines name one message: its type and, where the transport gave one, its id."""

from __future__ import annotations

from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import UndecodableMessage

__all__ = ["describe_message"]


def describe_message(envelope: Envelope) -> str:
    """The message's type and, where the transport gave one, its id: ``OrderPlaced (id 42)``."""
    message = envelope.message
    if isinstance(message, UndecodableMessage):
        kind = message.headers.get("type")
        text = f"undecodable message of type {kind}" if kind else "undecodable message"
    else:
        text = type(message).__qualname__
    stamp = envelope.last(TransportMessageIdStamp)
    return f"{text} (id {stamp.id})" if stamp is not None else text
