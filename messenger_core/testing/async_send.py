"""Helpers for the tests of a transport's :class:`~messenger_core.transport.AsyncSender`.

``await bus.dispatch_async(message)`` sends on the event loop when it can, else in a dispatch
thread; a test tells which by recording the thread of each send::

    class RecordingRedisTransport(RecordingSends, RedisTransport):
        pass

    asyncio.run(messenger.bus.dispatch_async(Order(1)))
    assert sent_on_loop(transport.calls, 1)
"""

from __future__ import annotations

import threading
from typing import Any

from messenger_core.envelope import Envelope

__all__ = ["RecordingSends", "sent_on_loop"]


class RecordingSends:
    """A mixin ahead of a transport class: records ``("send" | "send_async", thread name)``
    in :attr:`calls` for each send, then sends as the transport does."""

    calls: list[tuple[str, str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = []

    def send(self, envelope: Envelope) -> Envelope:
        """Record, then the transport's ``send``."""
        self.calls.append(("send", threading.current_thread().name))
        result: Envelope = super().send(envelope)  # type: ignore[misc]
        return result

    async def send_async(self, envelope: Envelope) -> Envelope:
        """Record, then the transport's ``send_async``."""
        self.calls.append(("send_async", threading.current_thread().name))
        result: Envelope = await super().send_async(envelope)  # type: ignore[misc]
        return result


def sent_on_loop(calls: list[tuple[str, str]], count: int) -> bool:
    """Whether exactly ``count`` sends were recorded, all ``send_async`` on the main thread
    (the event loop ``asyncio.run`` runs there): the native path, no dispatch thread."""
    return calls == [("send_async", threading.main_thread().name)] * count
