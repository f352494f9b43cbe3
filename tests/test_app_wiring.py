"""The application as wiring: the default stack defined once, services for middleware
factories, one merge of DSN options, and the renamed factory registry (issue 10)."""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import pytest

from messenger_core import ConfigurationError, Messenger
from messenger_core.bus import DEFAULT_BUS
from messenger_core.envelope import Envelope
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.middleware.stack import AFTER_USER, BEFORE_USER, DEFAULT_STACK
from messenger_core.plugins import BUILTINS, MIDDLEWARE_GROUP, PluginRegistry
from messenger_core.stamps import HandledStamp


@attrs.frozen
class Ping:
    n: int


def test_the_default_stack_is_built_from_the_one_definition_in_its_order() -> None:
    messenger = Messenger(autoload=False)

    built = messenger.bus.middleware

    assert [type(m) for m in built] == [
        type(step.factory(_context(messenger))) for step in DEFAULT_STACK
    ]
    assert [step.name for step in DEFAULT_STACK] == [
        "add_bus_name_stamp",
        "reject_redelivered",
        "dispatch_after_current_bus",
        "failed_message_processing",
        "send_message",
        "handle_message",
    ]


def test_user_middleware_sits_between_the_two_halves_of_the_default_stack() -> None:
    def user(envelope: Envelope, next: Next) -> Envelope:
        return next(envelope)

    messenger = Messenger(
        {"buses": {DEFAULT_BUS: {"middleware": ["user"]}}},
        autoload=False,
        middleware={"user": lambda context: user},
    )

    built = list(messenger.bus.middleware)

    assert built[len(BEFORE_USER)] is user
    assert len(built) == len(BEFORE_USER) + 1 + len(AFTER_USER)


def test_the_entry_points_publish_the_default_stacks_factories() -> None:
    registry = PluginRegistry(autoload=False)
    for step in DEFAULT_STACK:
        assert BUILTINS[MIDDLEWARE_GROUP][step.name] == step.entry_point
        assert registry.load(MIDDLEWARE_GROUP, step.name) == step.factory


def test_the_builtins_by_name_give_the_same_chain_as_the_default_stack() -> None:
    named = Messenger(
        {
            "buses": {
                DEFAULT_BUS: {
                    "default_middleware": False,
                    "middleware": [step.name for step in DEFAULT_STACK],
                }
            }
        },
        autoload=False,
    )
    default = Messenger(autoload=False)
    for each in (named, default):
        each.handler(lambda m: m.n * 2, handles=Ping)

    assert [type(m) for m in named.bus.middleware] == [type(m) for m in default.bus.middleware]
    assert named.bus.dispatch(Ping(2)).last(HandledStamp).result == 4  # type: ignore[union-attr]


def test_a_middleware_factory_gets_the_applications_services() -> None:
    contexts: list[MiddlewareContext] = []

    def factory(context: MiddlewareContext) -> Any:
        contexts.append(context)
        return lambda envelope, next: next(envelope)

    messenger = Messenger(
        {"transports": {"q": "memory://"}, "buses": {DEFAULT_BUS: {"middleware": ["m"]}}},
        autoload=False,
        middleware={"m": factory},
    )
    messenger.build_buses()

    [context] = contexts
    assert context.config is messenger.config
    assert context.handlers is messenger.handlers
    assert context.router is messenger.router
    assert context.hooks is messenger.hooks
    assert context.root_dispatch is messenger.root_dispatch
    assert context.transports("q") is messenger.get_transport("q")
    assert context.messenger is messenger  # kept, deprecated


def test_a_context_built_by_hand_with_the_application_takes_the_services_from_it() -> None:
    messenger = Messenger(autoload=False)

    context = MiddlewareContext(messenger=messenger, bus_name=DEFAULT_BUS)

    assert context.config is messenger.config
    assert context.handlers is messenger.handlers
    assert context.router is messenger.router
    assert context.hooks is messenger.hooks
    assert context.root_dispatch is messenger.root_dispatch
    assert context.transports == messenger.get_transport


def test_configuration_options_win_over_the_dsn_query_through_a_real_factory() -> None:
    messenger = Messenger(
        {
            "transports": {
                "q": {
                    "dsn": "memory://?serialize=false&redeliver_timeout=3",
                    "options": {"serialize": True},
                }
            }
        },
        autoload=False,
    )

    transport: Any = messenger.get_transport("q")

    assert transport.serialize is True
    assert transport.redeliver_timeout == 3.0


def test_sync_refuses_options_given_in_its_dsn() -> None:
    messenger = Messenger({"transports": {"s": "sync://?x=1"}}, autoload=False)

    with pytest.raises(ConfigurationError, match=r"sync:// transport takes no options.*'x'"):
        messenger.get_transport("s")


def test_factories_is_the_registry_and_plugins_its_deprecated_name() -> None:
    messenger = Messenger(autoload=False)

    with pytest.warns(DeprecationWarning, match=r"Messenger\.factories"):
        registry = messenger.plugins

    assert registry is messenger.factories
    assert "memory" in messenger.factories.names("messenger.transports")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Messenger(autoload=False, plugins=[])  # the pluggy keyword is not deprecated


def test_a_closable_stop_signal_is_closed_with_the_application() -> None:
    class Signal:
        closed = 0

        def request(self) -> None: ...

        def requested_since(self, started_at: float) -> bool:
            return False

        def close(self) -> None:
            self.closed += 1

    signal = Signal()
    with Messenger(autoload=False, stop_signal=signal):  # type: ignore[arg-type]
        pass

    assert signal.closed == 1


def _context(messenger: Messenger) -> MiddlewareContext:
    return MiddlewareContext(
        messenger=messenger,
        bus_name=DEFAULT_BUS,
        config=messenger.config,
        handlers=messenger.handlers,
        router=messenger.router,
        transports=messenger.get_transport,
        hooks=messenger.hooks,
        root_dispatch=messenger.root_dispatch,
    )


def test_a_plugin_may_add_a_bus_the_configuration_lacks() -> None:
    messenger = Messenger({"buses": {"messenger.bus.events": {"allow_no_handlers": True}}})

    messenger.add_bus("messenger.bus.extra")
    messenger.add_bus("messenger.bus.events")  # configured: left as it is

    assert list(messenger.buses) == [
        "messenger.bus.default",
        "messenger.bus.events",
        "messenger.bus.extra",
    ]
    assert messenger.config.bus("messenger.bus.events").allow_no_handlers
