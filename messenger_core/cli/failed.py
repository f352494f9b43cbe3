"""``messenger failed show|retry|remove``: the messages parked in a failure transport."""

from __future__ import annotations

import argparse
import collections
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from messenger_core.app import Messenger
from messenger_core.cli.command import (
    CommandContext,
    CommandError,
    Commands,
    UsageError,
    positive_int,
)
from messenger_core.cli.output import format_time, is_terminal, one_line, table, terminal_width
from messenger_core.cli.output import truncate as cut
from messenger_core.cli.stop_workers import stop_signal_of
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError
from messenger_core.hookspecs import hookimpl
from messenger_core.message_types import type_name_of
from messenger_core.stamps import (
    ErrorDetailsStamp,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    Stamp,
    TransportMessageIdStamp,
)
from messenger_core.transport import (
    ListableReceiver,
    MessageCountAware,
    Receiver,
    UndecodableMessage,
)

__all__ = ["FailedMessage", "failure_transport", "register"]

DEFAULT_MAX = 50
"""Messages ``failed show`` lists unless ``--max`` says otherwise."""
ERROR_WIDTH = 100
"""Characters of the error shown in the table when not on a terminal."""

DESCRIPTION = """\
Messages that failed for good are parked in a failure transport (the global `failure_transport`
unless a transport names its own), with their error history. List them, look at one, retry them
once the cause is fixed (they are handled as if received from their original transport), or
remove them. --transport picks another failure transport than the global one."""


def register(commands: Commands) -> None:
    """Add the ``failed`` group."""
    commands.add(
        "failed",
        run,
        help="show, retry or remove messages in a failure transport",
        configure=configure,
        description=DESCRIPTION,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """The sub-commands of ``failed``."""
    sub = parser.add_subparsers(dest="failed_command", metavar="SUBCOMMAND", required=True)
    show = sub.add_parser(
        "show",
        help="list failed messages, or show one in detail",
        description="List the messages in the failure transport (id, type, when it failed, "
        "the error), count them by type (--stats), or show one in detail with its stamps, "
        "error history and last traceback.",
    )
    show.add_argument("id", nargs="?", metavar="ID", help="show this message in detail")
    show.add_argument(
        "--max", type=positive_int, metavar="N", help=f"list at most N (default {DEFAULT_MAX})"
    )
    show.add_argument("--stats", action="store_true", help="count the messages by type")
    _transport_option(show)
    show.set_defaults(failed_run=show_command)

    retry = sub.add_parser(
        "retry",
        help="handle failed messages again",
        description="Handle each selected message again, as if received from its original "
        "transport. A handled message is removed; one that fails again goes through the "
        "failure logic once more (back to the failure transport). Each message is shown and "
        "confirmed first unless --force is given. Exit code 1 if a message was not found or "
        "failed again.",
    )
    _selection_options(retry, "the messages to retry")
    retry.set_defaults(failed_run=retry_command)

    remove = sub.add_parser(
        "remove",
        help="delete failed messages",
        description="Delete the selected messages from the failure transport for good "
        "(asking first unless --force is given).",
    )
    _selection_options(remove, "the messages to remove")
    remove.set_defaults(failed_run=remove_command)


def _selection_options(parser: argparse.ArgumentParser, ids_help: str) -> None:
    """The options of the commands that act on chosen messages: ids, --all, --force."""
    parser.add_argument("ids", nargs="*", metavar="ID", help=ids_help)
    parser.add_argument("--all", action="store_true", help="every message in the transport")
    parser.add_argument("--force", action="store_true", help="do not ask for confirmation")
    _transport_option(parser)


def _transport_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transport",
        metavar="T",
        help="the failure transport to work on (default: the global failure transport)",
    )


def run(context: CommandContext, args: argparse.Namespace) -> int | None:
    """Run the chosen sub-command."""
    command: Callable[[CommandContext, argparse.Namespace], int] = args.failed_run
    return command(context, args)


# -- the failure transport ----------------------------------------------------------------------
@runtime_checkable
class FailureReceiver(Receiver, ListableReceiver, Protocol):
    """A receiver whose messages can be listed: what these commands need."""


def failure_transport(messenger: Messenger, name: str | None) -> tuple[str, FailureReceiver]:
    """The failure transport called ``name`` (default: the global one), checked for listing."""
    config = messenger.config
    if name is None:
        name = config.failure_transport
        if name is None:
            own = sorted(
                {t.failure_transport for t in config.transports.values() if t.failure_transport}
            )
            if own:
                raise ConfigurationError(
                    "no global failure transport is configured; pick one with --transport "
                    f"(failure transports of transports: {', '.join(own)})"
                )
            raise ConfigurationError(
                "no failure transport is configured: set failure_transport in [messenger] "
                "(or pass --transport)"
            )
    transport = messenger.get_transport(name)
    if not isinstance(transport, FailureReceiver):
        raise ConfigurationError(
            f"transport {name!r} cannot list its messages, so the failed commands cannot read "
            "it; use a transport that supports listing as a failure transport"
        )
    return name, transport


