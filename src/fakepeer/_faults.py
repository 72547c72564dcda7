"""Network faults: frozen values, each a pure, seeded plan that reshapes what a peer does.

A :class:`Fault` is a value: one class per fault (in ``_faultclasses``: ``Latency``,
``Slice``...), its parameters checked as it is made. Each class knows what it does: a
*stream fault* reshapes each batch of writes it applies to (``_shape``); a *connection
fault* (``connection_fault = True``) acts as a connection opens (``_on_connect``), and may
also change what is written on it afterwards. The conversation asks :func:`shape` to turn
the actions it decided on a connection into the actions a faulty network would produce, and
:func:`on_connect` for what the faults do as a connection opens::

    [Write(b"PONG\\n")]  --Latency(0.2)-->  [Wait(0.2), Write(b"PONG\\n")]
    [Write(b"PONG\\n")]  --Slice(2)------>  [Write(b"PO"), Write(b"NG"), Write(b"\\n")]

All randomness (jitter, probabilities, corruption) comes from the connection's
``random.Random``, seeded from the peer's seed and the connection's number, so the same seed
replays the same faults: the draws happen in the order of the faults, then of the bytes.
Nothing here does I/O or reads a clock.

A new fault: a subclass of :class:`Fault` in ``_faultclasses`` (its fields are its
parameters; keyword-only ones are the options ``probability`` and ``direction``), exported
with its lowercase alias by ``fakepeer.faults``, and a one-line method of ``Faults`` in
``_faultset``; the tests check that all three exist.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar, Final

from ._actions import Close, Dropped, Reset, Write
from ._errors import ScriptError

__all__ = [
    "DIRECTIONS",
    "Fault",
    "FaultState",
    "checked_count",
    "checked_direction",
    "checked_number",
    "checked_probability",
    "drawn",
    "fault_name",
    "on_accept",
    "on_connect",
    "shape",
]


@dataclass
class FaultState:
    """What faults remember about one connection: its random generator and bytes sent.

    The generator is made on first use: most connections never draw a random number, and
    seeding one costs more than the rest of a connection's bookkeeping.
    """

    key: str
    sent: int = 0  # bytes written (or planned) on the connection, faults or not
    limited: bool = False  # limit_data closed the connection
    half_closed: bool = False  # a half_close fault sent FIN: nothing more can be written
    drawn: dict[int, bool] = field(default_factory=dict)  # id(fault) -> applies here
    #: Faults this connection was dealt by a schedule (``first=N`` connections): they go on
    #: applying to it after they were switched off for the connections to come.
    kept: tuple[Fault, ...] = ()
    _rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        """The connection's random generator, seeded from ``key``."""
        if self._rng is None:
            self._rng = random.Random(self.key)
        return self._rng

    @classmethod
    def seeded(cls, seed: int, connection: int, stream: str = "") -> FaultState:
        """The state of connection ``connection`` of a peer seeded with ``seed`` (``stream``
        tells apart a proxy's two directions)."""
        return cls(f"fakepeer/{seed}/{connection}{stream}")


# -- checking parameters -------------------------------------------------------------------------


