"""Message handlers: how they are described, marked, registered and found for a message.

A handler is any callable taking the message: a function, a bound method, or an instance of a
class with ``__call__``. Its message type comes from the annotation of its first parameter (a
union registers it for each member) unless ``handles=`` says otherwise.

``async def`` handlers (functions, methods, ``async def __call__``) are recognised when they are
registered and run to completion on an event loop (see :mod:`messenger_core._awaitables`); so
is an awaitable a synchronous handler returns. A handler's ``timeout`` option fails it when it
runs longer (an async one is cancelled then); the failure is retried like any other.
"""

from __future__ import annotations

import inspect
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, Union, overload

import attrs

from messenger_core._awaitables import AsyncHandlerError, HandlerTimeoutError, is_async_callable
from messenger_core._fast_path import LookupCaches, handler_call
from messenger_core.errors import ConfigurationError
from messenger_core.message_types import type_name_of

__all__ = [
    "ANY_MESSAGE",
    "AsyncHandlerError",
    "HandlerDescriptor",
    "HandlerOptions",
    "HandlerRegistry",
    "HandlerTimeoutError",
    "handler",
    "handler_options_of",
    "make_handler_options",
]

F = TypeVar("F", bound=Callable[..., Any])

ANY_MESSAGE = "*"
"""Register a handler for this "type" to receive every message its bus handles."""

_MARK = "__messenger_handler__"


@attrs.frozen(kw_only=True)
class HandlerOptions:
    """Where and when a handler runs.

    - ``bus``: only on this bus (default: every bus);
    - ``from_transport``: when the message was received from a transport, only from this one
      (a synchronously handled message runs it regardless, as in Symfony Messenger);
    - ``priority``: handlers with a higher priority run first;
    - ``handles``: the message type(s), overriding the annotation (``"*"`` for all);
    - ``name``: the handler's name in stamps and logs (default: ``module.QualName``);
    - ``timeout``: seconds it may run; an overrun fails it with ``HandlerTimeoutError`` (an
      async handler is cancelled at the limit; a sync one fails when it returns).
    """

    bus: str | None = None
    from_transport: str | None = None
    priority: int = 0
    handles: tuple[type[Any] | str, ...] | None = None
    name: str | None = None
    timeout: float | None = None


@attrs.frozen(kw_only=True)
class HandlerDescriptor:
    """A registered handler: the callable, its name, the type it handles and its options."""

    callable: Callable[[Any], Any]
    name: str
    handles: type[Any] | str
    options: HandlerOptions
    order: int = attrs.field(default=0, eq=False)
    """Registration order, to keep equal priorities in the order they were registered."""
    call: Callable[[Any], Any] = attrs.field(init=False, eq=False, repr=False)
    """What the bus calls: ``callable`` itself, or for an ``async def`` handler a function
    that runs it to completion (decided once, here, so a sync handler costs nothing more)."""

    @call.default
    def _call(self) -> Callable[[Any], Any]:
        return handler_call(self.callable, self.name, self.options.timeout)

    @property
    def is_async(self) -> bool:
        """Whether the handler is ``async def`` (run on an event loop)."""
        return is_async_callable(self.callable)

    def runs_on(self, bus_name: str) -> bool:
        """Whether this handler takes part in dispatches on ``bus_name``."""
        return self.options.bus is None or self.options.bus == bus_name


def make_handler_options(
    bus: str | None,
    from_transport: str | None,
    priority: int,
    handles: type[Any] | str | Iterable[type[Any] | str] | None,
    name: str | None,
    *,
    timeout: float | None = None,
) -> HandlerOptions:
    """``HandlerOptions`` from the decorators' arguments (a union in ``handles`` is split)."""
    if timeout is not None and not timeout > 0:
        raise ConfigurationError(f"a handler's timeout must be a positive number, got {timeout!r}")
    if handles is not None and (isinstance(handles, (type, str)) or _is_union(handles)):
        handles = _union_members(handles) if _is_union(handles) else (handles,)
    return HandlerOptions(
        bus=bus,
        from_transport=from_transport,
        priority=priority,
        handles=tuple(handles) if handles is not None else None,
        name=name,
        timeout=timeout,
    )


