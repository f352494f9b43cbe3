"""The application object: configuration, plugins, buses, transports and handlers in one place."""

from __future__ import annotations

import contextlib
import logging
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from messenger_core import diagnostics
from messenger_core._bus_middleware import bus_middleware
from messenger_core.bus import MessageBus
from messenger_core.config import (
    BusConfig,
    MessengerConfig,
    TransportConfig,
    load_config,
    structure_config,
)
from messenger_core.errors import ConfigurationError
from messenger_core.handlers import (
    HandlerDescriptor,
    HandlerOptions,
    HandlerRegistry,
    handler,
    make_handler_options,
)
from messenger_core.hooks import Hooks
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.middleware.dispatch_after_current_bus import RootDispatch
from messenger_core.plugins import SERIALIZERS_GROUP, PluginRegistry
from messenger_core.routing import Router
from messenger_core.scanning import is_method_in_class_body, scan_modules
from messenger_core.serializer import Serializer
from messenger_core.stop_signal import ClosableStopSignal, StopSignal
from messenger_core.transport import Transport
from messenger_core.transport_table import TransportTable
from messenger_core.wiring import (
    configured_stop_signal,
    create_transport,
)

if TYPE_CHECKING:
    from messenger_core.worker import Worker

__all__ = ["Messenger"]

worker_logger = logging.getLogger("messenger.worker")

F = TypeVar("F", bound=Callable[..., Any])


