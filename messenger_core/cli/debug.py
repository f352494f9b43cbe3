"""``messenger debug``: which handlers run for which message on each bus, and where messages go."""

from __future__ import annotations

import argparse
from typing import Any

from messenger_core._suggest import close_matches
from messenger_core.cli.command import CommandContext, Commands
from messenger_core.cli.consume import consumable_transports
from messenger_core.diagnostics import worker_problems
from messenger_core.errors import ConfigurationError
from messenger_core.handlers import ANY_MESSAGE, HandlerDescriptor
from messenger_core.message_types import type_name_of

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``debug``."""
    commands.add(
        "debug",
        run,
        help="list the handlers of each message type per bus, and the routing",
        configure=configure,
        description="For each bus (or the named one): every message type with a handler, where "
        "it is routed (a transport, or handled synchronously), and its handlers in the order "
        "they run, with their options. Then every configured route, and the problems a worker "
        "would warn about at start (routes naming no known class, routed messages without "
        "handlers, a --config file the application does not use).",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``debug``."""
    parser.add_argument("bus", nargs="?", metavar="BUS", help="only this bus")


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Print the handler map and the routing."""
    messenger = context.messenger
    config = messenger.config
    buses = config.bus_names
    if args.bus is not None:
        if args.bus not in buses:
            close = close_matches(args.bus, buses)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"no bus named {args.bus!r} (configured: {', '.join(buses)}){hint}"
            )
        buses = [args.bus]
    echo = context.echo
    descriptors = list(messenger.handlers)
    for index, bus in enumerate(buses):
        if index:
            echo("")
        echo(f"Bus {bus}" + (" (default)" if bus == config.default_bus else ""))
        on_bus = [d for d in descriptors if d.runs_on(bus)]
        classes = sorted(
            {d.handles for d in on_bus if isinstance(d.handles, type)}, key=type_name_of
        )
        if not on_bus:
            echo("  no handlers")
        for cls in classes:
            routes = messenger.router.transports_for(cls)
            where = f"routed to {', '.join(routes)}" if routes else "handled synchronously"
            echo(f"  {type_name_of(cls)}  ({where})")
            for number, descriptor in enumerate(messenger.handlers.for_class(bus, cls), 1):
                echo(f"    {number}. {descriptor.name}  {_options(descriptor, cls)}")
        catch_all = sorted(
            (d for d in on_bus if d.handles == ANY_MESSAGE),
            key=lambda d: (-d.options.priority, d.order),
        )
        if catch_all:
            echo("  * (every message on this bus)")
            for number, descriptor in enumerate(catch_all, 1):
                echo(f"    {number}. {descriptor.name}  {_options(descriptor, ANY_MESSAGE)}")
    configured = messenger.router.routes
    echo("")
    if configured:
        echo("Routing")
        for message, transports in configured.items():
            echo(f"  {message} -> {', '.join(transports)}")
    else:
        echo("Routing: none (every message is handled synchronously)")
    problems = [*context.loader.problems]
    try:
        messenger.build_buses()
    except ConfigurationError as error:  # listed with the rest: debug is where one looks
        problems.append(str(error))
    problems += worker_problems(messenger, consumable_transports(messenger))
    if problems:
        echo("")
        echo("Problems")
        for problem in problems:
            echo(f"  - {problem}")
    return 0


def _options(descriptor: HandlerDescriptor, handles: Any) -> str:
    options = descriptor.options
    parts = [f"priority={options.priority}"]
    if descriptor.is_async:
        parts.append("async")  # run to completion on the worker's private event loop
    if options.bus is not None:
        parts.append(f"bus={options.bus}")
    if options.from_transport is not None:
        parts.append(f"from_transport={options.from_transport}")
    if descriptor.handles != handles:
        inherited = descriptor.handles
        shown = inherited if isinstance(inherited, str) else type_name_of(inherited)
        parts.append(f"via {shown}")
    return f"[{', '.join(parts)}]"
