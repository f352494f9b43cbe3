"""The envelope: an immutable message plus stamps, matched by their exact class."""

from __future__ import annotations

import attrs
import pytest

from messenger_core import (
    BusNameStamp,
    DelayStamp,
    Envelope,
    HandledStamp,
    NonSendableStamp,
    ReceivedStamp,
    Stamp,
)


@attrs.frozen
class Ping:
    n: int = 0


@attrs.frozen(kw_only=True)
class PriorityStamp(Stamp):
    level: int


@attrs.frozen(kw_only=True)
class UrgentPriorityStamp(PriorityStamp):
    """A subclass of a stamp is a different stamp."""


def test_an_envelope_is_frozen() -> None:
    envelope = Envelope(Ping(), [DelayStamp(delay_ms=5)])

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        envelope.message = Ping(1)  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        envelope.stamps = ()  # type: ignore[misc]
    assert envelope.message == Ping()
    assert envelope.stamps == (DelayStamp(delay_ms=5),)


def test_stamps_are_frozen_keyword_only_values() -> None:
    stamp = DelayStamp(delay_ms=5)

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stamp.delay_ms = 6  # type: ignore[misc]
    with pytest.raises(TypeError):
        DelayStamp(5)  # type: ignore[misc]
    assert stamp == DelayStamp(delay_ms=5)
    assert hash(stamp) == hash(DelayStamp(delay_ms=5))
    assert isinstance(HandledStamp(handler_name="h"), NonSendableStamp)
    assert not isinstance(DelayStamp(delay_ms=1), NonSendableStamp)


def test_with_returns_a_copy_with_stamps_appended_in_order() -> None:
    first = DelayStamp(delay_ms=1)
    second = BusNameStamp(bus_name="b")
    third = DelayStamp(delay_ms=2)
    original = Envelope(Ping(), [first])

    changed = original.with_(second, third)

    assert original.stamps == (first,)
    assert changed.stamps == (first, second, third)
    assert changed.message is original.message
    assert changed is not original


def test_without_all_removes_every_stamp_of_exactly_that_class() -> None:
    base = PriorityStamp(level=1)
    sub = UrgentPriorityStamp(level=9)
    delay = DelayStamp(delay_ms=1)
    envelope = Envelope(Ping(), [base, delay, PriorityStamp(level=2), sub])

    without = envelope.without_all(PriorityStamp)

    assert without.stamps == (delay, sub)
    assert envelope.stamps == (base, delay, PriorityStamp(level=2), sub)
    assert envelope.without_all(ReceivedStamp).stamps == envelope.stamps


def test_without_stamps_of_also_removes_subclasses() -> None:
    envelope = Envelope(Ping(), [PriorityStamp(level=1), UrgentPriorityStamp(level=2)])

    assert envelope.without_stamps_of(PriorityStamp).stamps == ()


def test_last_is_the_most_recent_stamp_of_exactly_that_class() -> None:
    envelope = Envelope(
        Ping(), [PriorityStamp(level=1), PriorityStamp(level=2), UrgentPriorityStamp(level=3)]
    )

    assert envelope.last(PriorityStamp) == PriorityStamp(level=2)
    assert envelope.last(UrgentPriorityStamp) == UrgentPriorityStamp(level=3)
    assert envelope.last(DelayStamp) is None
    assert envelope.last(Stamp) is None  # the base class matches nothing


def test_all_filters_by_exact_class_oldest_first_and_lists_everything_without_a_type() -> None:
    stamps = [PriorityStamp(level=1), UrgentPriorityStamp(level=2), PriorityStamp(level=3)]
    envelope = Envelope(Ping(), stamps)

    assert envelope.all(PriorityStamp) == (PriorityStamp(level=1), PriorityStamp(level=3))
    assert envelope.all(UrgentPriorityStamp) == (UrgentPriorityStamp(level=2),)
    assert envelope.all(DelayStamp) == ()
    assert envelope.all() == tuple(stamps)


def test_repr_shows_the_message_and_the_stamp_classes() -> None:
    envelope = Envelope(Ping(3), [BusNameStamp(bus_name="b"), DelayStamp(delay_ms=1)])

    assert repr(envelope) == "Envelope(Ping(n=3), stamps=[BusNameStamp, DelayStamp])"
    assert repr(Envelope(Ping())) == "Envelope(Ping(n=0), stamps=[])"


def test_wrapping_an_envelope_in_an_envelope_is_an_error() -> None:
    inner = Envelope(Ping())

    with pytest.raises(TypeError, match="cannot wrap an Envelope"):
        Envelope(inner)


def test_wrap_returns_an_envelope_as_is_or_with_the_stamps_added() -> None:
    inner = Envelope(Ping(), [DelayStamp(delay_ms=1)])

    assert Envelope.wrap(inner) is inner
    assert Envelope.wrap(inner, (BusNameStamp(bus_name="b"),)).stamps == (
        DelayStamp(delay_ms=1),
        BusNameStamp(bus_name="b"),
    )
    wrapped = Envelope.wrap(Ping(2), (DelayStamp(delay_ms=3),))
    assert wrapped.message == Ping(2)
    assert wrapped.stamps == (DelayStamp(delay_ms=3),)


def test_envelopes_compare_by_message_and_stamps() -> None:
    assert Envelope(Ping(), [DelayStamp(delay_ms=1)]) == Envelope(Ping(), [DelayStamp(delay_ms=1)])
    assert Envelope(Ping(), [DelayStamp(delay_ms=1)]) != Envelope(Ping(), [DelayStamp(delay_ms=2)])
    assert Envelope(Ping()).message_class is Ping
