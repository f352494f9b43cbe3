"""The frame of the transactional-handling middleware of the transport plugins.

``sql_transaction`` and ``redis_transaction`` run the handlers of a *received* message inside
a transaction of the store it came from, acknowledging the message in that transaction. They
share what is not about the store, here: the ``transport`` option (the transport whose store
takes the transactions of messages from other transports), one runner per receiving transport
made on first use, dispatched messages passed through, and a nested dispatch (a handler
dispatching a received message) joining the transaction already open.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, HandlerFailedError
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import HandledStamp, ReceivedStamp
from messenger_core.transport_options import reject_unknown_options

__all__ = ["ReceivedMessageTransaction", "TransactionRunner", "rolled_back"]


class TransactionRunner(Protocol):
    """Runs a received message's handlers in one transaction of one store."""

    def handle(self, envelope: Envelope, next: Next) -> Envelope:
        """``next(envelope)`` in a transaction, committed (with the acknowledgement, when the
        runner settles its transport's messages) if it returns."""
        ...


T = TypeVar("T")


def rolled_back(error: HandlerFailedError) -> None:
    """A handler failed and the transaction was rolled back: the handlers that succeeded lost
    their writes with it, so the retry must run them again, not skip them for their
    ``HandledStamp`` (which ``error``'s envelope loses)."""
    error.envelope = error.envelope.without_all(HandledStamp)


class ReceivedMessageTransaction(ABC, Generic[T]):
    """Base of a middleware running received messages' handlers in a transaction of a ``T``
    transport; subclasses say how (:meth:`runner`) and whether one is open (:meth:`active`).

    Option ``transport``: the name of a ``T`` transport whose store runs the transactions of
    messages received from other transports (default none: they pass through).
    """

    name: ClassVar[str]
    """The middleware's name in configuration (``"sql_transaction"``)."""
    store: ClassVar[str]
    """What its transports are, for errors (``"SQL"``)."""
    transport_class: ClassVar[type[Any]]
    options: ClassVar[Sequence[str]] = ("transport",)

    noop_for_bare_messages = True
    """Only received messages are wrapped: a dispatch without stamps passes through."""

    def __init__(self, context: MiddlewareContext) -> None:
        options = dict(context.options)
        reject_unknown_options(options, self.options, subject=f"the {self.name} middleware")
        fallback = options.get("transport")
        if fallback is not None and (
            not isinstance(fallback, str) or fallback not in context.config.transports
        ):
            known = ", ".join(sorted(context.config.transports)) or "(none)"
            raise ConfigurationError(
                f"option 'transport' must name a configured {self.store} transport, got "
                f"{fallback!r}; configured transports: {known}"
            )
        self._fallback: str | None = fallback
        self._transports = context.transports
        self._runners: dict[str, TransactionRunner | None] = {}
        self._lock = threading.Lock()  # handler threads may meet a transport first together
        self.configure(options)

    def configure(self, options: Mapping[str, Any]) -> None:
        """Read the subclass's own options (all known: checked before)."""

    @abstractmethod
    def active(self) -> bool:
        """Whether the current context runs in a transaction of this middleware already."""

    @abstractmethod
    def runner(self, transport: T, *, settles: bool) -> TransactionRunner:
        """A runner of transactions on ``transport``'s store, acknowledging that transport's
        messages in them if ``settles``."""

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        """Handle a received ``envelope`` in a transaction; pass anything else on."""
        received = envelope.last(ReceivedStamp)
        if received is None or self.active():
            return next(envelope)
        name = received.transport_name
        if name in self._runners:
            runner = self._runners[name]
        else:
            with self._lock:
                runner = self._runners.get(name) or self._runner_for(name)
                self._runners[name] = runner
        if runner is None:
            return next(envelope)
        return runner.handle(envelope, next)

    def _runner_for(self, name: str) -> TransactionRunner | None:
        transport = self._transports(name)
        if isinstance(transport, self.transport_class):
            return self.runner(transport, settles=True)
        if self._fallback is None:
            return None
        fallback = self._transports(self._fallback)
        if not isinstance(fallback, self.transport_class):
            raise ConfigurationError(
                f"the {self.name} middleware's option 'transport' names {self._fallback!r}, "
                f"which is not a {self.store} transport ({type(fallback).__name__})"
            )
        return self.runner(fallback, settles=False)
