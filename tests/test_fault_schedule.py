"""Faults on a schedule (``peer.faults.add(fault, after=, lasting=, first=, per=)``): the
fault switches itself on and off, the transcript says when, real clients meet it exactly
then, and a seed replays it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import FakePeer, Lines, Proxy, ScriptError, faults
from fakepeer._actions import Reset, Wait, Write
from fakepeer._conversation import Conversation
from fakepeer._faults import FaultState, on_accept
from fakepeer._faultschedule import Schedule, in_force
from fakepeer._hub import hub
from fakepeer.faults import Fault

TIMEOUT = 5.0


def pinger(**options: object) -> FakePeer:
    peer = FakePeer(framing=Lines(), **options)  # type: ignore[arg-type]
    peer.always(b"PING").reply(b"PONG")
    return peer


def ping(address: tuple[str, int], timeout: float = TIMEOUT) -> bytes:
    """The reply, or what went wrong: ``b"reset"``, ``b"timeout"``, ``b"refused"``."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(b"PING\n")
            with sock.makefile("rb") as reader:
                return reader.readline()
    except ConnectionResetError:
        return b"reset"
    except TimeoutError:
        return b"timeout"
    except ConnectionRefusedError:
        return b"refused"


def fault_lines(peer: FakePeer | Proxy) -> list[str]:
    return [event.note for event in peer.transcript.events if event.kind == "fault"]


