"""Configuration: files, variables, shapes, and errors that name the key and what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from messenger_core import DEFAULT_BUS, ConfigurationError, Messenger, MessengerConfig, load_config
from messenger_core.config import (
    BusConfig,
    MiddlewareConfig,
    RetryStrategyConfig,
    TransportConfig,
    expand_variables,
    structure_config,
)

FULL_TOML = """
[messenger]
app = "shop.messaging:messenger"
default_bus = "messenger.bus.default"
failure_transport = "failed"

[messenger.buses."messenger.bus.default"]
middleware = ["logging", { name = "validation", options = { strict = true } }]

[messenger.buses."event.bus"]
default_middleware = false
allow_no_handlers = true

[messenger.transports.async]
dsn = "${MESSENGER_TEST_DSN:-sqlite:///var/messenger.db?queue_name=async}"
serializer = "json"
options = { table_name = "jobs" }
retry_strategy = { max_retries = 5, delay = 500, multiplier = 3, max_delay = 10000, jitter = 0 }

[messenger.transports.failed]
dsn = "sqlite:///var/messenger.db?queue_name=failed"

[messenger.transports.audit]
dsn = "memory://"
failure_transport = "failed"

[messenger.routing]
"shop.messages.OrderPlaced" = "async"
"shop.messages.Event" = ["async", "audit"]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_test_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MESSENGER_TEST_DSN", "MESSENGER_TEST_RETRIES", "MESSENGER_TEST_FLAG"):
        monkeypatch.delenv(name, raising=False)


def check_full(config: MessengerConfig) -> None:
    assert config.app == "shop.messaging:messenger"
    assert config.default_bus == DEFAULT_BUS
    assert config.failure_transport == "failed"
    assert config.bus_names == [DEFAULT_BUS, "event.bus"]
    assert config.buses[DEFAULT_BUS].middleware == [
        MiddlewareConfig(name="logging"),
        MiddlewareConfig(name="validation", options={"strict": True}),
    ]
    assert config.bus("event.bus") == BusConfig(default_middleware=False, allow_no_handlers=True)
    assert config.bus("not.configured") == BusConfig()
    asynchronous = config.transports["async"]
    assert asynchronous.dsn == "sqlite:///var/messenger.db?queue_name=async"
    assert asynchronous.serializer == "json"
    assert asynchronous.options == {"table_name": "jobs"}
    assert asynchronous.retry_strategy == RetryStrategyConfig(
        max_retries=5, delay=500, multiplier=3.0, max_delay=10000, jitter=0.0
    )
    assert config.transports["failed"].retry_strategy == RetryStrategyConfig()
    assert config.transports["audit"].failure_transport == "failed"
    assert config.routing == {
        "shop.messages.OrderPlaced": ["async"],
        "shop.messages.Event": ["async", "audit"],
    }


def test_messenger_toml(tmp_path: Path) -> None:
    check_full(load_config(write(tmp_path / "messenger.toml", FULL_TOML)))


def test_pyproject_tool_messenger(tmp_path: Path) -> None:
    text = FULL_TOML.replace("[messenger", "[tool.messenger")
    text = '[project]\nname = "shop"\n' + text

    check_full(load_config(write(tmp_path / "pyproject.toml", text)))


def test_the_same_structure_as_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSENGER_TEST_DSN", "memory://")
    config = structure_config(
        {
            "transports": {"async": "${MESSENGER_TEST_DSN}", "sync": {"dsn": "sync://"}},
            "routing": {"shop.A": "async", "shop.B": ["async", "sync"]},
            "buses": {"command.bus": {"middleware": ["logging"]}},
        }
    )
    messenger = Messenger(
        {
            "transports": {"async": "${MESSENGER_TEST_DSN}", "sync": {"dsn": "sync://"}},
            "routing": {"shop.A": "async", "shop.B": ["async", "sync"]},
            "buses": {"command.bus": {"middleware": ["logging"]}},
        },
        autoload=False,
    )

    assert messenger.config == config
    assert config.transports["async"] == TransportConfig(dsn="memory://")
    assert config.routing == {"shop.A": ["async"], "shop.B": ["async", "sync"]}
    assert config.buses["command.bus"].middleware == [MiddlewareConfig(name="logging")]
    # A ready MessengerConfig is taken as it is.
    assert Messenger(config, autoload=False).config is config


def test_from_config_builds_the_application(tmp_path: Path) -> None:
    path = write(
        tmp_path / "messenger.toml",
        """
        [messenger.buses."event.bus"]
        allow_no_handlers = true
        """,
    )

    messenger = Messenger.from_config(path, autoload=False)

    assert list(messenger.buses) == [DEFAULT_BUS, "event.bus"]


