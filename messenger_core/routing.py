"""Routing: which transports a message is sent to instead of being handled at once.

Routes are keyed by the class object (in code) or by its *name*, ``module.QualName`` as the
class's ``__module__`` and ``__qualname__`` spell it, so that configuration files never import
anything. A class matches a route for its own name or any base class's name (all matches are
merged, most specific first). ``"*"`` is used only when nothing more specific matched. A message
with no route is handled synchronously.

A class defined in the script being run (``python shop.py``) lives in the module ``__main__``:
its routes may name it ``__main__.OrderPlaced`` or, as the same file is named when imported,
``shop.OrderPlaced`` (see :func:`route_names_of`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from messenger_core.message_types import script_module_name, type_name_of

__all__ = ["ANY_ROUTE", "RouteKey", "Router", "route_key_name", "route_names_of"]

ANY_ROUTE = "*"

RouteKey = str | type[Any]
"""What a route is keyed by: a message class, its ``module.QualName``, or ``"*"``."""


def route_names_of(cls: type[Any]) -> tuple[str, ...]:
    """The names under which a route matches ``cls`` itself (not its bases).

    ``module.QualName``; for a class defined in the running script (module ``__main__``), also
    the name it has when the script is imported as a module (``shop.OrderPlaced``), so that one
    configuration serves ``python shop.py`` and a worker importing ``shop``.
    """
    name = type_name_of(cls)
    if cls.__module__ == "__main__":
        script = script_module_name()
        if script and script != "__main__":
            return (name, f"{script}.{cls.__qualname__}")
    return (name,)


def route_key_name(key: RouteKey) -> str:
    """How a route key is shown: ``"*"``, a name as written, or a class's ``module.QualName``."""
    return key if isinstance(key, str) else type_name_of(key)


class Router:
    """Maps message classes to transport names, with a per-class cache for the hot path."""

    def __init__(self, routes: Mapping[RouteKey, str | Iterable[str]] | None = None) -> None:
        self._routes: dict[str, tuple[str, ...]] = {}
        self.cache: dict[type[Any], tuple[str, ...]] = {}
        """Lookups so far; emptied in place (never replaced) when a route is added."""
        self._lock = threading.Lock()
        for key, transports in (routes or {}).items():
            self.add(key, transports)

    def add(self, message: RouteKey, transports: str | Iterable[str]) -> None:
        """Route ``message`` (a class, a ``module.QualName`` or ``"*"``) to ``transports``."""
        key = route_key_name(message)
        names = (transports,) if isinstance(transports, str) else tuple(transports)
        with self._lock:
            merged = self._routes.get(key, ()) + tuple(
                n for n in names if n not in self._routes.get(key, ())
            )
            self._routes[key] = merged
            self.cache.clear()

    def transports_for(self, message_class: type[Any]) -> tuple[str, ...]:
        """The transport names for ``message_class`` (empty: handle it synchronously)."""
        found = self.cache.get(message_class)
        if found is None:
            found = self._lookup(message_class)
            self.cache[message_class] = found
        return found

    def _lookup(self, message_class: type[Any]) -> tuple[str, ...]:
        names: list[str] = []
        for base in message_class.__mro__:
            for key in route_names_of(base):
                for name in self._routes.get(key, ()):
                    if name not in names:
                        names.append(name)
        return tuple(names) if names else self._routes.get(ANY_ROUTE, ())

    @property
    def routes(self) -> dict[str, tuple[str, ...]]:
        """The configured routes, by message class name."""
        return dict(self._routes)

    def transport_names(self) -> set[str]:
        """Every transport name some route mentions."""
        return {name for names in self._routes.values() for name in names}
