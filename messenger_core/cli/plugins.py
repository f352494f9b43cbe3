"""``messenger plugins``: the installed entry points, checked like a doctor would.

Each entry point is imported to see whether it loads; two distributions claiming one name in
one group are flagged (loading that name is an error until one is picked), and so is a
distribution whose declared ``messenger-core`` requirement excludes the installed core.
"""

from __future__ import annotations

import argparse

from messenger_core._requirements import core_requirement_problem
from messenger_core.cli.command import CommandContext, Commands
from messenger_core.plugins import (
    CORE_DISTRIBUTION,
    DISABLE_AUTOLOAD_VARIABLE,
    DISABLED_PLUGINS_VARIABLE,
    GROUPS,
    EntryPointInfo,
    autoload_enabled,
    conflicts,
    disabled_plugins,
    discover_entry_points,
    is_disabled,
)

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``plugins``."""
    commands.add(
        "plugins",
        run,
        help="list the installed plugins (entry points) and check them",
        description="List every entry point of the messenger.* groups: its group, name, "
        "distribution and version, and whether it works: importing it (each one is imported "
        "to find out), no other distribution claiming the same name in the group, and the "
        f"distribution's {CORE_DISTRIBUTION} requirement accepting the installed core. "
        f"Pick one of two claimants with {DISABLED_PLUGINS_VARIABLE}=DISTRIBUTION:NAME. "
        "Exit code 1 if a problem is found.",
    )


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Check every entry point; print a table, then the problems in full."""
    from messenger_core.cli.output import one_line, table  # noqa: PLC0415  (only when run)

    infos = sorted(discover_entry_points(), key=lambda i: (GROUPS.index(i.group), i.name))
    if not infos:
        context.echo(f"No entry points found in the groups {', '.join(GROUPS)}.")
        return 0
    autoload = autoload_enabled()
    disabled = disabled_plugins()
    # Disabled claims do not compete: the variable is how a conflict is settled.
    clashes = conflicts(i for i in infos if not is_disabled(i, disabled))
    requirement_problems = {
        name: core_requirement_problem(name)
        for name in sorted({i.distribution for i in infos if i.distribution})
    }
    rows = []
    problems: list[str] = []
    for info in infos:
        status = []
        error = _load_error(info)
        if error is not None:
            status.append("FAILED")
            problems.append(f"{info.group} {info.name} ({info.value}): {one_line(error)}")
        others = [
            other.distribution or "?"
            for other in clashes.get((info.group, info.name), [])
            if other is not info
        ]
        if others and not is_disabled(info, disabled):
            status.append(f"CONFLICT with {', '.join(others)}")
        requirement = requirement_problems.get(info.distribution or "")
        if requirement is not None:
            status.append(f"needs another {CORE_DISTRIBUTION}")
        if not status:
            status.append("ok")
        if is_disabled(info, disabled):
            status.append(f"(disabled by {DISABLED_PLUGINS_VARIABLE})")
        elif not autoload and not info.is_core:
            status.append(f"(not used: {DISABLE_AUTOLOAD_VARIABLE} is set)")
        rows.append(
            [info.group, info.name, info.distribution or "-", info.version or "-", " ".join(status)]
        )
    for (group, name), claims in clashes.items():
        distributions = sorted({c.distribution or "?" for c in claims})
        problems.append(
            f"{group} {name}: claimed by {' and '.join(distributions)}; using it is an error "
            f"until one is picked: uninstall one, or set {DISABLED_PLUGINS_VARIABLE}="
            f"{distributions[-1]}:{name} to use {distributions[0]}'s (or the other way round)"
        )
    problems += [problem for problem in requirement_problems.values() if problem is not None]
    context.echo(table(["Group", "Name", "Distribution", "Version", "Status"], rows))
    if problems:
        context.echo("")
        context.echo("Problems:")
        for problem in problems:
            context.echo(f"  {problem}")
    return 1 if problems else 0


def _load_error(info: EntryPointInfo) -> str | None:
    try:
        info.load()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None
