"""PostgreSQL LISTEN/NOTIFY: wait on a dedicated connection until a queue gets a message.

The notify trigger (see :func:`~messenger_transport_sql.schema.postgresql_notify_ddl`) sends a
notification on the channel named after the table, with the queue name as payload, when an
insert commits. The listener keeps its own connection (the transport's main connection runs
queries) and reads notifications straight from libpq, which works with every psycopg 3.
"""

from __future__ import annotations

import select
import time
from typing import Any

import sqlalchemy as sa

__all__ = ["NotifyListener"]


class NotifyListener:
    """Listens on ``channel`` for notifications whose payload is ``payload``."""

    def __init__(self, engine: sa.Engine, channel: str, payload: str) -> None:
        self._engine = engine
        self._channel = channel
        self._payload = payload
        self._connection: sa.Connection | None = None
        self._pgconn: Any = None

    @property
    def listening(self) -> bool:
        """Whether the listening connection is open."""
        return self._connection is not None

    def start(self) -> None:
        """Open the connection and LISTEN (no-op when already listening); may raise."""
        if self._connection is not None:
            return
        connection = self._engine.connect()
        try:
            # The channel is the validated table name (an identifier).
            connection.exec_driver_sql(f'LISTEN "{self._channel}"')
            driver_connection: Any = connection.connection.driver_connection
            self._pgconn = driver_connection.pgconn
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification for our queue.

        Returns true as soon as one arrived (draining all that are pending), false on timeout
        or when the connection broke (it is closed; :meth:`start` opens a new one).
        """
        if self._connection is None:
            return False
        try:
            if self._drain():
                return True
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                readable, _, _ = select.select([self._pgconn.socket], [], [], remaining)
                if readable:
                    self._pgconn.consume_input()
                    if self._drain():
                        return True
        except Exception:  # the server went away: listen again next time
            self.close()
            return False

    def _drain(self) -> bool:
        matched = False
        while (notification := self._pgconn.notifies()) is not None:
            if (
                notification.relname.decode() == self._channel
                and notification.extra.decode() == self._payload
            ):
                matched = True
        return matched

    def close(self) -> None:
        """Stop listening and close the connection."""
        connection, self._connection, self._pgconn = self._connection, None, None
        if connection is not None:
            try:
                connection.invalidate()  # a LISTENing session must not go back to the pool
            finally:
                connection.close()
