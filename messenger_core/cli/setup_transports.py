"""``messenger setup-transports``: create what the transports need (tables, streams...)."""

from __future__ import annotations

import argparse
import logging

from messenger_core.app import Messenger
from messenger_core.cli.command import CommandContext, Commands
from messenger_core.dsn import mask_dsn
from messenger_core.transport import SetupableTransport

__all__ = ["register"]

logger = logging.getLogger("messenger.cli")


def register(commands: Commands) -> None:
    """Add ``setup-transports``."""
    commands.add(
        "setup-transports",
        run,
        help="create the transports' storage (tables, streams, exchanges...)",
        configure=configure,
        description="Call setup() on every transport that supports it (or on the named one): "
        "it creates what the transport needs if it does not exist yet, and is safe to run "
        "again. Exit code 1 if a setup failed.",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``setup-transports``."""
    parser.add_argument("name", nargs="?", metavar="NAME", help="set up only this transport")


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Set the transports up, one by one, and say how each went."""
    messenger = context.messenger
    names = [args.name] if args.name else messenger.transport_names
    if not names:
        context.info("No transports are configured.")
        return 0
    failed = 0
    for name in names:
        transport = messenger.get_transport(name)  # an unknown name: ConfigurationError
        where = _dsn(messenger, name)
        if not isinstance(transport, SetupableTransport):
            context.info(f"Skipped {name}{where}: it has nothing to set up.")
            continue
        try:
            transport.setup()
        except Exception as error:
            if context.verbose:
                logger.exception("setting up %s failed", name)
            context.echo(
                mask_dsn(f"Failed to set up {name}{where}: {type(error).__name__}: {error}")
            )
            failed += 1
            continue
        context.info(f"Set up {name}{where}.")
    return 1 if failed else 0


def _dsn(messenger: Messenger, name: str) -> str:
    config = messenger.config.transports.get(name)
    return f" ({mask_dsn(config.dsn)})" if config is not None else ""
