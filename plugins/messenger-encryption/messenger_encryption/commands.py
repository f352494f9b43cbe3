"""``messenger encryption generate-key|rotate``."""

from __future__ import annotations

import argparse

from messenger_core.cli.command import CommandContext, CommandError, Commands, UsageError
from messenger_encryption.keys import (
    encode_key,
    is_key_id,
    new_key_id,
    new_keypair,
    new_symmetric_key,
)
from messenger_encryption.plugin import active_plugin
from messenger_encryption.rotation import RotationReport, rotate_transport
from messenger_encryption.settings import DEFAULT_KEYS_ENV, DEFAULT_PUBLIC_KEYS_ENV

__all__ = ["register"]

DESCRIPTION = """\
Keys of the bus for sensitive data (messenger-encryption). generate-key prints a new key;
rotate re-encrypts with the newest key the messages a transport holds, where the transport
can list them."""


def register(commands: Commands) -> None:
    """Add the ``encryption`` group."""
    commands.add(
        "encryption",
        run,
        help="make encryption keys, re-encrypt stored messages with the newest key",
        configure=configure,
        description=DESCRIPTION,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """The sub-commands of ``encryption``."""
    sub = parser.add_subparsers(dest="encryption_command", metavar="SUBCOMMAND", required=True)
    generate = sub.add_parser(
        "generate-key",
        help="print a new key (id:base64)",
        description="Print a new key as id:base64. Put it first in MESSENGER_ENCRYPTION_KEYS "
        "(comma-separated, newest first) and keep the old ones after it until `rotate` ran. "
        "With --public-key, print an X25519 key pair: the private half for workers, the "
        "public half for producers.",
    )
    generate.add_argument("--public-key", action="store_true", help="an X25519 key pair")
    generate.add_argument("--id", metavar="ID", help="the key id (default: k + UTC time)")
    generate.set_defaults(encryption_run=generate_command)
    rotate = sub.add_parser(
        "rotate",
        help="re-encrypt stored messages with the newest key",
        description="Re-encrypt with the newest key every message of the given transports "
        "(default: all) that is encrypted with an older one: each is sent again, then the "
        "old copy removed. Transports that cannot list their messages are named and left "
        "alone: keep the old key until they are drained.",
    )
    rotate.add_argument("transports", nargs="*", metavar="TRANSPORT")
    rotate.set_defaults(encryption_run=rotate_command)


def run(context: CommandContext, args: argparse.Namespace) -> int | None:
    """Run the chosen sub-command."""
    result: int = args.encryption_run(context, args)
    return result


def generate_command(context: CommandContext, args: argparse.Namespace) -> int:
    """Print a new key; the explanation only without ``-q``."""
    key_id = args.id or new_key_id()
    if not is_key_id(key_id):
        raise UsageError(
            f"{key_id!r} cannot be a key id: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    if not args.public_key:
        context.info(f"# a new key: put it first in {DEFAULT_KEYS_ENV} (newest first)")
        context.echo(f"{key_id}:{encode_key(new_symmetric_key())}")
        return 0
    private, public = new_keypair()
    context.info(f"# workers (decrypt): put it first in {DEFAULT_KEYS_ENV}")
    context.echo(f"{key_id}:{encode_key(private)}")
    context.info(f"# producers (encrypt only): put it first in {DEFAULT_PUBLIC_KEYS_ENV}")
    context.echo(f"{key_id}:{encode_key(public)}")
    context.info('# and mode = "public-key" under [messenger.plugins.encryption] on both sides')
    return 0


def rotate_command(context: CommandContext, args: argparse.Namespace) -> int:
    """Re-encrypt what the transports hold; one line per transport."""
    messenger = context.messenger
    plugin = active_plugin(messenger)
    if plugin is None:
        raise CommandError(
            "the encryption plugin is not configured for this application: add a "
            "[messenger.plugins.encryption] table"
        )
    key_id = plugin.keyring_for(messenger).encrypting_key_id
    if key_id is None:
        raise CommandError("this process's key ring cannot encrypt")
    names = args.transports or messenger.transport_names
    unknown = [name for name in names if name not in messenger.transport_names]
    if unknown:
        raise UsageError(
            f"no transport named {', '.join(map(repr, unknown))} "
            f"(configured: {', '.join(messenger.transport_names) or 'none'})"
        )
    for name in names:
        context.echo(_describe(rotate_transport(messenger, name, key_id), key_id))
    return 0


def _describe(report: RotationReport, key_id: str) -> str:
    if not report.listable:
        return (
            f"{report.transport_name}: cannot list its messages, so nothing was re-encrypted; "
            "keep the old keys until it is drained"
        )
    text = (
        f"{report.transport_name}: {report.rotated} re-encrypted with key {key_id!r}, "
        f"{report.current} already on it, {report.plaintext} not encrypted"
    )
    if report.unreadable:
        text += f", {report.unreadable} unreadable here (left as they are)"
    return text
