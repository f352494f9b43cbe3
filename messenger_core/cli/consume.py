"""``messenger consume``: run a worker on some transports until a limit or a stop signal."""

from __future__ import annotations

import argparse
import collections
import logging
import os
import time

from messenger_core.app import Messenger
from messenger_core.cli.command import (
    CommandContext,
    Commands,
    UsageError,
    memory_size,
    non_negative_float,
    positive_float,
    positive_int,
)
from messenger_core.cli.output import LogHandler, StatusLine, is_terminal, peak_memory
from messenger_core.cli.stop_workers import stop_signal_of
from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.hookspecs import hookimpl
from messenger_core.logging_json import JsonFormatter, message_fields
from messenger_core.logging_json import install as install_log_context
from messenger_core.supervisor import WORKER_PROCESS_VARIABLE, Supervisor
from messenger_core.transport import Receiver
from messenger_core.transports.sync import SyncTransport
from messenger_core.worker import Worker, describe_message

__all__ = ["consumable_transports", "register"]

logger = logging.getLogger("messenger.cli")

DESCRIPTION = """\
Consume messages from the named transports (the first has the highest priority: after every
message the worker starts again from it) and handle them, until a limit is reached, SIGTERM or
SIGINT (Ctrl-C) arrives, or `messenger stop-workers` is run. The current message is always
finished and acknowledged first; a second signal stops at once without acknowledging it (it
comes back later). Exit code 0 on such a stop.

A start-up log line names the transports, the bus(es) with their number of handlers and the
limits. On a terminal a live line shows the messages handled, retried (failed, sent again
later), parked (failed for good, stored in the failure transport) and rejected (failed for
good, no failure transport), the rate and the memory used; -v adds one log line per message,
with its type, id and transport. Otherwise log lines go to stderr. The stop line gives the same
counts.

--concurrency M handles up to M messages at once in the process: synchronous handlers on M
threads, async handlers as tasks on one event loop; every message is still settled by the
worker's thread, and a stop finishes all of those in flight. --processes N runs N such worker
processes under a supervisor that starts a dead one again (with a growing pause), passes
SIGTERM/SIGINT on and waits for them; limits and stop-workers apply to each process.
--handler-timeout S fails a message whose handling takes longer (an async handler is
cancelled; a synchronous one fails when it returns); it is retried like any failure."""


