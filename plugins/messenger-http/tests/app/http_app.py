"""The application the HTTP tests serve: ``messenger --app http_app:make serve-http``.

``make()`` builds it from the environment the tests set: ``MESSENGER_HTTP_TEST_CONFIG`` (the
``messenger.toml``) and ``MESSENGER_HTTP_TEST_STATE`` (a directory where handlers leave a line
per event in ``handled.log``). The tests build the same application in their own process with
:func:`build`, to dispatch and count.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import attrs

from messenger_core import Messenger


@attrs.frozen
class Ping:
    """Handled at once."""

    id: str


@attrs.frozen
class Slow:
    """Its handler takes ``seconds``."""

    id: str
    seconds: float


@attrs.frozen
class Broken:
    """Its handler always fails."""

    id: str


def record(state: Path, event: str, message_id: str) -> None:
    """Append ``event id pid`` to the state's log (one short O_APPEND write per line)."""
    with (state / "handled.log").open("a", encoding="utf-8") as log:
        log.write(f"{event} {message_id} {os.getpid()}\n")


def build(config: str | Path, state: Path) -> Messenger:
    """The application of ``config``, its handlers writing to ``state``."""
    messenger = Messenger.from_config(config)

    @messenger.handler
    def on_ping(message: Ping) -> None:
        # Where it runs: a worker thread, never the event loop's.
        try:
            asyncio.get_running_loop()
            where = "event-loop"
        except RuntimeError:
            main = threading.current_thread() is threading.main_thread()
            where = "main-thread" if main else "worker-thread"
        record(state, "handled", message.id)
        record(state, where, message.id)

    @messenger.handler
    def on_slow(message: Slow) -> None:
        record(state, "started", message.id)
        time.sleep(message.seconds)
        record(state, "handled", message.id)

    @messenger.handler
    def on_broken(message: Broken) -> None:
        record(state, "attempt", message.id)
        raise RuntimeError(f"broken {message.id}")

    return messenger


def make() -> Messenger:
    """The application of the test that started this process."""
    return build(
        os.environ["MESSENGER_HTTP_TEST_CONFIG"], Path(os.environ["MESSENGER_HTTP_TEST_STATE"])
    )
