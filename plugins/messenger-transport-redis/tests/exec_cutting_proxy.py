"""A proxy between the transport and the real Redis that loses the connection at an EXEC.

The protocol-independent proxy is :mod:`messenger_core.testing.cutting_proxy`; this module
reads the client's side as RESP commands and picks the ``EXEC``s (the proxy cuts the first):

- ``Cut.AFTER``: the ``EXEC`` reaches Redis and is applied (the proxy waits for Redis's reply
  to a ``PING`` it sends behind it), then the proxy closes the connection without passing the
  reply on: the transaction committed, the client does not know;
- ``Cut.BEFORE``: the proxy closes both sides instead of passing the ``EXEC`` on: Redis drops
  the queued transaction, nothing is applied;
- ``Cut.LATE``: the ``EXEC`` is held back ``delay`` seconds (a slow network, a Redis busy
  with something else) and then passed on: the client's read times out before.

``proxy.applied`` says whether Redis answered the cut ``EXEC`` (then it ran it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from messenger_core.testing.cutting_proxy import Cut, CuttingProxy, cutting_proxy

__all__ = ["Cut", "exec_cutting_proxy"]

_PING = b"*1\r\n$4\r\nPING\r\n"


class _ExecWatcher:
    """Splits a client's byte stream into whole RESP commands (arrays of bulk strings)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """The commands completed by ``data``: (is an ``EXEC``, raw bytes) each."""
        self._buffer += data
        done: list[tuple[bool, bytes]] = []
        while (parsed := self._one()) is not None:
            done.append((parsed[0] == b"EXEC", parsed[1]))
        return done

    def forward(self, command: bytes) -> bytes:
        # Redis answers in order: the PING's reply comes after the EXEC's.
        return command + _PING

    def answer(self, replies: bytes) -> tuple[bool, bool]:
        pong = replies.endswith(b"+PONG\r\n")
        return pong, pong

    def _one(self) -> tuple[bytes, bytes] | None:
        """The next whole command: (upper-cased name, raw bytes)."""
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end < 0:
            return None
        if not buffer.startswith(b"*"):  # an inline command (redis-cli style): one line
            self._buffer = buffer[end + 2 :]
            return buffer[:end].split(b" ", 1)[0].upper(), buffer[: end + 2]
        count = int(buffer[1:end])
        position = end + 2
        name = b""
        for index in range(count):
            end = buffer.find(b"\r\n", position)
            if end < 0:
                return None
            length = int(buffer[position + 1 : end])
            start, position = end + 2, end + 2 + length + 2
            if position > len(buffer):
                return None
            if index == 0:
                name = buffer[start : start + length].upper()
        self._buffer = buffer[position:]
        return name, buffer[:position]


@contextmanager
def exec_cutting_proxy(
    upstream: tuple[str, int], cut: Cut, *, delay: float = 0.0
) -> Iterator[CuttingProxy]:
    """A proxy to ``upstream`` cutting the first ``EXEC`` for the block, closed after."""
    with cutting_proxy(upstream, _ExecWatcher, cut, delay=delay) as proxy:
        yield proxy
