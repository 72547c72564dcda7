"""Teardown is bounded and leaks nothing, on both hosts.

Leaving ``serve()`` must take less than a second whatever the client does: never closing,
never reading what the peer wrote, being left hanging, or a delayed step still pending. On
Python 3.12+ ``Server.wait_closed()`` waits for open connections, so a peer that relied on it
alone would hang here for ever.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Literal

import pytest

from fakepeer import FakePeer, Lines

#: The guarantee under test: leaving serve() takes less than this.
STOP_BOUND = 1.0
CLIENT_TIMEOUT = 5.0
#: Far bigger than any loopback socket buffer: most of it stays queued in the peer.
BIG = 16 * 1024 * 1024

Scenario = Literal["unread-greeting", "unread-then-closed", "idle", "hanging", "pending-step"]
SCENARIOS: list[Scenario] = [
    "unread-greeting",  # the peer's greeting is stuck in its write buffer
    "unread-then-closed",  # the same, and the script closed the connection after it
    "idle",  # connected, nothing said on either side
    "hanging",  # the script hang()s after the client's request
    "pending-step",  # a reply is delayed by a minute when the peer stops
]
UNREAD: tuple[Scenario, ...] = ("unread-greeting", "unread-then-closed")


def scripted(scenario: Scenario) -> FakePeer:
    peer = FakePeer(framing=Lines(), name=scenario)
    if scenario == "unread-greeting":
        peer.on_connect().send(b"x" * BIG)
    elif scenario == "unread-then-closed":
        peer.on_connect().send(b"x" * BIG).close()
    elif scenario == "hanging":
        peer.expect(b"PING").hang()
    elif scenario == "pending-step":
        peer.expect(b"PING").after(60).reply(b"PONG")
    return peer


def provoke(scenario: Scenario, sock: socket.socket) -> None:
    """What the client does before it stops doing anything (it never reads, never closes)."""
    if scenario in ("hanging", "pending-step"):
        sock.sendall(b"PING\n")


def drain(sock: socket.socket) -> int:
    """Read what the client can still get after the peer stopped; the byte count."""
    total = 0
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
    return total


def check_drained(scenario: Scenario, total: int) -> None:
    if scenario in UNREAD:
        # the greeting was stuck in the peer: it was aborted, not flushed for ever
        assert total < BIG
    else:
        assert total == 0  # the peer answered nothing and closed


def check_stopped(peer: FakePeer, scenario: Scenario, elapsed: float) -> None:
    assert elapsed < STOP_BOUND, f"leaving serve() took {elapsed:.3f} s ({scenario})"
    (connection,) = peer.connections
    assert not connection.open
    events = peer.transcript.for_connection(1)
    closed = [(event.kind, event.note) for event in events if event.kind == "closed"]
    if scenario == "unread-then-closed":
        assert closed == [("closed", "")]  # by the script, before the peer stopped
    else:
        assert closed == [("closed", "(the peer stopped)")]
    assert events[-1].kind == "closed"
    sent = [event for event in events if event.kind == "sent"]
    if scenario in UNREAD:
        # 16 MiB is over the transcript's budget: it keeps the size, the first and last bytes
        assert [(event.size, event.data[:3], event.data[-3:]) for event in sent] == [
            (BIG + 1, b"xxx", b"xx\n")
        ]
    else:
        assert sent == []  # the delayed PONG was cancelled, not sent after all
    if scenario == "hanging":
        assert [event.kind for event in events if event.kind == "hanging"] == ["hanging"]
    if scenario in ("hanging", "pending-step"):
        assert peer.done
        assert peer.received == [b"PING"]


@contextlib.contextmanager
def client_socket(address: tuple[str, int]) -> Iterator[socket.socket]:
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        yield sock


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_leaving_serve_is_bounded_on_the_hub(scenario: Scenario) -> None:
    peer = scripted(scenario)
    with contextlib.ExitStack() as client:
        with peer.serve():
            sock = client.enter_context(client_socket(peer.address))
            provoke(scenario, sock)
            if scenario in ("hanging", "pending-step"):
                peer.wait_until_done()
            else:
                peer.wait_for_connections(1)
            start = time.monotonic()
        elapsed = time.monotonic() - start
        check_drained(scenario, drain(sock))
    check_stopped(peer, scenario, elapsed)


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_leaving_serve_is_bounded_in_the_loop(scenario: Scenario) -> None:
    peer = scripted(scenario)
    with contextlib.ExitStack() as client:
        async with peer.serve():
            sock = client.enter_context(client_socket(peer.address))
            provoke(scenario, sock)
            if scenario in ("hanging", "pending-step"):
                await peer.wait_until_done_async()
            else:
                await peer.wait_for_connections_async(1)
            start = time.monotonic()
        elapsed = time.monotonic() - start
        check_drained(scenario, drain(sock))
    check_stopped(peer, scenario, elapsed)


# -- nothing leaks over many cycles ----------------------------------------------------------


def cycle(number: int) -> None:
    """Serve, connect, one request, teardown. Odd cycles leave the client's socket open
    until after the peer stopped; even ones end the conversation properly first."""
    peer = FakePeer(framing=Lines(), name=f"cycle {number}")
    peer.on_connect().send(b"HELLO")
    if number % 2:
        peer.expect(b"PING").reply(b"PONG")
    else:
        peer.expect(b"PING").reply(b"PONG").close()
    with contextlib.ExitStack() as client:
        with peer.serve():
            sock = client.enter_context(client_socket(peer.address))
            reader = client.enter_context(sock.makefile("rb"))
            assert reader.readline() == b"HELLO\n"
            sock.sendall(b"PING\n")
            assert reader.readline() == b"PONG\n"
            if not number % 2:
                assert reader.read() == b""
        if number % 2:
            assert reader.read() == b""  # leaving serve() closed it
    assert peer.done
    assert not peer.connections[0].open


def open_fds() -> set[tuple[str, str]]:
    """Each open descriptor and what it is (``socket:[inode]``, a path): a leak shows as a
    new pair, whatever an earlier test's leftovers closed meanwhile (a count fell by one
    when a given-up hub of an earlier test closed its loop during the cycles)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone already
            found.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return found


def threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def test_many_cycles_on_the_hub_leak_no_thread_fd_or_socket() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cycle(0)
        gc.collect()
        fds, count, alive = open_fds(), threading.active_count(), threads()
        for number in range(1, 200):
            cycle(number)
        gc.collect()
        assert open_fds() - fds == set()
        assert threading.active_count() == count, sorted(t.name for t in threads() - alive)
        assert threads() == alive
    assert [str(w.message) for w in caught] == []
    assert any(thread.name == "fakepeer-hub" for thread in alive)