def test_no_configuration_means_one_default_bus_and_no_transports() -> None:
    config = MessengerConfig()

    assert config.bus_names == [DEFAULT_BUS]
    assert config.transports == {}
    assert config.serializer == "json"


# -- variables ---------------------------------------------------------------------------------


def test_variables_are_expanded_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSENGER_TEST_DSN", "redis://cache:6379/jobs")
    monkeypatch.setenv("MESSENGER_TEST_RETRIES", "7")
    monkeypatch.setenv("MESSENGER_TEST_FLAG", "")

    config = structure_config(
        {
            "transports": {
                "async": {
                    "dsn": "${MESSENGER_TEST_DSN}",
                    "retry_strategy": {"max_retries": "${MESSENGER_TEST_RETRIES:-3}"},
                    "options": {"names": ["${MESSENGER_TEST_FLAG:-fallback}", "x-${NOPE:-y}"]},
                },
            },
            "buses": {"b": {"allow_no_handlers": "${MESSENGER_TEST_UNSET:-true}"}},
        }
    )

    transport = config.transports["async"]
    assert transport.dsn == "redis://cache:6379/jobs"
    assert transport.retry_strategy.max_retries == 7
    # An empty variable takes the default, as ${VAR:-default} does in a shell.
    assert transport.options == {"names": ["fallback", "x-y"]}
    assert config.buses["b"].allow_no_handlers is True


def test_expand_variables_leaves_other_values_and_uses_the_given_environment() -> None:
    value = {"a": "${X}/${Y:-d}", "b": [1, "${X}"], "c": True}

    assert expand_variables(value, {"X": "x"}) == {"a": "x/d", "b": [1, "x"], "c": True}
    assert expand_variables("no variables $HOME {X}", {}) == "no variables $HOME {X}"


def test_a_missing_variable_names_the_key_and_the_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        structure_config({"transports": {"async": {"dsn": "${MESSENGER_TEST_DSN}"}}})

    text = str(caught.value)
    assert "messenger.transports.async.dsn" in text
    assert "MESSENGER_TEST_DSN is not set" in text
    assert "${MESSENGER_TEST_DSN:-default}" in text


def test_a_missing_variable_in_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "messenger.toml",
        """
        [messenger.routing]
        "shop.A" = ["${MESSENGER_TEST_FLAG}"]
        """,
    )

    with pytest.raises(ConfigurationError, match=r"messenger\.routing\.shop\.A\[0\].*not set"):
        load_config(path)


# -- shapes ------------------------------------------------------------------------------------


def test_a_transport_is_a_dsn_string_or_a_table() -> None:
    config = structure_config(
        {
            "transports": {
                "short": "memory://",
                "long": {"dsn": "memory://", "serializer": "other", "options": {"a": 1}},
            }
        }
    )

    assert config.transports["short"] == TransportConfig(dsn="memory://")
    assert config.transports["long"] == TransportConfig(
        dsn="memory://", serializer="other", options={"a": 1}
    )


def test_routing_is_a_transport_name_or_a_list() -> None:
    config = structure_config(
        {
            "transports": {"a": "memory://", "b": "memory://"},
            "routing": {"x.A": "a", "x.B": ["a", "b"]},
        }
    )

    assert config.routing == {"x.A": ["a"], "x.B": ["a", "b"]}


class Routed:
    """A message class routed by the class object."""


def test_routing_keys_may_be_classes_in_code() -> None:
    config = structure_config({"transports": {"a": "memory://"}, "routing": {Routed: "a"}})

    assert config.routing == {Routed: ["a"]}
    text = error_of({"transports": {"a": "memory://"}, "routing": {Routed: "b"}})
    assert f"messenger.routing.'{__name__}.Routed': no transport named 'b'" in text


# -- errors ------------------------------------------------------------------------------------