def register(commands: Commands) -> None:
    """Add ``consume``."""
    commands.add(
        "consume",
        run,
        help="consume messages from transports",
        configure=configure,
        description=DESCRIPTION,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``consume``."""
    parser.add_argument(
        "receivers",
        nargs="*",
        metavar="RECEIVER",
        help="transports to consume, highest priority first",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="consume every transport except failure transports and sync:// ones",
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="stop after N messages were received"
    )
    parser.add_argument(
        "--failure-limit", type=positive_int, metavar="N", help="stop after N messages failed"
    )
    parser.add_argument(
        "--memory-limit",
        type=memory_size,
        metavar="SIZE",
        help="stop once the process has used this much memory (128M, 1G...)",
    )
    parser.add_argument(
        "--time-limit", type=positive_float, metavar="S", help="stop after S seconds"
    )
    parser.add_argument(
        "--sleep",
        type=non_negative_float,
        default=1.0,
        metavar="S",
        help="seconds to wait when no transport has a message (default: 1)",
    )
    parser.add_argument(
        "--bus", metavar="NAME", help="dispatch every message on this bus (foreign producers)"
    )
    parser.add_argument(
        "--queues",
        action="append",
        metavar="Q",
        help="consume only these queues (repeat it, or separate names with commas)",
    )
    parser.add_argument(
        "--keepalive",
        type=positive_float,
        nargs="?",
        const=5.0,
        metavar="S",
        help="while a handler runs, renew the message's reservation every S seconds "
        "(default 5) on transports that support it",
    )
    parser.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="N",
        help="run N worker processes under a supervisor (default: 1, no supervisor)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=1,
        metavar="M",
        help="handle up to M messages at once in each process (default: 1)",
    )
    parser.add_argument(
        "--handler-timeout",
        type=positive_float,
        metavar="S",
        help="fail (and retry) a message whose handling takes longer than S seconds",
    )


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Consume until the worker stops; 0 on a graceful stop, 130 if interrupted."""
    if args.processes > 1:
        if context.loader.loaded is not None:
            # Given an application already built (a framework's command): the children could
            # not build it from the messenger command line.
            raise UsageError(
                "--processes needs the `messenger` command (its children load the application "
                "themselves); run several processes of this command instead"
            )
        # A supervisor never loads the application: its children do.
        return Supervisor(context.argv, args.processes).run()
    messenger = context.messenger
    names = _receivers(messenger, args)
    queues = [q.strip() for each in args.queues or [] for q in each.split(",") if q.strip()]
    worker = messenger.worker(
        names,
        bus=args.bus,
        queues=queues or None,
        stop_signal=stop_signal_of(messenger),
        keepalive_interval=args.keepalive,
        concurrency=args.concurrency,
        handler_timeout=args.handler_timeout,
    )
    handlers = [h for h in logging.getLogger("messenger").handlers if isinstance(h, LogHandler)]
    structured = any(isinstance(h.formatter, JsonFormatter) for h in handlers)
    if structured:  # --log-format json: lines while handling name the message
        install_log_context(messenger)
    # A supervised child shares its terminal with the others: live lines would overwrite
    # each other, so it logs lines only.
    supervised = WORKER_PROCESS_VARIABLE in os.environ
    terminal = is_terminal(context.stderr) and not context.quiet and not structured
    terminal = terminal and not supervised
    status = StatusLine(context.stderr) if terminal else None
    reporter = _Reporter(worker, status, per_message=context.verbose)
    watching = status is not None or reporter.per_message
    if watching:  # otherwise the worker runs with no extra call per message
        messenger.hooks.register(reporter)
    for handler in handlers:
        handler.status = status
    if status is not None:
        worker.on_message = reporter.on_message
    try:
        # Signals are handled when running in the main thread (always, from the shell).
        stats = worker.run(
            limit=args.limit,
            failure_limit=args.failure_limit,
            memory_limit=args.memory_limit,
            time_limit=args.time_limit,
            sleep=args.sleep,
        )
    finally:
        worker.on_message = None
        if watching:
            messenger.hooks.unregister(reporter)
        for handler in handlers:
            handler.status = None
        if status is not None:
            reporter.refresh(force=True)
            status.finish()
    return 130 if stats.stop_reason == "interrupted" else 0


def consumable_transports(messenger: Messenger) -> list[str]:
    """What ``--all`` consumes: every transport but failure transports and sync:// ones."""
    config = messenger.config
    failure = {config.failure_transport} | {
        t.failure_transport for t in config.transports.values() if t.failure_transport
    }
    return [
        name
        for name in messenger.transport_names
        if name not in failure and not _is_sync(messenger, name)
    ]


def _receivers(messenger: Messenger, args: argparse.Namespace) -> list[str]:
    if args.all and args.receivers:
        raise UsageError("name the transports to consume or give --all, not both")
    if args.all:
        names = consumable_transports(messenger)
        if not names:
            raise UsageError(
                "--all found nothing to consume: every transport is a failure transport or "
                f"sync:// (transports: {', '.join(messenger.transport_names) or 'none'})"
            )
        return names
    if not args.receivers:
        listed = ", ".join(messenger.transport_names) or "none are configured"
        raise UsageError(f"name the transports to consume, or give --all (transports: {listed})")
    names = list(dict.fromkeys(args.receivers))
    for name in names:
        transport = messenger.get_transport(name)  # an unknown name: ConfigurationError
        if _is_sync(messenger, name):
            raise UsageError(
                f"transport {name!r} is sync://: its messages are handled when they are sent, "
                "there is nothing to consume"
            )
        if not isinstance(transport, Receiver):
            raise UsageError(f"transport {name!r} can only send: it cannot be consumed")
    return names


def _is_sync(messenger: Messenger, name: str) -> bool:
    config = messenger.config.transports.get(name)
    if config is not None:
        return Dsn.parse(config.dsn).scheme == "sync"
    return isinstance(messenger.get_transport(name), SyncTransport)


class _Reporter:
    """Worker hooks for the live line and, with ``-v``, a log line per message."""

    WINDOW = 5.0
    """Seconds over which the rate is measured."""

    def __init__(self, worker: Worker, status: StatusLine | None, *, per_message: bool) -> None:
        self.worker = worker
        self.status = status
        self.per_message = per_message
        self._started = 0.0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    @hookimpl
    def messenger_message_received(self, envelope: Envelope, transport_name: str) -> None:
        self._started = time.perf_counter()

    @hookimpl
    def messenger_message_handled(self, envelope: Envelope, transport_name: str) -> None:
        if self.per_message:
            took = (time.perf_counter() - self._started) * 1000
            logger.info(
                "handled %s from %s in %.1f ms",
                describe_message(envelope),
                transport_name,
                took,
                extra=message_fields(envelope, transport_name),
            )

    @hookimpl
    def messenger_worker_idle(self, worker: Worker) -> None:
        self.refresh()

    def on_message(self, worker: Worker) -> None:
        """After every message (``Worker.on_message``)."""
        self.refresh()

    def refresh(self, *, force: bool = False) -> None:
        """Update the live line (it limits itself to a few redraws a second)."""
        status = self.status
        if status is None or not (force or status.due()):
            return  # cheap: this runs after every message
        stats = self.worker.stats
        now = time.monotonic()
        samples = self._samples
        samples.append((now, stats.received))
        while len(samples) > 2 and now - samples[0][0] > self.WINDOW:
            samples.popleft()
        first_time, first_count = samples[0]
        if now - first_time > 0.5:
            rate = (stats.received - first_count) / (now - first_time)
        else:
            rate = stats.received / max(stats.elapsed, 1e-3)
        names = ", ".join(self.worker.transport_names)
        status.update(
            f"{names}: {stats.summary()}, {rate:.1f} msg/s, memory {peak_memory() / 2**20:.0f} MiB",
            force=True,
        )