def wait_until(condition: object, what: str) -> None:
    """Poll ``condition`` (what the peer shows) for at most TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# -- first=N --------------------------------------------------------------------------------------


def test_the_first_connections_fail_then_the_rest_succeed() -> None:
    peer = pinger()
    with peer.serve():
        active = peer.faults.add(faults.reset_peer(), first=3)
        assert list(peer.faults) == [active.fault]
        assert [ping(peer.address) for _ in range(5)] == [b"reset"] * 3 + [b"PONG\n"] * 2
        assert list(peer.faults) == []
    assert fault_lines(peer) == [
        "+ reset_peer(0) (its first 3 connections)",
        "- reset_peer(0) (after its first 3 connections)",
    ]
    text = str(peer.transcript)
    assert text.index("#3 connected") < text.index("fault      - reset_peer(0)")
    assert text.index("fault      - reset_peer(0)") < text.index("#4 connected")


def test_a_counted_stream_fault_stays_with_its_connections() -> None:
    peer = pinger()
    with peer.serve():
        peer.faults.add(faults.truncate(2), first=1)
        with socket.create_connection(peer.address, timeout=TIMEOUT) as first:
            first.sendall(b"PING\n")
            assert first.recv(10) == b"PO"
            assert ping(peer.address) == b"PONG\n"  # the second connection: no fault
            first.sendall(b"PING\n")  # the first keeps it, though it is off for new ones
            assert first.recv(10) == b"PO"


def test_the_first_requests_fail_then_the_rest_succeed() -> None:
    peer = pinger()
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        peer.faults.add(faults.truncate(2), first=2, per="request")
        replies = []
        for _ in range(3):
            sock.sendall(b"PING\n")
            replies.append(sock.recv(10))
    assert replies == [b"PO", b"PO", b"PONG\n"]
    assert fault_lines(peer) == [
        "+ truncate(2) (its first 2 requests)",
        "- truncate(2) (after its first 2 requests)",
    ]


def test_the_first_connections_are_reset_as_accepted() -> None:
    peer = pinger()
    with peer.serve():
        peer.faults.add(faults.reset_on_accept(), first=2)
        assert [ping(peer.address) for _ in range(3)] == [b"reset", b"reset", b"PONG\n"]
    assert fault_lines(peer)[-1] == "- reset_on_accept(1) (after its first 2 connections)"
    assert len(peer.connections) == 1


def test_a_counted_fault_with_a_probability_is_replayed_by_the_seed() -> None:
    outcomes = []
    for _ in range(2):
        peer = pinger(seed=5)
        peer.faults.add(faults.reset_peer(probability=0.5), first=8)
        with peer.serve():
            outcomes.append([ping(peer.address) for _ in range(10)])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][8:] == [b"PONG\n"] * 2
    assert b"reset" in outcomes[0][:8]
    assert b"PONG\n" in outcomes[0][:8]


def test_first_connections_on_a_proxy() -> None:
    server = pinger()
    with server.serve():
        proxy = Proxy(server.address)
        proxy.faults.add(faults.reset_peer(), first=2)
        with proxy.serve():
            assert [ping(proxy.address) for _ in range(3)] == [b"reset", b"reset", b"PONG\n"]
    assert fault_lines(proxy)[-1] == "- reset_peer(0) (after its first 2 connections)"


def test_concurrent_connects_deal_exactly_the_first_n() -> None:
    lock = threading.Lock()

    def client(address: tuple[str, int], results: list[bytes]) -> None:
        try:
            with socket.create_connection(address, timeout=TIMEOUT) as sock:
                reply = sock.recv(10)
        except ConnectionResetError:
            reply = b"reset"
        with lock:
            results.append(reply)

    for _ in range(5):
        peer = FakePeer(framing=Lines())
        peer.on_connect().send(b"HELLO")
        peer.faults.add(faults.reset_peer(), first=4)
        results: list[bytes] = []
        with peer.serve():
            threads = [
                threading.Thread(target=client, args=(peer.address, results)) for _ in range(12)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(TIMEOUT)
        assert sorted(results) == [b"HELLO\n"] * 8 + [b"reset"] * 4
        text = str(peer.transcript)
        assert [c.id for c in peer.connections if f"#{c.id} reset" in text] == [1, 2, 3, 4]


# -- after= and lasting= --------------------------------------------------------------------------


def test_an_outage_that_ends_by_itself() -> None:
    peer = pinger()
    with peer.serve():
        started = time.monotonic()
        # long enough for the first ping to land inside it on a loaded machine
        peer.faults.add(faults.refuse(), lasting=1.0)
        assert ping(peer.address) == b"refused"
        while (reply := ping(peer.address)) == b"refused":  # a client that retries
            assert time.monotonic() - started < TIMEOUT
            time.sleep(0.02)
        assert reply == b"PONG\n"
        assert time.monotonic() - started >= 0.95
    assert fault_lines(peer) == ["+ refuse() (for 1 s)", "- refuse() (after 1 s)"]


def test_a_fault_that_starts_later_and_switches_off_after_a_while() -> None:
    peer = pinger()
    with peer.serve():
        active = peer.faults.add(faults.blackhole(), after=0.2, lasting=0.4)
        assert list(peer.faults) == []  # not on yet
        wait_until(lambda: list(peer.faults) == [active.fault], "the fault to be on")
        assert ping(peer.address, timeout=0.1) == b"timeout"
        wait_until(lambda: list(peer.faults) == [], "the fault to be off")
        assert ping(peer.address) == b"PONG\n"
    assert fault_lines(peer) == [
        "timeout(None): on in 0.2 s (for 0.4 s)",
        "+ timeout(None) (for 0.4 s)",
        "- timeout(None) (after 0.4 s)",
    ]


def test_times_count_from_the_add_even_before_serving() -> None:
    peer = pinger()
    peer.faults.add(faults.latency(0.5), lasting=0.2)
    time.sleep(0.3)  # the test's own clock: the fault is over once the peer serves
    with peer.serve():
        wait_until(lambda: len(peer.faults) == 0, "the fault to be off")
        started = time.monotonic()
        assert ping(peer.address) == b"PONG\n"
        assert time.monotonic() - started < 0.4


def test_removing_a_fault_before_it_is_on() -> None:
    peer = pinger()
    with peer.serve():
        active = peer.faults.add(faults.refuse(), after=0.1)
        active.remove()
        active.remove()  # idempotent
        time.sleep(0.2)  # past its time: it must not come on
        assert ping(peer.address) == b"PONG\n"
    assert fault_lines(peer) == ["refuse(): on in 0.1 s", "refuse(): removed before it was on"]


def test_a_with_block_ends_a_lasting_fault_first() -> None:
    peer = pinger()
    with peer.serve():
        with peer.faults.add(faults.latency(0.3), lasting=10):
            pass
        assert ping(peer.address) == b"PONG\n"
    assert fault_lines(peer) == ["+ latency(0.3, 0) (for 10 s)", "- latency(0.3, 0)"]


# -- each add() is its own ----------------------------------------------------------------------


def schedule_timers() -> list[object]:
    """The timers of fault schedules pending on the hub loop, once what was sent to the
    loop before (an arm, a cancel) ran."""
    loop = hub.loop()
    found: list[object] = []
    probed = threading.Event()

    def probe() -> None:
        pending = loop._scheduled  # type: ignore[attr-defined]
        found.extend(t for t in pending if not t.cancelled() and "_arm_one" in repr(t))
        probed.set()

    loop.call_soon_threadsafe(probe)
    assert probed.wait(TIMEOUT), "the hub did not answer"
    return found


def test_removing_one_add_leaves_the_same_fault_added_again_on() -> None:
    down = faults.refuse()
    peer = pinger()
    with peer.serve():
        first = peer.faults.add(down)
        with peer.faults.add(down):  # the same value added again: an ActiveFault of its own
            first.remove()
            first.remove()  # idempotent: it never removes the with block's
            assert list(peer.faults) == [down]
            assert ping(peer.address) == b"refused"
        assert list(peer.faults) == []
        assert ping(peer.address) == b"PONG\n"


def test_a_counted_add_that_went_off_leaves_the_same_fault_added_again_on() -> None:
    reset = faults.reset_on_accept()
    peer = pinger()
    with peer.serve():
        counted = peer.faults.add(reset, first=1)
        assert ping(peer.address) == b"reset"
        wait_until(lambda: len(peer.faults) == 0, "the counted fault to go off")
        again = peer.faults.add(reset)
        counted.remove()  # off already (its count): not the add() of now
        assert list(peer.faults) == [reset]
        assert ping(peer.address) == b"reset"
        again.remove()
    assert fault_lines(peer) == [
        "+ reset_on_accept(1) (its first connection)",
        "- reset_on_accept(1) (after its first connection)",
        "+ reset_on_accept(1)",
        "- reset_on_accept(1)",
    ]


@pytest.mark.parametrize("end", ["remove", "with", "clear"])
def test_a_removed_fault_leaves_no_timer_behind(end: str) -> None:
    peer = pinger()
    with peer.serve():
        before = schedule_timers()
        lasting = peer.faults.add(faults.latency(0.1), lasting=300)
        later = peer.faults.add(faults.latency(0.2), after=300, lasting=300)
        assert len([t for t in schedule_timers() if t not in before]) == 3
        if end == "remove":
            lasting.remove()
            later.remove()
        elif end == "with":
            with lasting, later:
                pass
        else:
            peer.faults.clear()
        assert [t for t in schedule_timers() if t not in before] == []  # none holds the peer


def test_a_lasting_timer_that_fires_as_its_fault_is_removed_spares_the_next_add() -> None:
    down = faults.latency(0.001)
    peer = pinger()
    with peer.serve():
        for _ in range(200):  # the timer fires before, or after, the remove(): either way
            peer.faults.add(down, lasting=0.001).remove()
            again = peer.faults.add(down)
            time.sleep(0.002)  # past the first add's time (what its timer would do)
            schedule_timers()  # (twice: a timer due runs after a probe of its iteration)
            schedule_timers()
            assert list(peer.faults) == [down]
            again.remove()
            assert list(peer.faults) == []


def test_a_lasting_fault_on_a_proxy() -> None:
    server = pinger()
    with server.serve():
        proxy = Proxy(server.address)
        with proxy.serve():
            proxy.faults.add(faults.reset_peer(), lasting=0.2)
            assert ping(proxy.address) == b"reset"
            wait_until(lambda: len(proxy.faults) == 0, "the fault to be off")
            assert ping(proxy.address) == b"PONG\n"


@pytest.mark.asyncio
async def test_a_schedule_in_the_test_s_own_loop() -> None:
    peer = pinger()
    async with peer.serve():
        host, port = peer.address
        peer.faults.add(faults.refuse(), lasting=0.2)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)
        for _ in range(200):  # the loop runs the timer while this waits
            await asyncio.sleep(0.01)
            if not len(peer.faults):
                break
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        writer.write(b"PING\n")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"PONG\n"
        writer.close()
        await writer.wait_closed()


def test_the_edge_of_a_schedule_meets_a_connect() -> None:
    """Each connection meets the fault exactly when the transcript says it was on, however
    the timer's edge and the connect fall (repeated)."""
    peer = FakePeer(framing=Lines())
    peer.on_connect().send(b"HELLO")
    with peer.serve():
        outcomes = []
        for number in range(120):
            peer.faults.add(faults.reset_peer(), lasting=0.0005 * (number % 5 + 1))
            if number % 3 == 2:  # just after the edge, rather than near it
                wait_until(lambda: len(peer.faults) == 0, "the fault to be off")
            try:
                with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
                    outcomes.append(sock.recv(10) == b"")
            except ConnectionResetError:
                outcomes.append(True)
            wait_until(lambda: len(peer.faults) == 0, "the fault to be off")
    on, met = False, {}
    for event in peer.transcript.events:
        if event.kind == "fault":
            on = event.note.startswith("+")
        elif event.kind == "connected":
            met[event.connection] = on
    assert [met[number] for number in range(1, 121)] == outcomes
    assert True in outcomes  # both sides of the edge were met
    assert False in outcomes


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "keywords", "message"),
    [
        (faults.latency(1), {"after": -1}, r"add\(after=\) takes a number >= 0, got -1"),
        (faults.latency(1), {"lasting": 0}, r"add\(lasting=\) takes a number > 0, got 0"),
        (faults.latency(1), {"lasting": "2"}, r"add\(lasting=\) takes a finite number, got '2'"),
        (faults.latency(1), {"first": 0}, r"add\(first=\) takes a whole number >= 1, got 0"),
        (faults.latency(1), {"first": 1, "per": "reply"}, r"add\(per=\) takes 'connection' or"),
        (faults.latency(1), {"per": "request"}, r"per='request'\) says what first= counts"),
        (faults.refuse(), {"first": 2}, r"refuse\(\) acts on the listening socket and counts"),
        (faults.accept_queue_full(), {"first": 2}, r"counts no connections; for a fault that"),
        (
            faults.blackhole(),
            {"first": 2, "per": "request"},
            r"timeout\(None\) acts on whole connections, not on each reply: per='connection'",
        ),
        (
            faults.accept_delay(1),
            {"first": 2, "per": "request"},
            r"accept_delay\(1, 0\) acts on whole connections",
        ),
    ],
)
def test_a_bad_schedule_is_a_script_error_naming_the_keyword(
    fault: Fault, keywords: dict[str, object], message: str
) -> None:
    peer = pinger()
    with pytest.raises(ScriptError, match=message):
        peer.faults.add(fault, **keywords)  # type: ignore[arg-type]
    assert len(peer.faults) == 0


