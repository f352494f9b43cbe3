"""An application under test: its transports swapped for in-memory ones, and a worker to run.

:class:`MessengerTest` takes a :class:`~messenger_core.app.Messenger` as the application built
it (handlers, routing, retry strategies, failure transports all unchanged) and replaces each
transport with a :class:`~messenger_core.testing.kit.RecordingTransport` for the duration of
the test. :meth:`MessengerTest.close` puts the application's own transports back, so that a
module-level application can serve many tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError
from messenger_core.hookspecs import hookimpl
from messenger_core.stamps import Stamp
from messenger_core.testing.kit.messages import QueueView
from messenger_core.testing.kit.transport import RecordingTransport
from messenger_core.transports.sync import SyncTransport

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.worker import Worker

__all__ = ["MessengerTest", "ProcessingError"]

DEFAULT_MAX_MESSAGES = 10_000
"""How many messages :meth:`MessengerTest.process_all` handles at most: a handler that
dispatches a message for every message it handles would otherwise never let it return."""


class ProcessingError(AssertionError):
    """A message failed while processing with ``raise_errors``; ``errors`` holds each error."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more failures)" if len(errors) > 1 else ""
        super().__init__(f"a message failed: {type(first).__name__}: {first}{more}")
        self.errors = list(errors)


class _NeverStop:
    """The workers of a test ignore ``messenger stop-workers`` run elsewhere on the host."""

    def request(self) -> None:
        """Nothing to do: a test's worker stops when its queues are empty."""

    def requested_since(self, started_at: float) -> bool:
        """Never."""
        return False