def error_of(data: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        structure_config(data)
    return str(caught.value)


def test_a_wrong_type_names_the_key_path_and_what_was_expected() -> None:
    text = error_of(
        {"transports": {"async": {"dsn": "memory://", "retry_strategy": {"max_retries": "x"}}}}
    )

    assert "messenger.transports['async'].retry_strategy.max_retries" in text
    assert "expected int" in text


WRONG_SHAPES = [
    # (configuration, key path in the error, what the error says was expected)
    ({"transports": {"a": 5}}, "transports['a']", "expected a DSN or a table, got int"),
    ({"transports": {"a": {"dsn": ["memory://"]}}}, "transports['a'].dsn", "expected a string"),
    ({"transports": {"a": {}}}, "transports['a'].dsn", "required key missing"),
    ({"routing": {"x.A": 5}}, "routing['x.A']", "expected a transport name or a list"),
    ({"routing": {"x.A": ["a", 5]}}, "routing['x.A']", "expected a transport name"),
    ({"routing": {5: "a"}}, "routing[5]", "expected a message class or its name, got 5"),
    (
        {"buses": {"b": {"middleware": [5]}}},
        "buses['b'].middleware[0]",
        "expected a middleware name or a table",
    ),
    (
        {"buses": {"b": {"default_middleware": "maybe"}}},
        "buses['b'].default_middleware",
        "expected true or false",
    ),
    (
        {"buses": {"b": {"allow_no_handlers": 2}}},
        "buses['b'].allow_no_handlers",
        "expected true or false",
    ),
    (
        {"transports": {"a": {"dsn": "memory://", "retry_strategy": {"delay": 1.5}}}},
        "transports['a'].retry_strategy.delay",
        "expected a whole number",
    ),
    (
        {"transports": {"a": {"dsn": "memory://", "options": 5}}},
        "transports['a'].options",
        "expected dict",
    ),
    ({"default_bus": 3}, "default_bus", "expected a string"),
]


@pytest.mark.parametrize(("data", "path", "expected"), WRONG_SHAPES)
def test_wrong_shapes(data: dict[str, Any], path: str, expected: str) -> None:
    text = error_of(data)

    assert f"@ messenger.{path}" in text
    assert expected in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("0", False), ("no", False), ("True", True), ("on", True)],
)
def test_booleans_from_variables(value: str, expected: bool) -> None:
    config = structure_config({"buses": {"b": {"allow_no_handlers": value}}})

    assert config.buses["b"].allow_no_handlers is expected


def test_an_unknown_key_suggests_the_closest_one() -> None:
    text = error_of({"transports": {"async": {"dsn": "memory://", "serialiser": "json"}}})

    assert "messenger.transports['async']" in text
    assert "unknown key 'serialiser' (did you mean 'serializer'?)" in text
    assert "expected one of: dsn, serializer" in text
    assert "unknown key 'transprots' (did you mean 'transports'?)" in error_of({"transprots": {}})
    assert "did you mean 'allow_no_handlers'" in error_of(
        {"buses": {"b": {"allow_no_handler": True}}}
    )


def test_routing_to_an_unknown_transport_names_the_route_and_suggests() -> None:
    text = error_of({"transports": {"async": "memory://"}, "routing": {"shop.A": "asinc"}})

    assert "messenger.routing.'shop.A'" in text
    assert "no transport named 'asinc'" in text
    assert "did you mean 'async'?" in text


def test_an_unknown_failure_transport() -> None:
    text = error_of({"transports": {"async": "memory://"}, "failure_transport": "faild"})
    assert "messenger.failure_transport: no transport named 'faild' (configured: 'async')" in text

    text = error_of({"transports": {"async": {"dsn": "memory://", "failure_transport": "failed"}}})
    assert "messenger.transports.async.failure_transport: no transport named 'failed'" in text


def test_passwords_are_masked_in_configuration_errors() -> None:
    dsn = "redis://user:s3cret@cache:6379"
    texts = [
        # A DSN where a transport name belongs.
        error_of({"transports": {"async": dsn}, "routing": {"shop.A": dsn}}),
        error_of({"transports": {"async": dsn}, "failure_transport": dsn}),
        # A DSN where a table belongs.
        error_of({"transports": {"async": {"dsn": dsn, "retry_strategy": dsn}}}),
        error_of({"buses": {"b": {"middleware": [{"name": dsn, "opts": 1}]}}}),
    ]

    for text in texts:
        assert "s3cret" not in text
    assert "redis://user:***@cache:6379" in texts[0]


def test_transport_config_repr_masks_the_password() -> None:
    config = TransportConfig(dsn="amqp://guest:s3cret@rabbit:5672/%2f")

    assert "s3cret" not in repr(config)
    assert "guest:***@rabbit" in repr(config)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match=r"broken\.toml: not valid TOML"):
        load_config(write(tmp_path / "broken.toml", "[messenger\n"))
    with pytest.raises(ConfigurationError, match=r"no \[messenger\] table"):
        load_config(write(tmp_path / "messenger.toml", "[other]\nx = 1\n"))
    with pytest.raises(ConfigurationError, match=r"no \[tool\.messenger\] table"):
        load_config(write(tmp_path / "pyproject.toml", "[tool.other]\nx = 1\n"))
    with pytest.raises(ConfigurationError, match=r"expected a table of settings"):
        structure_config(["not", "a", "table"])  # type: ignore[arg-type]


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "messenger.toml",
        """
        [messenger.transports.async]
        dns = "memory://"
        """,
    )

    with pytest.raises(ConfigurationError) as caught:
        load_config(path)

    text = str(caught.value)
    assert str(path) in text
    assert "unknown key 'dns' (did you mean 'dsn'?)" in text
