"""The plugin hooks as an API: misspelled implementations are refused, and what a raising
worker event does is what ``messenger_core.hookspecs`` says."""

from __future__ import annotations

import signal
import types
from pathlib import Path
from typing import Any

import attrs
import pytest

from messenger_core import ConfigurationError, Envelope, Messenger, hookimpl, hookspecs
from messenger_core.transports.memory import MemoryTransport
from messenger_core.worker import Worker


@attrs.frozen
class PlaceOrder:
    order_id: int


@pytest.fixture(autouse=True)
def own_stop_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep these workers away from a ``messenger stop-workers`` run elsewhere on this host."""
    monkeypatch.setenv("MESSENGER_STOP_SIGNAL_FILE", str(tmp_path / "stop-workers"))


class Misspelled:
    """A plugin whose author typed ``startd``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def messenger_worker_startd(self, worker: Worker) -> None:
        self.calls.append("started")


def test_a_misspelled_hook_implementation_is_an_error_naming_the_plugin_and_the_hook() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Messenger(autoload=False, plugins=[Misspelled()])

    text = str(raised.value)
    assert text.startswith(f"plugin {Misspelled.__module__}.Misspelled implements")
    assert "implements messenger_worker_startd, which is not a messenger hook" in text
    assert "did you mean messenger_worker_started?" in text
    assert hookspecs.__name__ in text


def test_a_misspelled_hook_registered_later_is_refused_and_not_kept() -> None:
    messenger = Messenger(autoload=False)
    plugin = Misspelled()
    before = messenger.hooks.plugin_names()

    with pytest.raises(ConfigurationError, match="did you mean messenger_worker_started") as raised:
        messenger.hooks.register(plugin, "typo")

    assert str(raised.value).startswith("plugin 'typo' (")
    assert f"{Misspelled.__module__}.Misspelled) implements messenger_worker_startd" in str(
        raised.value
    )
    assert messenger.hooks.plugin_names() == before
    assert not messenger.hooks.manager.is_registered(plugin)


def test_the_error_names_a_plugin_registered_by_name_and_a_module_plugin() -> None:
    module = types.ModuleType("acme_messenger_plugin")

    @hookimpl
    def messenger_configur(messenger: Messenger) -> None:
        raise AssertionError("never called")

    module.messenger_configur = messenger_configur  # type: ignore[attr-defined]
    messenger = Messenger(autoload=False)

    with pytest.raises(ConfigurationError) as raised:
        messenger.hooks.register(module, "acme")

    assert str(raised.value).startswith(
        "plugin 'acme' (acme_messenger_plugin) implements messenger_configur, which is not a "
        "messenger hook; did you mean messenger_configure?"
    )


def test_an_unknown_hook_far_from_any_name_suggests_nothing() -> None:
    class Plugin:
        @hookimpl
        def messenger_teleport(self) -> None:
            raise AssertionError("never called")

    with pytest.raises(ConfigurationError) as raised:
        Messenger(autoload=False, plugins=[Plugin()])

    assert "implements messenger_teleport, which is not a messenger hook" in str(raised.value)
    assert "did you mean" not in str(raised.value)


def test_an_optional_hook_for_another_version_is_allowed() -> None:
    class Plugin:
        @hookimpl(optionalhook=True)
        def messenger_message_teleported(self, envelope: Envelope) -> None:
            raise AssertionError("never called")

    messenger = Messenger(autoload=False, plugins=[Plugin()])

    assert messenger.hooks.plugin_names()


def test_correctly_named_hooks_are_accepted() -> None:
    class Plugin:
        @hookimpl
        def messenger_worker_started(self, worker: Worker) -> None:
            pass

        def messenger_helper_not_a_hook(self) -> None:
            """Not marked with @hookimpl: not a hook implementation at all."""

    Messenger(autoload=False, plugins=[Plugin()])


# -- what a raising worker event does ----------------------------------------------------------


def make_messenger(plugin: object, retry: dict[str, Any] | None = None) -> Messenger:
    messenger = Messenger(
        {
            "failure_transport": "failed",
            "transports": {
                "async": {"dsn": "memory://", "retry_strategy": retry or {"delay": 0}},
                "failed": "memory://",
            },
        },
        autoload=False,
        plugins=[plugin],
    )
    messenger.route(PlaceOrder, "async")
    return messenger


def memory(messenger: Messenger, name: str) -> MemoryTransport:
    transport = messenger.get_transport(name)
    assert isinstance(transport, MemoryTransport)
    return transport


def test_a_raising_retried_hook_is_not_taken_for_a_copy_that_cannot_be_encoded() -> None:
    # A ValueError from a plugin once made the worker park the message "in its raw form".
    class Plugin:
        @hookimpl
        def messenger_message_retried(self, envelope: Envelope) -> None:
            raise ValueError("the plugin's own bug")

    messenger = make_messenger(Plugin(), retry={"max_retries": 3, "delay": 0, "jitter": 0})

    @messenger.handler
    def fail(message: PlaceOrder) -> None:
        raise ConnectionError("down")

    messenger.bus.dispatch(PlaceOrder(1))
    stats = messenger.worker(["async"]).run(limit=1, sleep=0.001, handle_signals=False)

    assert stats.retried == 1
    assert stats.parked == 0
    assert memory(messenger, "failed").sent == []
    transport = memory(messenger, "async")
    assert len(transport.rejected) == 1  # the retry stands: the original is settled
    assert transport.message_count() == 1  # the retry copy


def test_a_raising_started_hook_leaves_the_signal_handlers_as_they_were() -> None:
    class Plugin:
        @hookimpl
        def messenger_worker_started(self, worker: Worker) -> None:
            raise RuntimeError("cannot start")

    messenger = make_messenger(Plugin())
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    with pytest.raises(RuntimeError, match="cannot start"):
        messenger.worker(["async"]).run(limit=1, handle_signals=True)

    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_the_worker_hooks_are_typed_with_the_worker() -> None:
    import typing  # noqa: PLC0415

    for name in ("messenger_worker_started", "messenger_worker_idle", "messenger_worker_stopped"):
        hints = typing.get_type_hints(
            getattr(hookspecs, name), {**vars(hookspecs), "Worker": Worker}
        )
        assert hints["worker"] is Worker, name


def test_every_hook_spec_documents_each_of_its_arguments() -> None:
    import inspect  # noqa: PLC0415

    specs = [
        value
        for name, value in vars(hookspecs).items()
        if name.startswith("messenger_") and callable(value)
    ]
    assert len(specs) == 12
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        for argument in inspect.signature(spec).parameters:
            assert f":param {argument}:" in doc, (spec, argument)
        assert "Called " in doc, spec
        assert ":return:" in doc, spec
