"""PostgreSQL LISTEN/NOTIFY: wait on a dedicated connection until a queue gets a message.

The notify trigger (see :func:`~messenger_transport_sql.schema.postgresql_notify_ddl`) sends a
notification on the channel named after the table, with the queue name as payload, when an
insert commits. :class:`NotifyListener` keeps its own connection (the transport's main
connection runs queries) and reads notifications straight from libpq, which works with every
psycopg 3. :class:`NotifyWait`, which the PostgreSQL backend gives the receiver, decides when
an idle consumer queries: on a notification, when a delayed message or an expired reservation
is due, and every ``check_delayed_interval`` ms at least.
"""

from __future__ import annotations

import logging
import math
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from messenger_core.envelope import Envelope
from messenger_core.errors import TransportError
from messenger_transport_sql.reconnect import OUTAGE_WAIT, ErrorKind, describe_error
from messenger_transport_sql.schema import postgresql_trigger_check, utcnow

if TYPE_CHECKING:
    from messenger_transport_sql.connection import SqlConnection

__all__ = ["NotifyListener", "NotifyWait"]

logger = logging.getLogger("messenger.transport.sql")

_MIN_IDLE_CHECK = 0.05
"""Seconds: the shortest wait before an idle consumer queries again."""


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


class NotifyWait:
    """``get()`` on PostgreSQL with ``use_notify``: query only when there may be something.

    Contract: :meth:`get` returns what one ``reserve()`` returned as soon as it is not empty,
    or nothing after ``get_notify_timeout`` ms (at most a tenth of ``redeliver_timeout``, as a
    waiting consumer renews no reservation); while LISTEN fails it queries once and returns
    (the caller polls). The listener's connection is its own; queries go through ``db``.
    """

    def __init__(self, db: SqlConnection) -> None:
        self._db = db
        options = db.options
        self.listener = NotifyListener(db.engine, options.table_name, options.queue_name)
        self.listen_failed = False
        self._idle = False
        self._next_check = 0.0

    @property
    def waits(self) -> bool:
        """Whether an empty :meth:`get` waits (a worker need not sleep between rounds)."""
        if not self._db.options.get_notify_timeout:
            return False
        # Before the first get() the listener has not started yet: it will wait then.
        return self.listener.listening or not self.listen_failed

    def get(
        self, reserve: Callable[[], list[Envelope]], flush: Callable[[], None]
    ) -> list[Envelope]:
        """Run ``reserve`` (under the connection's lock) when messages may be waiting; between
        queries, ``flush`` deferred acknowledgements."""
        db = self._db
        with db.lock:
            db.check_open()
            listening = self._listen()
        options = db.options
        wait = min(options.get_notify_timeout / 1000, options.redeliver_timeout / 10)
        deadline = time.monotonic() + wait
        query = (
            not self._idle
            or options.check_delayed_interval == 0
            or time.monotonic() >= self._next_check
            or self.listener.wait(0)
        )
        while True:
            if query:
                with db.lock:
                    envelopes = reserve()
                    if envelopes or not listening:
                        self._idle = False
                        return envelopes
                    self._idle = True
                    self._next_check = time.monotonic() + self._idle_check_delay()
            else:
                flush()
            now = time.monotonic()
            if now >= deadline:
                return []
            query = self.listener.wait(min(deadline, self._next_check) - now)
            query = query or time.monotonic() >= self._next_check
            if not query and time.monotonic() >= deadline:
                return []

    def _listen(self) -> bool:
        """Make sure the listener listens; false if it cannot (then ``get`` just polls)."""
        db = self._db
        if self.listener.listening:
            return True
        try:
            self._check_trigger()
        except TransportError as error:
            if db.reconnect.in_outage:
                raise  # get() returns nothing until the database is back
            return self._failed(error)
        try:
            self.listener.start()
        except sa.exc.DBAPIError as error:
            if db.backend.classify(error) is ErrorKind.OUTAGE:
                # The database went away between two statements: LISTEN again next time.
                logger.debug("%s: cannot LISTEN yet: %s", db.label, describe_error(error))
                return False
            return self._failed(error)
        except sa.exc.SQLAlchemyError as error:
            return self._failed(error)
        self.listen_failed = False
        self._idle = False  # notifications sent before LISTEN are lost: query first
        return True

    def _failed(self, error: Exception) -> bool:
        logger.warning("%s: cannot LISTEN for new messages, polling: %s", self._db.label, error)
        self.listen_failed = True
        return False

    def _check_trigger(self) -> None:
        db = self._db
        if db.setup.trigger_ready:
            return
        query, params = postgresql_trigger_check(db.options.table_name)
        exists = db.run(
            "check the notify trigger",
            lambda connection: connection.execute(query, params).first() is not None,
            patience=OUTAGE_WAIT,
        )
        if not exists:
            if db.options.auto_setup:
                db.setup.create(restore_index=False)
            else:
                logger.warning(
                    "%s: table %s has no notify trigger, so idle consumers only look for new "
                    "messages every check_delayed_interval ms; run setup (messenger "
                    "setup-transports) to create it",
                    db.label,
                    db.options.table_name,
                )
        db.setup.trigger_ready = True

    def _idle_check_delay(self) -> float:
        """Seconds until an idle consumer must query even without a notification.

        The soonest of: ``check_delayed_interval``, the next delayed message's time, and the
        end of the oldest reservation (a redelivery).
        """
        db = self._db
        options = db.options
        interval = options.check_delayed_interval / 1000 or math.inf
        params = {"queue": options.queue_name}
        try:
            next_available, oldest_delivery = db.run(
                "look for delayed messages",
                lambda connection: connection.execute(db.statements.next_due, params).one(),
                patience=OUTAGE_WAIT,
            )
        except TransportError as error:
            if not db.reconnect.in_outage:  # (an outage has been reported already)
                logger.warning("%s: %s", db.label, error)
            return interval
        now = utcnow()
        delays = [interval]
        if next_available is not None:
            delays.append((next_available - now).total_seconds())
        if oldest_delivery is not None:
            # (Not oldest_delivery + timeout: Symfony's MySQL transport marks acknowledged
            # rows with the year 9999, which has no successor.)
            delays.append((oldest_delivery - now).total_seconds() + options.redeliver_timeout)
        return max(_MIN_IDLE_CHECK, min(delays))

    def close(self) -> None:
        """Stop listening."""
        self.listener.close()
