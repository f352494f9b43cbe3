"""The envelope: a message plus the stamps that travel with it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

import attrs

from messenger_core.stamps import Stamp

__all__ = ["Envelope", "new_envelope"]

S = TypeVar("S", bound=Stamp)


@attrs.frozen(init=False, repr=False)
class Envelope:
    """An immutable message with its stamps, in the order they were added.

    Every change returns a new envelope. Stamps are matched by their exact class, as Symfony
    Messenger does: a subclass of a stamp is a different stamp.
    """

    message: Any
    stamps: tuple[Stamp, ...]

    def __init__(self, message: Any, stamps: Iterable[Stamp] = ()) -> None:
        if isinstance(message, Envelope):
            raise TypeError("cannot wrap an Envelope in an Envelope; use envelope.with_(...)")
        _set_message(self, message)
        _set_stamps(self, tuple(stamps))

    @classmethod
    def wrap(cls, message_or_envelope: Any, stamps: tuple[Stamp, ...] = ()) -> Envelope:
        """Return ``message_or_envelope`` as an envelope, with ``stamps`` added."""
        if type(message_or_envelope) is Envelope:
            return message_or_envelope.with_(*stamps) if stamps else message_or_envelope
        return new_envelope(message_or_envelope, stamps)

    def with_(self, *stamps: Stamp) -> Envelope:
        """A copy with ``stamps`` added after the existing ones."""
        return new_envelope(self.message, self.stamps + stamps)

    def without_all(self, stamp_type: type[Stamp]) -> Envelope:
        """A copy without any stamp of exactly ``stamp_type``."""
        return new_envelope(
            self.message, tuple(s for s in self.stamps if type(s) is not stamp_type)
        )

    def without_stamps_of(self, *stamp_types: type[Stamp]) -> Envelope:
        """A copy without stamps of these types or of their subclasses."""
        return new_envelope(
            self.message, tuple(s for s in self.stamps if not isinstance(s, stamp_types))
        )

    def last(self, stamp_type: type[S]) -> S | None:
        """The most recently added stamp of exactly ``stamp_type``, or ``None``."""
        for stamp in reversed(self.stamps):
            if type(stamp) is stamp_type:
                return stamp
        return None

    def all(self, stamp_type: type[S] | None = None) -> tuple[S, ...]:
        """All stamps of exactly ``stamp_type`` (every stamp when ``None``), oldest first."""
        if stamp_type is None:
            return cast(tuple[S, ...], self.stamps)
        return tuple(s for s in self.stamps if type(s) is stamp_type)

    @property
    def message_class(self) -> type[Any]:
        """The class of the wrapped message."""
        return type(self.message)

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for s in self.stamps)
        return f"Envelope({self.message!r}, stamps=[{names}])"


# The attrs-generated frozen __init__ costs three times as much as setting the two slots
# directly, and envelopes are created several times per dispatch: this is the hot path.
_set_message = cast(Any, Envelope.__dict__["message"]).__set__
_set_stamps = cast(Any, Envelope.__dict__["stamps"]).__set__
_new = object.__new__


def new_envelope(message: Any, stamps: tuple[Stamp, ...]) -> Envelope:
    """Build an envelope without checks: ``message`` is not an envelope, ``stamps`` a tuple.

    For hot paths only (buses, middleware); everything else uses ``Envelope(...)``.
    """
    envelope = _new(Envelope)
    _set_message(envelope, message)
    _set_stamps(envelope, stamps)
    return envelope
