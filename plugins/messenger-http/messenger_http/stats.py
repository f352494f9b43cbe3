"""``GET /stats``: how many messages wait in each transport, and how many are parked.

The same counts as ``messenger stats --format json``, keyed for an HTTP API::

    {"transports": {"async": {"count": 3, "failureTransport": false},
                    "failed": {"count": 1, "failureTransport": true}},
     "uncountableTransports": ["sync"]}

A transport that fails to count has ``"count": null`` and an ``"error"`` (password masked).
"""

from __future__ import annotations

import logging
from typing import Any

from messenger_core.app import Messenger
from messenger_core.cli.stats import failure_transports
from messenger_core.dsn import mask_dsn
from messenger_core.transport import MessageCountAware

__all__ = ["transport_stats"]

logger = logging.getLogger("messenger.http")


def transport_stats(messenger: Messenger) -> dict[str, Any]:
    """Count the messages of every transport of ``messenger`` (blocking: call it in a thread)."""
    failure = failure_transports(messenger)
    transports: dict[str, dict[str, Any]] = {}
    uncountable: list[str] = []
    for name in messenger.transport_names:
        entry: dict[str, Any] = {"count": None, "failureTransport": name in failure}
        try:
            transport = messenger.get_transport(name)
            if not isinstance(transport, MessageCountAware):
                uncountable.append(name)
                continue
            entry["count"] = transport.message_count()
        except Exception as error:  # one transport down must not hide the others' counts
            reason = mask_dsn(f"{type(error).__name__}: {error}")
            logger.warning("could not count the messages of %s: %s", name, reason)
            entry["error"] = reason
        transports[name] = entry
    return {"transports": transports, "uncountableTransports": uncountable}
