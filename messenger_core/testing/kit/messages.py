"""Collections of envelopes with assertions: what a queue holds, sent, acknowledged, rejected.

The assertions raise :class:`AssertionError` with the messages that are there, so that a
failing test says what it found, not only what it missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, overload

from messenger_core.envelope import Envelope
from messenger_core.stamps import Stamp

__all__ = ["Messages", "QueueView"]

T = TypeVar("T")
S = TypeVar("S", bound=Stamp)

# What assert_contains and friends accept: a class, a predicate on the message, or a message
# to compare with ==.
Match = type[Any] | Callable[[Any], bool] | object

_SHOWN = 10  # messages listed in an assertion's error


def _matches(message: object, what: Match) -> bool:
    if isinstance(what, type):
        return isinstance(message, what)
    if callable(what):
        return bool(what(message))
    return message == what


def _name(what: Match) -> str:
    if isinstance(what, type):
        return what.__qualname__
    if callable(what):
        return getattr(what, "__name__", repr(what))
    return repr(what)


class Messages(Sequence[Envelope]):
    """Envelopes in order, oldest first (``what`` says which, for error messages)."""

    def __init__(self, envelopes: Sequence[Envelope], what: str) -> None:
        self._envelopes = list(envelopes)
        self.what = what

    # -- access ----------------------------------------------------------------------------
    @overload
    def __getitem__(self, index: int) -> Envelope: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Envelope]: ...
    def __getitem__(self, index: int | slice) -> Envelope | Sequence[Envelope]:
        return self._envelopes[index]

    def __len__(self) -> int:
        return len(self._envelopes)

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self._envelopes)

    @property
    def envelopes(self) -> list[Envelope]:
        """The envelopes (messages with their stamps)."""
        return list(self._envelopes)

    def messages(self, of_type: type[T] | None = None) -> list[Any]:
        """The message objects, only those of ``of_type`` if given."""
        messages = [envelope.message for envelope in self._envelopes]
        if of_type is None:
            return messages
        return [message for message in messages if isinstance(message, of_type)]

    def of_type(self, cls: type[Any]) -> Messages:
        """Only the envelopes whose message is a ``cls``."""
        return Messages(
            [e for e in self._envelopes if isinstance(e.message, cls)],
            f"{self.what} of type {cls.__qualname__}",
        )

    def first(self, what: Match | None = None) -> Envelope:
        """The first envelope (whose message matches ``what``); an AssertionError if none."""
        for envelope in self._envelopes:
            if what is None or _matches(envelope.message, what):
                return envelope
        wanted = "" if what is None else f" matching {_name(what)}"
        raise AssertionError(f"no message{wanted} in {self.what}; {self._listing()}")

    def stamps(self, kind: type[S]) -> list[S]:
        """Every stamp of ``kind`` on these envelopes, in order."""
        return [stamp for envelope in self._envelopes for stamp in envelope.all(kind)]

    # -- assertions ------------------------------------------------------------------------
    def assert_count(self, expected: int) -> Messages:
        """Exactly ``expected`` messages."""
        if len(self._envelopes) != expected:
            raise AssertionError(
                f"expected {_count(expected)} in {self.what}, found {len(self._envelopes)}; "
                f"{self._listing()}"
            )
        return self

    def assert_empty(self) -> Messages:
        """No message at all."""
        return self.assert_count(0)

    def assert_not_empty(self) -> Messages:
        """At least one message."""
        if not self._envelopes:
            raise AssertionError(f"expected messages in {self.what}, found none")
        return self

    def assert_contains(self, what: Match, count: int | None = None) -> Messages:
        """A message matching ``what`` (exactly ``count`` of them if given).

        ``what`` is a class (``isinstance``), a predicate on the message, or a message
        compared with ``==``.
        """
        found = sum(1 for e in self._envelopes if _matches(e.message, what))
        if (count is None and found == 0) or (count is not None and found != count):
            wanted = "a message" if count is None else _count(count)
            raise AssertionError(
                f"expected {wanted} matching {_name(what)} in {self.what}, found {found}; "
                f"{self._listing()}"
            )
        return self

    def assert_not_contains(self, what: Match) -> Messages:
        """No message matching ``what``."""
        return self.assert_contains(what, 0)

    def _listing(self) -> str:
        if not self._envelopes:
            return "it is empty"
        shown = ", ".join(repr(e.message) for e in self._envelopes[:_SHOWN])
        more = len(self._envelopes) - _SHOWN
        return f"it holds: {shown}" + (f" and {more} more" if more > 0 else "")

    def __repr__(self) -> str:
        return f"<Messages of {self.what}: {len(self._envelopes)}>"


def _count(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


class QueueView:
    """One in-memory transport of a test, seen from the test.

    The assertions on the view itself look at the messages **waiting** in it (sent, neither
    acknowledged nor rejected yet); :attr:`sent`, :attr:`acknowledged` and :attr:`rejected`
    hold the history. A retried message shows in :attr:`rejected` (the original) and in
    :attr:`sent` again (the copy with a ``RedeliveryStamp``), as on a real transport.
    """

    def __init__(self, name: str, transport: Any) -> None:
        self.name = name
        self.transport = transport
        """The :class:`~messenger_core.testing.kit.RecordingTransport` (or a kept real one)."""

    @property
    def waiting(self) -> Messages:
        """The messages in the queue now, oldest first."""
        return Messages(self.transport.all(), f"queue {self.name!r}")

    @property
    def sent(self) -> Messages:
        """Every message sent to the queue during the test, in order."""
        return Messages(self.transport.sent, f"messages sent to {self.name!r}")

    @property
    def acknowledged(self) -> Messages:
        """Every message handled and acknowledged, in order."""
        return Messages(self.transport.acknowledged, f"messages acknowledged by {self.name!r}")

    @property
    def rejected(self) -> Messages:
        """Every message rejected (retried or failed for good), in order."""
        return Messages(self.transport.rejected, f"messages rejected by {self.name!r}")

    def messages(self, of_type: type[T] | None = None) -> list[Any]:
        """The waiting message objects (of ``of_type`` if given)."""
        return self.waiting.messages(of_type)

    def assert_count(self, expected: int) -> QueueView:
        """Exactly ``expected`` messages waiting."""
        self.waiting.assert_count(expected)
        return self

    def assert_empty(self) -> QueueView:
        """No message waiting."""
        self.waiting.assert_empty()
        return self

    def assert_not_empty(self) -> QueueView:
        """At least one message waiting."""
        self.waiting.assert_not_empty()
        return self

    def assert_contains(self, what: Match, count: int | None = None) -> QueueView:
        """A waiting message matching ``what`` (see :meth:`Messages.assert_contains`)."""
        self.waiting.assert_contains(what, count)
        return self

    def assert_not_contains(self, what: Match) -> QueueView:
        """No waiting message matching ``what``."""
        self.waiting.assert_not_contains(what)
        return self

    def reset(self) -> None:
        """Empty the queue and forget its history."""
        self.transport.reset()

    def __len__(self) -> int:
        return len(self.transport.all())

    def __repr__(self) -> str:
        return f"<QueueView {self.name!r}: {self.transport!r}>"
