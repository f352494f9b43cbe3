"""The application's transport table: built on first use, added, swapped, closed."""

from __future__ import annotations

import pytest

from messenger_core import Messenger
from messenger_core.errors import ConfigurationError


def test_built_on_first_use_then_the_same() -> None:
    messenger = Messenger({"transports": {"async": "memory://"}})

    assert messenger.transports.built("async") is None
    transport = messenger.get_transport("async")
    assert messenger.transports.built("async") is transport
    assert messenger.get_transport("async") is transport


def test_replace_swaps_and_none_builds_again_from_the_configuration() -> None:
    messenger = Messenger({"transports": {"async": "memory://"}})
    original = messenger.get_transport("async")
    stand_in = Messenger({"transports": {"x": "memory://"}}).get_transport("x")

    assert messenger.transports.replace("async", stand_in) is original
    assert messenger.get_transport("async") is stand_in
    assert messenger.transports.replace("async", None) is stand_in
    rebuilt = messenger.get_transport("async")
    assert rebuilt is not stand_in
    assert rebuilt is not original


def test_names_and_errors() -> None:
    messenger = Messenger({"transports": {"async": "memory://"}})
    messenger.add_transport("audit", "memory://")

    assert messenger.transport_names == ["async", "audit"]
    with pytest.raises(ConfigurationError, match="exists already"):
        messenger.add_transport("async", "memory://")
    with pytest.raises(
        ConfigurationError, match=r"no transport named 'nope' \(configured: async, audit\)"
    ):
        messenger.get_transport("nope")
