"""Hold back messages stamped ``DispatchAfterCurrentBusStamp`` until the outer dispatch is done.

Typical use: a handler records an order and dispatches ``OrderPlaced`` with the stamp; the
event is handled only if the handler (and everything else in the outer dispatch) succeeded,
and is dropped if the outer dispatch raised.
"""

from __future__ import annotations

from collections import deque
from threading import get_ident

from messenger_core.envelope import Envelope
from messenger_core.errors import DelayedMessageHandlingError
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.stamps import DispatchAfterCurrentBusStamp

__all__ = ["DispatchAfterCurrentBusMiddleware", "RootDispatch"]


class RootDispatch:
    """Which threads are running an outermost dispatch, and what waits for each to end.

    One instance is shared by all buses of an application, so a message queued by a handler on
    one bus waits for the outermost dispatch, whatever its bus. Keyed by thread id rather than
    a ``threading.local``, which costs twice as much on every dispatch; each thread only
    touches its own entries.
    """

    def __init__(self) -> None:
        self.running: set[int] = set()
        self.queues: dict[int, deque[tuple[Envelope, Next]]] = {}

    def is_running(self) -> bool:
        """Whether this thread is inside a dispatch."""
        return get_ident() in self.running


class DispatchAfterCurrentBusMiddleware:
    """Queues stamped envelopes during a dispatch; dispatches them once it returned."""

    def __init__(self, context: MiddlewareContext | RootDispatch | None = None) -> None:
        if isinstance(context, MiddlewareContext):
            self.root: RootDispatch = context.root_dispatch
        else:
            self.root = context or RootDispatch()

    @property
    def async_send_safe(self) -> bool:
        """AsyncSendSafeMiddleware: true unless this thread is inside a dispatch already.

        There (an async handler awaiting ``dispatch_async``) a stamped message would be queued
        on this thread's outer dispatch, whereas the dispatch thread ``dispatch_async`` uses
        otherwise is outside any dispatch and sends it at once.
        """
        return not self.root.is_running()

    def __call__(self, envelope: Envelope, next: Next, /) -> Envelope:
        return self.bind(next)(envelope)

    def bind(self, next: Next) -> Next:
        """The chain step."""
        running = self.root.running
        queues = self.root.queues

        def dispatch_after_current_bus(envelope: Envelope) -> Envelope:
            thread = get_ident()
            for each in envelope.stamps:
                if type(each) is DispatchAfterCurrentBusStamp:
                    if thread in running:
                        queues.setdefault(thread, deque()).append((envelope, next))
                        return envelope
                    # Nothing to wait for: this is the outermost dispatch itself.
                    envelope = envelope.without_all(DispatchAfterCurrentBusStamp)
                    break
            if thread in running:
                return next(envelope)
            running.add(thread)
            try:
                result = next(envelope)
            except BaseException:
                queues.pop(thread, None)  # the outer dispatch failed: drop what waited for it
                running.discard(thread)
                raise
            if queues:
                try:
                    return _drain(queues, thread, result)
                finally:
                    running.discard(thread)
            running.discard(thread)
            return result

        return dispatch_after_current_bus


def _drain(
    queues: dict[int, deque[tuple[Envelope, Next]]], thread: int, result: Envelope
) -> Envelope:
    """Dispatch the queued envelopes (and what they queue in turn); collect their failures."""
    failures: list[BaseException] = []
    queue = queues.get(thread)
    try:
        while queue:
            envelope, next = queue.popleft()
            try:
                next(envelope.without_all(DispatchAfterCurrentBusStamp))
            except Exception as error:
                failures.append(error)
    finally:
        # Even when interrupted (KeyboardInterrupt): nothing may wait for the next dispatch.
        queues.pop(thread, None)
    if failures:
        raise DelayedMessageHandlingError(result, failures)
    return result