class Messenger:
    """A messenger application.

    Build it from a file (:meth:`from_config`), from a dict shaped like the ``[messenger]``
    table, or from nothing (every message handled synchronously on the default bus)::

        messenger = Messenger()

        @messenger.handler
        def send_confirmation(message: OrderPlaced) -> None: ...

        messenger.bus.dispatch(OrderPlaced(order_id=1))

    Embedding applications can pass factories explicitly (``transports={"memory": ...}``) and
    ``autoload=False`` to load no third-party entry point at all. ``plugins`` are pluggy
    plugins (objects with ``@hookimpl`` methods), like those of the ``messenger.plugins``
    entry-point group; :attr:`factories` resolves transport, serializer and middleware names.
    """

    def __init__(
        self,
        config: MessengerConfig | Mapping[str, Any] | None = None,
        *,
        autoload: bool | None = None,
        plugins: Iterable[object] = (),
        transports: Mapping[str, Any] | None = None,
        serializers: Mapping[str, Any] | None = None,
        middleware: Mapping[str, Any] | None = None,
        stop_signal: StopSignal | None = None,
    ) -> None:
        if config is None:
            config = MessengerConfig()
        elif not isinstance(config, MessengerConfig):
            config = structure_config(config)
        self.config: MessengerConfig = config
        self.factories = PluginRegistry(autoload=autoload)
        """Transport, serializer and middleware factories by name (explicit or entry points)."""
        for scheme, factory in (transports or {}).items():
            self.factories.register_transport(scheme, factory)
        for name, factory in (serializers or {}).items():
            self.factories.register_serializer(name, factory)
        for name, factory in (middleware or {}).items():
            self.factories.register_middleware(name, factory)
        self.hooks = Hooks(
            plugins, autoload=self.factories.autoload, disabled=self.factories.disabled
        )
        self.registry = MessageTypeRegistry()
        self.handlers = HandlerRegistry()
        self.router = Router(self.config.routing)
        for key in self.config.routing:
            if isinstance(key, type):  # routed by class: it can arrive from a transport
                self.registry.register(key)
        self.root_dispatch = RootDispatch()
        self._stop_signal = stop_signal
        self._buses: dict[str, MessageBus] = {}
        self.transports = TransportTable(
            self.config.transports,
            lambda name, config: create_transport(self, name, config, self.serializer),
        )
        """The application's transports by name (:meth:`get_transport` reads it)."""
        self._lock = threading.RLock()
        self.hooks.register_types(self.registry)
        self.hooks.configure(self)

    @property
    def plugins(self) -> PluginRegistry:
        """Deprecated name of :attr:`factories` (``plugins=`` of the constructor is pluggy's)."""
        warnings.warn(
            "Messenger.plugins is deprecated: it is the factory registry, now named "
            "Messenger.factories",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.factories

    @classmethod
    def from_config(cls, path: str | Path, **kwargs: Any) -> Messenger:
        """Build from ``messenger.toml`` or a ``pyproject.toml`` with ``[tool.messenger]``."""
        return cls(load_config(path), **kwargs)

    # -- handlers ---------------------------------------------------------------------------
    @overload
    def handler(self, target: F, /) -> F: ...
    @overload
    def handler(
        self,
        /,
        *,
        bus: str | None = None,
        from_transport: str | None = None,
        priority: int = 0,
        handles: Any = None,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...
    def handler(
        self,
        target: Any = None,
        /,
        *,
        bus: str | None = None,
        from_transport: str | None = None,
        priority: int = 0,
        handles: Any = None,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Register a handler: a function, a bound method, a callable instance or a class.

        Use as ``@messenger.handler`` or ``@messenger.handler(bus=..., priority=...)``. The
        message type is the annotation of the first parameter unless ``handles`` is given;
        ``timeout`` (seconds) fails a handler that runs longer, and the message is retried.
        Inside a class body, it only marks the method: register the class (or an instance)
        afterwards with ``messenger.handler(TheClass)`` or :meth:`register_handlers`.
        """
        options = make_handler_options(
            bus, from_transport, priority, handles, name, timeout=timeout
        )
        marker = handler(
            bus=bus,
            from_transport=from_transport,
            priority=priority,
            handles=handles,
            name=name,
            timeout=timeout,
        )

        def register(obj: F) -> F:
            if is_method_in_class_body(obj):
                return marker(obj)
            # Bound methods and slotted or frozen instances take no attributes: no mark then.
            with contextlib.suppress(AttributeError):
                marker(obj)
            self._register(obj, options)
            return obj

        return register(target) if target is not None else register

    def register_handlers(self, instance: object) -> list[HandlerDescriptor]:
        """Register an instance's ``@handler`` methods (or the instance, if it is callable)."""
        descriptors = self.handlers.add_instance(instance)
        self._register_types(descriptors)
        return descriptors

    def scan(self, *modules: types.ModuleType | str) -> list[HandlerDescriptor]:
        """Register everything marked with ``@handler`` in these modules (packages recursively).

        Marked classes are instantiated with no arguments; classes with marked methods too.
        """
        return scan_modules(modules, self._register)

    def _register(self, obj: Any, options: HandlerOptions | None) -> list[HandlerDescriptor]:
        descriptors = self.handlers.add(obj, options)
        self._register_types(descriptors)
        return descriptors

    def _register_types(self, descriptors: Iterable[HandlerDescriptor]) -> None:
        # What has a handler can arrive from a transport: make it decodable.
        for descriptor in descriptors:
            if isinstance(descriptor.handles, type):
                self.registry.register(descriptor.handles)

    def register_message(self, cls: type[Any], name: str | None = None, *aliases: str) -> type[Any]:
        """Make ``cls`` decodable from transports (under ``name`` and ``aliases``)."""
        return self.registry.register(cls, name, *aliases)

    # -- routing ----------------------------------------------------------------------------
    def route(self, message: type[Any] | str, *transport_names: str) -> None:
        """Send ``message`` (a class, its ``module.QualName`` or ``"*"``) to these transports.

        Prefer the class: a name that matches no class is only a warning (at worker start and
        in ``messenger debug``), since names are not imported.
        """
        for name in transport_names:
            if name not in self.transports:
                raise ConfigurationError(f"cannot route to unknown transport {name!r}")
        if isinstance(message, type):
            self.registry.register(message)
        self.router.add(message, transport_names)

    # -- buses ------------------------------------------------------------------------------
    @property
    def bus(self) -> MessageBus:
        """The default bus."""
        return self.get_bus(self.config.default_bus)

    @property
    def buses(self) -> Mapping[str, MessageBus]:
        """Every configured bus by name (each is built on first use)."""
        return _LazyMapping(self.config.bus_names, self.get_bus)

    def add_bus(self, name: str, config: BusConfig | None = None) -> None:
        """Declare bus ``name`` unless the configuration has it (a plugin's own bus, say).

        For a plugin, ``messenger_configure`` is the place: before any bus is built.
        """
        with self._lock:
            self.config.buses.setdefault(name, config or BusConfig())

    def get_bus(self, name: str) -> MessageBus:
        """The bus called ``name``; its middleware chain is built the first time."""
        bus = self._buses.get(name)
        if bus is None:
            with self._lock:
                bus = self._buses.get(name)
                if bus is None:
                    if name not in self.config.bus_names:
                        known = ", ".join(self.config.bus_names)
                        raise ConfigurationError(f"no bus named {name!r} (configured: {known})")
                    bus = MessageBus(name, bus_middleware(self, name))
                    self._buses[name] = bus
        return bus

    # -- transports -------------------------------------------------------------------------
    @property
    def transport_names(self) -> list[str]:
        """Every configured or added transport name."""
        return self.transports.names

    def get_transport(self, name: str) -> Transport:
        """The transport called ``name``, connected on first use."""
        return self.transports.get(name)

    def add_transport(self, name: str, transport: Transport | str | TransportConfig) -> Transport:
        """Add a transport: a ready object, a DSN or a :class:`TransportConfig`."""
        return self.transports.add(name, transport)

    def serializer(self, name: str | None = None) -> Serializer:
        """A serializer by name (default: the configured default, ``json``)."""
        name = name or self.config.serializer
        factory = self.factories.load(SERIALIZERS_GROUP, name)
        if isinstance(factory, type):
            factory = factory()
        options = self.config.serializers.get(name, {})
        return factory(self.registry, options)  # type: ignore[no-any-return]

    # -- consuming --------------------------------------------------------------------------
    @property
    def stop_signal(self) -> StopSignal:
        """What ``messenger stop-workers`` sets and workers watch.

        The one passed to the constructor, else the one the ``stop_signal`` configuration key
        names (built on first use), else ``MESSENGER_STOP_SIGNAL_FILE``, else this
        application's file in the temporary directory (see :mod:`messenger_core.stop_signal`).
        """
        if self._stop_signal is None:
            self._stop_signal = configured_stop_signal(self.factories, self.config)
        return self._stop_signal

    @stop_signal.setter
    def stop_signal(self, signal: StopSignal) -> None:
        self._stop_signal = signal

    def worker(self, transport_names: Sequence[str], **options: Any) -> Worker:
        """A worker consuming ``transport_names`` (highest priority first).

        ``options`` are those of :class:`~messenger_core.worker.Worker` (``bus``, ``queues``,
        ``stop_signal``, ``keepalive_interval``, ``concurrency``, ``handler_timeout``); limits
        are given to ``run()``::

            messenger.worker(["async"]).run(limit=100)
        """
        from messenger_core.worker import Worker  # noqa: PLC0415  (worker imports this module)

        # Every bus a received message may name is built now: a middleware that cannot be
        # resolved is a configuration error at start, not a failure of every message.
        self.build_buses()
        worker = Worker(self, transport_names, **options)
        for problem in diagnostics.worker_problems(self, worker.transport_names):
            worker_logger.warning("%s", problem)
        for note in diagnostics.worker_notes(self, worker.transport_names):
            worker_logger.info("%s", note)
        return worker

    def build_buses(self) -> None:
        """Build every configured bus now (a :class:`ConfigurationError` for a bad one)."""
        for name in self.config.bus_names:
            self.get_bus(name)

    def close(self) -> None:
        """Close every transport that was opened, and the stop signal's connections."""
        self.transports.close()
        if isinstance(self._stop_signal, ClosableStopSignal):
            self._stop_signal.close()

    def __enter__(self) -> Messenger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Messenger(buses={self.config.bus_names}, transports={self.transport_names}, "
            f"handlers={len(self.handlers)})"
        )


class _LazyMapping(Mapping[str, MessageBus]):
    def __init__(self, names: list[str], get: Callable[[str], MessageBus]) -> None:
        self._names = names
        self._get = get

    def __getitem__(self, name: str) -> MessageBus:
        if name not in self._names:
            raise KeyError(name)
        return self._get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
