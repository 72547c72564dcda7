"""The actions the conversation hands the runtime (besides the script's own ``Close``,
``HalfClose`` and ``Reset`` steps, which are actions too), shared with the fault plans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Close", "Dropped", "HalfClose", "Hold", "Later", "Reset", "Stop", "Wait", "Write"]


class Write(NamedTuple):
    """Write these (already framed) bytes."""

    data: bytes


class Wait(NamedTuple):
    """Wait before the next action of the connection."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Hold:
    """The connection hangs from now on: answer nothing more."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop reading from the client (its writes block once the buffers fill)."""


class Later(NamedTuple):
    """Run ``action`` after ``seconds``, apart from the connection's queue (a fault's timer)."""

    seconds: float
    action: object


class Dropped(NamedTuple):
    """Bytes a fault kept from being sent: recorded in the transcript, not written."""

    data: bytes
    why: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection gracefully (FIN) after what was written is sent."""


@dataclass(frozen=True, slots=True)
class HalfClose:
    """Send EOF (shut down writing) but keep reading."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Abort the connection with a TCP RST."""
