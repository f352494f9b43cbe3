"""Start-up checks: mistakes in an application's setup that would otherwise show per message.

Each function returns a list of sentences, one per problem, each saying what is wrong and what
to do; an empty list means nothing was found. ``Messenger.worker(...)`` logs them as warnings on
the ``messenger.worker`` logger when a worker is built, and ``messenger debug`` prints them under
"Problems". They are warnings, not errors: routes name classes by string and configuration is
never imported, so a name that matches no class may still be right (a class registered later).

What cannot be right is an error instead, raised where it is configured (a middleware name that
does not resolve: see ``Messenger.build_buses``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from messenger_core._suggest import close_matches
from messenger_core.message_types import type_name_of
from messenger_core.routing import ANY_ROUTE, route_key_name, route_names_of

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.config import MessengerConfig

__all__ = [
    "config_mismatch",
    "known_message_classes",
    "unhandled_routed_messages",
    "unknown_routes",
    "unrouted_transports",
    "worker_notes",
    "worker_problems",
]


def known_message_classes(messenger: Messenger) -> list[type[Any]]:
    """Every message class the application knows: handled, registered or routed by class."""
    classes: dict[type[Any], None] = {}
    for descriptor in messenger.handlers:
        if isinstance(descriptor.handles, type):
            classes[descriptor.handles] = None
    for cls in messenger.registry.message_types().values():
        classes[cls] = None
    for key in messenger.config.routing:
        if isinstance(key, type):
            classes[key] = None
    return sorted(classes, key=type_name_of)


def unknown_routes(messenger: Messenger) -> list[str]:
    """Routes whose class name matches no class a handler handles or the registry knows.

    Such a route is usually misspelt (or names a class by a module it was not imported from),
    and its messages are then handled at once instead of being sent.
    """
    known = known_message_classes(messenger)
    # A route may name a base class of a known message: it applies to it.
    names = {name for cls in known for base in cls.__mro__ for name in route_names_of(base)}
    found = []
    for key, transports in messenger.router.routes.items():
        if key == ANY_ROUTE or key in names:
            continue
        found.append(
            f"route {key!r} -> {', '.join(transports)} names no known message class"
            f"{_did_you_mean(key, known)}; messages no route matches are handled at once, not "
            "sent. Name the class as module.QualName (its __module__ and __qualname__), route "
            "the class object, or register it (messenger.register_message)"
        )
    return found


def unhandled_routed_messages(messenger: Messenger, transport_names: Iterable[str]) -> list[str]:
    """Known message classes routed to one of ``transport_names`` that no handler on any bus
    takes when received from there: a worker consuming it could only fail them."""
    consumed = list(dict.fromkeys(transport_names))
    buses = messenger.config.bus_names
    found = []
    for cls in known_message_classes(messenger):
        routes = [name for name in messenger.router.transports_for(cls) if name in consumed]
        handlers = [d for bus in buses for d in messenger.handlers.for_class(bus, cls)]
        orphaned = [
            name
            for name in routes
            if not any(d.options.from_transport in (None, name) for d in handlers)
        ]
        if orphaned:
            found.append(
                f"{type_name_of(cls)} is routed to {', '.join(orphaned)} but no handler on any "
                f"bus takes it from there: a worker consuming {_them(orphaned)} fails these "
                "messages (register a handler, check its bus= and from_transport=, or change "
                "the route)"
            )
    return found


def unrouted_transports(messenger: Messenger, transport_names: Iterable[str]) -> list[str]:
    """Consumed transports that no route sends to (nor ``"*"``): only another application, or
    ``TransportNamesStamp``, can fill them. Failure transports are left out."""
    routed = messenger.router.transport_names()
    config = messenger.config
    failure = {config.failure_transport} | {
        t.failure_transport for t in config.transports.values() if t.failure_transport
    }
    return [
        f"transport {name!r} is consumed but no route sends messages to it: it only receives "
        "what another application, or a dispatch with TransportNamesStamp, puts there"
        for name in dict.fromkeys(transport_names)
        if name not in routed and name not in failure
    ]


def worker_problems(messenger: Messenger, transport_names: Sequence[str]) -> list[str]:
    """What a worker consuming ``transport_names`` warns about when it is built."""
    return [*unknown_routes(messenger), *unhandled_routed_messages(messenger, transport_names)]


def worker_notes(messenger: Messenger, transport_names: Sequence[str]) -> list[str]:
    """What a worker consuming ``transport_names`` mentions (INFO) when it is built."""
    return unrouted_transports(messenger, transport_names)


def config_mismatch(
    messenger: Messenger,
    table: Mapping[str, Any],
    config: MessengerConfig,
    *,
    file: str,
    app: str,
) -> list[str]:
    """Settings of a configuration file that the loaded application does not have.

    ``table`` is the file's raw ``[messenger]`` table (to know which keys it sets), ``config``
    the same structured; ``file`` names the file and ``app`` the application that was loaded.
    An application built in code (``app = "module:attribute"``) does not read the file's other
    settings, so commands would silently work on another configuration than the file shows.
    """
    differing = [
        key
        for key in table
        if key != "app"
        and hasattr(config, key)
        and _comparable(key, getattr(config, key))
        != _comparable(key, getattr(messenger.config, key))
    ]
    if not differing:
        return []
    return [
        f"{file} sets {', '.join(differing)} differently from the application {app!r}: the "
        "application's own configuration is used, not the file's. Build the application "
        "from this file (Messenger.from_config), or give the file that it reads"
    ]


def _comparable(key: str, value: Any) -> Any:
    if key == "routing":  # classes and their names are the same route
        return {route_key_name(k): v for k, v in value.items()}
    return value


def _did_you_mean(name: str, known: Sequence[type[Any]]) -> str:
    # Same class name in another module first (a wrong module is the usual mistake), then spelling.
    leaf = name.rpartition(".")[2]
    same_leaf = [type_name_of(cls) for cls in known if cls.__qualname__.rpartition(".")[2] == leaf]
    close = same_leaf[:1] or close_matches(name, [type_name_of(c) for c in known])
    return f" (did you mean {close[0]!r}?)" if close else ""


def _them(names: Sequence[str]) -> str:
    return "it" if len(names) == 1 else "them"
