"""Faults on a schedule: when a fault switches itself on and off (pure).

``peer.faults.add(fault, after=..., lasting=..., first=..., per=...)`` gives a fault a
:class:`Schedule`. The fault stays the same frozen value; the schedule is the peer's:

- ``after`` and ``lasting`` are times: the runtime (``_faultset``) switches the fault on
  ``after`` seconds after it was added, and off ``lasting`` seconds later, with timers on the
  serving loop. Each switch takes the peer's lock and writes its ``fault + ...`` /
  ``fault - ...`` line, so a connection meets the fault exactly when the transcript says it
  was on, whatever the race between a timer and a connect.
- ``first`` is a count, kept here by the conversation (no clock): the fault applies to the
  first ``first`` connections that open (or are accepted, for a connect-phase fault) while it
  is on, for their whole life (``per="connection"``: each of them keeps it, in
  :attr:`FaultState.kept <fakepeer._faults.FaultState.kept>`), or to the first ``first``
  batches of writes (replies) sent while it is on (``per="request"``), and then switches
  itself off.

Nothing here draws a random number: a scheduled fault replays from the seed as any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._actions import Write
from ._errors import ScriptError
from ._faults import Fault, FaultState, checked_count, checked_number

if TYPE_CHECKING:
    from ._conversation import Conversation
    from ._state import ConnectionRecord

__all__ = [
    "PER",
    "Counter",
    "Schedule",
    "accepting",
    "added",
    "deal",
    "faults_of",
    "in_force",
    "removed",
    "spend",
    "switch_off",
]

#: What ``first=`` counts.
PER: Final = ("connection", "request")


def _count(first: int, per: str) -> str:
    """``first connection``, ``first 3 requests``."""
    return f"first {per}" if first == 1 else f"first {first} {per}s"


def _seconds(value: float) -> str:
    return f"{value:g} s"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a fault is on: from ``after`` seconds after it was added, for ``lasting`` seconds
    (None: until removed), for its ``first`` connections or requests (None: no count)."""

    after: float = 0.0
    lasting: float | None = None
    first: int | None = None
    per: str = "connection"

    @classmethod
    def checked(
        cls,
        fault: Fault,
        *,
        after: object = 0.0,
        lasting: object = None,
        first: object = None,
        per: object = None,
    ) -> Schedule:
        """The schedule the keywords of ``peer.faults.add()`` ask for;
        :class:`~fakepeer.ScriptError` naming the keyword for a bad one, or one the fault
        cannot have."""
        start = checked_number(after, "peer.faults.add(after=)")
        span = (  # (the sign checked below: "> 0", which -1 breaks as 0 does)
            None
            if lasting is None
            else checked_number(lasting, "peer.faults.add(lasting=)", minimum=-float("inf"))
        )
        if span is not None and span <= 0:
            raise ScriptError(f"peer.faults.add(lasting=) takes a number > 0, got {lasting!r}")
        count = (
            None if first is None else checked_count(first, "peer.faults.add(first=)", minimum=1)
        )
        if per is not None and per not in PER:
            raise ScriptError(f"peer.faults.add(per=) takes 'connection' or 'request', got {per!r}")
        if per is not None and count is None:
            raise ScriptError(
                f"peer.faults.add(per={per!r}) says what first= counts: give first=N too"
            )
        schedule = cls(start, span, count, "connection" if per is None else str(per))
        if count is not None:
            schedule._check_count(fault)
        return schedule

    def _check_count(self, fault: Fault) -> None:
        if fault.server_fault or getattr(fault, "tls_handshake", False):
            acts = "the listening socket" if fault.server_fault else "TLS handshakes"
            raise ScriptError(
                f"peer.faults.add({fault}, first=...): {fault} acts on {acts} and counts no "
                "connections; for a fault that ends by itself, lasting=SECONDS"
            )
        if self.per == "request" and not fault.per_rule:
            raise ScriptError(
                f"peer.faults.add({fault}, first=..., per='request'): {fault} acts on whole "
                "connections, not on each reply: per='connection' counts connections"
            )

    @property
    def counted(self) -> bool:
        return self.first is not None

    def describe(self) -> str:
        """What the ``fault +`` line adds: ``" (for 2 s)"``, ``" (its first 3 connections)"``."""
        parts = []
        if self.lasting is not None:
            parts.append(f"for {_seconds(self.lasting)}")
        if self.first is not None:
            parts.append(f"its {_count(self.first, self.per)}")
        return f" ({', '.join(parts)})" if parts else ""