def test_a_tls_handshake_fault_counts_no_connections() -> None:
    peer = FakePeer(tls=True)
    with pytest.raises(ScriptError, match=r"acts on TLS handshakes and counts no connections"):
        peer.faults.add(faults.handshake_reset(), first=1)


# -- the pure bookkeeping (no sockets) -------------------------------------------------------------


@settings(max_examples=50)
@given(first=st.integers(1, 6), connections=st.integers(0, 12))
def test_first_n_deals_the_fault_to_exactly_the_first_n_connections(
    first: int, connections: int
) -> None:
    conversation = Conversation(Lines())
    fault = faults.truncate(1)
    conversation.add_fault(fault, 0.0, Schedule(first=first))
    records = [conversation.connect("client", float(n))[0] for n in range(connections)]
    kept = [record.faults is not None and fault in record.faults.kept for record in records]
    assert kept == [n < first for n in range(connections)]
    assert (fault in in_force(conversation)) == (connections < first)


def test_first_n_requests_are_counted_per_batch_of_writes() -> None:
    conversation = Conversation(Lines())
    fault = faults.truncate(1)
    conversation.add_fault(fault, 0.0, Schedule(first=2, per="request"))
    record, _ = conversation.connect("client", 0.0)
    batches = [conversation.faulty(record, [Write(b"PONG\n")], 1.0) for _ in range(3)]
    assert batches == [[Write(b"P")], [Write(b"P")], [Write(b"PONG\n")]]
    assert conversation.faulty(record, [Wait(1.0)], 2.0) == [Wait(1.0)]  # nothing sent