# -- what a failed message says about itself ----------------------------------------------------
@attrs.frozen
class ErrorInfo:
    """One entry of a message's error history."""

    exception_class: str
    message: str
    failed_at: datetime | None = None
    traceback: str | None = None

    @property
    def short(self) -> str:
        """``ExceptionClass: message`` without the module, on one line."""
        return one_line(f"{self.exception_class.rsplit('.', 1)[-1]}: {self.message}")


@attrs.frozen
class FailedMessage:
    """A message of a failure transport, as the failed commands show it."""

    id: str
    envelope: Envelope
    type_name: str
    """The class's qualified name, or the raw ``type`` header of an undecodable message."""
    full_type: str
    errors: tuple[ErrorInfo, ...]
    """Oldest first."""
    failed_at: datetime | None
    original_transport: str | None
    retries: int

    @property
    def undecodable(self) -> bool:
        """The failure transport could not decode the message."""
        return isinstance(self.envelope.message, UndecodableMessage)

    @property
    def error(self) -> str:
        """The last error on one line, ``-`` if there is none."""
        return self.errors[-1].short if self.errors else "-"

    @classmethod
    def of(cls, messenger: Messenger, envelope: Envelope) -> FailedMessage:
        """Describe ``envelope`` (as listed or found in a failure transport).

        An undecodable message is described by its stamps too: its serializer read them when
        it was received (``decode_or_quarantine`` asks a ``StampDecodingSerializer``), so they
        are on the envelope like any other message's.
        """
        id_stamp = envelope.last(TransportMessageIdStamp)
        message = envelope.message
        errors = [
            ErrorInfo(s.exception_class, s.message, s.failed_at, s.traceback)
            for s in envelope.all(ErrorDetailsStamp)
        ]
        redeliveries = [(s.retry_count, s.redelivered_at) for s in envelope.all(RedeliveryStamp)]
        sent = envelope.last(SentToFailureTransportStamp)
        original = sent.original_receiver_name if sent else None
        if isinstance(message, UndecodableMessage):
            errors = errors or [ErrorInfo("MessageDecodingError", message.reason)]
            type_name = message.headers.get("type", "(no type header)")
            full_type = type_name
        else:
            type_name = type(message).__qualname__
            full_type = type_name_of(type(message))
        failed_at = errors[-1].failed_at if errors else None
        if failed_at is None and redeliveries:
            failed_at = redeliveries[-1][1]
        return cls(
            id=id_stamp.id if id_stamp else "?",
            envelope=envelope,
            type_name=type_name,
            full_type=full_type,
            errors=tuple(errors),
            failed_at=failed_at,
            original_transport=original,
            # The highest count: parking may add a RedeliveryStamp of 0 (Symfony's failure
            # listener does) after the retries it counted.
            retries=max((count for count, _ in redeliveries), default=0),
        )


# -- show ---------------------------------------------------------------------------------------
def show_command(context: CommandContext, args: argparse.Namespace) -> int:
    """``failed show``."""
    if args.id is not None and args.stats:
        raise UsageError("give a message id or --stats, not both")
    messenger = context.messenger
    name, transport = failure_transport(messenger, args.transport)
    if args.id is not None:
        envelope = transport.find(args.id)
        if envelope is None:
            raise CommandError(f"no message with id {args.id!r} in failure transport {name!r}")
        show_detail(context, FailedMessage.of(messenger, envelope), name)
        return 0
    if args.stats:
        _show_stats(context, messenger, name, transport, args.max)
        return 0
    _show_list(context, messenger, name, transport, args.max or DEFAULT_MAX)
    return 0


def _show_list(
    context: CommandContext,
    messenger: Messenger,
    name: str,
    transport: FailureReceiver,
    limit: int,
) -> None:
    envelopes = list(transport.all(limit + 1))
    more = len(envelopes) > limit
    failures = [FailedMessage.of(messenger, e) for e in envelopes[:limit]]
    total = transport.message_count() if isinstance(transport, MessageCountAware) else None
    if not failures:
        context.echo(f"No messages in failure transport {name!r}.")
        return
    terminal = is_terminal(context.stdout)
    rows = [
        [
            f.id,
            f.type_name,
            format_time(f.failed_at),
            f.error if terminal else cut(f.error, ERROR_WIDTH),
        ]
        for f in failures
    ]
    count = total if total is not None else len(failures)
    plural = "" if count == 1 else "s"
    context.info(
        f"{count}{'+' if total is None and more else ''} message{plural} in "
        f"failure transport {name!r}:"
    )
    context.echo(
        table(
            ["Id", "Message type", "Failed at", "Error"],
            rows,
            max_width=terminal_width(context.stdout) if terminal else None,
        )
    )
    if more:
        context.info(f"Showing the first {limit}: --max N shows more.")
    context.info(
        "`messenger failed show ID` shows one in detail; `messenger failed retry ID` retries it."
    )