@dataclass
class Counter:
    """The run state of a counted fault: how many connections or requests it has left."""

    fault: Fault
    first: int
    per: str
    left: int = 0
    token: object = None  # the add() it is of (its ActiveFault), set by the runtime

    def __post_init__(self) -> None:
        self.left = self.first

    def spent(self) -> str:
        """The note of the ``fault -`` line once it reached its count."""
        return f"(after its {_count(self.first, self.per)})"


def in_force(convo: Conversation) -> list[Fault]:
    """The faults in force (``list(peer.faults)``), those counted per connection too."""
    counted = [c.fault for c in convo.counters.values() if c.per == "connection"]
    return [*convo.faults, *counted]


def accepting(convo: Conversation, at: float) -> tuple[list[Fault], list[Counter]]:
    """A connection was accepted: the connect-phase faults that apply to it (a counted one
    is counted), and the counters it spent, to :func:`switch_off` once what the faults did
    to it is recorded (the connection met them while they were on)."""
    spent: list[Counter] = []
    dealt = deal(convo, None, at, accept=True, spent=spent) if convo.counters else []
    return [fault for fault in convo.faults if fault.accept_fault] + dealt, spent


def switch_off(convo: Conversation, spent: list[Counter], at: float) -> None:
    """Switch off the counted faults that reached their count (``fault - ...`` lines)."""
    for counter in spent:
        convo.remove_fault(counter.fault, at, counter.spent())


def faults_of(convo: Conversation, record: ConnectionRecord) -> list[Fault]:
    """The faults that apply to ``record``: those in force for every connection, then those
    it was dealt (``first=N`` connections), which it keeps."""
    state = record.faults
    if state is None or not state.kept:
        return convo.faults
    return [*convo.faults, *state.kept]


def deal(
    convo: Conversation,
    state: FaultState | None,
    at: float,
    *,
    accept: bool,
    spent: list[Counter] | None = None,
) -> list[Fault]:
    """A connection opens (``accept``: is accepted, for the connect-phase faults): the
    counted faults it gets, each counted once; those that reach their count are switched
    off (or added to ``spent``, to be by the caller). With a ``state``, what it gets is
    kept there too."""
    dealt: list[Fault] = []
    for counter in list(convo.counters.values()):
        fault = counter.fault
        if counter.per != "connection" or fault.accept_fault != accept:
            continue
        dealt.append(fault)
        counter.left -= 1
        if not counter.left and spent is not None:
            spent.append(counter)
        elif not counter.left:
            convo.remove_fault(fault, at, counter.spent())
    if state is not None and dealt:
        state.kept = (*state.kept, *dealt)
    return dealt


def spend(
    convo: Conversation,
    faults: list[Fault],
    actions: list[object],
    at: float,
    direction: str = "downstream",
) -> None:
    """``actions``, a batch of writes, was shaped by ``faults``: count it for the faults
    among them counted per request, and switch off those that reach their count. Only a
    batch that writes bytes is a reply: the close that answers a client's EOF is none."""
    if not any(isinstance(action, Write) for action in actions):
        return
    for fault in faults:
        counter = convo.counters.get(id(fault))
        if counter is None or counter.per != "request" or counter.fault is not fault:
            continue
        if not fault.shapes(direction):
            continue
        counter.left -= 1
        if not counter.left:
            convo.remove_fault(fault, at, counter.spent())


def added(convo: Conversation, fault: Fault, at: float, schedule: Schedule | None) -> None:
    """:meth:`Conversation.add_fault <fakepeer._conversation.Conversation.add_fault>`."""
    if schedule is not None and schedule.first is not None:
        convo.counters[id(fault)] = Counter(fault, schedule.first, schedule.per)
    if schedule is None or schedule.first is None or schedule.per == "request":
        convo.faults.append(fault)  # (counted per connection: dealt as they open)
    convo.note_peer(at, "fault", f"+ {fault}{'' if schedule is None else schedule.describe()}")
    convo.transcript.seed = convo.seed


def removed(convo: Conversation, fault: Fault, at: float, why: str) -> bool:
    """:meth:`Conversation.remove_fault <fakepeer._conversation.Conversation.remove_fault>`."""
    counter = convo.counters.pop(id(fault), None)
    found = counter is not None and counter.fault is fault
    for index, active in enumerate(convo.faults):
        if active is fault:
            del convo.faults[index]
            found = True
            break
    if found:
        convo.note_peer(at, "fault", f"- {fault}{' ' if why else ''}{why}")
    return found
