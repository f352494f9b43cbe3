"""The ``timing`` middleware, driven through a ``Messenger`` configured by name.

The middleware is registered explicitly (``middleware={"timing": TimingMiddleware}``), so these
tests need no installation; ``test_the_entry_point_*`` check what an installation publishes.
"""

from __future__ import annotations

import importlib
import logging
import time
import tomllib
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import pytest
from messenger_middleware_example import HandlingTimeStamp, TimingMiddleware

from messenger_core import ConfigurationError, Messenger, ReceivedStamp
from messenger_core.plugins import MIDDLEWARE_GROUP

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@attrs.frozen
class Slow:
    milliseconds: float = 0.0


def make(middleware: list[Any], **config: Any) -> Messenger:
    """An application whose default bus has ``middleware``, with the timing one registered."""
    buses = {"messenger.bus.default": {"middleware": middleware}}
    messenger = Messenger(
        {"buses": buses, **config}, autoload=False, middleware={"timing": TimingMiddleware}
    )

    @messenger.handler
    def sleep(message: Slow) -> None:
        time.sleep(message.milliseconds / 1000)

    return messenger


def timing(**options: Any) -> Mapping[str, Any]:
    return {"name": "timing", "options": options}


def test_every_dispatch_is_stamped_with_its_duration() -> None:
    envelope = make(["timing"]).bus.dispatch(Slow(milliseconds=20))

    stamp = envelope.last(HandlingTimeStamp)
    assert stamp is not None
    assert stamp.milliseconds >= 20


def test_slow_dispatches_are_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    bus = make([timing(slow_ms=30, logger="shop.timing")]).bus

    with caplog.at_level(logging.WARNING, logger="shop.timing"):
        bus.dispatch(Slow(milliseconds=0))
        bus.dispatch(Slow(milliseconds=50))

    (record,) = caplog.records
    assert record.name == "shop.timing"
    assert record.getMessage().startswith("bus messenger.bus.default: Slow took ")
    assert record.getMessage().endswith(" ms (slow_ms=30)")


def test_a_message_from_a_worker_names_its_transport(caplog: pytest.LogCaptureFixture) -> None:
    bus = make([timing(slow_ms=0)]).bus

    with caplog.at_level(logging.WARNING, logger="messenger.timing"):
        bus.dispatch(Slow(), ReceivedStamp(transport_name="async"))

    assert "Slow from async took " in caplog.records[0].getMessage()


def test_the_stamp_can_be_left_out() -> None:
    envelope = make([timing(stamp=False)]).bus.dispatch(Slow())

    assert envelope.last(HandlingTimeStamp) is None


def test_the_stamp_never_goes_on_the_wire() -> None:
    messenger = make(["timing"])
    envelope = messenger.bus.dispatch(Slow()).with_(HandlingTimeStamp(milliseconds=1.0))

    encoded = messenger.serializer().encode(envelope)

    assert not any("HandlingTime" in header for header in encoded.headers)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"slow": 5}, "unknown option 'slow' (did you mean 'slow_ms'?) for the timing middleware"),
        ({"slow_ms": -1}, "option 'slow_ms' must be a number >= 0, got -1"),
        ({"stamp": "perhaps"}, "option 'stamp' must be"),
        ({"logger": 5}, "option 'logger' must be a logger name, got 5"),
    ],
)
def test_bad_options_fail_when_the_bus_is_built(options: dict[str, Any], expected: str) -> None:
    messenger = make([timing(**options)])

    with pytest.raises(ConfigurationError) as caught:
        messenger.bus  # noqa: B018

    assert str(caught.value).startswith(
        "messenger.buses.'messenger.bus.default'.middleware[0] ('timing'): "
    )
    assert expected in str(caught.value)


def test_the_entry_point_names_the_factory() -> None:
    with PYPROJECT.open("rb") as stream:
        published = tomllib.load(stream)["project"]["entry-points"][MIDDLEWARE_GROUP]

    module, _, attribute = published["timing"].partition(":")
    assert getattr(importlib.import_module(module), attribute) is TimingMiddleware


def test_the_entry_point_is_found_by_name_once_installed() -> None:
    installed = [e for e in entry_points(group=MIDDLEWARE_GROUP) if e.name == "timing"]
    if not installed:
        pytest.skip("messenger-middleware-example is not installed (pip install -e it)")

    messenger = Messenger({"buses": {"messenger.bus.default": {"middleware": ["timing"]}}})
    messenger.handler(lambda message: None, handles=Slow)

    assert messenger.bus.dispatch(Slow()).last(HandlingTimeStamp) is not None
