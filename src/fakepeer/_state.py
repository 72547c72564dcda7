"""A connection's state machine, as the core keeps it.

Each connection the peer accepts is in one :class:`Phase`. Events of the conversation move it
along the table below (h11's ``_state.py`` is the model: the states, the events, and every
legal move, in one place). An event that is not in the table for the current phase leaves the
phase as it is: the table lists what *changes*; ``CLOSED`` is final.

=================  ==========================================================================
phase              what it means
=================  ==========================================================================
``ANSWERING``      the script answers each message the client sends
``HALF_CLOSED``    still answering, but the peer shut its writing side (``.half_close()``):
                   a later write of the script is a :class:`~fakepeer.ScriptError`
``FINISHING``      a matched rule ended the talk (``.close()``, ``.reset()`` or ``.hang()``,
                   perhaps after a wait): later messages are recorded, not answered
``HANGING``        the peer holds the connection open and answers nothing more
``UPGRADING``      a matched rule asked for TLS (``.start_tls()``): until the handshake is
                   over, a byte of the client in plain text is a protocol error
``FAILED``         a problem was found on it (recorded as ``problem``); the peer closes it
``CLOSED``         either side closed it, or it was reset or lost: nothing more happens
=================  ==========================================================================

Moves (event: from → to)::

    half_close   ANSWERING → HALF_CLOSED
    upgrade      ANSWERING → UPGRADING
    upgraded     UPGRADING → ANSWERING
    finish       ANSWERING, HALF_CLOSED, UPGRADING → FINISHING
    hold         ANSWERING, HALF_CLOSED, FINISHING, UPGRADING → HANGING
    fail         ANSWERING, HALF_CLOSED, FINISHING, HANGING, UPGRADING → FAILED
    end          every phase but CLOSED → CLOSED

Whether a handler (``@peer.handler``) or the script serves a connection is fixed when it is
made (``handled``), not a phase: a handler's connection goes through the same phases.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Generator

    from ._errors import Error
    from ._faults import FaultState
    from ._framing import Decoder
    from ._matchers import Matcher
    from ._script import Script
    from ._tlsinfo import TLSInfo
    from ._transcript import Transcript

__all__ = ["TRANSITIONS", "ConnectionRecord", "Phase", "Transition"]


class Phase(enum.Enum):
    """Where a connection stands; see the module docstring."""

    ANSWERING = "answering"
    HALF_CLOSED = "half-closed"
    FINISHING = "finishing"
    HANGING = "hanging"
    UPGRADING = "upgrading"
    FAILED = "failed"
    CLOSED = "closed"


class Transition(enum.Enum):
    """What happened to a connection, as far as its phase is concerned."""

    HALF_CLOSE = "half_close"
    FINISH = "finish"
    HOLD = "hold"
    FAIL = "fail"
    END = "end"
    UPGRADE = "upgrade"
    UPGRADED = "upgraded"


_A, _H, _F, _G, _X, _C, _U = (
    Phase.ANSWERING,
    Phase.HALF_CLOSED,
    Phase.FINISHING,
    Phase.HANGING,
    Phase.FAILED,
    Phase.CLOSED,
    Phase.UPGRADING,
)

#: ``TRANSITIONS[event][phase]``: the phase after ``event``; a phase not listed stays.
TRANSITIONS: Final[dict[Transition, dict[Phase, Phase]]] = {
    Transition.HALF_CLOSE: {_A: _H},
    Transition.FINISH: {_A: _F, _H: _F, _U: _F},
    Transition.HOLD: {_A: _G, _H: _G, _F: _G, _U: _G},
    Transition.FAIL: {_A: _X, _H: _X, _F: _X, _G: _X, _U: _X},
    Transition.END: {_A: _C, _H: _C, _F: _C, _G: _C, _X: _C, _U: _C},
    Transition.UPGRADE: {_A: _U},
    Transition.UPGRADED: {_U: _A},
}

#: The phases in which incoming messages are matched against the script.
ANSWERING: Final = frozenset({Phase.ANSWERING, Phase.HALF_CLOSED})


class ConnectionRecord:
    """The core's record of one accepted connection: what it received, where it stands,
    and the bytes it holds that are no message yet. Pure data, changed only by the
    :class:`~fakepeer._conversation.Conversation`'s event methods; the user's handle,
    :class:`fakepeer.Connection`, refers to one.

    ``id`` counts connections from 1 in order of arrival; ``client`` is the client's
    ``host:port``; ``received`` the messages it sent; ``state`` its state for ``.when()``
    rules (the script's own label, not the :class:`Phase`); ``problem`` the first problem
    found on it, if any; ``ending`` who closed it first and how (see :meth:`end`).
    """

    __slots__ = (
        "buffer",
        "client",
        "decoder",
        "ending",
        "faults",
        "framed",
        "handled",
        "id",
        "phase",
        "problem",
        "received",
        "scanned",
        "script",
        "since",
        "state",
        "suspended",
        "tls",
        "transcript",
    )

    def __init__(
        self, id: int, client: str, transcript: Transcript, script: Script, state: str
    ) -> None:
        self.id = id
        self.client = client
        self.received: list[bytes] = []
        self.script = script
        self.state = state
        self.handled = script.handler is not None
        self.phase = Phase.ANSWERING
        self.problem: Error | None = None
        self.faults: FaultState | None = None
        self.buffer = bytearray()
        self.since = 0.0  # when the oldest byte of buffer arrived (when it is not empty)
        self.decoder: Decoder | None = None  # cuts messages off buffer (made on first use)
        # Raw: how much of buffer each incremental matcher saw when it last said NEED_MORE.
        self.scanned: dict[Matcher, int] | None = None
        # Handler mode: messages framed off buffer, not yet taken by the handler.
        self.framed: list[bytes] = []
        # An event that stopped at a reply callable, waiting for its result (see Call).
        self.suspended: Generator[Any, Any, Any] | None = None
        self.transcript = transcript
        # What the TLS handshake agreed (a TLSInfo), once there was one; None: plain text.
        self.tls: TLSInfo | None = None
        # Who closed it first, "client" or "peer", and how ("EOF", "reset"...); None: neither.
        self.ending: tuple[str, str] | None = None

    def end(self, by: str, how: str) -> None:
        """``by`` (``"client"`` or ``"peer"``) closed the connection, ``how``: recorded if
        it is the first close of either side (a client's EOF, its reset or a lost
        connection; the peer's close or reset; the close that answers the other's is not
        the first). A half-close of the peer is no close: the client may still close."""
        if self.ending is None:
            self.ending = (by, how)

    def move(self, event: Transition) -> None:
        """Apply ``event`` to the phase, by the table."""
        self.phase = TRANSITIONS[event].get(self.phase, self.phase)

    @property
    def answering(self) -> bool:
        """True while incoming messages are still matched against the script (the phases
        in :data:`ANSWERING`; by identity: this is read for every message, and an enum
        member's hash is computed in Python)."""
        phase = self.phase
        return phase is _A or phase is _H

    @property
    def ended(self) -> bool:
        """True once the connection was closed, reset or lost."""
        return self.phase is Phase.CLOSED

    @property
    def open(self) -> bool:
        """True until the connection was closed, reset or lost."""
        return self.phase is not Phase.CLOSED

    @property
    def failed(self) -> bool:
        """True once a problem was found on the connection."""
        return self.problem is not None

    def why_not_answering(self) -> str:
        """The one word for why the peer no longer answers this connection."""
        if self.problem is not None:
            return "failed"
        if self.phase is Phase.HANGING:
            return "hanging"
        if self.phase is Phase.CLOSED:
            return "closed"
        if self.phase is Phase.UPGRADING:
            return "upgrading to TLS"
        return "ending"

    def __repr__(self) -> str:
        return f"<ConnectionRecord #{self.id} {self.client} {self.phase.value}>"
