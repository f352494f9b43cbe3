"""Plugin discovery: entry points (through tiny fake distributions), pluggy plugins, blocking,
and embedding applications that use no entry point at all."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pluggy
import pytest

import messenger_core
import messenger_core.plugins
from messenger_core import (
    DEFAULT_BUS,
    ConfigurationError,
    Envelope,
    HandledStamp,
    Messenger,
    SentStamp,
    hookimpl,
)
from messenger_core._requirements import _satisfies_simply, core_requirement_problem
from messenger_core.dsn import Dsn
from messenger_core.middleware import MiddlewareContext, Next
from messenger_core.plugins import (
    BUILTINS,
    MIDDLEWARE_GROUP,
    PLUGINS_GROUP,
    SERIALIZERS_GROUP,
    TRANSPORTS_GROUP,
    PluginRegistry,
    discover_entry_points,
)

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"

_counter = itertools.count()


@attrs.frozen
class Ping:
    pass


class ListSender:
    def __init__(self, dsn: Dsn, options: Mapping[str, Any]) -> None:
        self.dsn = dsn
        self.options = options
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope) -> Envelope:
        self.sent.append(envelope)
        return envelope

    def close(self) -> None:
        pass


class ListFactory:
    def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: object) -> ListSender:
        return ListSender(dsn, options)


def stub_serializer(registry: object, options: object) -> str:
    return "stub serializer"


@attrs.define
class FakeDistributions:
    """Writes ``*.dist-info`` folders and their modules into a directory on ``sys.path``."""

    root: Path
    prefix: str
    modules: list[str] = attrs.field(factory=list)

    def module(self, name: str, source: str) -> str:
        """Write module ``<prefix>_<name>``; return its import name."""
        full = f"{self.prefix}_{name}"
        (self.root / f"{full}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        self.modules.append(full)
        return full

    def distribution(self, name: str, entry_points: Mapping[str, Mapping[str, str]]) -> None:
        folder = self.root / f"{name.replace('-', '_')}-1.0.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
        )
        lines = []
        for group, entries in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{key} = {value}" for key, value in entries.items()]
            lines.append("")
        (folder / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDistributions]:
    monkeypatch.delenv("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("MESSENGER_DISABLED_PLUGINS", raising=False)
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    distributions = FakeDistributions(root, f"fakeplugin{next(_counter)}_{tmp_path.name[-6:]}")
    yield distributions
    for name in distributions.modules:
        sys.modules.pop(name, None)


TRANSPORT_MODULE = """
    from messenger_core.envelope import Envelope

    class Sender:
        def __init__(self, dsn, options):
            self.dsn = dsn
            self.options = options
            self.sent = []

        def send(self, envelope):
            self.sent.append(envelope)
            return envelope

        def close(self):
            pass

    class Factory:
        def create(self, dsn, options, serializer):
            return Sender(dsn, options)
