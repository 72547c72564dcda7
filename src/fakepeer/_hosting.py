"""Hosting: start, settle and stop a peer's server, on the hub or in the caller's loop.

The sequence is the same on both hosts:

``start``
    Bind and listen in the caller's thread (so the port is known, and clients can connect,
    before ``serve()`` returns), then hand the listening socket to the loop without waiting.
``settle``
    Before a verdict: let the loop read what clients already sent. Skipped, with no
    hand-over, when nothing the hub could still do changes the verdict: it waits in
    ``select()`` with nothing to do (so it holds nothing it took off a socket), no connection
    is being accepted, and no socket has unread bytes but, at most, a client's close. A hub
    busy with something else (a client's close, another peer) is waited for to rest, without
    a hand-over, unless it stays busy (:data:`REST`).
``stop``
    Stop listening after accepting what the kernel queued, read every connection until its
    socket would block, judge what is left, close. Skipped, with no hand-over, when no client
    is connected or connecting (the socket stops listening at once, from the caller's
    thread); not waited for, with ``wait=False`` (the fixture's teardown), when all that is
    left to read are clients' closes.

A hand-over to the hub (``settle`` and ``stop`` when there is work) is bounded by progress,
not by a fixed time: the hub stamps ``server.progress`` at every turn, so a hub busy reading a
flood is waited for, and a hub that made no progress for :data:`STALL` seconds is blocked.
Then :class:`~fakepeer.HubBlocked` names the blocked code, the peer stops listening at once,
its transcript ends there, and the hub is replaced, so later peers are served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, Final

from ._diagnosis import Place
from ._errors import HubBlocked
from ._hub import hub
from ._runtime import PeerServer, clock
from ._stacks import sample as _sample

__all__ = [
    "STALL",
    "attach_here",
    "attach_to_hub",
    "call",
    "settle",
    "stop",
    "stop_in_loop",
]

#: A hub that makes no progress for this many seconds during a hand-over is blocked.
STALL: Final = 1.0
#: A verdict or a stop waits, without a hand-over, for a hub that is busy (a client's close
#: takes it two turns; a loaded machine runs it late) to rest, as long as it is not stalled...
REST: Final = STALL
#: ...and while it makes fewer than this many turns without resting (it keeps busy: then a
#: hand-over it is)...
_TURNS: Final = 16
#: ...and while it does not run the script's code, looked for every this many seconds...
_LOOK: Final = 0.02
#: ...and this many times, if it rests but wakes again before the lock is taken.
_ATTEMPTS: Final = 4


def attach_to_hub(server: PeerServer) -> None:
    """Have the hub accept the connections of a listening server from its next turn: no
    waiting (:meth:`PeerServer.listen` made the socket in the caller's thread)."""
    loop = server.loop = hub.loop()
    hub.soon(loop, server.attach)


def attach_here(server: PeerServer) -> None:
    """Accept the connections of a listening server in the running loop."""
    server.loop = asyncio.get_running_loop()
    server.attach()


def settle(server: PeerServer, *, closes: bool = False) -> None:
    """On the hub, read what clients already sent; nothing to do when the hub is quiet, or
    has only clients' closes to read that cannot change the verdict (``closes``: that are
    read too, for a judgement on closes)."""
    if server.closed:
        return
    with _at_rest(server, "settle before its verdict", eof_ok=not closes) as resting:
        if resting:
            return
    _handover(server, server.settle(), "settle before its verdict")


def stop(server: PeerServer, timeout: float, *, wait: bool = True) -> None:
    """Stop a hub-hosted server (see :meth:`PeerServer.stop`), within about ``timeout``
    once clients stop sending; raises :class:`~fakepeer.HubBlocked` if the hub is stuck.

    ``wait=False``: when what is left to read can change nothing (clients' closes, see
    :meth:`PeerServer.quiet`), hand the stop to the hub and return at once; the last events
    (those closes) are recorded moments later. Else as with ``wait=True``."""
    if server.closed:
        return
    loop = server.loop
    if loop is None:  # listening, never served: nobody was accepted
        server.close()
        server.abort()
        return
    with _at_rest(server, "stop") as resting:
        if resting and not (server.protocols or server.waiting):  # nobody connected or
            # connecting (waiting: accepted, held back by an accept_delay fault)
            server.close()
            server.stop_listening()  # now, not on the hub's next turn
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing listens
                hub.soon(loop, server.abort)
            return
        if not wait and resting and server.inert():  # the stop would judge nothing
            try:
                hub.soon(loop, server.stop_soon)
            except RuntimeError:  # the loop is gone: nothing to stop
                server.close()
            return
    _handover(server, server.stop(timeout), "stop")


async def stop_in_loop(server: PeerServer, timeout: float) -> None:
    """Stop a server hosted in the running loop."""
    if server.loop is None:  # listening, never served
        server.close()
        server.abort()
        return
    await server.stop(timeout)


def call(server: PeerServer, coroutine: Coroutine[Any, Any, object], what: str) -> None:
    """Run ``coroutine`` on the server's hub loop and wait for it, bounded like a stop."""
    _handover(server, coroutine, what)


def _quiet_hub(server: PeerServer, *, eof_ok: bool = True) -> bool:
    """With the lock held: nothing the hub could still do for this server changes the
    verdict. No socket of it is readable (but for closes that change nothing, see
    :meth:`PeerServer.quiet`), and then, the hub waits in ``select()``: it holds nothing it
    took off a socket and has not handled yet (it would need the lock we hold for that)."""
    loop = server.loop
    return loop is not None and server.quiet(eof_ok=eof_ok) and hub.waiting(loop)


@contextlib.contextmanager
def _at_rest(server: PeerServer, what: str, *, eof_ok: bool = True) -> Iterator[bool]:
    """The peer's lock, and whether the hub is at rest for this server (:func:`_quiet_hub`).

    The hub may be busy for a while (a client's close that just arrived, a socket handed
    over, another peer, a loaded machine that runs it late): while nothing is readable for
    this server, it is waited for, without the lock and without the GIL, until it rests (see
    :func:`_rest`); if it does not, this says no (a hand-over will do: nothing is lost
    either way)."""
    loop = server.loop
    deadline = clock() + REST
    turn = (hub.turn(loop) if loop is not None else 0) + _TURNS
    rested = True  # the first look is before any wait: bytes to read need a hand-over anyway
    for attempt in range(_ATTEMPTS):
        if attempt:
            rested = _rest(server, deadline, turn)
        with _locked(server, what):
            if _quiet_hub(server, eof_ok=eof_ok):
                yield True
                return
            if not rested or not server.quiet(eof_ok=eof_ok) or attempt == _ATTEMPTS - 1:
                yield False  # work to do for this server, or a hub that does not rest
                return


def _rest(server: PeerServer, deadline: float, turn: int) -> bool:
    """Wait for the hub to rest in ``select()``: True when it does; False at ``deadline``, at
    its turn number ``turn``, or as soon as it is found running the script's code (a reply
    callable or a handler that may block it: the hand-over that follows says so)."""
    loop = server.loop
    if loop is None:
        return False
    while True:
        if hub.rest(loop, min(deadline, clock() + _LOOK), turn):
            return True
        if clock() >= deadline or hub.turn(loop) >= turn or _scripts_code(server) is not None:
            return False


# -- bounded hand-overs ----------------------------------------------------------------------


@contextlib.contextmanager
def _locked(server: PeerServer, what: str) -> Iterator[None]:
    """The peer's lock, unless the hub holds it for longer than :data:`STALL` while in the
    script's code (which runs under it): then :class:`~fakepeer.HubBlocked`. A hub busy in
    fakepeer's own work (a segment of 65,000 pipelined messages) is waited for."""
    deadline = clock() + _busy_allowance(server)
    while not server.lock.acquire(timeout=STALL):
        if _scripts_code(server) is not None or clock() > deadline:
            raise _blocked(server, what)
    try:
        yield
    finally:
        server.lock.release()


def _handover(server: PeerServer, coroutine: Coroutine[Any, Any, object], what: str) -> None:
    __tracebackhide__ = True
    loop = server.loop
    assert loop is not None
    if server.abandoned or hub.given_up(loop):
        coroutine.close()
        raise _blocked(server, what)
    try:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    except RuntimeError:  # the loop closed: the hub was shut down, nothing is served
        coroutine.close()
        server.close()
        server.abort_listener()
        return
    hub.handovers += 1
    server.progress = clock()
    deadline = server.progress + _busy_allowance(server)
    while True:
        remaining = server.progress + STALL - clock()
        if remaining <= 0:
            if _scripts_code(server) is not None or clock() > deadline:
                break
            server.progress = clock()  # busy in fakepeer's own work, not blocked: wait on
            continue
        try:
            future.result(remaining)
        except concurrent.futures.TimeoutError:
            continue
        return
    future.cancel()
    raise _blocked(server, what)


def _busy_allowance(server: PeerServer) -> float:
    """How long a hub busy in fakepeer's own code (no code of the script on its stack) is
    waited for, at most: the stop's own reading bound, and some."""
    return 2 * server.timeout + 5 * STALL


def _scripts_code(server: PeerServer) -> Place | None:
    """The innermost frame of code that is not fakepeer's, asyncio's or a library's on the
    stack of the hub thread serving ``server``: the script's code, if it runs now."""
    loop = server.loop
    thread = hub.thread_of(loop) if loop is not None else None
    if thread is None or thread.ident is None:
        return None
    sample = _sample(thread.ident)
    return None if sample is None else sample.user


def _blocked(server: PeerServer, what: str) -> HubBlocked:
    """Give up on a blocked hub: describe the blocked code, stop listening from this
    thread, freeze the record, and have the hub replaced."""
    user = _scripts_code(server)
    where = f"{user.filename}:{user.lineno} in {user.function}" if user is not None else "?"
    given_up = server.abandoned or (server.loop is not None and hub.given_up(server.loop))
    if user is not None:
        why = "code of the test's script is blocking it"
    elif given_up:
        why = "it was given up, blocked, earlier in this test"
    else:
        why = (
            f"it was still busy after {_busy_allowance(server):g} s (no code of the test's "
            "script on its stack)"
        )
    lines = [
        f"the fakepeer hub thread made no progress for {STALL:g} s when the peer had to "
        f"{what}: {why}"
    ]
    if user is not None:
        lines.append(f"  blocked at:  {where}")
        lines.append(f"      {user.line.strip()}")
        if user.expression:
            lines.append(f"  call:        {user.expression}")
    lines.append(
        "  hint:        the script's reply callables and handlers run on the hub thread, "
        "which serves every peer: they must not block (use 'async def' and await "
        "asyncio.sleep(), not time.sleep())"
    )
    lines.append(
        "  the peer stopped listening and its transcript ends here; later peers are served "
        "by a new hub thread"
    )
    server.abandoned = True
    server.close()
    server.stop_listening()
    if server.loop is not None:
        hub.give_up(server.loop, server.abort)
    return HubBlocked("\n".join(lines), where=where)
