"""The proxy's brain for one connection, both directions, with no I/O (sans-IO).

The runtime tells a :class:`Relay` what happened (the client sent bytes or closed, the
upstream server was reached, sent bytes, closed or failed, the client is gone) and gets back
the actions to run on one side: what to write to the upstream server, or to the client, after
``proxy.faults`` shaped them (each direction through the faults that shape it, with its own
seeded random state, so a seed replays both). It records the transcript as it goes::

    client_data(b"PING\\n")    -> to the upstream: [Write(b"PING\\n")]
    upstream_data(b"PONG\\n")  -> to the client:   [Wait(0.1), Write(b"PONG\\n")]  (latency)
    upstream_eof()            -> to the client:   [HalfClose()]

What the client sends before the upstream connection is made waits here, shaped, and goes
upstream with :meth:`Relay.upstream_connected`.
"""

from __future__ import annotations

from ._actions import Action, Close, Dropped, HalfClose, Write
from ._conversation import Conversation
from ._errors import UpstreamError
from ._faults import FaultState, shape
from ._faultschedule import faults_of, spend
from ._state import ConnectionRecord

__all__ = ["DOWNSTREAM", "UPSTREAM", "Relay"]

#: The two directions, as faults name them (see :attr:`Fault.direction`).
DOWNSTREAM = "downstream"
UPSTREAM = "upstream"


class Relay:
    """One client connection of a proxy and its connection to ``upstream`` (where the
    upstream server is, as the transcript shows it: ``127.0.0.1:80``, ``[::1]:80``, a path).

    Call with the peer's lock held. Each event returns the actions for one side:
    ``client_*`` and :meth:`upstream_connected` for the upstream side, ``upstream_*`` for
    the client's side."""

    __slots__ = (
        "client_eof_seen",
        "client_gone",
        "connected",
        "connection",
        "conversation",
        "ended",
        "up_faults",
        "upstream",
        "waiting",
    )

    def __init__(
        self, conversation: Conversation, connection: ConnectionRecord, upstream: str
    ) -> None:
        self.conversation = conversation
        self.connection = connection
        self.upstream = upstream
        # The client's bytes have their own fault state (the server's are the connection's):
        # seeded apart, so each direction's draws replay whatever the other does.
        self.up_faults = FaultState.seeded(conversation.seed, connection.id, "/up")
        self.connected = False  # the upstream connection is made
        self.waiting: list[Action] = []  # for the upstream, until it is
        self.client_eof_seen = False
        self.client_gone = False
        self.ended = False  # the upstream server closed: the client was told

    # -- client to server ------------------------------------------------------------------------

    def client_data(self, data: bytes, at: float) -> list[Action]:
        """The client sent ``data``: recorded as received, shaped by the upstream faults."""
        self.conversation.relayed(self.connection, data, at)
        return self._upstream(self._shaped([Write(data)], UPSTREAM, at))

    def client_eof(self, at: float) -> list[Action]:
        """The client half-closed: the server gets an EOF, after what went before."""
        self.client_eof_seen = True
        self.connection.end("client", "EOF")
        self.conversation.note(self.connection, at, "eof", "")
        return self._upstream([HalfClose()])

    def client_done(self, at: float) -> list[Action]:
        """After :meth:`client_eof`, for the client's side: a close if the server had closed
        first (both directions are over), after what the downstream faults still hold."""
        if not self.ended:
            return []
        return self._shaped([Close()], DOWNSTREAM, at)

    def client_lost(self) -> list[Action]:
        """The client's connection is gone: close the upstream one (at once: what is queued
        for it is dropped), or as soon as it is made."""
        self.client_gone = True
        return [Close()] if self.connected else []

    def upstream_connected(self, tls: str | None = None, at: float = 0.0) -> list[Action]:
        """The upstream connection is made (``tls``: what its handshake agreed, recorded as
        a ``tls`` event at ``at``): what the client sent meanwhile (and its EOF), or a close
        if the client is gone."""
        if tls is not None:
            self.conversation.note(self.connection, at, "tls", f"{tls} (upstream)")
        self.connected = True
        actions, self.waiting = self.waiting, []
        return [Close()] if self.client_gone else actions

    def _upstream(self, actions: list[Action]) -> list[Action]:
        if self.connected:
            return actions
        self.waiting.extend(actions)
        return []

    # -- server to client ------------------------------------------------------------------------

    def upstream_data(self, data: bytes, at: float) -> list[Action]:
        """The server sent ``data``: shaped by the downstream faults, for the client."""
        return self._shaped([Write(data)], DOWNSTREAM, at)

    def upstream_eof(self, at: float) -> list[Action]:
        """The server closed (once; later calls return nothing): the client gets an EOF,
        or a close if it closed its side already."""
        if self.ended:
            return []
        self.ended = True
        return self._shaped([Close() if self.client_eof_seen else HalfClose()], DOWNSTREAM, at)

    def upstream_failed(self, error: BaseException, *, connecting: bool) -> UpstreamError:
        """The problem to record: the server could not be reached, or was lost."""
        doing = "could not connect to" if connecting else "lost its connection to"
        return self._problem(
            f"the proxy {doing} the upstream server {self.upstream}: "
            f"{type(error).__name__}: {error}",
            error,
        )

    def upstream_handshake_failed(self, error: BaseException, why: str, at: float) -> UpstreamError:
        """The problem to record: the TLS handshake with the server failed (``why``: its
        certificate is not trusted, say); recorded as a ``tls`` event too."""
        self.conversation.note(self.connection, at, "tls", f"handshake failed: {why} (upstream)")
        return self._problem(
            f"the proxy's TLS handshake with the upstream server {self.upstream} failed: {why}",
            error,
        )

    def _problem(self, text: str, error: BaseException) -> UpstreamError:
        number = self.connection.id
        problem = UpstreamError(f"connection #{number}: {text}", connection=number)
        problem.__cause__ = error
        return problem

    # -- the faults ------------------------------------------------------------------------------

    def _shaped(self, actions: list[Action], direction: str, at: float) -> list[Action]:
        """``actions`` going ``direction`` as the faults let them happen; what they drop is
        recorded. Without a fault for this direction, what is sent is still counted
        (``limit_data`` counts from the first byte)."""
        faults = faults_of(self.conversation, self.connection)
        upstream = direction == UPSTREAM
        state = self.up_faults if upstream else self.connection.faults
        assert state is not None  # the conversation seeds it as the connection opens
        way = ", upstream" if upstream else ""
        if not state.half_closed and not any(fault.shapes(direction) for fault in faults):
            state.sent += sum(len(a.data) for a in actions if isinstance(a, Write))
            return actions
        shaped: list[Action] = []
        for action in shape(faults, actions, state, direction):
            if isinstance(action, Dropped):
                self.conversation.dropped(self.connection, action, at, way)
            else:
                shaped.append(action)  # type: ignore[arg-type]
        if self.conversation.counters:
            spend(self.conversation, faults, actions, at, direction)  # type: ignore[arg-type]
        return shaped
