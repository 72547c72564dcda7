"""The connect-phase faults at work (see :mod:`fakepeer._acceptfaults`), on the serving loop.

- :func:`admit`: each connection the server accepts meets the accept faults first: reset
  as it is accepted (``reset_on_accept``), or held unserved for a while (``accept_delay``:
  the socket is accepted, so the client's ``connect()`` succeeded, but nothing is read or
  written until a timer serves it), or served at once.
- :func:`fill` and :func:`drain`: ``accept_queue_full`` stops accepting, cuts the listen
  backlog to 0 (``listen()`` again on a listening socket only sets its backlog, Linux) and
  fills the accept queue with a connection of the peer's own, a *filler*: with the queue
  full, the kernel drops the SYN of each new client. Draining restores the backlog, accepts
  what was queued (the fillers are recognized by their address and closed) and serves it.

Apart from the server because it is about faults, not about listening; what it records is
a peer event of the ``accept`` kind.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
from typing import TYPE_CHECKING, Final

from ._actions import Reset, Wait
from ._faults import Fault, FaultState, on_accept
from ._faultschedule import accepting, switch_off
from ._steps import clock

if TYPE_CHECKING:
    from ._peerserver import PeerServer

__all__ = ["admit", "drain", "fill", "is_filler", "release", "release_fillers"]

_LINGER_RESET: Final = struct.pack("ii", 1, 0)
#: How long :func:`fill` waits for its filler to be queued (loopback: microseconds).
_FILL_WAIT_MS: Final = 1000


def admit(server: PeerServer, sock: socket.socket) -> bool:
    """With the lock held, for a socket just accepted: True if the accept faults took it
    (reset, or held back to be served later), False to serve it now. A counted fault that
    reached its count goes off after the ``accept`` line of what it did."""
    conversation = server.conversation
    server.accepted += 1
    if not (conversation.faults or conversation.counters):
        return False
    now = clock()
    faults, spent = accepting(conversation, now)
    try:
        return bool(faults) and _met(server, sock, faults, now)
    finally:
        switch_off(conversation, spent, now)


def _met(server: PeerServer, sock: socket.socket, faults: list[Fault], now: float) -> bool:
    """``sock`` meets the accept ``faults``: True if they took it (see :func:`admit`)."""
    conversation = server.conversation
    state = FaultState.seeded(conversation.seed, server.accepted, "/accept")
    acted: list[Fault] = []
    actions = on_accept(faults, state, acted)
    if not actions:
        return False
    names = ", ".join(str(fault) for fault in acted)  # (not those drawn in vain)
    if isinstance(actions[0], Reset):
        _reset(sock)
        conversation.note_peer(now, "accept", f"a connection reset as accepted ({names})")
        server.changed()
        return True
    delay = sum(action.seconds for action in actions if isinstance(action, Wait))
    loop = server.loop
    assert loop is not None
    server.waiting[sock] = loop.call_later(delay, _serve_late, server, sock)
    conversation.note_peer(now, "accept", f"a connection waits {delay:.3g} s ({names})")
    server.changed()
    return True


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # (a Unix socket has no RST: it is closed)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def _serve_late(server: PeerServer, sock: socket.socket) -> None:
    with server.lock:
        if server.waiting.pop(sock, None) is None:  # released by the stop
            return
        server.serve_accepted(sock)


def release(server: PeerServer) -> None:
    """On the loop, lock held, as the peer stops: close the connections still waiting for
    their accept delay, unserved, and the fillers. A client that sent nothing reads EOF;
    one whose bytes the peer never read gets a reset (RST: the kernel resets a socket
    closed with received data unread, RFC 1122 4.2.2.13), its ``recv()`` raising
    ``ConnectionResetError``."""
    waiting, server.waiting = server.waiting, {}
    for sock, timer in waiting.items():
        timer.cancel()
        sock.close()
    if waiting and not server.closed:
        count = len(waiting)
        server.conversation.note_peer(
            clock(), "accept", f"{count} connection(s) closed unserved: the peer stopped"
        )
    _close_fillers(server)


# -- accept_queue_full ---------------------------------------------------------------------------


def fill(server: PeerServer) -> None:
    """On the loop: stop accepting and leave each listening socket's accept queue full."""
    loop = server.loop
    if server.queue_full or loop is None:
        return
    server.queue_full = True
    for listener in server.listeners:
        loop.remove_reader(listener.fileno())
        listener.listen(0)  # the queue holds one connection; the next SYN is dropped
        server.fillers.append(_filler(listener))
    for listener in server.listeners:  # queued once the listener is readable: full
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.poll(_FILL_WAIT_MS)


def _filler(listener: socket.socket) -> socket.socket:
    """A connection of the peer's own to ``listener``, to fill its accept queue (a Unix one
    is bound to an abstract name, to be told from clients, which are unnamed)."""
    sock = socket.socket(listener.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    if listener.family == socket.AF_UNIX:
        sock.bind(f"\0fakepeer-filler-{os.getpid()}-{id(sock)}")
    sock.connect_ex(listener.getsockname())  # in progress, done, or EAGAIN: queue full already
    return sock


def is_filler(server: PeerServer, sock: socket.socket) -> bool:
    """True if ``sock``, just accepted, is one of the fillers' connections."""
    try:
        peer = sock.getpeername()
    except OSError:
        return False
    for filler in server.fillers:
        with contextlib.suppress(OSError):
            if filler.getsockname() == peer:
                return True
    return False


def drain(server: PeerServer) -> None:
    """On the loop: accept again (the backlog restored), serving what was queued."""
    if not server.queue_full:
        return
    server.queue_full = False
    for listener in server.listeners:
        listener.listen(server.backlog)
    if server.listeners and not server.closed:
        server.attach()  # accepts what is queued now, the fillers' connections too
    _close_fillers(server)


def release_fillers(server: PeerServer) -> None:
    """Close the fillers (those of sockets no longer listening, after a ``refuse``)."""
    _close_fillers(server)


def _close_fillers(server: PeerServer) -> None:
    fillers, server.fillers = server.fillers, []
    for filler in fillers:
        filler.close()