@pytest.mark.parametrize(
    ("schedule", "shown"),
    [
        (Schedule(), ""),
        (Schedule(lasting=2.0), " (for 2 s)"),
        (Schedule(first=1), " (its first connection)"),
        (Schedule(lasting=0.5, first=3, per="request"), " (for 0.5 s, its first 3 requests)"),
    ],
)
def test_how_a_schedule_is_shown(schedule: Schedule, shown: str) -> None:
    assert schedule.describe() == shown


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32), number=st.integers(1, 1000))
def test_the_accept_draws_are_replayed_by_the_seed(seed: int, number: int) -> None:
    drawn: list[Fault] = [faults.accept_delay(0.1, 0.05), faults.reset_on_accept(0.5)]

    def run() -> list[object]:
        return on_accept(drawn, FaultState.seeded(seed, number, "/accept"))

    first = run()
    assert first == run()
    waits = [action.seconds for action in first if isinstance(action, Wait)]
    assert first == [Reset()] or (len(waits) == 1 and 0.05 <= waits[0] <= 0.15)


def test_adding_what_a_peer_faults_method_returned_says_it_was_applied_and_removes_it() -> None:
    # peer.faults.reset_peer() applies the fault at once and returns an ActiveFault: passed
    # to add(..., first=2), it would have stayed on for good behind the ScriptError.
    peer = pinger()
    with peer.serve():
        with pytest.raises(ScriptError) as error:
            peer.faults.add(peer.faults.reset_peer(), first=2)  # type: ignore[arg-type]
        assert str(error.value) == (
            "peer.faults.add() takes a fault, got <ActiveFault reset_peer(0)>: the call "
            "peer.faults.reset_peer(...) applied it at once, for good (it is removed now); "
            "pass fakepeer.faults.reset_peer(0), which only builds the fault: "
            "peer.faults.add(fakepeer.faults.reset_peer(0), first=...)"
        )
        assert ping(peer.address) == b"PONG\n"  # not reset: the fault is off
        assert fault_lines(peer) == ["+ reset_peer(0)", "- reset_peer(0)"]
        # The builder the message names is the one to pass
        peer.faults.add(faults.reset_peer(0), first=1)
        assert ping(peer.address) == b"reset"
        assert ping(peer.address) == b"PONG\n"


def test_adding_another_peers_active_fault_leaves_it_alone() -> None:
    peer, other = pinger(), pinger()
    with peer.serve(), other.serve():
        active = other.faults.latency(0.01)
        with pytest.raises(ScriptError) as error:
            peer.faults.add(active, first=1)  # type: ignore[arg-type]
        assert "applied it at once to another peer (call .remove() on what it returned)" in str(
            error.value
        )
        assert fault_lines(other) == ["+ latency(0.01, 0)"]
        active.remove()
