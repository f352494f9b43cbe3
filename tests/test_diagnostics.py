"""Start-up checks: mistakes found when a bus or a worker is built, not message by message."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest

from messenger_core import ConfigurationError, Messenger
from messenger_core.config import structure_config
from messenger_core.diagnostics import (
    config_mismatch,
    known_message_classes,
    unhandled_routed_messages,
    unknown_routes,
    unrouted_transports,
    worker_problems,
)
from messenger_core.message_types import type_name_of


@attrs.frozen
class OrderPlaced:
    order_id: int = 1


@attrs.frozen
class Refunded:
    order_id: int = 1


@attrs.frozen(slots=False)
class Event:
    pass


@attrs.frozen(slots=False)
class UserRegistered(Event):
    pass


def make(routing: dict[Any, Any] | None = None, **config: Any) -> Messenger:
    return Messenger(
        {
            "transports": {"async": "memory://", "audit": "memory://", "failed": "memory://"},
            "failure_transport": "failed",
            "routing": routing or {},
            **config,
        },
        autoload=True,  # the core's middleware names, as installed, for "did you mean"
    )


# -- a middleware name that does not resolve ---------------------------------------------------
BAD_MIDDLEWARE = {"buses": {"messenger.bus.default": {"middleware": ["logging", "loging"]}}}


def test_an_unknown_middleware_fails_when_the_worker_is_built() -> None:
    messenger = make(**BAD_MIDDLEWARE)

    with pytest.raises(ConfigurationError) as caught:
        messenger.worker(["async"])

    text = str(caught.value)
    assert text.startswith("messenger.buses.'messenger.bus.default'.middleware[1]: ")
    assert "no middleware named 'loging'" in text
    assert "did you mean 'logging'?" in text


def test_every_bus_is_built_with_the_worker_not_only_the_default_one() -> None:
    messenger = make(buses={"event.bus": {"middleware": ["nope"]}})

    with pytest.raises(
        ConfigurationError, match=r"messenger\.buses\.'event\.bus'\.middleware\[0\]"
    ):
        messenger.worker(["async"])
    with pytest.raises(ConfigurationError, match=r"no middleware named 'nope'"):
        messenger.build_buses()


def test_an_unknown_middleware_fails_when_the_bus_is_built() -> None:
    with pytest.raises(ConfigurationError, match=r"middleware\[1\]: no middleware named 'loging'"):
        make(**BAD_MIDDLEWARE).bus  # noqa: B018


def test_a_middleware_factory_refusing_its_options_names_the_key_path() -> None:
    bus = {"middleware": [{"name": "logging", "options": {"level": "LOUD"}}]}
    messenger = make(buses={"messenger.bus.default": bus})

    with pytest.raises(ConfigurationError) as caught:
        messenger.bus  # noqa: B018

    assert str(caught.value) == (
        "messenger.buses.'messenger.bus.default'.middleware[0] ('logging'): "
        "logging middleware: unknown level 'LOUD'"
    )


# -- routes naming no known class --------------------------------------------------------------
def test_a_route_naming_no_known_class_is_reported_with_a_suggestion() -> None:
    messenger = make({"shop.OrderPlaced": "async", type_name_of(Refunded): "audit"})
    messenger.handler(lambda message: None, handles=OrderPlaced)
    messenger.register_message(Refunded)

    (problem,) = unknown_routes(messenger)

    assert problem.startswith(
        f"route 'shop.OrderPlaced' -> async names no known message class (did you mean "
        f"'{type_name_of(OrderPlaced)}'?); messages no route matches are handled at once"
    )
    assert "route the class object" in problem


def test_misspelt_routes_get_the_closest_name() -> None:
    messenger = make({type_name_of(OrderPlaced) + "s": "async"})
    messenger.register_message(OrderPlaced)

    (problem,) = unknown_routes(messenger)

    assert f"(did you mean '{type_name_of(OrderPlaced)}'?)" in problem


def test_known_routes_are_not_reported() -> None:
    messenger = make({"*": "audit", type_name_of(Event): "async", Refunded: "audit"})
    messenger.handler(lambda message: None, handles=UserRegistered)  # a subclass of Event
    messenger.route(OrderPlaced, "async")

    assert unknown_routes(messenger) == []
    assert known_message_classes(messenger) == sorted(
        [OrderPlaced, Refunded, UserRegistered], key=type_name_of
    )


# -- routed messages without handlers ----------------------------------------------------------
def test_a_message_routed_to_a_consumed_transport_without_handler_is_reported() -> None:
    messenger = make({OrderPlaced: "async", Refunded: "audit"})
    messenger.handler(lambda message: None, handles=Refunded)

    (problem,) = unhandled_routed_messages(messenger, ["async", "audit"])

    assert problem.startswith(
        f"{type_name_of(OrderPlaced)} is routed to async but no handler on any bus takes it "
        "from there: a worker consuming it fails these messages"
    )
    assert unhandled_routed_messages(messenger, ["audit"]) == []  # not consumed: not our worry


def test_handlers_restricted_to_another_transport_or_on_another_bus() -> None:
    messenger = make({OrderPlaced: ["async", "audit"]}, buses={"event.bus": {}})
    messenger.handler(lambda message: None, handles=OrderPlaced, from_transport="audit")

    (problem,) = unhandled_routed_messages(messenger, ["async", "audit"])
    assert "is routed to async but" in problem

    messenger.handler(lambda message: None, handles=OrderPlaced, bus="event.bus")
    assert unhandled_routed_messages(messenger, ["async", "audit"]) == []


def test_a_catch_all_handler_handles_everything() -> None:
    messenger = make({OrderPlaced: "async"})
    messenger.handler(lambda message: None, handles="*")

    assert unhandled_routed_messages(messenger, ["async"]) == []


# -- transports nothing is routed to -----------------------------------------------------------
def test_a_consumed_transport_no_route_points_to_is_noted_but_not_the_failure_one() -> None:
    messenger = make({OrderPlaced: "async"})

    (note,) = unrouted_transports(messenger, ["async", "audit", "failed"])

    assert note.startswith("transport 'audit' is consumed but no route sends messages to it")
    assert unrouted_transports(make({"*": "audit"}), ["audit"]) == []


# -- at worker start ---------------------------------------------------------------------------
def test_the_worker_logs_its_problems_at_warning_and_its_notes_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messenger = make({"shop.Typo": "async", OrderPlaced: "async"})

    with caplog.at_level(logging.INFO, logger="messenger.worker"):
        messenger.worker(["async", "audit"])

    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert [(name, level) for name, level, _ in records] == [
        ("messenger.worker", logging.WARNING),
        ("messenger.worker", logging.WARNING),
        ("messenger.worker", logging.INFO),
    ]
    assert records[0][2].startswith("route 'shop.Typo' -> async names no known message class")
    assert records[1][2].startswith(f"{type_name_of(OrderPlaced)} is routed to async but no")
    assert records[2][2].startswith("transport 'audit' is consumed but no route")
    assert worker_problems(messenger, ["async"]) == [records[0][2], records[1][2]]


def test_a_well_configured_worker_starts_silently(caplog: pytest.LogCaptureFixture) -> None:
    messenger = make({OrderPlaced: "async"})
    messenger.handler(lambda message: None, handles=OrderPlaced)

    with caplog.at_level(logging.INFO, logger="messenger.worker"):
        messenger.worker(["async"])

    assert caplog.records == []


# -- a configuration file the application does not use ---------------------------------------
def test_a_file_setting_what_the_application_has_otherwise_is_reported() -> None:
    messenger = make({OrderPlaced: "async"})
    table = {
        "app": "shop:messenger",
        "default_bus": "messenger.bus.default",  # the same
        "transports": {"jobs": "memory://"},  # different
        "routing": {type_name_of(OrderPlaced): "jobs"},  # different
    }
    config = structure_config(table)

    (problem,) = config_mismatch(messenger, table, config, file="--config x.toml", app="shop:m")

    assert problem.startswith(
        "--config x.toml sets transports, routing differently from the application 'shop:m': "
        "the application's own configuration is used, not the file's"
    )


def test_a_file_that_agrees_or_only_names_the_application_is_fine() -> None:
    messenger = make({OrderPlaced: "async"})
    same = {
        "failure_transport": "failed",
        "routing": {type_name_of(OrderPlaced): "async"},  # a class and its name: the same route
        "transports": {"async": "memory://", "audit": "memory://", "failed": "memory://"},
    }
    assert config_mismatch(messenger, same, structure_config(same), file="f", app="a") == []
    only_app = {"app": "shop:messenger"}
    assert config_mismatch(messenger, only_app, structure_config(only_app), file="f", app="a") == []


def test_a_middleware_factory_that_crashes_is_a_configuration_error_with_the_key_path() -> None:
    def broken(context: object) -> None:
        raise RuntimeError("no database")

    messenger = Messenger(
        {"buses": {"event.bus": {"middleware": ["audit"]}}},
        autoload=False,
        middleware={"audit": broken},
    )

    with pytest.raises(ConfigurationError) as caught:
        messenger.build_buses()

    assert str(caught.value) == (
        "messenger.buses.'event.bus'.middleware[0]: middleware 'audit' of bus 'event.bus' could "
        "not be built: RuntimeError: no database"
    )
