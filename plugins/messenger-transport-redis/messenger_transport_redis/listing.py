"""The listing role: counting, listing and finding the messages not acknowledged yet.

What ``messenger stats`` and ``messenger failed show/retry/remove`` use. Every call first sends
the buffered settlements and waits for their replies, so that it sees this transport's own
acknowledgements. Not a hot path: plain redis-py commands, with retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ResponseError

from messenger_core.envelope import Envelope
from messenger_core.serializer import Serializer
from messenger_transport_redis.connection import RedisConnection, call, is_no_such_key, pipeline
from messenger_transport_redis.entry import decode_entry
from messenger_transport_redis.settling import Settler

__all__ = ["RedisListing"]

_PAGE = 100
"""Entries per ``XRANGE`` page when listing."""
_COUNT_PAGE = 1000
"""Entries per ``XRANGE`` page when counting by hand (only ids are needed)."""


def _stream_id(text: str | bytes) -> tuple[int, int]:
    milliseconds, _, sequence = (text.decode() if isinstance(text, bytes) else text).partition("-")
    return int(milliseconds), int(sequence or 0)


def _is_stream_id(text: str) -> bool:
    milliseconds, dash, sequence = text.partition("-")
    return bool(dash) and milliseconds.isdigit() and sequence.isdigit()


class RedisListing:
    """Counts, lists and finds the group's unacknowledged messages.

    Contract: "unacknowledged" is waiting in the stream, or received and not settled (pending
    in the group); delayed messages count, and are listed once due and moved into the stream.
    Finding or listing does not reserve a message. With several groups on a stream, this
    group's view. Errors raise :class:`~messenger_core.errors.TransportError`.
    """

    def __init__(
        self, connection: RedisConnection, settler: Settler, serializer: Serializer
    ) -> None:
        self._connection = connection
        self._settler = settler
        self._serializer = serializer

    def message_count(self) -> int:
        """The group's pending count plus its lag (from ``XINFO GROUPS``), plus the delay
        queue's size."""
        connection = self._connection
        connection.check_open()
        stream = connection.stream

        def attempt(client: redis.Redis) -> int:
            self._settler.flush_with(client)
            pipe = pipeline(client)
            pipe.execute_command("XINFO", "GROUPS", stream)
            pipe.execute_command("ZCARD", connection.queue)
            pipe.execute_command("XLEN", stream)
            groups, delayed, length = pipe.execute(raise_on_error=False)
            for each in (delayed, length):
                if isinstance(each, Exception):
                    raise each
            if isinstance(groups, Exception):
                if is_no_such_key(groups):
                    return int(delayed)
                raise groups
            group = self._group_info(groups)
            if group is None:  # the group, once created, starts at the first entry
                return int(length) + int(delayed)
            lag = group.get("lag")
            if lag is None:  # Redis < 7, or entries deleted after the last delivered one
                lag = self._count_after(client, group["last-delivered-id"])
            return int(group["pending"]) + int(lag) + int(delayed)

        return connection.with_retry_checked(attempt, "count messages")

    def all(self, limit: int | None = None) -> list[Envelope]:
        """Up to ``limit`` unacknowledged messages, oldest first."""
        connection = self._connection
        connection.check_open()

        def attempt(client: redis.Redis) -> list[Envelope]:
            self._settler.flush_with(client)
            last = self._last_delivered(client)
            listed: list[Envelope] = []
            start: bytes = b"-"
            while limit is None or len(listed) < limit:
                count = _PAGE if limit is None else min(_PAGE, limit - len(listed))
                page = call(client, "XRANGE", connection.stream, start, "+", "COUNT", count)
                for entry_id, fields in self._unsettled(client, page, last):
                    listed.append(decode_entry(entry_id.decode("ascii"), fields, self._serializer))
                if len(page) < count:
                    break
                start = b"(" + page[-1][0]
            return listed

        return connection.with_retry_checked(attempt, "list messages")

    def find(self, id: str) -> Envelope | None:
        """The unacknowledged message with stream entry id ``id``, or ``None`` (also for an
        ``id`` that is no stream entry id)."""
        connection = self._connection
        connection.check_open()
        if not isinstance(id, str) or not _is_stream_id(id):
            return None
        entry_key = id.encode("ascii")

        def attempt(client: redis.Redis) -> Envelope | None:
            self._settler.flush_with(client)
            page = call(client, "XRANGE", connection.stream, entry_key, entry_key)
            found = self._unsettled(client, page, self._last_delivered(client))
            if not found or not found[0][1]:
                return None
            return decode_entry(id, found[0][1], self._serializer)

        return connection.with_retry_checked(attempt, "find a message")

    def _group_info(self, groups: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
        """This group's fields in an ``XINFO GROUPS`` reply, or ``None``."""
        for flat in groups:
            group = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat) - 1, 2)}
            if group.get("name") == self._connection.group:
                return group
        return None

    def _count_after(self, client: redis.Redis, last_id: bytes) -> int:
        total, start = 0, b"(" + last_id
        while True:
            page = call(client, "XRANGE", self._connection.stream, start, "+", "COUNT", _COUNT_PAGE)
            total += len(page)
            if len(page) < _COUNT_PAGE:
                return total
            start = b"(" + page[-1][0]

    def _last_delivered(self, client: redis.Redis) -> tuple[int, int] | None:
        """The group's last delivered id, or ``None`` if the group (or stream) does not exist."""
        try:
            groups = call(client, "XINFO", "GROUPS", self._connection.stream)
        except ResponseError as error:
            if is_no_such_key(error):
                return None
            raise
        group = self._group_info(groups)
        return None if group is None else _stream_id(group["last-delivered-id"])

    def _unsettled(
        self, client: redis.Redis, page: Sequence[Any], last: tuple[int, int] | None
    ) -> list[Any]:
        """The entries of ``page`` not settled yet: not delivered to the group, or pending.

        With ``delete_after_ack`` and ``delete_after_reject`` (the defaults) settled entries
        are gone anyway; without, they stay in the stream and must be told apart.
        """
        if last is None:
            return list(page)
        delivered = [entry[0] for entry in page if _stream_id(entry[0]) <= last]
        if not delivered:
            return list(page)
        connection = self._connection
        pending: set[bytes] = set()
        start: bytes = delivered[0]
        while True:
            rows = call(
                client, "XPENDING", connection.stream, connection.group, start, delivered[-1], _PAGE
            )
            pending.update(row[0] for row in rows)
            if len(rows) < _PAGE:
                break
            start = b"(" + rows[-1][0]
        return [entry for entry in page if _stream_id(entry[0]) > last or entry[0] in pending]
