"""Reviewer B (issue 15): reproductions that FAIL on 2a1ca78. Every wait is bounded."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fakepeer import ConversationError, FakePeer, Lines, ScriptError, faults
from fakepeer._hub import hub


def _served(address: tuple[str, int]) -> bytes | None:
    """PING a client of ``address``: its answer, or None if it was not served (connect
    timed out or nothing came within 0.5 s)."""
    sock = socket.socket()
    sock.settimeout(0.5)
    try:
        sock.connect(address)
        sock.sendall(b"PING\n")
        return sock.recv(10) or None
    except OSError:
        return None
    finally:
        sock.close()


def _pinging_peer() -> FakePeer:
    peer = FakePeer(framing=Lines(), timeout=1)
    peer.always("PING").reply("PONG")
    return peer


# 1. accept_queue_full is silently lost after a refuse() went on and off -------------------


def test_accept_queue_full_still_holds_after_refuse_on_and_off() -> None:
    peer = _pinging_peer()
    with peer.serve():
        full = peer.faults.accept_queue_full()
        peer.faults.refuse().remove()
        got = _served(peer.address)  # accept_queue_full is still on: no client is served
        full.remove()
    assert got is None, f"served while accept_queue_full() was on: {got!r}"


def test_refuse_then_accept_queue_full_then_refuse_off() -> None:
    peer = _pinging_peer()
    with peer.serve():
        refusing = peer.faults.refuse()
        full = peer.faults.accept_queue_full()
        refusing.remove()
        got = _served(peer.address)
        full.remove()
    assert got is None, f"served while accept_queue_full() was on: {got!r}"


# 2. faults.clear() leaves a fault added with after= to come on later -------------------------


def test_clear_removes_a_fault_scheduled_with_after() -> None:
    peer = _pinging_peer()
    with peer.serve():
        peer.faults.add(faults.Refuse(), after=0.1)
        peer.faults.clear()  # "Remove every fault."
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline and "+ refuse()" not in peer.render_transcript():
            time.sleep(0.02)
        assert "+ refuse()" not in peer.render_transcript()
        assert _served(peer.address) == b"PONG\n"


# 3. a schedule's timer armed after the peer stopped stays on the hub loop -------------------


def _fault_timers() -> list[object]:
    loop = hub.loop()
    found: list[list[object]] = []
    loop.call_soon_threadsafe(
        lambda: found.append(
            [h for h in loop._scheduled if not h.cancelled() and "_arm_one" in repr(h)]  # type: ignore[attr-defined]
        )
    )
    deadline = time.monotonic() + 2
    while not found and time.monotonic() < deadline:
        time.sleep(0.01)
    assert found, "the hub did not answer"
    return found[0]


def test_no_schedule_timer_left_on_the_hub_after_stop() -> None:
    # Deterministic: the hub runs the timer's arm() only once the stop has disarmed (the
    # race a stop right after add() loses whenever the hub thread is not scheduled first).
    peer = _pinging_peer()
    disarmed = threading.Event()
    disarm = peer.faults._disarm

    def disarm_then_go() -> None:
        disarm()
        disarmed.set()

    peer.faults._disarm = disarm_then_go  # type: ignore[method-assign]
    before = _fault_timers()
    with peer.serve():
        hub.loop().call_soon_threadsafe(disarmed.wait, 5)  # holds the hub until disarmed
        peer.faults.add(faults.Latency(0.1), after=300)
    assert [t for t in _fault_timers() if t not in before] == []  # holds its peer 300 s


# 4. the lasting= timer of a removed fault removes the same fault added again ---------------


def test_lasting_timer_of_a_removed_fault_spares_it_when_added_again() -> None:
    down = faults.Refuse()
    peer = _pinging_peer()
    with peer.serve():
        peer.faults.add(down, lasting=0.1).remove()
        peer.faults.add(down)  # on until removed
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline and "(after 0.1 s)" not in peer.render_transcript():
            time.sleep(0.02)
        assert list(peer.faults) == [down]


# 5. misleading text ----------------------------------------------------------------------------


def test_negative_lasting_says_greater_than_zero() -> None:
    peer = _pinging_peer()
    with pytest.raises(ScriptError, match=r"lasting=\) takes a number > 0"):
        peer.faults.add(faults.Latency(0.1), lasting=-1)


# 6. the transcript of a counted connect-phase fault: off before the connection it counted ------


@pytest.mark.parametrize(
    "fault", [faults.ResetOnAccept(), faults.AcceptDelay(0.01)], ids=["reset", "delay"]
)
def test_counted_accept_fault_goes_off_after_the_connection_it_took(fault: faults.Fault) -> None:
    peer = _pinging_peer()
    with peer.serve():
        peer.faults.add(fault, first=1)
        _served(peer.address)
    lines = [line.split(None, 2)[2] for line in peer.render_transcript().splitlines()[1:]]
    accept = next(i for i, line in enumerate(lines) if line.startswith("accept"))
    off = next(i for i, line in enumerate(lines) if line.startswith("fault      -"))
    # as for the other faults ("#1 connected", then "fault - ... (after its first
    # connection)"): the connection met the fault while the transcript said it was on
    assert accept < off, "\n".join(lines)


# 7. a reset on accept names an accept_delay that did not act --------------------------------


def test_reset_on_accept_names_only_the_faults_that_acted() -> None:
    peer = _pinging_peer()
    with peer.serve():
        peer.faults.accept_delay(0.5)
        peer.faults.reset_on_accept()
        _served(peer.address)
    line = next(x for x in peer.render_transcript().splitlines() if "reset as accepted" in x)
    assert "accept_delay" not in line, line


# 8. the hint names a peer rule that would not take the message (its state is not reached) ----


def test_hint_does_not_offer_a_rule_whose_state_the_connection_is_not_in() -> None:
    peer = FakePeer(framing=Lines(), timeout=0.5)
    peer.always("GET").when("authed").reply("DATA")
    peer.on_connection(1).expect("A").reply("a")
    with peer.serve(), socket.create_connection(peer.address, timeout=2) as sock:
        sock.sendall(b"A\n")
        sock.recv(10)
        sock.sendall(b"GET\n")
        sock.recv(10)
        with pytest.raises(ConversationError) as failure:
            peer.check()
    # with inherit=True the connection (in no state) would meet the same failure
    assert "would take it" not in str(failure.value), str(failure.value)
