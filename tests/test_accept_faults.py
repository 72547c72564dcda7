"""The connect-phase faults (accept_delay, reset_on_accept, accept_queue_full) with real
clients over loopback and Unix sockets, on a FakePeer and a Proxy; and a blackhole that
holds back the script's close."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import select
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from fakepeer import FakePeer, Lines, Proxy, ScriptError, faults

TIMEOUT = 5.0


def pinger(**options: object) -> FakePeer:
    peer = FakePeer(framing=Lines(), **options)  # type: ignore[arg-type]
    peer.always(b"PING").reply(b"PONG")
    return peer


def ping(address: tuple[str, int], timeout: float = TIMEOUT) -> bytes:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"PING\n")
        with sock.makefile("rb") as reader:
            return reader.readline()


def ping_reset(address: tuple[str, int]) -> bool:
    """True if the connection was reset: on loopback the RST may come before ``connect()``
    returns (a client with a timeout checks the connect after it), or at the first recv."""
    try:
        return ping(address) == b"never"
    except ConnectionResetError:
        return True


@pytest.fixture
def unix_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield os.path.join(folder, "peer.sock")


def accept_notes(peer: FakePeer | Proxy) -> list[str]:
    return [event.note for event in peer.transcript.events if event.kind == "accept"]


# -- accept_delay ----------------------------------------------------------------------------------


def test_accept_delay_connects_at_once_and_answers_late() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connect().send(b"HELLO")
    peer.always(b"PING").reply(b"PONG")
    peer.faults.accept_delay(0.4)
    with peer.serve():
        started = time.monotonic()
        with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
            connected = time.monotonic() - started
            sock.sendall(b"PING\n")  # waits in the kernel: the peer reads nothing yet
            with sock.makefile("rb") as reader:
                assert reader.readline() == b"HELLO\n"
                greeted = time.monotonic() - started
                assert reader.readline() == b"PONG\n"
    assert connected < 0.3  # the kernel's handshake: no wait
    assert greeted >= 0.35
    assert accept_notes(peer) == ["a connection waits 0.4 s (accept_delay(0.4, 0))"]
    text = str(peer.transcript)
    assert text.index("accept     a connection waits") < text.index("#1 connected")


def test_accept_delay_times_out_an_http_client() -> None:
    peer = FakePeer()
    peer.otherwise()
    with peer.serve(), peer.faults.accept_delay(2):
        host, port = peer.address
        client = http.client.HTTPConnection(host, port, timeout=0.3)
        client.request("GET", "/")  # the request is sent: the kernel buffers it
        with pytest.raises(TimeoutError):
            client.getresponse()
        client.close()


def test_accept_delay_jitter_is_replayed_by_the_seed() -> None:
    waits = []
    for _ in range(2):
        peer = pinger(seed=77)
        peer.faults.accept_delay(0.05, 0.04)
        with peer.serve():
            for _ in range(3):
                assert ping(peer.address) == b"PONG\n"
        waits.append(accept_notes(peer))
    assert waits[0] == waits[1]
    assert len(set(waits[0])) == 3  # each connection draws its own


@pytest.mark.asyncio
async def test_accept_delay_with_an_asyncio_client() -> None:
    peer = pinger()
    peer.faults.accept_delay(0.3)
    async with peer.serve():
        host, port = peer.address
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        writer.write(b"PING\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.1)
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"PONG\n"
        writer.close()
        await writer.wait_closed()


def test_a_connection_still_waiting_when_the_peer_stops_is_closed_unserved() -> None:
    peer = pinger()
    peer.faults.accept_delay(30)
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        with peer.serve():
            sock.connect(peer.address)
            deadline = time.monotonic() + TIMEOUT
            while not accept_notes(peer) and time.monotonic() < deadline:
                time.sleep(0.005)  # polls what the peer recorded (an accept has no wait)
        assert sock.recv(10) == b""  # closed unserved
    assert accept_notes(peer)[-1] == "1 connection(s) closed unserved: the peer stopped"
    assert peer.connections == []


def test_a_waiting_client_that_sent_bytes_is_reset_as_the_peer_stops() -> None:
    # the kernel resets a socket closed with received data unread (RFC 1122 4.2.2.13)
    for _ in range(20):
        peer = pinger()
        peer.faults.accept_delay(30)
        with socket.socket() as sock:
            sock.settimeout(TIMEOUT)
            with peer.serve():
                sock.connect(peer.address)
                sock.sendall(b"PING\n")  # waits unread in the peer's kernel
                deadline = time.monotonic() + TIMEOUT
                while not accept_notes(peer) and time.monotonic() < deadline:
                    time.sleep(0.005)  # polls what the peer recorded (an accept has no wait)
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
        assert accept_notes(peer)[-1] == "1 connection(s) closed unserved: the peer stopped"


def test_accept_delay_on_a_unix_socket(unix_path: str) -> None:
    peer = pinger(unix=unix_path)
    peer.faults.accept_delay(0.3)
    with peer.serve(), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(TIMEOUT)
        started = time.monotonic()
        sock.connect(peer.address)
        sock.sendall(b"PING\n")
        assert sock.recv(10) == b"PONG\n"
        assert time.monotonic() - started >= 0.25


# -- reset_on_accept -------------------------------------------------------------------------------


def test_reset_on_accept_resets_before_any_byte() -> None:
    peer = pinger()
    with peer.serve():
        with peer.faults.reset_on_accept():
            assert ping_reset(peer.address)
        assert ping(peer.address) == b"PONG\n"
    assert accept_notes(peer) == ["a connection reset as accepted (reset_on_accept(1))"]
    assert len(peer.connections) == 1  # the reset one was never served
    assert b"PING" in peer.connections[0].received


def test_reset_on_accept_differs_from_reset_peer() -> None:
    """reset_peer() serves the connection and reads the request; reset_on_accept() not."""
    peer = pinger()
    with peer.serve():
        with peer.faults.reset_peer():
            assert ping_reset(peer.address)
        with peer.faults.reset_on_accept():
            assert ping_reset(peer.address)
    text = str(peer.transcript)
    assert "#1 received   'PING'" in text
    assert "#1 reset" in text
    assert "#2" not in text


def test_reset_on_accept_with_a_probability_is_replayed_by_the_seed() -> None:
    outcomes = []
    for _ in range(2):
        peer = pinger(seed=11)
        peer.faults.reset_on_accept(0.5)
        with peer.serve():
            outcomes.append([ping_reset(peer.address) for _ in range(12)])
    assert outcomes[0] == outcomes[1]
    assert True in outcomes[0]
    assert False in outcomes[0]


@pytest.mark.asyncio
async def test_reset_on_accept_with_an_asyncio_client() -> None:
    peer = pinger()
    peer.faults.reset_on_accept()

    async def ping_async(host: str, port: int) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"PING\n")
        try:
            return await asyncio.wait_for(reader.readline(), TIMEOUT)
        finally:
            writer.close()

    async with peer.serve():
        with pytest.raises(ConnectionResetError):
            await ping_async(*peer.address)


def test_reset_on_accept_closes_a_unix_socket(unix_path: str) -> None:
    peer = pinger(unix=unix_path)
    peer.faults.reset_on_accept()
    with peer.serve(), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(peer.address)
        with contextlib.suppress(ConnectionResetError):  # (if the close found bytes unread)
            assert sock.recv(10) == b""  # no RST on a Unix socket: a close


def test_reset_on_accept_on_a_proxy() -> None:
    server = pinger()
    with server.serve():
        proxy = Proxy(server.address)
        proxy.faults.reset_on_accept()
        with proxy.serve():
            assert ping_reset(proxy.address)
    assert accept_notes(proxy) == ["a connection reset as accepted (reset_on_accept(1))"]
    assert server.connections == []  # never relayed


# -- accept_queue_full -----------------------------------------------------------------------------


def test_accept_queue_full_times_out_a_connect_then_serves_again() -> None:
    peer = pinger()
    with peer.serve():
        with peer.faults.accept_queue_full():
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                socket.create_connection(peer.address, timeout=0.3)
            assert time.monotonic() - started < 2
        assert ping(peer.address) == b"PONG\n"
    assert len(peer.connections) == 1  # the peer's own filler is no connection


def test_a_client_still_retrying_gets_in_once_the_queue_drains() -> None:
    peer = pinger()
    with peer.serve():
        full = peer.faults.accept_queue_full()
        client = socket.socket()
        client.setblocking(False)
        assert client.connect_ex(peer.address) in (115, 11)  # EINPROGRESS: its SYN dropped
        poller = select.poll()
        poller.register(client, select.POLLOUT)
        assert poller.poll(200) == []  # not connected: no SYN-ACK
        full.remove()
        assert poller.poll(int(TIMEOUT * 1000))  # the kernel retries the SYN (1 s on Linux)
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        client.setblocking(True)
        client.settimeout(TIMEOUT)
        client.sendall(b"PING\n")
        assert client.recv(10) == b"PONG\n"
        client.close()


@pytest.mark.asyncio
async def test_accept_queue_full_times_out_an_asyncio_client() -> None:
    peer = pinger()
    async with peer.serve():
        host, port = peer.address
        with peer.faults.accept_queue_full(), pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.open_connection(host, port), 0.3)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        writer.write(b"PING\n")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"PONG\n"
        writer.close()
        await writer.wait_closed()


def test_accept_queue_full_on_a_unix_socket(unix_path: str) -> None:
    peer = pinger(unix=unix_path)
    with peer.serve():
        with peer.faults.accept_queue_full(), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(0.3)  # a socket with a timeout does not block: EAGAIN at once
            with pytest.raises(BlockingIOError):
                sock.connect(peer.address)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(peer.address)
            sock.sendall(b"PING\n")
            assert sock.recv(10) == b"PONG\n"
    assert len(peer.connections) == 1


def test_accept_queue_full_on_a_proxy_and_before_serving() -> None:
    server = pinger()
    with server.serve():
        proxy = Proxy(server.address)
        full = proxy.faults.accept_queue_full()  # applied as it starts serving
        with proxy.serve():
            with pytest.raises(TimeoutError):
                socket.create_connection(proxy.address, timeout=0.3)
            full.remove()
            assert ping(proxy.address) == b"PONG\n"


def test_stopping_with_the_queue_full_ends_promptly() -> None:
    peer = pinger()
    with peer.serve():
        peer.faults.accept_queue_full()
        with pytest.raises(TimeoutError):
            socket.create_connection(peer.address, timeout=0.2)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert peer.connections == []


@pytest.mark.parametrize(
    "fault", [faults.accept_delay(1), faults.reset_on_accept(), faults.accept_queue_full()]
)
def test_a_udp_peer_takes_no_connect_phase_fault(fault: faults.Fault) -> None:
    peer = FakePeer(transport="udp")
    with pytest.raises(ScriptError, match=r"on a UDP peer \(transport='udp'\): it acts on a"):
        peer.faults.add(fault)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: faults.accept_delay(-1), r"accept_delay\(\) takes a number >= 0, got -1"),
        (
            lambda: faults.accept_delay(1, "x"),  # type: ignore[arg-type]
            r"accept_delay\(jitter=\) takes a finite number",
        ),
        (lambda: faults.reset_on_accept(2), r"probability takes a number from 0 to 1, got 2"),
    ],
)
def test_bad_parameters_are_script_errors(make: object, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        make()  # type: ignore[operator]


# -- a silent network holds back the script's close ------------------------------------------------


def test_a_blackhole_holds_back_a_scripted_close() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG").close()
    peer.faults.blackhole()
    with peer.serve(), socket.create_connection(peer.address, timeout=0.3) as sock:
        sock.sendall(b"PING\n")
        with pytest.raises(TimeoutError):  # no reply, and no EOF either
            sock.recv(10)
    assert "#1 dropped    (by timeout(None): the close held back)" in str(peer.transcript)


def test_a_timeout_closes_at_its_time_not_at_the_script_s() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG").close()
    peer.faults.timeout(0.4)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        started = time.monotonic()
        sock.sendall(b"PING\n")
        assert sock.recv(10) == b""  # EOF, from the timeout's own close
        assert time.monotonic() - started >= 0.3
