"""Network faults: pure, seeded plans that reshape what the peer does on a connection.

A :class:`Fault` is data (a kind and its parameters). The conversation asks
:func:`shape` to turn the actions it decided on a connection into the actions a faulty
network would produce, and :func:`on_connect` for what a fault does as a connection opens::

    [Write(b"PONG\\n")]  --latency(0.2)-->  [Wait(0.2), Write(b"PONG\\n")]
    [Write(b"PONG\\n")]  --slice(2)------>  [Write(b"PO"), Write(b"NG"), Write(b"\\n")]

All randomness (jitter, probabilities, corruption) comes from the connection's
``random.Random``, seeded from the peer's seed and the connection's number, so the same seed
replays the same faults. Nothing here does I/O or reads a clock.

Faults act on what the peer sends (downstream), except :func:`stop_reading` (the peer stops
reading what the client sends), and :func:`reset_peer`, :func:`timeout` and
:func:`half_close`, which act on the connection.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from ._actions import Close, Dropped, HalfClose, Later, Reset, Stop, Wait, Write
from ._errors import ScriptError

__all__ = [
    "Fault",
    "FaultState",
    "bandwidth",
    "blackhole",
    "corrupt",
    "half_close",
    "latency",
    "limit_data",
    "refuse",
    "reset_peer",
    "shape",
    "slice",
    "slow_close",
    "stop_reading",
    "timeout",
    "truncate",
]


@dataclass(frozen=True)
class Fault:
    """One network fault: ``kind``, its ``params``, and the ``probability`` that it applies
    (to each batch of writes, or to each connection for connection faults)."""

    kind: str
    params: tuple[float | int | None, ...] = ()
    probability: float = 1.0
    #: Which bytes it shapes: ``"downstream"`` (server to client: what a peer sends),
    #: ``"upstream"`` (client to server: only a Proxy has those) or ``"both"``.
    direction: str = "downstream"

    def describe(self) -> str:
        params = ", ".join("None" if p is None else f"{p:g}" for p in self.params)
        chance = f", probability={self.probability:g}" if self.probability != 1 else ""
        way = f", direction={self.direction!r}" if self.direction != "downstream" else ""
        return f"{self.kind}({params}{chance}{way})"

    def shapes(self, direction: str) -> bool:
        """True if it applies to bytes going ``direction``."""
        return self.direction in (direction, "both")

    __str__ = describe


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


# -- the vocabulary -------------------------------------------------------------------------------


def _number(value: object, name: str, *, minimum: float = 0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScriptError(f"{name} takes a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ScriptError(f"{name} takes a number {relation} {minimum:g}, got {value!r}")
    return float(value)


def _count(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScriptError(f"{name} takes a whole number >= {minimum}, got {value!r}")
    return value


DIRECTIONS: Final = ("downstream", "upstream", "both")


def _direction(value: object) -> str:
    if value not in DIRECTIONS:
        raise ScriptError(f"direction takes 'downstream', 'upstream' or 'both', got {value!r}")
    return str(value)


def _probability(value: object) -> float:
    probability = _number(value, "probability")
    if probability > 1:
        raise ScriptError(f"probability takes a number from 0 to 1, got {value!r}")
    return probability


def latency(
    seconds: float, jitter: float = 0.0, *, probability: float = 1.0, direction: str = "downstream"
) -> Fault:
    """Delay each batch of writes by ``seconds`` (plus or minus up to ``jitter``)."""
    seconds = _number(seconds, "latency()")
    jitter = _number(jitter, "latency(jitter=)")
    return Fault("latency", (seconds, jitter), _probability(probability), _direction(direction))


def bandwidth(
    bytes_per_second: int, *, probability: float = 1.0, direction: str = "downstream"
) -> Fault:
    """Send at most ``bytes_per_second``, in tenth-of-a-second chunks."""
    rate = _count(bytes_per_second, "bandwidth()", minimum=1)
    return Fault("bandwidth", (rate,), _probability(probability), _direction(direction))


def slice(
    size: int, delay: float = 0.0, *, probability: float = 1.0, direction: str = "downstream"
) -> Fault:
    """Split each write into chunks of ``size`` bytes, ``delay`` seconds apart: the client's
    framing must put messages back together. (Shadows the builtin only in this module.)"""
    size = _count(size, "slice()", minimum=1)
    delay = _number(delay, "slice(delay=)")
    return Fault("slice", (size, delay), _probability(probability), _direction(direction))


def limit_data(n: int, *, direction: str = "downstream") -> Fault:
    """Close the connection once ``n`` bytes were sent on it (cutting the write that
    crosses the limit)."""
    return Fault(
        "limit_data", (_count(n, "limit_data()", minimum=0),), direction=_direction(direction)
    )


def truncate(n: int, *, probability: float = 1.0, direction: str = "downstream") -> Fault:
    """Cut each write to its first ``n`` bytes."""
    return Fault(
        "truncate",
        (_count(n, "truncate()", minimum=0),),
        _probability(probability),
        _direction(direction),
    )


def corrupt(probability: float, *, direction: str = "downstream") -> Fault:
    """Flip each byte sent with ``probability`` (to a different random value)."""
    return Fault("corrupt", (_probability(probability),), direction=_direction(direction))


def reset_peer(after: float = 0.0, *, probability: float = 1.0) -> Fault:
    """Reset each connection with a TCP RST ``after`` seconds (0: instead of its first
    write; the client never gets an answer)."""
    return Fault("reset_peer", (_number(after, "reset_peer()"),), _probability(probability))


def timeout(seconds: float | None) -> Fault:
    """Stop sending anything; close the connection after ``seconds`` (``None``: never)."""
    value = None if seconds is None else _number(seconds, "timeout()")
    return Fault("timeout", (value,))


def blackhole() -> Fault:
    """Accept connections and never answer: ``timeout(None)``."""
    return Fault("timeout", (None,))


def slow_close(seconds: float) -> Fault:
    """Wait ``seconds`` before each close."""
    return Fault("slow_close", (_number(seconds, "slow_close()"),))


def refuse() -> Fault:
    """Stop listening: new connections are refused (``ConnectionRefusedError``); open ones
    go on. Removing the fault listens again on the same port."""
    return Fault("refuse")


def half_close() -> Fault:
    """Send FIN as each connection opens (the client reads EOF) but keep reading."""
    return Fault("half_close")


def stop_reading() -> Fault:
    """Stop reading what the client sends: once the buffers fill, its writes block."""
    return Fault("stop_reading")


# -- applying them -------------------------------------------------------------------------------

#: The kinds that act as a connection opens (see :func:`on_connect`).
CONNECTION_KINDS = frozenset({"reset_peer", "timeout", "half_close", "stop_reading"})


def _chance(fault: Fault, state: FaultState) -> bool:
    return fault.probability >= 1 or state.rng.random() < fault.probability


def _drawn(fault: Fault, state: FaultState) -> bool:
    """Whether a connection fault applies to this connection: drawn once per connection."""
    key = id(fault)
    if key not in state.drawn:
        state.drawn[key] = _chance(fault, state)
    return state.drawn[key]


def on_connect(faults: Sequence[Fault], state: FaultState) -> list[object]:
    """What the connection faults do as a connection opens (actions for its queue, or
    :class:`~fakepeer._actions.Later` timers)."""
    actions: list[object] = []
    for fault in faults:
        if fault.kind not in CONNECTION_KINDS or not _drawn(fault, state):
            continue
        seconds = fault.params[0] if fault.params else None
        if fault.kind == "reset_peer" and seconds:
            actions.append(Later(float(seconds), Reset()))
        elif fault.kind == "timeout" and seconds is not None:
            actions.append(Later(float(seconds), Close()))
        elif fault.kind == "half_close":
            actions.append(HalfClose())
            state.half_closed = True
        elif fault.kind == "stop_reading":
            actions.append(Stop())
    return actions


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)] or [data]


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
        kind = fault.kind
        if not fault.shapes(direction):
            continue
        if kind in ("refuse", "stop_reading", "half_close") or (
            kind == "reset_peer" and fault.params[0]
        ):
            continue  # they act on the connection (a reset after a delay: by its timer)
        if kind in CONNECTION_KINDS:
            if not _drawn(fault, state):
                continue
        elif not any(isinstance(action, Write | Close) for action in shaped) or (
            fault.probability < 1 and not _chance(fault, state)
        ):
            continue
        shaped = _apply(fault, shaped, state)
    for action in shaped:
        if isinstance(action, Write):
            state.sent += len(action.data)
    return shaped


def _apply(fault: Fault, actions: list[object], state: FaultState) -> list[object]:
    kind, params = fault.kind, fault.params
    out: list[object] = []
    if kind == "latency":
        seconds, jitter = float(params[0] or 0), float(params[1] or 0)
        delay = max(0.0, seconds + (state.rng.uniform(-jitter, jitter) if jitter else 0.0))
        first = next(
            (i for i, action in enumerate(actions) if isinstance(action, Write | Close)), 0
        )
        return [*actions[:first], Wait(delay), *actions[first:]]
    for action in actions:
        if kind == "slow_close" and isinstance(action, Close):
            out.extend([Wait(float(params[0] or 0)), action])
            continue
        if not isinstance(action, Write):
            out.append(action)
            continue
        data = action.data
        if kind == "slice":
            size, delay = int(params[0] or 1), float(params[1] or 0)
            for number, chunk in enumerate(_chunks(data, size)):
                if number and delay:
                    out.append(Wait(delay))
                out.append(Write(chunk))
        elif kind == "bandwidth":
            rate = int(params[0] or 1)
            for chunk in _chunks(data, max(1, rate // 10)):
                out.extend([Write(chunk), Wait(len(chunk) / rate)])
        elif kind == "truncate":
            out.append(Write(data[: int(params[0] or 0)]))
        elif kind == "corrupt":
            probability = float(params[0] or 0)
            rng = state.rng
            out.append(
                Write(
                    bytes(
                        byte ^ rng.randrange(1, 256) if rng.random() < probability else byte
                        for byte in data
                    )
                )
            )
        elif kind == "limit_data":
            if state.limited:
                out.append(Dropped(data, "limit_data"))
                continue
            written = state.sent + sum(len(a.data) for a in out if isinstance(a, Write))
            room = max(0, int(params[0] or 0) - written)
            if len(data) <= room:
                out.append(action)
                continue
            if room:
                out.append(Write(data[:room]))
            out.extend([Dropped(data[room:], "limit_data"), Close()])
            state.limited = True
        elif kind == "timeout":
            out.append(Dropped(data, "timeout"))
        elif kind == "reset_peer":
            out.append(Reset())
            return out  # nothing happens on a reset connection
        else:  # pragma: no cover - every kind is handled above
            out.append(action)
    return out
