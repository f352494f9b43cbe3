"""Routing: which transports a message is sent to instead of being handled at once.

Routes are keyed by class *name* (``module.QualName``) so that configuration never has to
import anything; a class matches a route for its own name or any base class's name (all
matches are merged, most specific first). ``"*"`` is used only when nothing more specific
matched. A message with no route is handled synchronously.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from messenger_core.message_types import type_name_of

__all__ = ["ANY_ROUTE", "Router"]

ANY_ROUTE = "*"


class Router:
    """Maps message classes to transport names, with a per-class cache for the hot path."""

    def __init__(self, routes: Mapping[str, str | Iterable[str]] | None = None) -> None:
        self._routes: dict[str, tuple[str, ...]] = {}
        self.cache: dict[type[Any], tuple[str, ...]] = {}
        """Lookups so far; emptied in place (never replaced) when a route is added."""
        self._lock = threading.Lock()
        for key, transports in (routes or {}).items():
            self.add(key, transports)

    def add(self, message: type[Any] | str, transports: str | Iterable[str]) -> None:
        """Route ``message`` (a class, a ``module.QualName`` or ``"*"``) to ``transports``."""
        key = message if isinstance(message, str) else type_name_of(message)
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
            for name in self._routes.get(type_name_of(base), ()):
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