"""


# -- transports --------------------------------------------------------------------------------


def test_a_plugin_transport_is_found_by_scheme_and_only_it_is_imported(
    fake: FakeDistributions,
) -> None:
    used = fake.module("used", TRANSPORT_MODULE)
    unused = fake.module("unused", "raise AssertionError('must not be imported')")
    fake.distribution(
        "messenger-transport-fake",
        {TRANSPORTS_GROUP: {"fakeq": f"{used}:Factory", "otherq": f"{unused}:Factory"}},
    )
    messenger = Messenger(
        {"transports": {"q": "fakeq://broker:1234/jobs?batch=5"}, "routing": {"*": "q"}},
        serializers={"json": stub_serializer},
    )

    envelope = messenger.bus.dispatch(Ping())

    transport: Any = messenger.get_transport("q")
    assert type(transport).__module__ == used
    assert [e.message for e in transport.sent] == [Ping()]
    assert transport.dsn.host == "broker"
    # The DSN's query options reach the factory in the DSN; it merges the (here no) explicit
    # ones over them once (issue 10.7: the application no longer merges them too).
    assert transport.dsn.with_options(transport.options) == {"batch": "5"}
    assert transport.options == {}
    assert envelope.last(SentStamp) == SentStamp(sender_name="q")
    assert unused not in sys.modules


def test_config_options_override_the_dsn_query(fake: FakeDistributions) -> None:
    module = fake.module("transport", TRANSPORT_MODULE)
    fake.distribution(
        "messenger-transport-fake", {TRANSPORTS_GROUP: {"fakeq": f"{module}:Factory"}}
    )
    messenger = Messenger(
        {"transports": {"q": {"dsn": "fakeq://h?batch=5&x=1", "options": {"batch": 50}}}},
        serializers={"json": stub_serializer},
    )

    transport: Any = messenger.get_transport("q")

    # The factory is given the configuration's options and merges them over the DSN's query
    # once (see TransportFactory.create); the application does not merge them too.
    assert transport.options == {"batch": 50}
    assert transport.dsn.with_options(transport.options) == {"batch": 50, "x": "1"}


def test_an_unknown_scheme_names_it_suggests_the_closest_and_the_package(
    fake: FakeDistributions,
) -> None:
    module = fake.module("redis", "raise AssertionError('must not be imported')")
    fake.distribution("messenger-transport-redis", {TRANSPORTS_GROUP: {"redis": f"{module}:F"}})
    messenger = Messenger({"transports": {"async": "redsi://u:s3cret@cache:6379"}})

    with pytest.raises(ConfigurationError) as caught:
        messenger.get_transport("async")

    text = str(caught.value)
    assert text.startswith("transport 'async': ")
    assert "no transport for DSN scheme 'redsi'" in text
    assert "did you mean 'redis'?" in text
    assert "pip install messenger-transport-redsi" in text
    assert "s3cret" not in text
    assert module not in sys.modules


def test_an_unknown_scheme_without_a_close_match(fake: FakeDistributions) -> None:
    registry = PluginRegistry()

    with pytest.raises(ConfigurationError) as caught:
        registry.load(TRANSPORTS_GROUP, "zzzqqq")

    text = str(caught.value)
    assert "did you mean" not in text
    assert "memory" in text  # what is installed is listed
    assert "pip install messenger-transport-zzzqqq" in text


@pytest.mark.parametrize(
    ("scheme", "package"),
    [("postgresql", "messenger-transport-sql"), ("rediss", "messenger-transport-redis")],
)
def test_unknown_scheme_of_a_project_plugin_names_its_distribution(
    scheme: str, package: str
) -> None:
    # The plugins are installed here, so ask for the message a missing one would get.
    message = PluginRegistry(autoload=False)._not_found(TRANSPORTS_GROUP, scheme)
    assert f"pip install {package}" in message


def test_two_distributions_claiming_one_scheme_is_an_error_naming_both(
    fake: FakeDistributions,
) -> None:
    first = fake.module("first", TRANSPORT_MODULE)
    second = fake.module("second", TRANSPORT_MODULE)
    fake.distribution("messenger-transport-one", {TRANSPORTS_GROUP: {"clash": f"{first}:Factory"}})
    fake.distribution("messenger-transport-two", {TRANSPORTS_GROUP: {"clash": f"{second}:Factory"}})
    messenger = Messenger({"transports": {"q": "clash://h"}})

    with pytest.raises(ConfigurationError) as caught:
        messenger.get_transport("q")

    text = str(caught.value)
    assert "'clash' is claimed by several installed distributions" in text
    assert f"messenger-transport-one ({first}:Factory)" in text
    assert f"messenger-transport-two ({second}:Factory)" in text
    assert "MESSENGER_DISABLED_PLUGINS" in text
    assert first not in sys.modules
    assert second not in sys.modules
    # Listed once, even though two distributions claim it.
    assert PluginRegistry().names(TRANSPORTS_GROUP).count("clash") == 1


def test_a_claimed_scheme_registered_explicitly_needs_no_entry_point(
    fake: FakeDistributions,
) -> None:
    first = fake.module("first", TRANSPORT_MODULE)
    fake.distribution("messenger-transport-one", {TRANSPORTS_GROUP: {"clash": f"{first}:Factory"}})
    fake.distribution("messenger-transport-two", {TRANSPORTS_GROUP: {"clash": f"{first}:Factory"}})
    messenger = Messenger(
        {"transports": {"q": "clash://h"}},
        transports={"clash": ListFactory()},
        serializers={"json": stub_serializer},
    )

    assert isinstance(messenger.get_transport("q"), ListSender)


def test_a_plugin_that_fails_to_import_is_an_error_with_its_cause(
    fake: FakeDistributions,
) -> None:
    module = fake.module("broken", "raise ImportError('needs the redis client: pip install redis')")
    fake.distribution(
        "messenger-transport-broken", {TRANSPORTS_GROUP: {"brk": f"{module}:Factory"}}
    )
    messenger = Messenger({"transports": {"q": "brk://h"}})

    with pytest.raises(ConfigurationError) as caught:
        messenger.get_transport("q")

    text = str(caught.value)
    assert "transport 'q'" in text
    assert "'brk' from messenger-transport-broken" in text
    assert "failed to import: ImportError: needs the redis client" in text
    assert isinstance(caught.value.__cause__, ImportError)


# -- middleware --------------------------------------------------------------------------------


def test_a_configured_middleware_that_fails_to_import_is_an_error(fake: FakeDistributions) -> None:
    fake.distribution(
        "messenger-middleware-broken",
        {MIDDLEWARE_GROUP: {"audit": f"{fake.prefix}_missing_module:factory"}},
    )
    messenger = Messenger({"buses": {DEFAULT_BUS: {"middleware": ["audit"]}}})

    with pytest.raises(ConfigurationError) as caught:
        messenger.get_bus(DEFAULT_BUS)

    text = str(caught.value)
    assert "middleware 'audit' from messenger-middleware-broken" in text
    assert "failed to import: ModuleNotFoundError" in text


def test_an_unknown_middleware_name_suggests_the_closest(fake: FakeDistributions) -> None:
    messenger = Messenger(
        {"buses": {DEFAULT_BUS: {"middleware": ["loging"]}}}, middleware={"tracing": object()}
    )

    with pytest.raises(ConfigurationError) as caught:
        messenger.get_bus(DEFAULT_BUS)

    text = str(caught.value)
    assert "no middleware named 'loging'" in text
    assert "did you mean 'logging'?" in text
    assert "tracing" in text


def test_a_middleware_from_an_entry_point_runs_in_configured_order(
    fake: FakeDistributions,
) -> None:
    module = fake.module(
        "mw",
        """
        LOG = []

        def factory(context):
            label = context.options.get("label", "plugin")

            def middleware(envelope, next):
                LOG.append((label, context.bus_name))
                return next(envelope)

            return middleware
        """,
    )
    fake.distribution("messenger-middleware-log", {MIDDLEWARE_GROUP: {"log": f"{module}:factory"}})
    messenger = Messenger(
        {
            "buses": {
                DEFAULT_BUS: {"middleware": [{"name": "log", "options": {"label": "a"}}, "log"]}
            }
        }
    )
    messenger.handler(lambda m: None, handles=Ping)

    messenger.bus.dispatch(Ping())

    assert sys.modules[module].LOG == [("a", DEFAULT_BUS), ("plugin", DEFAULT_BUS)]


# -- pluggy plugins ----------------------------------------------------------------------------


PLUGGY_MODULE = """
    import attrs
    from messenger_core import hookimpl

    @attrs.frozen
    class PluginMessage:
        text: str = "hi"

    CALLS = []

    @hookimpl
    def messenger_register_types(registry):
        registry.register(PluginMessage, "plugin.message", "App\\\\Message\\\\PluginMessage")

    @hookimpl
    def messenger_configure(messenger):
        CALLS.append("configure")
        messenger.handler(lambda message: "plugin handled", handles=PluginMessage)

    @hookimpl
    def messenger_bus_middleware(messenger, bus_name):
        def middleware(envelope, next):
            CALLS.append(("middleware", bus_name))
            return next(envelope)

        return [middleware]
