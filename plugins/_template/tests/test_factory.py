"""The template's own checks: DSN and options."""

from __future__ import annotations

import pytest
from messenger_transport_example import ExampleTransportFactory

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer


def test_unknown_option_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option.*colour"):
        ExampleTransportFactory().create(
            Dsn.parse("example:///tmp/x"), {"colour": "blue"}, JsonSerializer(MessageTypeRegistry())
        )


def test_directory_is_required() -> None:
    with pytest.raises(ConfigurationError, match="spool directory"):
        ExampleTransportFactory().create(
            Dsn.parse("example://"), {}, JsonSerializer(MessageTypeRegistry())
        )
