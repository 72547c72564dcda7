"""Memory has a bound under hostile input, with a clear error at each bound.

Each flood runs in a fresh interpreter, so its peak resident memory (``VmHWM``) is its
own: a client thread floods a peer of that process from one reused buffer, so the client
itself holds next to nothing, and the figure is the peer's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

MIB = 1 << 20
#: The bound the issue set for every flood: the whole process stays under it.
PEAK_LIMIT = 64 * MIB

PRELUDE = """
import socket, threading, time
from fakepeer import *
import json as jsonlib  # after the star: fakepeer has a json matcher

def peak():
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it can be the parent's (pytest's)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

def flood(address, total, chunk=b"x" * 65536, timeout=5.0):
    '''Send ``total`` bytes from one reused chunk; returns (bytes sent, error or None).'''
    sent = 0
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError as exc:
            return sent, type(exc).__name__
    return sent, None

def done(**figures):
    figures["peak"] = peak()
    print(jsonlib.dumps(figures))
"""


def run(body: str) -> dict[str, object]:
    """Run ``body`` after the prelude in a fresh interpreter; the figures it printed."""
    script = PRELUDE + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def test_a_200_mb_flood_to_a_handler_ends_with_a_framing_error() -> None:
    figures = run(
        """
        peer = FakePeer(framing=Lines())

        @peer.handler
        async def handle(connection):
            await connection.receive()

        error = None
        try:
            with peer.serve():
                sent, failed = flood(peer.address, 200 * 2**20)
        except FramingError as exc:
            error = str(exc)
        done(error=error, sent=sent, failed=failed)
        """
    )
    error = str(figures["error"])
    assert re.match(
        r"connection #1: the client sent \d+ bytes without the delimiter b'\\n': the "
        r"message is longer than allowed, over the limit of 65536 bytes of Lines\(b'\\n'\)",
        error,
    ), error
    assert figures["failed"] in ("ConnectionResetError", "BrokenPipeError")
    assert int(figures["peak"]) < PEAK_LIMIT, figures  # type: ignore[call-overload]


def test_a_handler_that_does_not_receive_stops_reading_its_client() -> None:
    figures = run(
        """
        peer = FakePeer(framing=Lines())

        @peer.handler
        async def handle(connection):
            await connection.receive()  # one line, then it never reads again
            await asyncio.sleep(60)

        import asyncio
        with peer.serve():
            sent, failed = flood(peer.address, 200 * 2**20, chunk=b"line\\n" * 13000, timeout=1)
        done(sent=sent, failed=failed, received=len(peer.received))
        """
    )
    assert figures["failed"] == "TimeoutError"  # backpressure: the client's send blocked
    assert int(figures["sent"]) < 100 * MIB  # type: ignore[call-overload]
    assert figures["received"] == 1
    assert int(figures["peak"]) < PEAK_LIMIT, figures  # type: ignore[call-overload]


def test_pushes_to_a_client_that_never_reads_end_with_client_not_reading() -> None:
    figures = run(
        """
        peer = FakePeer(framing=Raw())
        error = pushed = None
        try:
            with peer.serve(), socket.create_connection(peer.address) as sock:
                peer.wait_for_connections(1)
                (connection,) = peer.connections
                pushed = 0
                for _ in range(300):
                    connection.send(b"x" * 2**20)
                    pushed += 1
        except ClientNotReading as exc:
            error = str(exc)
            waiting = exc.waiting
        done(error=error, pushed=pushed, waiting=waiting, verdict=repr(peer.check))
        """
    )
    error = str(figures["error"])
    assert error.startswith("connection #1: the client is not reading: ")
    assert "bytes wait to be sent to it, and 1,048,576 more would go over the limit of " in error
    assert "4,194,304 bytes (FakePeer(max_send_buffer=...) changes it)" in error
    assert int(figures["waiting"]) <= 4 * MIB  # type: ignore[call-overload]
    assert int(figures["peak"]) < PEAK_LIMIT, figures  # type: ignore[call-overload]


def test_100_mb_through_a_proxy_keeps_a_bounded_record() -> None:
    figures = run(
        """
        listener = socket.create_server(("127.0.0.1", 0))  # the real server: a sink

        def sink():
            server, _ = listener.accept()
            with server:
                while server.recv(1 << 16):
                    pass

        thread = threading.Thread(target=sink)
        thread.start()
        proxy = Proxy(listener.getsockname()[:2])
        with proxy.serve():
            before = peak()
            sent, failed = flood(proxy.address, 100 * 2**20)
            proxy.wait_for_connections(1)
        thread.join(10)
        listener.close()
        done(before=before, sent=sent, failed=failed, omitted=proxy.transcript.omitted_bytes)
        """
    )
    assert figures["failed"] is None
    grown = int(figures["peak"]) - int(figures["before"])  # type: ignore[call-overload]
    assert grown < 32 * MIB, figures
    assert int(figures["omitted"]) > 90 * MIB  # type: ignore[call-overload]


@pytest.mark.parametrize("framing", ["Raw()", "Lines(max_length=2**20)"])
def test_a_peer_keeps_each_byte_it_received_once(framing: str) -> None:
    figures = run(
        f"""
        import tracemalloc
        peer = FakePeer(framing={framing})
        peer.always(ANY)
        tracemalloc.start()
        with peer.serve():
            sent, failed = flood(peer.address, 32 * 2**20, chunk=b"y" * 65535 + b"\\n")
        kept, _ = tracemalloc.get_traced_memory()
        done(kept=kept, received=sum(map(len, peer.received)))
        """
    )
    received = int(figures["received"])  # type: ignore[call-overload]
    assert received >= 32 * MIB - 2 * 65536
    assert int(figures["kept"]) < received * 1.2, figures  # type: ignore[call-overload]