"""


def test_pluggy_plugins_from_the_messenger_plugins_group(fake: FakeDistributions) -> None:
    module = fake.module("hooks", PLUGGY_MODULE)
    fake.distribution("messenger-plugin-demo", {PLUGINS_GROUP: {"demo": module}})

    messenger = Messenger()

    plugin = sys.modules[module]
    assert "demo" in messenger.hooks.plugin_names()
    assert messenger.registry.resolve("App\\Message\\PluginMessage") is plugin.PluginMessage
    assert messenger.registry.name_of(plugin.PluginMessage) == "plugin.message"
    assert plugin.CALLS == ["configure"]
    assert messenger.bus.query(plugin.PluginMessage()) == "plugin handled"
    assert plugin.CALLS == ["configure", ("middleware", DEFAULT_BUS)]


def test_plugins_passed_explicitly() -> None:
    calls: list[str] = []

    class Plugin:
        @hookimpl
        def messenger_configure(self, messenger: Messenger) -> None:
            calls.append("configure")
            messenger.handler(lambda m: "explicit", handles=Ping)

    messenger = Messenger(autoload=False, plugins=[Plugin()])

    assert calls == ["configure"]
    assert messenger.bus.query(Ping()) == "explicit"


# -- blocking ----------------------------------------------------------------------------------


def test_disable_plugin_autoload(fake: FakeDistributions, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = fake.module("transport", TRANSPORT_MODULE)
    hooks = fake.module("hooks", PLUGGY_MODULE)
    fake.distribution(
        "messenger-transport-fake",
        {TRANSPORTS_GROUP: {"fakeq": f"{transport}:Factory"}, PLUGINS_GROUP: {"demo": hooks}},
    )
    monkeypatch.setenv("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", "1")

    messenger = Messenger(
        {
            "transports": {"q": "fakeq://h", "now": "sync://", "mine": "list://"},
            "routing": {"*": "now"},
        },
        transports={"list": ListFactory()},
    )

    assert messenger.factories.autoload is False
    assert "demo" not in messenger.hooks.plugin_names()
    assert hooks not in sys.modules
    with pytest.raises(ConfigurationError) as caught:
        messenger.get_transport("q")
    text = str(caught.value)
    assert "no transport for DSN scheme 'fakeq'" in text
    assert "(MESSENGER_DISABLE_PLUGIN_AUTOLOAD is set)" in text
    assert "register the factory explicitly" in text
    assert transport not in sys.modules
    # Explicit factories and the core's own built-ins (sync://, json) still work.
    assert isinstance(messenger.get_transport("mine"), ListSender)
    messenger.handler(lambda m: "synchronously", handles=Ping)
    envelope = messenger.bus.dispatch(Ping())
    assert [s.result for s in envelope.all(HandledStamp)] == ["synchronously"]


def test_disabled_plugins(fake: FakeDistributions, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = fake.module("transport", TRANSPORT_MODULE)
    blocked = fake.module("blocked", PLUGGY_MODULE)
    allowed = fake.module(
        "allowed",
        """
        from messenger_core import hookimpl
        CALLS = []

        @hookimpl
        def messenger_configure(messenger):
            CALLS.append("configure")
        """,
    )
    fake.distribution(
        "messenger-plugins-fake",
        {
            TRANSPORTS_GROUP: {"fakeq": f"{transport}:Factory", "okq": f"{transport}:Factory"},
            PLUGINS_GROUP: {"blocked": blocked, "allowed": allowed},
        },
    )
    monkeypatch.setenv("MESSENGER_DISABLED_PLUGINS", " fakeq , blocked ")

    messenger = Messenger(
        {"transports": {"off": "fakeq://h", "on": "okq://h"}},
        serializers={"json": stub_serializer},
    )

    assert messenger.factories.disabled == {"fakeq", "blocked"}
    assert "blocked" not in messenger.hooks.plugin_names()
    assert blocked not in sys.modules
    assert sys.modules[allowed].CALLS == ["configure"]
    with pytest.raises(ConfigurationError, match="listed in MESSENGER_DISABLED_PLUGINS"):
        messenger.get_transport("off")
    assert type(messenger.get_transport("on")).__module__ == transport
    assert "fakeq" not in messenger.factories.names(TRANSPORTS_GROUP)


# -- embedding without entry points --------------------------------------------------------------


def test_an_embedding_app_with_explicit_factories_uses_no_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_entry_points(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("entry points must not be read")

    monkeypatch.setattr("messenger_core.plugins.metadata.entry_points", no_entry_points)
    monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", no_entry_points)
    seen: list[str] = []
    serializers: list[object] = []

    def serializer_factory(registry: object, options: object) -> str:
        serializers.append(registry)
        return "explicit serializer"

    def middleware_factory(context: MiddlewareContext) -> Callable[[Envelope, Next], Envelope]:
        def middleware(envelope: Envelope, next: Next) -> Envelope:
            seen.append(type(envelope.message).__name__)
            return next(envelope)

        return middleware

    class Factory:
        def create(self, dsn: Dsn, options: Mapping[str, Any], serializer: object) -> ListSender:
            assert serializer == "explicit serializer"
            return ListSender(dsn, options)

    messenger = Messenger(
        {
            "transports": {"queue": "embedded://"},
            "routing": {f"{Ping.__module__}.Ping": "queue"},
            "buses": {DEFAULT_BUS: {"middleware": ["seen"]}},
        },
        autoload=False,
        transports={"embedded": Factory()},
        serializers={"json": serializer_factory},
        middleware={"seen": middleware_factory},
    )

    envelope = messenger.bus.dispatch(Ping())

    queue: Any = messenger.get_transport("queue")
    assert [e.message for e in queue.sent] == [Ping()]
    assert envelope.last(SentStamp) == SentStamp(sender_name="queue")
    assert seen == ["Ping"]
    assert serializers == [messenger.registry]


def test_autoload_false_keeps_the_core_built_ins() -> None:
    messenger = Messenger(
        {"transports": {"now": "sync://"}, "routing": {"*": "now"}}, autoload=False
    )
    messenger.handler(lambda m: "handled", handles=Ping, from_transport="now")

    envelope = messenger.bus.dispatch(Ping())

    assert [s.result for s in envelope.all(HandledStamp)] == ["handled"]
    assert "sync" in messenger.factories.names(TRANSPORTS_GROUP)


# -- the core's own entry points -------------------------------------------------------------


def _declared() -> dict[str, dict[str, str]]:
    with PYPROJECT.open("rb") as stream:
        entry_points = tomllib.load(stream)["project"]["entry-points"]
    return {
        group: dict(entries)
        for group, entries in entry_points.items()
        if group.startswith("messenger.")
    }


def test_the_installed_core_entry_points_are_those_of_pyproject() -> None:
    installed: dict[str, dict[str, str]] = {}
    for info in discover_entry_points():
        if info.distribution == "messenger-core":
            installed.setdefault(info.group, {})[info.name] = info.value

    assert installed == _declared(), (
        "the installed metadata is stale: run pip install -e . in the project root"
    )


def test_the_core_registers_its_built_ins_through_entry_points() -> None:
    declared = _declared()

    assert {"memory", "in-memory", "sync"} <= set(declared[TRANSPORTS_GROUP])
    assert "json" in declared[SERIALIZERS_GROUP]
    assert declared[MIDDLEWARE_GROUP]


@pytest.mark.parametrize(
    ("group", "name"),
    [(group, name) for group, entries in _declared().items() for name in entries],
)
def test_every_core_entry_point_imports(group: str, name: str) -> None:
    factory = PluginRegistry(autoload=False).load(group, name)

    assert callable(factory) or hasattr(factory, "create")


def test_the_default_stack_spelled_out_with_the_core_middleware_names() -> None:
    names = [
        "add_bus_name_stamp",
        "reject_redelivered",
        "dispatch_after_current_bus",
        "failed_message_processing",
        "send_message",
        "handle_message",
    ]
    messenger = Messenger(
        {
            "transports": {"now": "sync://"},
            "routing": {"*": "now"},
            "buses": {DEFAULT_BUS: {"default_middleware": False, "middleware": names}},
        },
        autoload=False,
    )
    messenger.handler(lambda m: "handled", handles=Ping, from_transport="now")

    envelope = messenger.bus.dispatch(Ping())

    assert len(messenger.bus.middleware) == len(names)
    assert envelope.last(SentStamp) == SentStamp(sender_name="now")
    assert [s.result for s in envelope.all(HandledStamp)] == ["handled"]


# -- two claimants, picking one, the messenger-core requirement -----------------------------------
def test_a_third_party_claiming_a_core_scheme_does_not_silently_shadow_it(
    fake: FakeDistributions,
) -> None:
    module = fake.module("shadow", TRANSPORT_MODULE)
    fake.distribution("messenger-shadow", {TRANSPORTS_GROUP: {"memory": f"{module}:Factory"}})
    messenger = Messenger({"transports": {"q": "memory://"}})

    with pytest.raises(ConfigurationError) as caught:
        messenger.get_transport("q")

    text = str(caught.value)
    assert "'memory' is claimed by several installed distributions" in text
    assert "messenger-core (messenger_core.transports.memory:MemoryTransportFactory)" in text
    assert f"messenger-shadow ({module}:Factory)" in text
    assert "MESSENGER_DISABLED_PLUGINS=messenger-shadow:memory" in text
    assert "MESSENGER_DISABLED_PLUGINS=messenger-core:memory" in text
    assert module not in sys.modules


@pytest.mark.parametrize(
    ("disabled", "winner"),
    [("messenger-shadow:memory", "core"), ("messenger_Core:memory", "shadow")],
)
def test_disabled_plugins_picks_one_of_two_claimants(
    fake: FakeDistributions, monkeypatch: pytest.MonkeyPatch, disabled: str, winner: str
) -> None:
    module = fake.module("shadow", TRANSPORT_MODULE)
    fake.distribution("messenger-shadow", {TRANSPORTS_GROUP: {"memory": f"{module}:Factory"}})
    monkeypatch.setenv("MESSENGER_DISABLED_PLUGINS", disabled)

    transport = Messenger({"transports": {"q": "memory://"}}).get_transport("q")

    expected = module if winner == "shadow" else "messenger_core.transports.memory"
    assert type(transport).__module__ == expected


def test_a_whole_distribution_can_be_disabled(
    fake: FakeDistributions, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = fake.module("transport", TRANSPORT_MODULE)
    fake.distribution(
        "messenger-transport-fake",
        {TRANSPORTS_GROUP: {"fakeq": f"{module}:Factory", "memory": f"{module}:Factory"}},
    )
    monkeypatch.setenv("MESSENGER_DISABLED_PLUGINS", "messenger-transport-fake:*")
    registry = PluginRegistry()

    assert "fakeq" not in registry.names(TRANSPORTS_GROUP)
    assert (
        registry.load(TRANSPORTS_GROUP, "memory").__module__ == "messenger_core.transports.memory"
    )
    with pytest.raises(ConfigurationError, match="listed in MESSENGER_DISABLED_PLUGINS"):
        registry.load(TRANSPORTS_GROUP, "fakeq")


def test_two_distributions_claiming_one_pluggy_plugin_id_is_an_error(
    fake: FakeDistributions, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fake.module("first", PLUGGY_MODULE)
    second = fake.module("second", PLUGGY_MODULE)
    fake.distribution("messenger-hooks-one", {PLUGINS_GROUP: {"audit": first}})
    fake.distribution("messenger-hooks-two", {PLUGINS_GROUP: {"audit": second}})

    with pytest.raises(ConfigurationError) as caught:
        Messenger()
    assert "'audit' is claimed by several installed distributions" in str(caught.value)
    assert "messenger-hooks-one" in str(caught.value)
    assert "messenger-hooks-two" in str(caught.value)

    monkeypatch.setenv("MESSENGER_DISABLED_PLUGINS", "messenger-hooks-one:audit")
    assert "audit" in Messenger().hooks.plugin_names()
    assert first not in sys.modules
    assert second in sys.modules


def test_autoload_false_says_so_instead_of_naming_an_unset_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry = PluginRegistry(autoload=False)

    with pytest.raises(ConfigurationError) as caught:
        registry.load(TRANSPORTS_GROUP, "redis")

    text = str(caught.value)
    assert "no transport for DSN scheme 'redis'" in text
    assert "pip install messenger-transport-redis" in text
    assert "autoload=False was passed" in text
    assert "MESSENGER_DISABLE_PLUGIN_AUTOLOAD" not in text


def test_the_built_ins_table_is_the_core_entry_points() -> None:
    assert {group: dict(entries) for group, entries in BUILTINS.items() if entries} == _declared()


def test_the_built_ins_load_without_stevedore() -> None:
    code = (
        "import sys\n"
        "from messenger_core import Messenger\n"
        "m = Messenger({'transports': {'q': 'memory://'}, 'routing': {'*': 'q'}})\n"
        "m.bus.dispatch(object())\n"
        "assert m.get_transport('q').message_count() == 1\n"
        "assert 'stevedore' not in sys.modules, 'stevedore was imported'\n"
    )
    # Without third-party plugins (an installed `messenger.plugins` entry point, such as
    # messenger-http's, is loaded through stevedore).
    environment = {**os.environ, "MESSENGER_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("requirement", "problem"),
    [
        ("messenger-core>=99", True),
        ("messenger-core (<0.0.1)", True),
        ("messenger_core>=0.1,!=0.0.5", False),
        ("messenger-core>=99; extra == 'test'", False),
        ("other-package>=99", False),
    ],
)
def test_a_plugin_requiring_another_core_is_flagged(
    fake: FakeDistributions, requirement: str, problem: bool
) -> None:
    name = f"messenger-needs-{next(_counter)}"
    fake.distribution(name, {})
    metadata_file = next(fake.root.glob(f"{name.replace('-', '_')}-1.0.dist-info")) / "METADATA"
    metadata_file.write_text(metadata_file.read_text() + f"Requires-Dist: {requirement}\n")

    found = core_requirement_problem(name)

    assert (found is not None) is problem
    if problem:
        assert found is not None
        assert f"{name} requires messenger-core" in found
        assert f"but {messenger_core.__version__} is installed" in found


@pytest.mark.parametrize(
    ("version", "specifier", "expected"),
    [
        ("0.1.0", ">=0.1,<0.2", True),
        ("0.2.0", ">=0.1,<0.2", False),
        ("0.1.5", "~=0.1.2", True),
        ("0.2.0", "~=0.1.2", False),
        ("1.4.2", "==1.4.*", True),
        ("1.5.0", "==1.4.*", False),
        ("1.0", "!=1.0.0", False),
        ("1.0", ">1.0", False),
        ("0+unknown", "<=0", True),
    ],
)
def test_the_fallback_version_check(version: str, specifier: str, expected: bool) -> None:
    assert _satisfies_simply(version, specifier) is expected


def test_a_plugin_installed_after_a_first_load_is_found(fake: FakeDistributions) -> None:
    # stevedore remembers each group's entry points for the life of the process; the core
    # must not depend on (nor empty) that private cache.
    first = fake.module("first", TRANSPORT_MODULE)
    fake.distribution(
        "messenger-transport-first", {TRANSPORTS_GROUP: {"firstq": f"{first}:Factory"}}
    )
    assert PluginRegistry().load(TRANSPORTS_GROUP, "firstq").__module__ == first

    later = fake.module("later", TRANSPORT_MODULE)
    fake.distribution(
        "messenger-transport-later", {TRANSPORTS_GROUP: {"laterq": f"{later}:Factory"}}
    )

    assert PluginRegistry().load(TRANSPORTS_GROUP, "laterq").__module__ == later


def test_the_core_does_not_touch_stevedores_private_cache() -> None:
    source = Path(messenger_core.plugins.__file__).read_text()
    assert "ENTRY_POINT_CACHE" not in source
    assert "_cache" not in source


def test_an_entry_point_plugin_with_a_misspelled_hook_stops_the_application_naming_it(
    fake: FakeDistributions,
) -> None:
    module = fake.module(
        "typo",
        """
        from messenger_core import hookimpl

        @hookimpl
        def messenger_worker_startd(worker):
            pass
        """,
    )
    fake.distribution("messenger-plugin-typo", {PLUGINS_GROUP: {"typo": module}})

    with pytest.raises(ConfigurationError) as raised:
        Messenger()

    assert str(raised.value).startswith(
        f"plugin 'typo' ({module}) implements messenger_worker_startd, which is not a "
        "messenger hook; did you mean messenger_worker_started?"
    )
