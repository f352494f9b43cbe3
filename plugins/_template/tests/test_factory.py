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


def test_dsn_query_options_are_read_and_the_given_options_win(tmp_path) -> None:
    factory = ExampleTransportFactory()
    serializer = JsonSerializer(MessageTypeRegistry())
    dsn = Dsn.parse(f"example://{tmp_path}?redeliver_timeout=5")

    assert factory.create(dsn, {}, serializer).redeliver_timeout == 5
    assert factory.create(dsn, {"redeliver_timeout": 7}, serializer).redeliver_timeout == 7
    with pytest.raises(ConfigurationError, match=r"unknown option.*colour"):
        factory.create(Dsn.parse(f"example://{tmp_path}?colour=blue"), {}, serializer)


def test_directory_is_required() -> None:
    with pytest.raises(ConfigurationError, match="spool directory"):
        ExampleTransportFactory().create(
            Dsn.parse("example://"), {}, JsonSerializer(MessageTypeRegistry())
        )
