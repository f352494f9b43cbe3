"""The application object: configuration, plugins, buses, transports and handlers in one place."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import pkgutil
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from messenger_core import diagnostics
from messenger_core.bus import MessageBus
from messenger_core.config import (
    MessengerConfig,
    MiddlewareConfig,
    TransportConfig,
    load_config,
    structure_config,
)
from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.handlers import (
    HandlerDescriptor,
    HandlerOptions,
    HandlerRegistry,
    handler_options_of,
)
from messenger_core.handlers import (
    handler as mark,
)
from messenger_core.handlers import make_handler_options as handler_options
from messenger_core.hooks import Hooks
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.middleware import Middleware, MiddlewareContext
from messenger_core.middleware.add_bus_name import AddBusNameStampMiddleware
from messenger_core.middleware.dispatch_after_current_bus import (
    DispatchAfterCurrentBusMiddleware,
    RootDispatch,
)
from messenger_core.middleware.failed_message_processing import FailedMessageProcessingMiddleware
from messenger_core.middleware.handle import HandleMessageMiddleware
from messenger_core.middleware.reject_redelivered import RejectRedeliveredMessageMiddleware
from messenger_core.middleware.send import SendMessageMiddleware
from messenger_core.plugins import (
    MIDDLEWARE_GROUP,
    SERIALIZERS_GROUP,
    TRANSPORTS_GROUP,
    PluginRegistry,
)
from messenger_core.routing import Router
from messenger_core.serializer import Serializer
from messenger_core.stop_signal import FileStopSignal, StopSignal
from messenger_core.transport import StopSignalFactory, Transport

if TYPE_CHECKING:
    from messenger_core.worker import Worker

__all__ = ["Messenger"]

logger = logging.getLogger("messenger")
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
    ``autoload=False`` to load no third-party entry point at all.
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
        self.plugins = PluginRegistry(autoload=autoload)
        for scheme, factory in (transports or {}).items():
            self.plugins.register_transport(scheme, factory)
        for name, factory in (serializers or {}).items():
            self.plugins.register_serializer(name, factory)
        for name, factory in (middleware or {}).items():
            self.plugins.register_middleware(name, factory)
        self.hooks = Hooks(plugins, autoload=self.plugins.autoload, disabled=self.plugins.disabled)
        self.registry = MessageTypeRegistry()
        self.handlers = HandlerRegistry()
        self.router = Router(self.config.routing)
        for key in self.config.routing:
            if isinstance(key, type):  # routed by class: it can arrive from a transport
                self.registry.register(key)
        self.root_dispatch = RootDispatch()
        self._stop_signal = stop_signal
        self._buses: dict[str, MessageBus] = {}
        self._transports: dict[str, Transport] = {}
        self._lock = threading.RLock()
        self.hooks.register_types(self.registry)
        self.hooks.configure(self)

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
    ) -> Any:
        """Register a handler: a function, a bound method, a callable instance or a class.

        Use as ``@messenger.handler`` or ``@messenger.handler(bus=..., priority=...)``. The
        message type is the annotation of the first parameter unless ``handles`` is given.
        Inside a class body, it only marks the method: register the class (or an instance)
        afterwards with ``messenger.handler(TheClass)`` or :meth:`register_handlers`.
        """
        options = handler_options(bus, from_transport, priority, handles, name)
        marker = mark(
            bus=bus, from_transport=from_transport, priority=priority, handles=handles, name=name
        )

        def register(obj: F) -> F:
            if _is_method_in_class_body(obj):
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
        found: list[HandlerDescriptor] = []
        # A module named twice (a package and its submodule) or an object bound to two names
        # is still registered once.
        seen_modules: set[str] = set()
        seen: set[int] = set()
        for module in modules:
            for each in _walk_modules(module):
                if each.__name__ in seen_modules:
                    continue
                seen_modules.add(each.__name__)
                for _, obj in inspect.getmembers(each):
                    if getattr(obj, "__module__", None) != each.__name__ or id(obj) in seen:
                        continue  # imported from elsewhere: its own module registers it
                    seen.add(id(obj))
                    marked_function = inspect.isfunction(obj) and handler_options_of(obj)
                    if marked_function or (inspect.isclass(obj) and _has_marks(obj)):
                        found += self._register(obj, handler_options_of(obj))
        return found

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
            if name not in self.config.transports and name not in self._transports:
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
                    bus = MessageBus(name, self._middleware_for(name))
                    self._buses[name] = bus
        return bus

    def _middleware_for(self, bus_name: str) -> list[Middleware]:
        bus_config = self.config.bus(bus_name)
        user = [
            self._named_middleware(bus_name, index, m)
            for index, m in enumerate(bus_config.middleware)
        ]
        if not bus_config.default_middleware:
            return user
        return [
            AddBusNameStampMiddleware(bus_name),
            RejectRedeliveredMessageMiddleware(),
            DispatchAfterCurrentBusMiddleware(self.root_dispatch),
            FailedMessageProcessingMiddleware(),
            *user,
            *self.hooks.bus_middleware(self, bus_name),
            SendMessageMiddleware(self.router, self.get_transport),
            HandleMessageMiddleware(bus_name, self.handlers, bus_config.allow_no_handlers),
        ]

    def _named_middleware(self, bus_name: str, index: int, config: MiddlewareConfig) -> Middleware:
        where = f"messenger.buses.{bus_name!r}.middleware[{index}]"
        try:
            factory = self.plugins.load(MIDDLEWARE_GROUP, config.name)
        except ConfigurationError as error:
            raise ConfigurationError(f"{where}: {error}") from error.__cause__
        context = MiddlewareContext(messenger=self, bus_name=bus_name, options=config.options)
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

    # -- transports -------------------------------------------------------------------------
    @property
    def transport_names(self) -> list[str]:
        """Every configured or added transport name."""
        return list(dict.fromkeys([*self.config.transports, *self._transports]))

    def get_transport(self, name: str) -> Transport:
        """The transport called ``name``, connected on first use."""
        transport = self._transports.get(name)
        if transport is None:
            with self._lock:
                transport = self._transports.get(name)
                if transport is None:
                    config = self.config.transports.get(name)
                    if config is None:
                        known = ", ".join(self.transport_names) or "none"
                        raise ConfigurationError(
                            f"no transport named {name!r} (configured: {known})"
                        )
                    transport = self._create_transport(name, config)
                    self._transports[name] = transport
        return transport

    def add_transport(self, name: str, transport: Transport | str | TransportConfig) -> Transport:
        """Add a transport: a ready object, a DSN or a :class:`TransportConfig`."""
        with self._lock:
            if name in self._transports or name in self.config.transports:
                raise ConfigurationError(f"a transport named {name!r} exists already")
            if isinstance(transport, str):
                transport = TransportConfig(dsn=transport)
            if isinstance(transport, TransportConfig):
                transport = self._create_transport(name, transport)
            self._transports[name] = transport
            return transport

    def serializer(self, name: str | None = None) -> Serializer:
        """A serializer by name (default: the configured default, ``json``)."""
        name = name or self.config.serializer
        factory = self.plugins.load(SERIALIZERS_GROUP, name)
        if isinstance(factory, type):
            factory = factory()
        return factory(self.registry, {})  # type: ignore[no-any-return]

    def _create_transport(self, name: str, config: TransportConfig) -> Transport:
        try:
            dsn = Dsn.parse(config.dsn)
        except ConfigurationError as error:
            raise ConfigurationError(f"transport {name!r}: {error}") from None
        try:
            factory = self.plugins.load(TRANSPORTS_GROUP, dsn.scheme)
        except ConfigurationError as error:
            raise ConfigurationError(f"transport {name!r}: {error}") from error.__cause__
        if isinstance(factory, type):
            factory = factory()
        bind = getattr(factory, "for_application", None)
        if bind is not None:
            factory = bind(self)
        serializer = self.serializer(config.serializer)
        try:
            transport: Transport = factory.create(dsn, dsn.with_options(config.options), serializer)
        except ConfigurationError as error:
            where = "" if str(dsn) in str(error) else f" ({dsn})"
            raise ConfigurationError(f"transport {name!r}{where}: {error}") from None
        logger.debug("transport %s created from %s", name, dsn)
        return transport

    # -- consuming --------------------------------------------------------------------------
    @property
    def stop_signal(self) -> StopSignal:
        """What ``messenger stop-workers`` sets and workers watch.

        The one passed to the constructor, else the one the ``stop_signal`` configuration key
        names (built on first use), else ``MESSENGER_STOP_SIGNAL_FILE``, else this
        application's file in the temporary directory (see :mod:`messenger_core.stop_signal`).
        """
        if self._stop_signal is None:
            self._stop_signal = self._configured_stop_signal()
        return self._stop_signal

    @stop_signal.setter
    def stop_signal(self, signal: StopSignal) -> None:
        self._stop_signal = signal

    def _configured_stop_signal(self) -> StopSignal:
        text = self.config.stop_signal
        if text is None:
            return FileStopSignal.for_application(self.config)
        dsn = Dsn.parse(text)
        if dsn.scheme == "file":
            return FileStopSignal(dsn.path)
        factory = self.plugins.load(TRANSPORTS_GROUP, dsn.scheme)
        if isinstance(factory, type):
            factory = factory()
        if not isinstance(factory, StopSignalFactory):
            raise ConfigurationError(
                f"messenger.stop_signal: the {dsn.scheme}:// transport cannot keep a stop "
                "signal; use file:///path, or a store whose plugin supports it (redis://, "
                "sqlite://, postgresql://, mysql://)"
            )
        signal: StopSignal = factory.create_stop_signal(dsn, dict(dsn.options))
        return signal

    def worker(self, transport_names: Sequence[str], **options: Any) -> Worker:
        """A worker consuming ``transport_names`` (highest priority first).

        ``options`` are those of :class:`~messenger_core.worker.Worker` (``bus``, ``queues``,
        ``stop_signal``, ``keepalive_interval``); limits are given to ``run()``::

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
        with self._lock:
            transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            transport.close()
        close_signal = getattr(self._stop_signal, "close", None)
        if close_signal is not None:
            close_signal()

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


def _is_method_in_class_body(obj: object) -> bool:
    """A plain function defined in a class body (its first parameter is ``self``)."""
    if not inspect.isfunction(obj) or "." not in obj.__qualname__:
        return False
    if obj.__qualname__.rsplit(".", 2)[-2] == "<locals>":
        return False
    parameters = list(inspect.signature(obj).parameters)
    return bool(parameters) and parameters[0] == "self"


def _has_marks(cls: type[Any]) -> bool:
    if handler_options_of(cls) is not None:
        return True
    return any(
        handler_options_of(inspect.getattr_static(cls, name, None)) is not None for name in dir(cls)
    )


def _walk_modules(module: types.ModuleType | str) -> Iterator[types.ModuleType]:
    if isinstance(module, str):
        module = importlib.import_module(module)
    yield module
    for info in pkgutil.walk_packages(
        getattr(module, "__path__", []), prefix=f"{module.__name__}."
    ):
        yield importlib.import_module(info.name)
