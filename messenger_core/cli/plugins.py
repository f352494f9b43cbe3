"""``messenger plugins``: the installed entry points, and whether each one loads."""

from __future__ import annotations

import argparse
from importlib import metadata

from messenger_core.cli.command import CommandContext, Commands
from messenger_core.cli.output import one_line, table
from messenger_core.plugins import (
    CORE_DISTRIBUTION,
    DISABLE_AUTOLOAD_VARIABLE,
    DISABLED_PLUGINS_VARIABLE,
    GROUPS,
    EntryPointInfo,
    autoload_enabled,
    disabled_plugins,
    discover_entry_points,
)

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``plugins``."""
    commands.add(
        "plugins",
        run,
        help="list the installed plugins (entry points) and check that they load",
        description="List every entry point of the messenger.* groups: its group, name, "
        "distribution and version, and whether importing it works (each one is imported to "
        "find out). Exit code 1 if one fails to load.",
    )


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Try to load every entry point; print a table, then the errors in full."""
    infos = sorted(discover_entry_points(), key=lambda i: (GROUPS.index(i.group), i.name))
    if not infos:
        context.echo(f"No entry points found in the groups {', '.join(GROUPS)}.")
        return 0
    autoload = autoload_enabled()
    disabled = disabled_plugins()
    rows = []
    errors = []
    for info in infos:
        error = _load_error(info)
        status = "ok" if error is None else "FAILED"
        if error is not None:
            errors.append(f"{info.group} {info.name} ({info.value}): {error}")
        if info.name in disabled:
            status += f" (disabled by {DISABLED_PLUGINS_VARIABLE})"
        elif not autoload and not _is_core(info):
            status += f" (not used: {DISABLE_AUTOLOAD_VARIABLE} is set)"
        rows.append([info.group, info.name, info.distribution or "-", info.version or "-", status])
    context.echo(table(["Group", "Name", "Distribution", "Version", "Status"], rows))
    if errors:
        context.echo("")
        context.echo("Load errors:")
        for error in errors:
            context.echo(f"  {error}")
    return 1 if errors else 0


def _load_error(info: EntryPointInfo) -> str | None:
    try:
        metadata.EntryPoint(name=info.name, value=info.value, group=info.group).load()
    except Exception as error:
        return one_line(f"{type(error).__name__}: {error}")
    return None


def _is_core(info: EntryPointInfo) -> bool:
    name = (info.distribution or "").replace("_", "-").lower()
    return name == CORE_DISTRIBUTION