class _UntilIdle:
    """Worker hooks: stop the test's worker when a round found nothing; collect failures."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.errors: list[BaseException] = []

    @hookimpl
    def messenger_worker_idle(self, worker: Worker) -> None:
        if worker is self.worker:
            worker.stop("the in-memory queues are empty")

    @hookimpl
    def messenger_message_failed(
        self, envelope: Envelope, transport_name: str, error: BaseException, will_retry: bool
    ) -> None:
        self.errors.append(error)


class MessengerTest:
    """An application whose transports are in memory, with assertions and a worker.

    ``keep`` names transports left as they are (real ones); ``sync://`` transports are always
    kept. ``delays`` keeps ``DelayStamp`` delays (by default every message, retries included,
    is available at once). ``serialize`` encodes every message with the transport's serializer
    as a real transport would (a message that would not survive the wire fails the test).
    ``sync`` handles each message as soon as it is sent (see :meth:`handle_synchronously`).
    """

    def __init__(
        self,
        messenger: Messenger,
        *,
        keep: Iterable[str] = (),
        delays: bool = False,
        serialize: bool = False,
        sync: bool = False,
        raise_errors: bool = False,
    ) -> None:
        self.messenger = messenger
        keep = set(keep)
        unknown = keep.difference(messenger.transport_names)
        if unknown:
            raise ConfigurationError(
                f"cannot keep unknown transport(s) {', '.join(sorted(unknown))} "
                f"(configured: {', '.join(messenger.transport_names) or 'none'})"
            )
        self._sync = sync
        self._sync_raise_errors = raise_errors
        self._processing = False
        self._transports: dict[str, RecordingTransport] = {}
        # The application keeps its transports by name and looks them up at every send: put
        # ours in its table, and the real ones back when the test is over.
        table = messenger.transports
        self._saved = {name: table.built(name) for name in table.names}
        for name in messenger.transport_names:
            if name in keep or self._is_sync(name):
                continue
            transport = RecordingTransport(
                self._serializer_for(name, serialize), name=name, serialize=serialize, delays=delays
            )
            transport.on_send = self._sent
            self._transports[name] = transport
            table.replace(name, transport)
        self._closed = False

    # -- what the test looks at --------------------------------------------------------------
    @property
    def bus(self) -> Any:
        """The application's default bus."""
        return self.messenger.bus

    def dispatch(self, message: object, *stamps: Stamp) -> Envelope:
        """Dispatch ``message`` on the default bus (``messenger.bus.dispatch``)."""
        return self.messenger.bus.dispatch(message, *stamps)

    @property
    def transport_names(self) -> list[str]:
        """The transports swapped for in-memory ones, in configuration order."""
        return list(self._transports)

    def transport(self, name: str) -> RecordingTransport:
        """The in-memory transport standing in for ``name``."""
        try:
            return self._transports[name]
        except KeyError:
            raise ConfigurationError(
                f"transport {name!r} is not in memory in this test "
                f"(in memory: {', '.join(self._transports) or 'none'})"
            ) from None

    def queue(self, name: str | None = None) -> QueueView:
        """Assertions and records of transport ``name`` (optional if there is only one)."""
        if name is None:
            candidates = self.consumed_transports()
            if len(candidates) != 1:
                raise ConfigurationError(
                    "name the queue: this application has "
                    f"{len(candidates)} in-memory transports ({', '.join(candidates)})"
                )
            name = candidates[0]
        return QueueView(name, self.transport(name))

    def failed(self) -> QueueView:
        """The failure transport (the ``failure_transport`` of the configuration)."""
        name = self.messenger.config.failure_transport
        if name is None:
            raise ConfigurationError("this application has no failure_transport configured")
        return self.queue(name)

    def consumed_transports(self) -> list[str]:
        """What :meth:`process` consumes by default: the in-memory transports that are not a
        failure transport."""
        config = self.messenger.config
        failure = {config.failure_transport} | {
            t.failure_transport for t in config.transports.values()
        }
        return [name for name in self._transports if name not in failure]

    # -- running the worker ------------------------------------------------------------------
    def process(
        self,
        count: int | None = None,
        *,
        transports: Sequence[str] | None = None,
        raise_errors: bool = False,
    ) -> int:
        """Run the real worker on the in-memory transports; return the messages it received.

        With ``count``, exactly that many messages are received (an :class:`AssertionError`
        if fewer were there); without, until the queues are empty (:meth:`process_all`).
        Failed messages are retried (at once, unless ``delays``) and end in the failure
        transport, as in production; ``raise_errors`` raises :class:`ProcessingError` after
        the worker stopped if any handling failed.
        """
        names = list(transports) if transports is not None else self.consumed_transports()
        if not names:
            raise ConfigurationError("there is no in-memory transport to process")
        received = self._run(names, limit=count, raise_errors=raise_errors)
        if count is not None and received != count:
            raise AssertionError(
                f"expected to process {count} message{'s' if count != 1 else ''} from "
                f"{', '.join(names)}, but only {received} were waiting"
            )
        return received

    def process_all(
        self,
        *,
        transports: Sequence[str] | None = None,
        raise_errors: bool = False,
        max_messages: int = DEFAULT_MAX_MESSAGES,
    ) -> int:
        """Run the worker until the queues are empty; return the messages it received.

        An :class:`AssertionError` if ``max_messages`` were received and some are still
        waiting (a handler keeps dispatching).
        """
        names = list(transports) if transports is not None else self.consumed_transports()
        received = self._run(names, limit=max_messages, raise_errors=raise_errors)
        if received >= max_messages and any(len(self.transport(n).all()) for n in names):
            raise AssertionError(
                f"still not empty after {max_messages} messages: does a handler dispatch a "
                "message for every message it handles?"
            )
        return received

    def handle_synchronously(self, enabled: bool = True, *, raise_errors: bool = False) -> None:
        """Process every message as soon as it is sent (until the queues are empty), with
        retries and the failure transport as usual; ``raise_errors`` raises the first failure
        from ``dispatch``."""
        self._sync = enabled
        self._sync_raise_errors = raise_errors

    def reset(self) -> None:
        """Empty every in-memory queue and forget its history."""
        for transport in self._transports.values():
            transport.reset()

    def close(self) -> None:
        """Put the application's own transports back (and close any created meanwhile)."""
        if self._closed:
            return
        self._closed = True
        table = self.messenger.transports
        for name in table.names:
            original = self._saved.get(name)
            current = table.built(name)
            if current is original:
                continue
            table.replace(name, original)
            if current is not None and not isinstance(current, RecordingTransport):
                current.close()  # built during the test

    def __enter__(self) -> MessengerTest:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MessengerTest(in memory: {self.transport_names}, sync={self._sync})"

    # -- helpers -----------------------------------------------------------------------------
    def _run(self, names: Sequence[str], *, limit: int | None, raise_errors: bool) -> int:
        if self._processing:
            raise RuntimeError("process() called from a handler while processing")
        worker = self.messenger.worker(names, stop_signal=_NeverStop())
        watcher = _UntilIdle(worker)
        hooks = self.messenger.hooks
        hooks.register(watcher)
        self._processing = True
        try:
            stats = worker.run(limit=limit, sleep=0, handle_signals=False)
        finally:
            self._processing = False
            hooks.unregister(watcher)
        if raise_errors and watcher.errors:
            raise ProcessingError(watcher.errors) from watcher.errors[0]
        return stats.received

    def _sent(self, name: str) -> None:
        if self._sync and not self._processing and name in self.consumed_transports():
            self._run(
                self.consumed_transports(),
                limit=DEFAULT_MAX_MESSAGES,
                raise_errors=self._sync_raise_errors,
            )

    def _is_sync(self, name: str) -> bool:
        config = self.messenger.config.transports.get(name)
        if config is None:
            return isinstance(self.messenger.transports.built(name), SyncTransport)
        return Dsn.parse(config.dsn).scheme == "sync"

    def _serializer_for(self, name: str, serialize: bool) -> Any:
        config = self.messenger.config.transports.get(name)
        serializer = self.messenger.serializer(config.serializer if config else None)
        if not serialize:
            return serializer  # unused: envelopes are stored as they are
        # As the real transport would encode (a plugin may wrap it: encryption, say).
        return self.messenger.hooks.transport_serializer(self.messenger, name, serializer)
