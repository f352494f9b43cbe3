"""A worker handling up to M messages at once (``messenger consume --concurrency M``).

The worker's own thread keeps receiving, in priority order, while a :class:`HandlerPool`
handles what it received: each message runs through its bus on one of M handler threads, and
every ``async def`` handler runs as a task on one event loop, shared by the threads (see
:func:`messenger_core._awaitables.shared_loop`), so M async handlers wait at once on one thread.

Everything else stays on the worker's thread, as without concurrency: receiving, counting,
and settling each message (ack, retry, park) with its receiver, whose connection is therefore
used by one thread only. A finished message waits in a queue until the worker's thread settles
it, which it does before each round of receiving, while idle, and while all M slots are busy.
The worker never holds more than M received messages unsettled (before asking a receiver for
more it waits for a free slot), so the first transport is still asked first whenever a slot
frees: priorities hold. Limits count as without concurrency (a message is counted when it is
received, a failure when it is settled); a stop, SIGTERM included, finishes and settles every
message in flight before the worker returns (:meth:`HandlerPool.drain`). The context variables
of the worker's thread as a message is received (the log context of ``--log-format json``) go
with it to its handler thread, its async handlers' tasks, and back to its settling.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
from typing import TYPE_CHECKING

import attrs

from messenger_core._awaitables import shared_loop
from messenger_core.envelope import Envelope
from messenger_core.transport import Receiver

if TYPE_CHECKING:
    from messenger_core.worker import Worker

__all__ = ["HandlerPool"]

logger = logging.getLogger("messenger.worker")

_WAIT_SLICE = 0.05
"""Seconds the worker's thread waits for a finished message at a time (a stop is seen then)."""


@attrs.define(slots=True)
class _Job:
    """One received message on its way through a handler thread and back."""

    envelope: Envelope
    transport_name: str
    receiver: Receiver
    context: contextvars.Context
    """The worker thread's context variables once the message was received (a log context,
    say): its handling and its settling run in it."""
    handled: Envelope | None = None
    error: Exception | None = None


class HandlerPool:
    """M handler threads and one event loop serving a :class:`~messenger_core.worker.Worker`.

    Used by the worker's thread only (the handler threads talk to it through two queues).
    """

    def __init__(self, worker: Worker, size: int) -> None:
        self.worker = worker
        self.size = size
        self.in_flight = 0
        """Messages received and not settled yet."""
        self._todo: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="messenger-async-handlers", daemon=True
        )
        self._loop_thread.start()
        self._shared = contextlib.ExitStack()
        self._shared.enter_context(shared_loop(self._loop))
        # Daemon threads: a worker interrupted at once (a second signal) does not wait for them.
        self._threads = [
            threading.Thread(target=self._serve, name=f"messenger-handler-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    # -- the worker's thread ----------------------------------------------------------------
    def handle(self, envelope: Envelope, transport_name: str, receiver: Receiver) -> None:
        """Count, stamp and hand a received envelope to a handler thread (once one is free)."""
        self.wait_for_slot()
        worker = self.worker
        if worker.stopping:
            # Asked to stop while waiting: leave it unreceived, as a worker without concurrency
            # leaves the rest of a batch (the transport hands it back when it is closed).
            return
        received = worker.receive(envelope, transport_name, receiver)
        if received is None:
            return  # undecodable: settled already
        worker.watch(received, receiver)
        self.in_flight += 1
        job = _Job(received, transport_name, receiver, contextvars.copy_context())
        self._todo.put(job)

    def wait_for_slot(self) -> None:
        """Settle finished messages until fewer than M are in flight."""
        while self.in_flight >= self.size:
            self.settle_ready(timeout=_WAIT_SLICE)

    @property
    def full(self) -> bool:
        """Whether M messages are in flight."""
        return self.in_flight >= self.size

    def settle_ready(self, timeout: float = 0.0) -> int:
        """Settle the messages that finished (waiting up to ``timeout`` for the first one)."""
        settled = 0
        try:
            job = self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait()
        except queue.Empty:
            return 0
        while True:
            job.context.run(self._settle, job)
            settled += 1
            try:
                job = self._done.get_nowait()
            except queue.Empty:
                return settled

    def drain(self) -> None:
        """Wait for every message in flight and settle it."""
        if self.in_flight:
            logger.info("finishing %d message(s) in flight", self.in_flight)
        while self.in_flight:
            self.settle_ready(timeout=_WAIT_SLICE)

    def close(self) -> None:
        """End the handler threads and the event loop (without waiting for messages left:
        after an interruption they stay unsettled and come back later)."""
        for _ in self._threads:
            self._todo.put(None)
        self._shared.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self.in_flight == 0:
            self._loop_thread.join(timeout=5)
            if not self._loop_thread.is_alive():
                self._loop.close()

    def _settle(self, job: _Job) -> None:
        worker = self.worker
        self.in_flight -= 1
        worker.unwatch(job.envelope)
        name = job.transport_name
        try:
            if job.error is None:
                assert job.handled is not None
                worker.settle_success(job.handled, job.envelope, name, job.receiver)
            else:
                worker.settle_failure(job.envelope, name, job.receiver, job.error)
        except Exception as error:
            # Its ack or reject failed (the broker is away): it comes back later; this receiver
            # pauses while the others are served, as without concurrency.
            worker.pause_receiver(name, f"settling a message with {name} failed", error)
        worker.check_limits()
        if worker.on_message is not None:
            worker.on_message(worker)

    # -- the handler threads ----------------------------------------------------------------
    def _serve(self) -> None:
        dispatch = self.worker.dispatch_received
        while True:
            job = self._todo.get()
            if job is None:
                return
            try:
                job.handled = job.context.run(dispatch, job.envelope)
            except Exception as error:
                job.error = error
            self._done.put(job)
