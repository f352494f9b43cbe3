"""How log lines name things: one message (its type and, where the transport gave one, its id),
and a count of something."""

from __future__ import annotations

from messenger_core.envelope import Envelope
from messenger_core.stamps import TransportMessageIdStamp
from messenger_core.transport import UndecodableMessage

__all__ = ["describe_message", "plural"]


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


def plural(count: int, noun: str) -> str:
    """``1 message``, ``3 messages``: ``count`` and ``noun``, with an ``s`` unless it is one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
