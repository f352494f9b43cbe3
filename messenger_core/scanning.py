"""Finding handlers marked with ``@handler`` in modules and packages (``Messenger.scan``).

Scanning only finds; registering is the caller's: :func:`scan_modules` hands every marked
function or class to a ``register`` callable and collects what it returned.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
from collections.abc import Callable, Iterator
from typing import Any

from messenger_core.handlers import HandlerDescriptor, HandlerOptions, handler_options_of

__all__ = ["has_marks", "is_method_in_class_body", "scan_modules", "walk_modules"]

Register = Callable[[Any, HandlerOptions | None], list[HandlerDescriptor]]
"""Registers one marked function or class with its options; returns what it registered."""


def scan_modules(
    modules: tuple[types.ModuleType | str, ...], register: Register
) -> list[HandlerDescriptor]:
    """Register everything marked with ``@handler`` in ``modules`` (packages recursively).

    Only objects defined in a module are taken from it: one imported from elsewhere is found
    (once) in its own module.
    """
    found: list[HandlerDescriptor] = []
    # A module named twice (a package and its submodule) or an object bound to two names
    # is still registered once.
    seen_modules: set[str] = set()
    seen: set[int] = set()
    for module in modules:
        for each in walk_modules(module):
            if each.__name__ in seen_modules:
                continue
            seen_modules.add(each.__name__)
            for _, obj in inspect.getmembers(each):
                if getattr(obj, "__module__", None) != each.__name__ or id(obj) in seen:
                    continue  # imported from elsewhere: its own module registers it
                seen.add(id(obj))
                marked_function = inspect.isfunction(obj) and handler_options_of(obj)
                if marked_function or (inspect.isclass(obj) and has_marks(obj)):
                    found += register(obj, handler_options_of(obj))
    return found


def is_method_in_class_body(obj: object) -> bool:
    """A plain function defined in a class body (its first parameter is ``self``)."""
    if not inspect.isfunction(obj) or "." not in obj.__qualname__:
        return False
    if obj.__qualname__.rsplit(".", 2)[-2] == "<locals>":
        return False
    parameters = list(inspect.signature(obj).parameters)
    return bool(parameters) and parameters[0] == "self"


def has_marks(cls: type[Any]) -> bool:
    """Whether ``cls`` or one of its attributes is marked with ``@handler``."""
    if handler_options_of(cls) is not None:
        return True
    return any(
        handler_options_of(inspect.getattr_static(cls, name, None)) is not None for name in dir(cls)
    )


def walk_modules(module: types.ModuleType | str) -> Iterator[types.ModuleType]:
    """``module`` (imported if named) and, for a package, every submodule, imported."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    yield module
    for info in pkgutil.walk_packages(
        getattr(module, "__path__", []), prefix=f"{module.__name__}."
    ):
        yield importlib.import_module(info.name)
