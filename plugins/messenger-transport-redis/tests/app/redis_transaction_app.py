"""The application of the ``redis_transaction`` crash test (``test_redis_transaction_processes``).

``MESSENGER_REDIS_TX_CONFIG`` names its ``messenger.toml`` (the ``redis_transaction``
middleware on the default bus); handlers count the message's id in the hash
``MESSENGER_REDIS_TX_KEY`` through the pipeline. A :class:`Slow` one then appends
``started ID`` to the file ``MESSENGER_REDIS_TX_LOG`` and waits, its write not applied, until
``<log>.release`` exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
from messenger_transport_redis import current_pipeline

from messenger_core import Messenger

messenger = Messenger.from_config(os.environ["MESSENGER_REDIS_TX_CONFIG"])
LOG = Path(os.environ["MESSENGER_REDIS_TX_LOG"])
KEY = os.environ["MESSENGER_REDIS_TX_KEY"]


@attrs.frozen
class Ping:
    """Counted at once."""

    id: int


@attrs.frozen
class Slow:
    """Counted, then held unapplied until the test releases it."""

    id: int


@messenger.handler
def on_ping(message: Ping) -> None:
    current_pipeline().hincrby(KEY, str(message.id), 1)


@messenger.handler
def on_slow(message: Slow) -> None:
    current_pipeline().hincrby(KEY, str(message.id), 1)
    with LOG.open("a", encoding="utf-8") as log:
        log.write(f"started {message.id}\n")
    release = LOG.with_name(LOG.name + ".release")
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def fill(pings: int, slow: int) -> None:
    """Dispatch ``Ping(0 .. pings - 1)``, then ``Slow(slow)``."""
    for number in range(pings):
        messenger.bus.dispatch(Ping(number))
    messenger.bus.dispatch(Slow(slow))
    messenger.close()
