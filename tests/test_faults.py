"""Network faults: the pure, seeded plans, and what a real client sees over loopback."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import FakePeer, Lines, ScriptError
from fakepeer._actions import Dropped, Later, Stop, Wait, Write
from fakepeer._faults import FaultState, on_connect, shape
from fakepeer._script import Close, Reset
from fakepeer.faults import StopReading, corrupt, latency, limit_data, reset_peer, slice, timeout

TIMEOUT = 5.0

# -- the pure plans ------------------------------------------------------------------------------


def written(actions: list[object]) -> bytes:
    return b"".join(action.data for action in actions if isinstance(action, Write))


@settings(max_examples=60)
@given(
    chunks=st.lists(st.binary(max_size=64), max_size=6),
    size=st.integers(1, 20),
    delay=st.sampled_from([0.0, 0.01]),
)
def test_slice_never_changes_the_bytes(chunks: list[bytes], size: int, delay: float) -> None:
    state = FaultState.seeded(1, 1)
    actions: list[object] = [Write(chunk) for chunk in chunks]
    shaped = shape([slice(size, delay)], actions, state)
    assert written(shaped) == b"".join(chunks)
    assert all(len(a.data) <= size for a in shaped if isinstance(a, Write) and a.data)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32), data=st.binary(min_size=1, max_size=200))
def test_the_same_seed_gives_the_same_faults(seed: int, data: bytes) -> None:
    faults = [latency(0.1, jitter=0.05), corrupt(0.3), slice(7, 0.01)]

    def run() -> list[object]:
        state = FaultState.seeded(seed, 3)
        return shape(faults, [Write(data), Write(data)], state)

    assert run() == run()


@settings(max_examples=60)
@given(n=st.integers(0, 300), chunks=st.lists(st.binary(min_size=1, max_size=50), max_size=10))
def test_limit_data_delivers_exactly_n_bytes(n: int, chunks: list[bytes]) -> None:
    state = FaultState.seeded(1, 1)
    fault = limit_data(n)
    delivered: list[object] = []
    for chunk in chunks:  # one batch per reply, as the conversation hands them over
        delivered.extend(shape([fault], [Write(chunk)], state))
    total = b"".join(chunks)
    assert written(delivered) == total[:n]
    closes = [a for a in delivered if isinstance(a, Close)]
    assert len(closes) == (1 if len(total) > n else 0)


def test_latency_waits_before_the_first_write() -> None:
    state = FaultState.seeded(1, 1)
    assert shape([latency(0.2)], [Write(b"A"), Write(b"B")], state) == [
        Wait(0.2),
        Write(b"A"),
        Write(b"B"),
    ]


def test_connection_faults_act_as_it_opens() -> None:
    state = FaultState.seeded(1, 1)
    faults = [reset_peer(after=0.5), timeout(2)]
    assert on_connect(faults, state) == [Later(0.5, Reset()), Later(2.0, Close())]
    assert shape(faults, [Write(b"x")], state) == [Dropped(b"x", "timeout")]


def test_reset_peer_now_replaces_the_first_write() -> None:
    state = FaultState.seeded(1, 1)
    fault = reset_peer()
    assert on_connect([fault], state) == []
    assert shape([fault], [Write(b"x"), Write(b"y")], state) == [Reset()]


def test_stop_reading_is_an_action() -> None:
    assert on_connect([StopReading()], FaultState.seeded(1, 1)) == [Stop()]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: latency(-1), "latency() takes a number >= 0, got -1"),
        (lambda: slice(0), "slice() takes a whole number >= 1, got 0"),
        (lambda: corrupt(2), "probability takes a number from 0 to 1, got 2"),
        (lambda: timeout(float("nan")), "timeout() takes a finite number, got nan"),
    ],
)
def test_bad_parameters_are_script_errors(make: object, message: str) -> None:
    with pytest.raises(ScriptError) as info:
        make()  # type: ignore[operator]
    assert str(info.value) == message


# -- over real sockets --------------------------------------------------------------------------


def pinger(seed: int | None = None) -> FakePeer:
    peer = FakePeer(framing=Lines(), seed=seed)
    peer.always(b"PING").reply(b"PONG")
    return peer


def ping(address: tuple[str, int], timeout: float = TIMEOUT) -> bytes:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"PING\n")
        stream = sock.makefile("rb")
        try:
            return stream.readline()
        finally:
            stream.close()


def test_latency_delays_a_round_trip() -> None:
    peer = pinger()
    with peer.serve():
        with peer.faults.latency(0.2):
            started = time.monotonic()
            assert ping(peer.address) == b"PONG\n"
            slow = time.monotonic() - started
        assert ping(peer.address) == b"PONG\n"  # the fault ended with the block
    assert slow >= 0.2
    assert f"(fault seed {peer.seed})" in peer.render_transcript().splitlines()[0]
    assert "fault      + latency(0.2, 0)" in peer.render_transcript()
    assert "seed" not in str(peer.transcript)  # stable: the seed shows only in render()
    assert "fault      - latency(0.2, 0)" in peer.render_transcript()


def test_reset_peer_gives_connection_reset_error() -> None:
    peer = pinger()
    peer.faults.reset_peer()
    with peer.serve(), pytest.raises(ConnectionResetError):
        ping(peer.address)


def test_slice_splits_the_reply_and_the_client_still_reads_it() -> None:
    peer = pinger()
    peer.faults.slice(1, 0.001)
    with peer.serve():
        assert ping(peer.address) == b"PONG\n"
    sent = [event.data for event in peer.transcript.events if event.kind == "sent"]
    assert sent == [b"P", b"O", b"N", b"G", b"\n"]


def test_limit_data_closes_after_n_bytes() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connect().send(b"0123456789")
    peer.faults.limit_data(4)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        received = b""
        while chunk := sock.recv(100):
            received += chunk
    assert received == b"0123"


def test_blackhole_never_answers() -> None:
    peer = pinger()
    peer.faults.blackhole()
    with peer.serve(), pytest.raises(TimeoutError):
        ping(peer.address, timeout=0.3)
    assert "#1 dropped    'PONG\\n' (by timeout)" in peer.render_transcript()


def test_stop_reading_blocks_a_big_sendall_until_its_timeout() -> None:
    peer = FakePeer(framing=Lines())
    peer.otherwise()
    peer.faults.stop_reading()
    with peer.serve(), socket.create_connection(peer.address, timeout=0.5) as sock:
        peer.wait_for_connections(1)
        with pytest.raises(TimeoutError):
            sock.sendall(b"x" * 10_000_000)
    assert "#1 stopped    (reading: a stop_reading fault)" in peer.render_transcript()


def test_corruption_is_replayed_by_the_seed() -> None:
    replies = []
    for _ in range(2):
        peer = pinger(seed=1234)
        peer.faults.corrupt(0.5)
        with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
            sock.sendall(b"PING\n")
            replies.append(sock.recv(5))
    assert replies[0] == replies[1] != b"PONG\n"


def test_half_close_sends_eof_after_the_greeting() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connect().send(b"HELLO")
    peer.otherwise()
    peer.faults.half_close()
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        stream = sock.makefile("rb")
        assert stream.readline() == b"HELLO\n"
        assert stream.readline() == b""  # EOF, yet the peer still reads
        sock.sendall(b"still there\n")
        stream.close()
    assert b"still there" in peer.received


def test_reset_peer_after_a_delay_resets_an_idle_connection() -> None:
    peer = FakePeer(framing=Lines())
    peer.faults.reset_peer(after=0.1)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        assert time.monotonic() - started >= 0.05
    assert "#1 reset" in peer.render_transcript()


def test_refuse_then_accept_again_on_the_same_port() -> None:
    peer = pinger()
    with peer.serve():
        address = peer.address
        with socket.create_connection(address, timeout=TIMEOUT) as held:
            # Accepted first: refusing closes the listening socket, and with it the
            # connections still waiting in its backlog.
            peer.wait_for_connections(1)
            with peer.faults.refuse():
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(address, timeout=TIMEOUT)
                held.sendall(b"PING\n")  # the open connection goes on
                assert held.recv(10) == b"PONG\n"
            assert peer.address == address
            assert ping(address) == b"PONG\n"


@pytest.mark.asyncio
async def test_refuse_in_the_loop() -> None:
    peer = pinger()
    async with peer.serve():
        with peer.faults.refuse(), pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*peer.address)
        # Listening again is immediate: the connection waits in the backlog until this loop
        # accepts it, on its next turn.
        reader, writer = await asyncio.open_connection(*peer.address)
        writer.write(b"PING\n")
        assert await reader.readline() == b"PONG\n"
        writer.close()
        await writer.wait_closed()


def test_a_fault_on_one_rule_only() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"BIG").reply(b"0123456789").fault(slice(3))
    peer.always(b"SMALL").reply(b"ok")
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"BIG\n")
        assert stream.readline() == b"0123456789\n"
        sock.sendall(b"SMALL\n")
        assert stream.readline() == b"ok\n"
        stream.close()
    sent = [event.data for event in peer.transcript.events if event.kind == "sent"]
    assert sent == [b"012", b"345", b"678", b"9\n", b"ok\n"]


def test_a_connection_fault_cannot_be_put_on_a_rule() -> None:
    with pytest.raises(ScriptError, match=r"acts on the connection or the server"):
        FakePeer().always(b"X").fault(timeout(1))
    with pytest.raises(ScriptError, match=r"\.fault\(\) takes a fault such as slice\(3\)"):
        FakePeer().always(b"X").fault("slow")  # type: ignore[arg-type]


def test_half_close_drops_what_the_script_sends_afterwards() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connect().send(b"HELLO")
    peer.always(b"PING").reply(b"PONG")
    peer.faults.half_close()
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        stream = sock.makefile("rb")
        assert stream.readline() == b"HELLO\n"
        assert stream.readline() == b""
        sock.sendall(b"PING\n")
        peer.wait_for_connections(1)
        stream.close()
    assert "#1 dropped    'PONG\\n' (by half_close)" in peer.render_transcript()


def test_limit_data_counts_what_was_sent_before_it() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")  # 5 bytes a reply
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"PING\n")
        assert stream.readline() == b"PONG\n"
        with peer.faults.limit_data(7):  # 5 already sent: 2 more, then the close
            sock.sendall(b"PING\n")
            assert stream.read() == b"PO"
        stream.close()


def test_removing_half_close_keeps_its_connections_half_closed() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")
    with peer.serve():
        fault = peer.faults.half_close()  # before the client connects: it applies to it
        with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
            peer.wait_for_connections(1)
            fault.remove()
            sock.sendall(b"PING\n")  # the fault is gone, the FIN it sent is not
            assert sock.recv(10) == b""
    assert "#1 dropped    'PONG\\n' (by half_close)" in peer.render_transcript()
