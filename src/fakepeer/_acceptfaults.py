"""The connect-phase faults: what a server does to a connection before it serves it (pure).

A TCP connection is made by the kernel: it answers the client's SYN and queues the
connection (the accept queue, as long as the listen backlog) until the server calls
``accept()``. These faults act there, before the peer reads or sends a byte:

- :class:`AcceptDelay`: the peer takes its time to get to a connection (a server busy
  elsewhere): the client's ``connect()`` succeeds, then nothing is read or sent for a while;
- :class:`ResetOnAccept`: a connection is reset (RST) as it is accepted, before any byte,
  whatever the script says (``reset_peer()`` resets instead of the peer's first write, once
  the connection is served and its request read);
- :class:`AcceptQueueFull`: the peer accepts nothing and the accept queue is full, so the
  kernel drops the SYN of new clients (Linux: ``tcp_conn_request``, the
  ``ListenOverflows`` counter), whose ``connect()`` then times out.

The first two are drawn for each accepted connection (``_on_accept`` returns a ``Wait``
or a ``Reset``, done by the runtime's ``_accepting``); the third acts on the listening
socket, as ``refuse()`` does. Apart from ``_faultclasses`` because they act before there
is a connection to shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Final

from ._actions import Reset, Wait
from ._faults import Fault, FaultState, checked_number, checked_probability

__all__ = ["ACCEPT_FAULTS", "AcceptDelay", "AcceptQueueFull", "ResetOnAccept"]


class _BeforeServing:
    """What the connect-phase faults share: they shape no write and no rule's replies."""

    __slots__ = ()

    @property
    def per_rule(self) -> bool:
        return False

    def _applies(self, actions: Sequence[object], state: FaultState) -> bool:
        return False  # they act before the connection is served


@dataclass(frozen=True, slots=True)
class AcceptDelay(_BeforeServing, Fault):
    """Serve each connection ``seconds`` (a number >= 0) after the kernel accepted it, plus
    or minus up to ``jitter`` seconds (drawn for each connection, never below 0): the
    client's ``connect()`` succeeds at once (the kernel's handshake), then the peer reads
    nothing and sends nothing (no greeting) until the delay is over, like a server slow to
    call ``accept()``. ``probability`` (0 to 1): the chance for each connection. It applies
    to the connections that arrive while it is on; those still waiting when the peer stops
    are closed unserved: the client reads EOF, or, if it sent bytes (unread), gets a reset
    (RST, RFC 1122 4.2.2.13: ``ConnectionResetError``)."""

    accept_fault: ClassVar[bool] = True

    seconds: float
    jitter: float = 0.0
    _: KW_ONLY
    probability: float = 1.0

    def _checked(self) -> dict[str, object]:
        return {
            "seconds": checked_number(self.seconds, "accept_delay()"),
            "jitter": checked_number(self.jitter, "accept_delay(jitter=)"),
        }

    def _chance(self) -> float:
        return self.probability

    def _on_accept(self, state: FaultState) -> list[object]:
        jitter = self.jitter
        delay = self.seconds + (state.rng.uniform(-jitter, jitter) if jitter else 0.0)
        return [Wait(max(0.0, delay))]


@dataclass(frozen=True, slots=True)
class ResetOnAccept(_BeforeServing, Fault):
    """Reset each connection as it is accepted, with ``probability`` (0 to 1, default 1:
    every one), drawn for each connection: a TCP RST (``SO_LINGER`` 0) before the peer reads
    or sends a byte, whatever the script. The client's ``connect()`` succeeded; its first
    ``recv()`` (or a ``send()`` after the RST came) raises ``ConnectionResetError``. The
    connection is no connection of the script: the transcript notes it as an ``accept``
    event of the peer. (``reset_peer()`` differs: it serves the connection, reads the
    request, and resets instead of the first write.) On a Unix socket, which has no RST,
    the connection is closed."""

    accept_fault: ClassVar[bool] = True

    probability: float = 1.0

    def _checked(self) -> dict[str, object]:
        return {"probability": checked_probability(self.probability)}

    def _chance(self) -> float:
        return self.probability

    def _on_accept(self, state: FaultState) -> list[object]:
        return [Reset()]


@dataclass(frozen=True, slots=True)
class AcceptQueueFull(_BeforeServing, Fault):
    """Accept nothing, and leave the kernel's accept queue full: the peer cuts its listen
    backlog to the least and fills the queue itself. The kernel then drops the SYN of each
    new TCP client (it retries, and its ``connect()`` with a timeout raises
    ``TimeoutError``), as a real server's kernel does when its application stops calling
    ``accept()``. A Unix socket client's ``connect()`` with a timeout (a non-blocking
    socket) fails at once with ``BlockingIOError`` (``EAGAIN``); a blocking one waits.
    Connections queued before wait in the queue; removing the fault accepts and serves
    them, and the clients still retrying get in."""

    server_fault: ClassVar[bool] = True


#: The faults of this module, which act before a connection is served.
ACCEPT_FAULTS: Final = (AcceptDelay, ResetOnAccept, AcceptQueueFull)
