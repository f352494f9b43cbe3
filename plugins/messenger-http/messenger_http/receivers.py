"""The receivers HTTP consumes read from: one message per ``get()`` where a transport batches.

A consume stops at its time limit between two messages. A transport that reserves a batch
per ``get()`` (the SQL and Redis transports' ``fetch_size``, 10 by default) would leave the
rest of the batch reserved by a long-lived server until the reservation times out (an hour by
default), since the transport is not closed after the consume. So each receiver is consumed
through a transport of its own, built from the same configuration with these options on top:

- SQL (``sqlite``, ``postgresql``, ``mysql``...): ``fetch_size = 1``, and on PostgreSQL
  ``use_notify = false`` (an empty queue answers at once instead of waiting for a
  notification, so that an empty consume returns early);
- Redis: ``fetch_size = 1``.

Other transports (``memory://``, ``amqp://``...) are consumed through the application's own
transport object. Sending (retries, the failure transport) always goes through the
application's transports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from messenger_core.app import Messenger
from messenger_core.dsn import Dsn
from messenger_core.transport import Transport
from messenger_core.wiring import create_transport

__all__ = ["ONE_AT_A_TIME", "one_at_a_time_transport"]

_SQL = {"fetch_size": 1}
ONE_AT_A_TIME: dict[str, Mapping[str, Any]] = {
    "sqlite": _SQL,
    "mysql": _SQL,
    "mariadb": _SQL,
    "postgresql": {**_SQL, "use_notify": False},
    "postgres": {**_SQL, "use_notify": False},
    "redis": {"fetch_size": 1},
    "rediss": {"fetch_size": 1},
}
"""The options, by DSN scheme, that make a transport deliver one message per ``get()``."""


def one_at_a_time_transport(messenger: Messenger, name: str) -> Transport | None:
    """A new transport for receiver ``name`` reading one message per ``get()``, or ``None``
    when the application's own transport serves (see the module documentation)."""
    config = messenger.config.transports.get(name)
    if config is None:
        return None
    overrides = ONE_AT_A_TIME.get(Dsn.parse(config.dsn).scheme)
    if overrides is None:
        return None
    config = attrs.evolve(config, options={**config.options, **overrides})
    return create_transport(messenger, name, config, messenger.serializer)
