"""The registry of classes a serializer may decode: message types and stamp types.

A ``type`` header (or a stamp header) names a registered class; the class is looked up here
and never imported from the name, so nothing on the wire can make the process import code.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from messenger_core.errors import ConfigurationError
from messenger_core.stamps import BUILTIN_STAMPS, Stamp

__all__ = ["MessageTypeRegistry", "default_names_of", "script_module_name", "type_name_of"]


def type_name_of(cls: type[Any]) -> str:
    """A class's ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def script_module_name() -> str | None:
    """The module name of the running script when imported (``shop`` for ``python shop.py``
    and ``python -m shop``); ``None`` when there is no script (an interactive session)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name:
        return name
    file = getattr(main, "__file__", None)
    return Path(file).stem if isinstance(file, str) else None


def default_names_of(cls: type[Any]) -> tuple[str, ...]:
    """The wire name a class gets unless registered under another, then its aliases.

    ``module.QualName``. A class defined in the running script (module ``__main__``) is named
    after the module the script is when imported (``shop.OrderPlaced`` for ``python shop.py``),
    which is the name a worker importing that script (``--app shop:messenger``) gives it, so
    the two understand each other; ``__main__.OrderPlaced`` stays an alias.
    """
    name = type_name_of(cls)
    if cls.__module__ == "__main__":
        script = script_module_name()
        if script and script != "__main__":
            return (f"{script}.{cls.__qualname__}", name)
    return (name,)


class _NameTable:
    """Names to classes and back; each class has one canonical name and any number of aliases."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self.by_name: dict[str, type[Any]] = {}
        self.names: dict[type[Any], str] = {}
        # Classes registered under their default name only because they were used (a handler,
        # a route, an encode): an explicit name may still replace it.
        self._implicit: set[type[Any]] = set()
        self._lock = threading.Lock()

    def register(self, cls: type[Any], name: str | None, aliases: tuple[str, ...]) -> None:
        with self._lock:
            current = self.names.get(cls)
            if name is None and current is None:
                canonical, *defaults = default_names_of(cls)
                aliases = (*defaults, *aliases)
            else:
                canonical = name or current or type_name_of(cls)
            if current is not None and current != canonical and cls not in self._implicit:
                raise ConfigurationError(
                    f"{self._kind} class {type_name_of(cls)} is already registered as "
                    f"{current!r}; register {canonical!r} as an alias instead"
                )
            for each in (canonical, *aliases):
                taken = self.by_name.get(each)
                if taken is not None and taken is not cls:
                    raise ConfigurationError(
                        f"{self._kind} type name {each!r} is taken by {type_name_of(taken)}; "
                        f"cannot also give it to {type_name_of(cls)}"
                    )
            for each in (canonical, *aliases):
                self.by_name[each] = cls
            self.names[cls] = canonical
            if name is None and current is None:
                self._implicit.add(cls)
            elif name is not None:
                self._implicit.discard(cls)

    def name_of(self, cls: type[Any]) -> str:
        name = self.names.get(cls)
        if name is None:
            self.register(cls, None, ())
            name = self.names[cls]
        return name


class MessageTypeRegistry:
    """Maps wire names to message classes and stamp classes, and back.

    Each class has one canonical name (what an encoder writes: ``module.QualName`` unless
    registered under another name) and may have aliases that decoders also accept, such as
    the PHP class name a Symfony application writes. Messages and stamps have separate
    namespaces. The core's built-in stamps are registered from the start.
    """

    def __init__(self) -> None:
        self._messages = _NameTable("message")
        self._stamps = _NameTable("stamp")
        for stamp in BUILTIN_STAMPS:
            self._stamps.register(stamp, None, ())

    # -- messages ---------------------------------------------------------------------------
    def register(self, cls: type[Any], name: str | None = None, *aliases: str) -> type[Any]:
        """Make the message class ``cls`` decodable as ``name`` and ``aliases``; returns ``cls``.

        Registering a class again is harmless; a name already taken by another class is a
        :class:`ConfigurationError`.
        """
        self._messages.register(cls, name, aliases)
        return cls

    def alias(self, alias: str, cls: type[Any]) -> None:
        """Also accept ``alias`` (for example a PHP class name) as a name of message ``cls``."""
        self._messages.register(cls, None, (alias,))

    def name_of(self, cls: type[Any]) -> str:
        """The wire name of message class ``cls``, registering it under its default if needed.

        Encoding registers implicitly so that what this process sends, it can also read.
        """
        return self._messages.names.get(cls) or self._messages.name_of(cls)

    def resolve(self, name: str) -> type[Any] | None:
        """The message class registered as ``name``, or ``None``."""
        return self._messages.by_name.get(name)

    def message_types(self) -> dict[str, type[Any]]:
        """Every accepted message type name and its class."""
        return dict(self._messages.by_name)

    def __contains__(self, cls: object) -> bool:
        return cls in self._messages.names

    # -- stamps -----------------------------------------------------------------------------
    def register_stamp(self, cls: type[Stamp], name: str | None = None, *aliases: str) -> None:
        """Make the stamp class ``cls`` decodable from headers named after ``name``/``aliases``."""
        self._stamps.register(cls, name, aliases)

    def stamp_name_of(self, cls: type[Stamp]) -> str:
        """The wire name of stamp class ``cls``, registering it under its default if needed."""
        return self._stamps.names.get(cls) or self._stamps.name_of(cls)

    def resolve_stamp(self, name: str) -> type[Stamp] | None:
        """The stamp class registered as ``name``, or ``None`` (the header is kept verbatim)."""
        return self._stamps.by_name.get(name)
