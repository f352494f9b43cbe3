"""``messenger stats``: how many messages wait in each transport, and how many are parked.

A failure transport holds messages that failed for good (parked), not messages waiting to be
handled: the two are told apart, as the worker's stop line tells retried from parked ones.
"""

from __future__ import annotations

import argparse
import json

from messenger_core.app import Messenger
from messenger_core.cli.command import CommandContext, Commands
from messenger_core.cli.output import table
from messenger_core.transport import MessageCountAware

__all__ = ["failure_transports", "register"]


def register(commands: Commands) -> None:
    """Add ``stats``."""
    commands.add(
        "stats",
        run,
        help="count the messages waiting in transports",
        configure=configure,
        description="Count the messages waiting in each transport (every transport unless "
        "some are named); in a failure transport they are parked: they failed for good and "
        "wait for `messenger failed retry`. Transports that cannot count are listed as such. "
        '--format json prints {"transports": {NAME: {"count": N}}, "uncountable_transports": '
        '[NAME...]}, with "failure_transport": true in the entry of a failure transport.',
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``stats``."""
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these transports")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="output format (default text)"
    )


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Count, then print a table or JSON."""
    messenger = context.messenger
    names = list(dict.fromkeys(args.names)) or messenger.transport_names
    failure = failure_transports(messenger)
    counts: dict[str, dict[str, int | bool]] = {}
    uncountable: list[str] = []
    for name in names:
        transport = messenger.get_transport(name)  # an unknown name: ConfigurationError
        if isinstance(transport, MessageCountAware):
            counts[name] = {"count": transport.message_count()}
            if name in failure:
                counts[name]["failure_transport"] = True
        else:
            uncountable.append(name)
    if args.format == "json":
        context.echo(
            json.dumps({"transports": counts, "uncountable_transports": uncountable}, indent=2)
        )
        return 0
    if counts:
        rows = [
            [name, str(c["count"]), "parked (failure transport)" if name in failure else "waiting"]
            for name, c in counts.items()
        ]
        context.echo(table(["Transport", "Count", "Messages"], rows))
    if uncountable:
        context.echo(f"Cannot count the messages of: {', '.join(uncountable)}.")
    if not names:
        context.echo("No transports are configured.")
    return 0


def failure_transports(messenger: Messenger) -> set[str]:
    """The names of the failure transports: the global one and those of each transport."""
    config = messenger.config
    names = {t.failure_transport for t in config.transports.values() if t.failure_transport}
    if config.failure_transport:
        names.add(config.failure_transport)
    return names
