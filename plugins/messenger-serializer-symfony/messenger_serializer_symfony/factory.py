"""The ``symfony`` entry of the ``messenger.serializers`` group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messenger_core._suggest import close_matches
from messenger_core.errors import ConfigurationError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.naming import check_style
from messenger_serializer_symfony.serializer import SymfonySerializer

__all__ = ["SymfonySerializerFactory"]

_OPTIONS = ("field_names",)


class SymfonySerializerFactory:
    """Builds a :class:`SymfonySerializer`.

    Options (``[messenger.serializers.symfony]``): ``field_names``, ``"camelCase"`` (the
    default: PHP properties are usually named so) or ``"as_is"`` (for a PHP app whose
    serializer converts names to snake_case itself).
    """

    def __call__(
        self, registry: MessageTypeRegistry, options: Mapping[str, Any]
    ) -> SymfonySerializer:
        """A serializer resolving types through ``registry``."""
        for name in options:
            if name not in _OPTIONS:
                close = close_matches(name, list(_OPTIONS))
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(
                    f"unknown option {name!r} for the symfony serializer{hint} "
                    f"(it takes: {', '.join(_OPTIONS)})"
                )
        style = check_style(
            options.get("field_names", "camelCase"), "symfony serializer option field_names"
        )
        return SymfonySerializer(registry, field_names=style)
