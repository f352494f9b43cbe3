"""Send routed messages when the database transaction commits (``MESSENGER_ON_COMMIT``)."""

from __future__ import annotations

from django.db import connections, transaction

from messenger_core.contrib.django.outbox import in_outbox
from messenger_core.envelope import Envelope
from messenger_core.middleware import Next
from messenger_core.routing import Router
from messenger_core.stamps import ReceivedStamp, TransportNamesStamp

__all__ = ["OnCommitMiddleware"]


class OnCommitMiddleware:
    """Inside a transaction of database ``using``, defers a message that would be sent to a
    transport until the transaction commits (``transaction.on_commit``); drops it on rollback.

    Received messages (a worker handling one) and messages handled synchronously pass at once.
    The deferred dispatch returns the envelope as given: it has no ``SentStamp`` yet.
    """

    def __init__(self, router: Router, using: str | None = None) -> None:
        self.router = router
        self.using = using

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        if not self._defer(envelope):
            return next(envelope)
        transaction.on_commit(lambda: next(envelope), using=self.using)
        return envelope

    def _defer(self, envelope: Envelope) -> bool:
        if envelope.last(ReceivedStamp) is not None or in_outbox():
            return False  # a worker's message, or one that joins the transaction itself
        if not connections[self.using or "default"].in_atomic_block:
            return False
        override = envelope.last(TransportNamesStamp)
        if override is not None:
            return bool(override.transport_names)
        return bool(self.router.transports_for(type(envelope.message)))
