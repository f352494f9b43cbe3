"""The messenger_transport_serializer hook: a plugin replaces a transport's serializer."""

from __future__ import annotations

from typing import Any

import attrs

from messenger_core import Messenger, hookimpl
from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_core.transport import TransportMessage


@attrs.frozen
class Ping:
    n: int


class Recording:
    """Wraps a serializer and records what it encoded, per transport."""

    def __init__(self, inner: Serializer, transport_name: str, seen: list[str]) -> None:
        self.inner = inner
        self.transport_name = transport_name
        self.seen = seen

    def encode(self, envelope: Envelope) -> TransportMessage:
        self.seen.append(self.transport_name)
        return self.inner.encode(envelope)

    def decode(self, message: TransportMessage) -> Envelope:
        return self.inner.decode(message)


def test_a_plugin_wraps_the_serializer_of_every_transport_it_is_asked_for() -> None:
    seen: list[str] = []
    options: list[Any] = []

    class Wrapper:
        @hookimpl
        def messenger_transport_serializer(
            self, messenger: Messenger, transport_name: str, serializer: Serializer
        ) -> Serializer | None:
            options.append(messenger.config.plugins.get("recording"))
            if transport_name == "plain":
                return None
            return Recording(serializer, transport_name, seen)

    messenger = Messenger(
        {
            "transports": {"wrapped": "memory://?serialize=true", "plain": "memory://"},
            "routing": {Ping: ["wrapped", "plain"]},
            "plugins": {"recording": {"level": 3}},
        },
        plugins=[Wrapper()],
    )

    messenger.bus.dispatch(Ping(1))

    assert seen == ["wrapped"]
    assert options == [{"level": 3}, {"level": 3}]
    received = messenger.get_transport("wrapped").get()  # type: ignore[attr-defined]
    assert [envelope.message for envelope in received] == [Ping(1)]


def test_without_a_plugin_the_configured_serializer_is_used() -> None:
    messenger = Messenger({"transports": {"async": "memory://"}, "routing": {Ping: "async"}})

    messenger.bus.dispatch(Ping(2))

    assert [e.message for e in messenger.get_transport("async").get()] == [Ping(2)]  # type: ignore[attr-defined]
