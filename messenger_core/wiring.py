"""Building what the configuration names: middleware by name, transports, the stop signal.

The application (:class:`messenger_core.app.Messenger`) decides *when* each is built (on first
use, under its lock) and keeps it; these functions say *how*, with the key path in every
:class:`ConfigurationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from messenger_core.config import MessengerConfig, MiddlewareConfig, TransportConfig
from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.middleware import Middleware, MiddlewareContext
from messenger_core.plugins import MIDDLEWARE_GROUP, TRANSPORTS_GROUP, PluginRegistry
from messenger_core.serializer import Serializer
from messenger_core.stop_signal import FileStopSignal, StopSignal
from messenger_core.transport import (
    ApplicationBoundFactory,
    StopSignalFactory,
    Transport,
)

if TYPE_CHECKING:
    from messenger_core.app import Messenger

__all__ = [
    "configured_stop_signal",
    "create_transport",
    "named_middleware",
]

logger = logging.getLogger("messenger")


def named_middleware(
    factories: PluginRegistry, context: MiddlewareContext, index: int, config: MiddlewareConfig
) -> Middleware:
    """The middleware ``config`` names, built for ``context.bus_name`` by its factory."""
    bus_name = context.bus_name
    where = f"messenger.buses.{bus_name!r}.middleware[{index}]"
    try:
        factory = factories.load(MIDDLEWARE_GROUP, config.name)
    except ConfigurationError as error:
        raise ConfigurationError(f"{where}: {error}") from error.__cause__
    try:
        middleware: Middleware = factory(context)
    except ConfigurationError as error:
        raise ConfigurationError(f"{where} ({config.name!r}): {error}") from error
    except Exception as error:
        raise ConfigurationError(
            f"{where}: middleware {config.name!r} of bus {bus_name!r} could not be built: "
            f"{type(error).__name__}: {error}"
        ) from error
    return middleware


def create_transport(
    messenger: Messenger,
    name: str,
    config: TransportConfig,
    serializer: Callable[[str | None], Serializer],
) -> Transport:
    """Transport ``name`` of ``messenger`` as ``config`` describes it (connected on first use).

    The factory gets the configuration's options as given and merges them over the DSN's
    query itself, once (see :class:`~messenger_core.transport.TransportFactory`).
    """
    try:
        dsn = Dsn.parse(config.dsn)
    except ConfigurationError as error:
        raise ConfigurationError(f"transport {name!r}: {error}") from None
    try:
        factory = messenger.factories.load(TRANSPORTS_GROUP, dsn.scheme)
    except ConfigurationError as error:
        raise ConfigurationError(f"transport {name!r}: {error}") from error.__cause__
    if isinstance(factory, type):
        factory = factory()
    if isinstance(factory, ApplicationBoundFactory):
        factory = factory.for_application(messenger)
    try:
        wire = serializer(config.serializer)
        wire = messenger.hooks.transport_serializer(messenger, name, wire)
        transport: Transport = factory.create(dsn, config.options, wire)
    except ConfigurationError as error:
        where = "" if str(dsn) in str(error) else f" ({dsn})"
        raise ConfigurationError(f"transport {name!r}{where}: {error}") from None
    logger.debug("transport %s created from %s", name, dsn)
    return transport


def configured_stop_signal(factories: PluginRegistry, config: MessengerConfig) -> StopSignal:
    """The stop signal the ``stop_signal`` key names, else the application's file."""
    text = config.stop_signal
    if text is None:
        return FileStopSignal.for_application(config)
    dsn = Dsn.parse(text)
    if dsn.scheme == "file":
        return FileStopSignal(dsn.path)
    factory = factories.load(TRANSPORTS_GROUP, dsn.scheme)
    if isinstance(factory, type):
        factory = factory()
    if not isinstance(factory, StopSignalFactory):
        raise ConfigurationError(
            f"messenger.stop_signal: the {dsn.scheme}:// transport cannot keep a stop "
            "signal; use file:///path, or a store whose plugin supports it (redis://, "
            "sqlite://, postgresql://, mysql://)"
        )
    # No options besides the DSN's own, which the factory reads (see TransportFactory).
    signal: StopSignal = factory.create_stop_signal(dsn, {})
    return signal
