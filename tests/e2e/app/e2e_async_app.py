"""An application whose handlers are ``async``: the end-to-end test of async handlers.

Configured like ``e2e_app`` by ``MESSENGER_E2E_CONFIG`` and ``MESSENGER_E2E_STATE``. Each
handler leaves a marker file ``<shape>-<id>`` in the state directory once its body ran to the
end (after an ``await``), so the test sees which bodies really ran.

``python -m e2e_async_app N`` dispatches N messages of each kind from a separate process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import attrs

from messenger_core import Messenger

STATE = Path(os.environ["MESSENGER_E2E_STATE"])

messenger = Messenger.from_config(os.environ["MESSENGER_E2E_CONFIG"])


@attrs.frozen
class ByFunction:
    """Handled by an ``async def`` function."""

    id: str


@attrs.frozen
class ByCallable:
    """Handled by an instance of a class with ``async def __call__``."""

    id: str


@attrs.frozen
class ByAwaitable:
    """Handled by a plain function that returns a coroutine."""

    id: str


async def mark(shape: str, message_id: str) -> None:
    """Write the marker after giving the event loop a turn: only a body run to its end does."""
    await asyncio.sleep(0.001)
    (STATE / f"{shape}-{message_id}").write_text(str(os.getpid()))


@messenger.handler
async def on_function(message: ByFunction) -> None:
    await mark("function", message.id)


class OnCallable:
    async def __call__(self, message: ByCallable) -> None:
        await mark("callable", message.id)


messenger.handler(OnCallable())


@messenger.handler
def on_awaitable(message: ByAwaitable) -> Coroutine[Any, Any, None]:
    return mark("awaitable", message.id)


KINDS = (ByFunction, ByCallable, ByAwaitable)


def main(argv: list[str]) -> None:
    """Dispatch ``N`` messages of each kind (they are routed to a SQLite transport)."""
    for n in range(int(argv[0])):
        for kind in KINDS:
            messenger.bus.dispatch(kind(str(n)))
    messenger.close()


if __name__ == "__main__":
    main(sys.argv[1:])