def _show_stats(
    context: CommandContext,
    messenger: Messenger,
    name: str,
    transport: FailureReceiver,
    limit: int | None,
) -> None:
    counts = collections.Counter(
        FailedMessage.of(messenger, e).type_name for e in transport.all(limit)
    )
    if not counts:
        context.echo(f"No messages in failure transport {name!r}.")
        return
    rows = [[kind, str(n)] for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    context.echo(table(["Message type", "Count"], rows))
    total = sum(counts.values())
    context.info(f"{total} message{'' if total == 1 else 's'} in failure transport {name!r}.")


def show_detail(
    context: CommandContext, failure: FailedMessage, name: str, *, traceback: bool = True
) -> None:
    """One message in detail: what it is, its stamps, its error history, its last traceback."""
    echo = context.echo
    full = context.verbose
    message = failure.envelope.message
    echo(f"Message {failure.id} in failure transport {name!r}")
    echo("")
    facts = [("Type", failure.full_type)]
    if isinstance(message, UndecodableMessage):
        facts[0] = ("Type", f"{failure.full_type} (could not be decoded)")
        facts.append(("Reason", message.reason))
    facts += [
        ("Original transport", failure.original_transport or "-"),
        ("Failed at", format_time(failure.failed_at)),
        ("Retries", str(failure.retries)),
        ("Error", failure.errors[-1].short if failure.errors else "-"),
    ]
    width = max(len(label) for label, _ in facts)
    for label, value in facts:
        echo(f"  {label.ljust(width)}  {value}")
    if isinstance(message, UndecodableMessage):
        echo("")
        echo("Headers")
        for key, value in message.headers.items():
            echo(f"  {key}: {value if full else cut(value, 120)}")
        body = message.body.decode("utf-8", errors="replace")
        echo("")
        echo(f"Body ({len(message.body)} bytes)")
        echo("  " + (body if full else cut(body, 1000)))
    else:
        echo("")
        echo("Message")
        fields = _fields(message)
        if fields is None:
            echo("  " + _value(message, full))
        for field, field_value in fields or []:
            echo(f"  {field} = {_value(field_value, full)}")
    stamps = failure.envelope.stamps
    if stamps:
        echo("")
        echo("Stamps")
        for stamp in stamps:
            echo("  " + _stamp(stamp, full))
    if failure.errors:
        echo("")
        echo("Error history (oldest first)")
        for error in failure.errors:
            when = format_time(error.failed_at)
            echo(f"  {when}  {error.exception_class}: {one_line(error.message)}")
    if traceback:
        last = failure.errors[-1].traceback if failure.errors else None
        echo("")
        if last:
            echo("Traceback of the last error")
            for line in last.rstrip().splitlines():
                echo("  " + line)
        else:
            echo("No traceback was recorded.")


def _fields(message: object) -> list[tuple[str, object]] | None:
    cls: Any = type(message)
    if attrs.has(cls):
        return [(f.name, getattr(message, f.name)) for f in attrs.fields(cls)]
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        return [(f.name, getattr(message, f.name)) for f in dataclasses.fields(message)]
    return None


def _value(value: object, full: bool) -> str:
    text = repr(value)
    return text if full else cut(text, 200)


def _stamp(stamp: Stamp, full: bool) -> str:
    if not attrs.has(type(stamp)):
        return repr(stamp)
    parts = []
    for field in attrs.fields(type(stamp)):
        value = getattr(stamp, field.name)
        if isinstance(value, datetime):
            text = value.isoformat()
        elif isinstance(value, str) and "\n" in value.strip():
            text = f"<{len(value.strip().splitlines())} lines>"
        elif isinstance(value, Mapping):
            text = "{" + ", ".join(repr(k) for k in value) + "}"
        else:
            text = repr(value)
            if not full:
                text = cut(text, 80)
        parts.append(f"{field.name}={text}")
    return f"{type(stamp).__name__}({', '.join(parts)})"


# -- retry and remove ---------------------------------------------------------------------------
def _selection(
    context: CommandContext, args: argparse.Namespace, verb: str
) -> tuple[Messenger, str, FailureReceiver, list[tuple[str, Envelope | None]]]:
    if args.all and args.ids:
        raise UsageError("give message ids or --all, not both")
    if not args.all and not args.ids:
        raise UsageError(f"name the messages to {verb} (ids from `messenger failed show`) or --all")
    if not args.force and not context.interactive:
        raise UsageError(
            f"standard input is not a terminal, so nobody can confirm: add --force to {verb} "
            "without asking"
        )
    messenger = context.messenger
    name, transport = failure_transport(messenger, args.transport)
    if args.all:
        chosen: list[tuple[str, Envelope | None]] = []
        for envelope in transport.all():
            stamp = envelope.last(TransportMessageIdStamp)
            chosen.append((stamp.id if stamp else "?", envelope))
    else:
        chosen = [(id, transport.find(id)) for id in dict.fromkeys(args.ids)]
    return messenger, name, transport, chosen


_ANSWERS = {"y": "yes", "n": "no", "q": "quit"}


def retry_command(context: CommandContext, args: argparse.Namespace) -> int:
    """``failed retry``: handle the messages again through a worker's logic."""
    messenger, name, transport, chosen = _selection(context, args, "retry")
    if not chosen:
        context.info(f"No messages in failure transport {name!r}.")
        return 0
    worker = messenger.worker([name], stop_signal=stop_signal_of(messenger))
    outcome = _Outcome()
    messenger.hooks.register(outcome)
    problems = 0
    try:
        for id, envelope in chosen:
            if envelope is None:
                context.echo(f"Message {id}: not found in failure transport {name!r}.")
                problems += 1
                continue
            failure = FailedMessage.of(messenger, envelope)
            if args.force:
                context.info(f"Retrying message {id} ({failure.type_name}: {failure.error}).")
            else:
                show_detail(context, failure, name, traceback=context.verbose)
                answer = context.ask(f"Retry message {id}?", _ANSWERS)
                if answer == "q":
                    break
                if answer == "n":
                    context.info(f"Message {id}: skipped.")
                    continue
            outcome.reset()
            worker.handle(envelope, name, transport)
            if outcome.handled:
                context.info(f"Message {id} ({failure.type_name}): handled, removed from {name!r}.")
                continue
            problems += 1
            where = _where(worker.failure_transport_for(name), name, transport, id, outcome)
            context.echo(
                f"Message {id} ({failure.type_name}): failed again ({outcome.error}); {where}."
            )
    finally:
        messenger.hooks.unregister(outcome)
    return 1 if problems else 0


def _where(
    target: str | None, name: str, transport: FailureReceiver, id: str, outcome: _Outcome
) -> str:
    if transport.find(id) is not None:
        return f"it stays in {name!r} (it could not be stored again: see the log)"
    if outcome.will_retry:
        return f"put back in {name!r} with a retry delay"
    if target is None:
        return "no failure transport is configured for it, so it was dropped"
    return f"stored in failure transport {target!r}"


class _Outcome:
    """Worker hooks that tell how one retried message ended."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.handled = False
        self.error = ""
        self.will_retry = False

    @hookimpl
    def messenger_message_handled(self, envelope: Envelope, transport_name: str) -> None:
        self.handled = True

    @hookimpl
    def messenger_message_failed(
        self, envelope: Envelope, transport_name: str, error: BaseException, will_retry: bool
    ) -> None:
        self.error = one_line(f"{type(error).__name__}: {error}")
        self.will_retry = will_retry


def remove_command(context: CommandContext, args: argparse.Namespace) -> int:
    """``failed remove``: reject the messages for good."""
    messenger, name, transport, chosen = _selection(context, args, "remove")
    if not chosen:
        context.info(f"No messages in failure transport {name!r}.")
        return 0
    ask_each = not args.force
    if args.all and ask_each:
        _list_briefly(context, messenger, [e for _, e in chosen if e is not None])
        plural = "" if len(chosen) == 1 else "s"
        if (
            context.ask(f"Remove these {len(chosen)} message{plural}?", {"y": "yes", "n": "no"})
            != "y"
        ):
            context.info("Nothing was removed.")
            return 0
        ask_each = False
    problems = 0
    for id, envelope in chosen:
        if envelope is None:
            context.echo(f"Message {id}: not found in failure transport {name!r}.")
            problems += 1
            continue
        failure = FailedMessage.of(messenger, envelope)
        if ask_each:
            show_detail(context, failure, name, traceback=context.verbose)
            answer = context.ask(f"Remove message {id}?", _ANSWERS)
            if answer == "q":
                break
            if answer == "n":
                context.info(f"Message {id}: kept.")
                continue
        transport.reject(envelope)
        context.info(f"Message {id} ({failure.type_name}): removed from {name!r}.")
    return 1 if problems else 0


def _list_briefly(
    context: CommandContext, messenger: Messenger, envelopes: Sequence[Envelope]
) -> None:
    failures = [FailedMessage.of(messenger, e) for e in envelopes]
    rows = [
        [f.id, f.type_name, format_time(f.failed_at), cut(f.error, ERROR_WIDTH)] for f in failures
    ]
    context.echo(table(["Id", "Message type", "Failed at", "Error"], rows))