def checked_number(value: object, name: str, *, minimum: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScriptError(f"{name} takes a finite number, got {value!r}")
    if value < minimum:
        raise ScriptError(f"{name} takes a number >= {minimum:g}, got {value!r}")
    return float(value)


def checked_count(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScriptError(f"{name} takes a whole number >= {minimum}, got {value!r}")
    return value


DIRECTIONS: Final = ("downstream", "upstream", "both")


def checked_direction(value: object) -> str:
    if value not in DIRECTIONS:
        raise ScriptError(f"direction takes 'downstream', 'upstream' or 'both', got {value!r}")
    return str(value)


def checked_probability(value: object) -> float:
    probability = checked_number(value, "probability")
    if probability > 1:
        raise ScriptError(f"probability takes a number from 0 to 1, got {value!r}")
    return probability


#: How the options (the keyword-only fields) are checked.
_OPTIONS: Final = {"probability": checked_probability, "direction": checked_direction}


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    return "None" if value is None else f"{value:g}"


# -- the base of every fault -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """A network fault: a frozen value, compared by its parameters, shown (``str()``) as
    :meth:`describe` writes it. Make one with a class of :mod:`fakepeer.faults` (or its
    lowercase alias: ``faults.latency(0.2)`` is ``faults.Latency(0.2)``), which checks its
    parameters at once (:class:`~fakepeer.ScriptError`); apply it with ``peer.faults.add()``
    or to one rule's replies with ``rule.fault()``.
    """

    #: ``True`` for a connection fault: it acts on a whole connection as it opens, and
    #: whether it applies is drawn once per connection. ``False`` for a stream fault, which
    #: reshapes each batch of writes (drawn per batch).
    connection_fault: ClassVar[bool] = False
    #: ``True`` for a connect-phase fault: it acts on a connection the kernel accepted,
    #: before the peer serves it (``_on_accept``), drawn once per connection.
    accept_fault: ClassVar[bool] = False
    #: ``True`` for a fault on the listening socket (``refuse()``...): the peer switches it
    #: on and off; it counts no connections.
    server_fault: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if type(self) is Fault:
            raise ScriptError(
                "Fault is the base of the faults: make one of fakepeer.faults, such as "
                "faults.latency(0.2)"
            )
        checked = self._checked()  # its parameters first, then its options, in order
        for item in fields(self):
            if item.kw_only:
                checked[item.name] = _OPTIONS[item.name](getattr(self, item.name))
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def _checked(self) -> dict[str, object]:
        """Its parameters (not its options), checked and made floats where numbers:
        :class:`~fakepeer.ScriptError` for a bad one."""
        return {}

    @property
    def direction(self) -> str:
        """Which bytes it shapes: ``"downstream"`` (server to client: what a peer sends),
        ``"upstream"`` (client to server: only a Proxy has those) or ``"both"``."""
        return "downstream"

    @property
    def per_rule(self) -> bool:
        """Whether it can shape what one rule sends (``rule.fault()``): ``False`` for a
        fault on the connection or the server."""
        return not self.connection_fault

    def describe(self) -> str:
        """How it was made: ``latency(0.2, 0)``, ``slice(3, 0, probability=0.5)``. Every
        positional parameter is shown; an option only when it is not its default."""
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if not item.kw_only:
                shown.append(_show(value))
            elif value != item.default:
                shown.append(f"{item.name}={_show(value)}")
        return f"{fault_name(type(self))}({', '.join(shown)})"

    def shapes(self, direction: str) -> bool:
        """True if it applies to bytes going ``direction``."""
        return self.direction in (direction, "both")

    def __str__(self) -> str:
        return self.describe()

    def _chance(self) -> float:
        """The chance that it applies to a batch of writes (to a connection, for a
        connection fault): its ``probability`` option, if it has one."""
        return 1.0

    def _applies(self, actions: Sequence[object], state: FaultState) -> bool:
        """Whether it reshapes this batch of ``actions`` (drawing the chance if needed)."""
        if self.connection_fault:
            return drawn(self, state)
        chance = self._chance()
        return any(isinstance(action, Write | Close) for action in actions) and (
            chance >= 1 or state.rng.random() < chance
        )

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        """The batch of ``actions`` as this fault lets it happen (it applies to it)."""
        return actions

    def _on_connect(self, state: FaultState) -> list[object]:
        """What it does as a connection opens (a connection fault, drawn to apply)."""
        return []

    def _on_accept(self, state: FaultState) -> list[object]:
        """What it does to an accepted connection before it is served (an accept fault,
        drawn to apply): ``Wait`` delays serving it, ``Reset`` resets it unserved."""
        return []


def fault_name(cls: type[Fault]) -> str:
    """A fault's name in the vocabulary: ``LimitData`` -> ``limit_data``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


# -- applying them -------------------------------------------------------------------------------


def drawn(fault: Fault, state: FaultState) -> bool:
    """Whether a connection fault applies to this connection: drawn once per connection."""
    key = id(fault)
    if key not in state.drawn:
        chance = fault._chance()
        state.drawn[key] = chance >= 1 or state.rng.random() < chance
    return state.drawn[key]


def on_connect(faults: Sequence[Fault], state: FaultState) -> list[object]:
    """What the connection faults do as a connection opens (actions for its queue, or
    :class:`~fakepeer._actions.Later` timers)."""
    actions: list[object] = []
    for fault in faults:
        if fault.connection_fault and drawn(fault, state):
            actions.extend(fault._on_connect(state))
    return actions


def on_accept(
    faults: Sequence[Fault], state: FaultState, acted: list[Fault] | None = None
) -> list[object]:
    """What the accept faults do to a connection the kernel accepted, in the order added:
    ``Wait`` actions (their delays add up), or a ``Reset`` that ends it (nothing after).
    ``acted``, if given, gets the faults that did it: those that waited, or the one that
    reset (the waits before a reset do not happen)."""
    actions: list[object] = []
    doing: list[Fault] = []
    for fault in faults:
        if fault.accept_fault and drawn(fault, state):
            actions.extend(fault._on_accept(state))
            doing.append(fault)
            if any(isinstance(action, Reset) for action in actions):
                actions, doing = [Reset()], [fault]
                break
    if acted is not None:
        acted.extend(doing)
    return actions


def shape(
    faults: Sequence[Fault],
    actions: Sequence[object],
    state: FaultState,
    direction: str = "downstream",
) -> list[object]:
    """The ``actions`` a connection's script produced, as the ``faults`` let them happen.

    ``Write`` may be delayed, split, cut, corrupted, dropped (as :class:`Dropped`) or turned
    into a ``Reset``; ``Close`` may be delayed. Everything else passes through.
    """
    shaped = list(actions)
    if state.half_closed:  # the peer can no longer write: say what it would have sent
        shaped = [
            Dropped(action.data, "half_close") if isinstance(action, Write) else action
            for action in shaped
        ]
    for fault in faults:
        if fault.shapes(direction) and fault._applies(shaped, state):
            shaped = fault._shape(shaped, state)
    for action in shaped:
        if isinstance(action, Write):
            state.sent += len(action.data)
    return shaped
