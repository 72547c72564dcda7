"""The datagram faults: :class:`Drop`, :class:`Duplicate`, :class:`Reorder` (pure).

A UDP peer (``FakePeer(transport="udp")``) sends each ``Write`` as one datagram, so these
faults act on each write of a batch on its own, each drawing its own chance from the
connection's seeded generator (the same seed drops the same datagrams). They shape what the
peer sends only; a stream peer (TCP, Unix) rejects them, since a byte stream loses,
repeats and reorders nothing. Apart from ``_faultclasses`` because only datagrams have them.

What each does shows in the transcript: a dropped datagram as ``dropped (by drop)``, a copy
as a second ``sent`` noted ``(a copy: duplicate)``, a held-back one as its ``sent`` noted
``(held back ... s: reorder)``, at the time it actually went out.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from ._actions import Dropped, Later, Write
from ._faults import Fault, FaultState, checked_number, checked_probability

__all__ = ["DATAGRAM_FAULTS", "Copied", "Drop", "Duplicate", "HeldBack", "Reorder"]


class Copied(Write):
    """A second copy of a datagram (a :class:`Duplicate` fault's)."""


class HeldBack(Write):
    """A datagram sent late, after those that overtook it (a :class:`Reorder` fault's)."""


def _each(actions: list[object], chance: float, state: FaultState, make: object) -> list[object]:
    """``actions`` with each plain ``Write`` replaced, with ``chance``, by ``make(data)``."""
    out: list[object] = []
    for action in actions:
        if type(action) is Write and (chance >= 1 or state.rng.random() < chance):
            out.extend(make(action.data))  # type: ignore[operator]
        else:
            out.append(action)
    return out


@dataclass(frozen=True, slots=True)
class Drop(Fault):
    """Drop each datagram the peer sends with ``probability`` (0 to 1, default 1: all),
    drawn for each datagram. UDP only: the client never gets it (and, if it waits for an
    answer, times out and retries)."""

    probability: float = 1.0
    _: KW_ONLY
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {"probability": checked_probability(self.probability)}

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        return _each(actions, self.probability, state, lambda data: [Dropped(data, "drop")])


@dataclass(frozen=True, slots=True)
class Duplicate(Fault):
    """Send each datagram twice with ``probability`` (0 to 1, default 1), drawn for each
    datagram. UDP only."""

    probability: float = 1.0
    _: KW_ONLY
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {"probability": checked_probability(self.probability)}

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        return _each(actions, self.probability, state, lambda data: [Write(data), Copied(data)])


@dataclass(frozen=True, slots=True)
class Reorder(Fault):
    """Hold each datagram back ``delay`` seconds (a number >= 0, default 0.05) with
    ``probability`` (0 to 1, default 1), drawn for each datagram: what the peer sends
    meanwhile overtakes it. UDP only. With probability 1 every datagram is held back alike,
    so their order holds: reorder some (``probability=0.5``), or one rule's replies
    (``rule.fault(faults.reorder())``)."""

    delay: float = 0.05
    _: KW_ONLY
    probability: float = 1.0
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {"delay": checked_number(self.delay, "reorder()")}

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        delay = self.delay
        return _each(actions, self.probability, state, lambda data: [Later(delay, HeldBack(data))])


#: The faults only a datagram peer takes.
DATAGRAM_FAULTS: tuple[type[Fault], ...] = (Drop, Duplicate, Reorder)