@overload
def handler(target: F, /) -> F: ...
@overload
def handler(
    *,
    bus: str | None = None,
    from_transport: str | None = None,
    priority: int = 0,
    handles: type[Any] | str | Iterable[type[Any] | str] | None = None,
    name: str | None = None,
    timeout: float | None = None,
) -> Callable[[F], F]: ...
def handler(
    target: Any = None,
    /,
    *,
    bus: str | None = None,
    from_transport: str | None = None,
    priority: int = 0,
    handles: type[Any] | str | Iterable[type[Any] | str] | None = None,
    name: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Mark a function, method or class as a message handler without registering it anywhere.

    ``Messenger.scan(module_or_package)`` registers what is marked, and
    ``Messenger.handler(SomeClass)`` / ``Messenger.register_handlers(instance)`` register the
    marked methods of a class. Use it where handlers live in modules of their own::

        @handler
        def send_confirmation(message: OrderPlaced) -> None: ...
    """
    options = make_handler_options(bus, from_transport, priority, handles, name, timeout=timeout)

    def mark(obj: F) -> F:
        setattr(obj, _MARK, options)
        return obj

    return mark(target) if target is not None else mark


def handler_options_of(obj: object) -> HandlerOptions | None:
    """The options a ``@handler`` marker left on ``obj``, if any."""
    options = getattr(obj, _MARK, None)
    return options if isinstance(options, HandlerOptions) else None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _union_members(annotation: Any) -> tuple[Any, ...]:
    return tuple(arg for arg in typing.get_args(annotation) if arg is not type(None))


def _callable_name(target: Callable[..., Any]) -> str:
    if inspect.ismethod(target):
        owner = type(target.__self__)
        return f"{type_name_of(owner)}.{target.__func__.__name__}"
    if inspect.isfunction(target) or inspect.isbuiltin(target):
        return f"{target.__module__}.{target.__qualname__}"
    return f"{type_name_of(type(target))}.__call__"


def _refuse_generators(target: Callable[..., Any], name: str) -> None:
    # Calling a generator function runs none of its body: the message would be acknowledged
    # as handled by a handler that did nothing.
    function = target if inspect.isroutine(target) else type(target).__call__
    if inspect.isasyncgenfunction(function) or inspect.isgeneratorfunction(function):
        kind = "an async generator" if inspect.isasyncgenfunction(function) else "a generator"
        raise ConfigurationError(
            f"handler {name} is {kind} function (it contains yield), so calling it would run "
            "none of its body; make it a plain function (or async def) without yield"
        )


def _first_parameter_annotation(target: Callable[..., Any], name: str) -> Any:
    function = target.__call__ if not inspect.isroutine(target) else target  # type: ignore[operator]
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise ConfigurationError(f"cannot read the signature of handler {name}") from None
    parameters = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not parameters:
        raise ConfigurationError(f"handler {name} must take the message as its first parameter")
    try:
        hints = typing.get_type_hints(function)
    except Exception as error:
        raise ConfigurationError(
            f"cannot resolve the type annotations of handler {name}: {error}"
        ) from None
    annotation = hints.get(parameters[0].name, inspect.Parameter.empty)
    if annotation is inspect.Parameter.empty:
        raise ConfigurationError(
            f"handler {name} has no type annotation on its first parameter "
            f"{parameters[0].name!r}: annotate it with the message class, or pass handles="
        )
    return annotation


class HandlerRegistry:
    """All handlers of an application, and the per-bus, per-class lookup the bus uses.

    Lookup walks the message class's MRO (most specific first), then ``"*"``. Results are cached
    per (bus, class) and the cache is cleared whenever a handler is added, so lookups on the
    hot path are one dictionary access (see :mod:`messenger_core._fast_path`).
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Any] | str, list[HandlerDescriptor]] = {}
        self._caches = LookupCaches()
        self._lock = threading.Lock()
        self._count = 0

    def add(
        self, target: Callable[..., Any], options: HandlerOptions | None = None
    ) -> list[HandlerDescriptor]:
        """Register ``target`` (a callable, or a class: see :meth:`add_class`)."""
        options = options or handler_options_of(target) or HandlerOptions()
        if isinstance(target, type):
            return self.add_class(target, options)
        if not callable(target):
            raise ConfigurationError(f"a handler must be callable, got {target!r}")
        name = options.name or _callable_name(target)
        _refuse_generators(target, name)
        handles = options.handles
        if handles is None:
            annotation = _first_parameter_annotation(target, name)
            handles = _union_members(annotation) if _is_union(annotation) else (annotation,)
        descriptors = []
        for message_type in handles:
            # typing.Any is a class since Python 3.11, but no message's MRO contains it.
            if message_type is Any or not (
                isinstance(message_type, type) or message_type == ANY_MESSAGE
            ):
                raise ConfigurationError(
                    f"handler {name} is annotated with {message_type!r}, which is not a class; "
                    "annotate it with the message class, or pass handles="
                )
            descriptors.append(self._add_one(target, name, message_type, options))
        return descriptors

    def add_class(
        self, cls: type[Any], options: HandlerOptions | None = None
    ) -> list[HandlerDescriptor]:
        """Register a handler class: one instance (built with no arguments) serves all of it.

        Methods marked with ``@handler`` are registered, each with its own options; a class
        without marked methods must be callable (``__call__``) and is registered as one handler.
        To inject dependencies, build the instance yourself and call :meth:`add_instance`.
        """
        try:
            instance = cls()
        except TypeError as error:
            raise ConfigurationError(
                f"cannot build handler class {type_name_of(cls)} without arguments ({error}); "
                "build an instance yourself and register that instead"
            ) from None
        return self.add_instance(instance, options)

    def add_instance(
        self, instance: object, options: HandlerOptions | None = None
    ) -> list[HandlerDescriptor]:
        """Register the ``@handler``-marked methods of ``instance``, or the instance itself."""
        marked = list(_marked_methods(instance))
        if marked:
            return [d for method, opts in marked for d in self.add(method, opts)]
        if not callable(instance):
            raise ConfigurationError(
                f"{type_name_of(type(instance))} has no @handler methods and no __call__"
            )
        return self.add(instance, options or handler_options_of(type(instance)) or HandlerOptions())

    def _add_one(
        self,
        target: Callable[..., Any],
        name: str,
        handles: type[Any] | str,
        options: HandlerOptions,
    ) -> HandlerDescriptor:
        with self._lock:
            self._count += 1
            descriptor = HandlerDescriptor(
                callable=target, name=name, handles=handles, options=options, order=self._count
            )
            self._handlers.setdefault(handles, []).append(descriptor)
            self._caches.changed()
        return descriptor

    def for_class(self, bus_name: str, message_class: type[Any]) -> tuple[HandlerDescriptor, ...]:
        """The handlers for ``message_class`` on ``bus_name``, in the order they run."""
        cache = self.cache_for(bus_name)
        found = cache.get(message_class)
        if found is None:
            generation = self._caches.generation
            found = self._lookup(bus_name, message_class)
            self._caches.remember(cache, message_class, found, generation)
        return found

    @property
    def generation(self) -> int:
        """A number that changes whenever a handler is added."""
        return self._caches.generation

    def remember(self, cache: dict[Any, Any], key: Any, value: Any, generation: int) -> None:
        """Store ``value`` in one of the caches unless a handler was added since ``generation``
        (read before computing it): a lookup racing a registration must not cache stale data."""
        self._caches.remember(cache, key, value, generation)

    def cache_for(self, bus_name: str) -> dict[type[Any], tuple[HandlerDescriptor, ...]]:
        """The lookup cache of ``bus_name`` (read-only for callers; emptied on registration)."""
        return self._caches.named("handlers", bus_name)

    def scratch_cache(self, key: str) -> dict[type[Any], Any]:
        """A per-class cache a caller derives from the lookups (``key`` names it); emptied,
        in place, whenever a handler is added."""
        return self._caches.named("scratch", key)

    def find(self, bus_name: str, message_class: type[Any]) -> tuple[HandlerDescriptor, ...]:
        """Like :meth:`for_class`, computed now (without the cache)."""
        return self._lookup(bus_name, message_class)

    def _lookup(self, bus_name: str, message_class: type[Any]) -> tuple[HandlerDescriptor, ...]:
        matches: list[HandlerDescriptor] = []
        keys: list[type[Any] | str] = [*message_class.__mro__, ANY_MESSAGE]
        seen: set[int] = set()
        for each in keys:
            for descriptor in self._handlers.get(each, []):
                # One callable registered for two of the classes (a union annotation): once.
                if descriptor.runs_on(bus_name) and id(descriptor.callable) not in seen:
                    seen.add(id(descriptor.callable))
                    matches.append(descriptor)
        # Stable sort: priority first, then most specific class first, then registration order.
        return tuple(sorted(matches, key=lambda d: -d.options.priority))

    def __iter__(self) -> Iterator[HandlerDescriptor]:
        for descriptors in list(self._handlers.values()):
            yield from descriptors

    def __len__(self) -> int:
        return sum(len(d) for d in self._handlers.values())


def _marked_methods(instance: object) -> Iterator[tuple[Callable[..., Any], HandlerOptions]]:
    for attribute in dir(type(instance)):
        function = inspect.getattr_static(type(instance), attribute, None)
        options = handler_options_of(function)
        if options is not None and inspect.isfunction(function):
            yield getattr(instance, attribute), options
