"""``messenger stats``: how many messages wait in each transport."""

from __future__ import annotations

import argparse
import json

from messenger_core.cli.command import CommandContext, Commands
from messenger_core.cli.output import table
from messenger_core.transport import MessageCountAware

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``stats``."""
    commands.add(
        "stats",
        run,
        help="count the messages waiting in transports",
        configure=configure,
        description="Count the messages waiting in each transport (every transport unless "
        "some are named). Transports that cannot count are listed as such. --format json "
        'prints {"transports": {NAME: {"count": N}}, "uncountable_transports": [NAME...]}.',
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
    counts: dict[str, dict[str, int]] = {}
    uncountable: list[str] = []
    for name in names:
        transport = messenger.get_transport(name)  # an unknown name: ConfigurationError
        if isinstance(transport, MessageCountAware):
            counts[name] = {"count": transport.message_count()}
        else:
            uncountable.append(name)
    if args.format == "json":
        context.echo(
            json.dumps({"transports": counts, "uncountable_transports": uncountable}, indent=2)
        )
        return 0
    if counts:
        context.echo(
            table(["Transport", "Count"], [[n, str(c["count"])] for n, c in counts.items()])
        )
    if uncountable:
        context.echo(f"Cannot count the messages of: {', '.join(uncountable)}.")
    if not names:
        context.echo("No transports are configured.")
    return 0
