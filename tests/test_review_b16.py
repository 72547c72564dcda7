"""Reviewer B (issue 16): the proxy's half-close and reset, recording them, big turns, the
unexpected packet in a capture, a UDP peer's unexpected datagram. Real sockets on loopback;
every wait is bounded."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from fakepeer import FakePeer, Lines, Proxy, UnexpectedData
from test_record import recording

# -- a server that half-closes, then reads ------------------------------------------------------


def _half_closing_server() -> tuple[socket.socket, threading.Thread, list[bytes]]:
    """A server that sends its report, shuts down its sending side (SHUT_WR) and reads
    what the client still sends until its EOF: kept in the list."""
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(b"report follows\ndata\n")
            conn.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            got.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, got


def _acknowledge(address: tuple[str, int], *, wait_for_eof: bool = True) -> bytes:
    """Read the report (to its EOF, unless not ``wait_for_eof``), send ACK, half-close,
    and read to the end."""
    with socket.create_connection(address, timeout=5) as sock:
        data = b""
        if wait_for_eof:
            while chunk := sock.recv(100):
                data += chunk
        sock.sendall(b"ACK\n")
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(100):
            data += chunk
        return data


def test_the_proxy_relays_the_client_bytes_after_a_server_half_close() -> None:
    listener, thread, got = _half_closing_server()
    try:
        proxy = Proxy(listener.getsockname(), transcript_budget=None)
        with proxy.serve():
            assert _acknowledge(proxy.address) == b"report follows\ndata\n"
            thread.join(10)
    finally:
        listener.close()
    assert got == [b"ACK\n"]
    assert "#1 received   'ACK\\n' -> upstream" in str(proxy.transcript)


def test_the_proxy_relays_the_client_bytes_around_a_server_half_close_raced() -> None:
    """The client's ACK races the server's EOF through the proxy: it arrives all the same."""
    for _ in range(30):
        listener, thread, got = _half_closing_server()
        try:
            proxy = Proxy(listener.getsockname(), transcript_budget=None)
            with proxy.serve():
                data = _acknowledge(proxy.address, wait_for_eof=False)
                thread.join(10)
        finally:
            listener.close()
        assert data == b"report follows\ndata\n"
        assert got == [b"ACK\n"], str(proxy.transcript)


def test_the_client_bytes_after_a_server_half_close_are_recorded(tmp_path: Path) -> None:
    listener, thread, _ = _half_closing_server()
    try:
        proxy = Proxy(listener.getsockname(), transcript_budget=None)
        with proxy.serve():
            _acknowledge(proxy.address)
            thread.join(10)
    finally:
        listener.close()
    text = proxy.record(tmp_path / "half.toml")
    assert "half_close = true" in text, text
    assert "close = true" not in text.replace("half_close = true", ""), text
    assert 'match = "ACK\\n"' in text, text
    peer = FakePeer.from_file(tmp_path / "half.toml")
    with peer.serve():
        assert _acknowledge(peer.address) == b"report follows\ndata\n"
    peer.assert_received(b"ACK\n")


# -- a server that resets ------------------------------------------------------------------------


def _resetting_server() -> tuple[socket.socket, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(100)
            conn.sendall(b"bye\n")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def _client(address: tuple[str, int]) -> tuple[bytes, str]:
    """Send hi, read until the connection ends: what it got, and how it ended."""
    with socket.create_connection(address, timeout=3) as sock:
        sock.sendall(b"hi\n")
        got = b""
        while True:
            try:
                chunk = sock.recv(100)
            except ConnectionResetError:
                return got, "reset"
            except TimeoutError:
                return got, "still open after 3 s"
            if not chunk:
                return got, "eof"
            got += chunk


def test_a_server_reset_is_passed_on_recorded_and_replayed(tmp_path: Path) -> None:
    listener, thread = _resetting_server()
    try:
        proxy = Proxy(listener.getsockname(), transcript_budget=None)
        with proxy.serve():  # the server's reset is no error: it is passed on
            original = _client(proxy.address)
        thread.join(5)
    finally:
        listener.close()
    assert original == (b"bye\n", "reset")
    script = tmp_path / "reset.toml"
    assert "#1 reset      (as the upstream server did)" in str(proxy.transcript)
    text = proxy.record(script)
    assert "reset = true" in text, text
    peer = FakePeer.from_file(script)
    with peer.serve():
        replayed = _client(peer.address)
    assert replayed == (b"bye\n", "reset"), text


# -- a turn over 1 MiB ---------------------------------------------------------------------

SIZE = 2_000_000


def _counting_server() -> tuple[socket.socket, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            got = 0
            while got < SIZE:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                got += len(chunk)
            conn.sendall(b"OK %d\n" % got)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def _upload(address: tuple[str, int], blob: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(blob)
        return sock.recv(100)


@pytest.mark.parametrize("framing", [None, Lines(b"\0")], ids=["raw", "lines"])
def test_a_recorded_message_over_the_framing_limit_replays(
    tmp_path: Path, framing: Lines | None
) -> None:
    blob = os.urandom(SIZE).replace(b"\0", b"1")
    blob = blob[:-1] + b"\0"
    listener, thread = _counting_server()
    try:
        proxy = Proxy(listener.getsockname(), transcript_budget=None)
        with proxy.serve():
            assert _upload(proxy.address, blob) == b"OK 2000000\n"
        thread.join(5)
    finally:
        listener.close()
    script = tmp_path / "upload.toml"
    text = proxy.record(script, framing=framing)
    assert f"max_length = {SIZE}" in text[:2000], text[:2000]
    peer = FakePeer.from_file(script)
    with peer.serve():
        assert _upload(peer.address, blob) == b"OK 2000000\n"


# -- the unexpected packet in a capture ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (Wireshark's CLI)")
def test_the_unexpected_packet_has_a_comment_saying_so(tmp_path: Path) -> None:
    peer = FakePeer(framing=Lines(), name="p")
    peer.expect(b"hi").reply(b"ho")
    with (  # noqa: PT012 - the client, then leaving serve() raises
        pytest.raises(UnexpectedData),
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"bad\n")
        sock.recv(10)
    capture = tmp_path / "p.pcapng"
    capture.write_bytes(peer.to_pcapng())
    fields = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "tcp.len > 0", "-T", "fields",
         "-e", "tcp.payload", "-e", "frame.comment"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in fields.splitlines()]
    bad = [row for row in rows if row[0].replace(":", "") == b"bad\n".hex()]
    assert bad, fields
    assert bad[0][1] == "#1 unexpected: no rule matched", fields


# -- a UDP peer's unexpected datagram -------------------------------------------------------


def test_an_unexpected_datagram_is_the_only_problem() -> None:
    peer = FakePeer(transport="udp", timeout=2)
    peer.always(b"q").reply(b"r")
    with (  # noqa: PT012 - the client, then leaving serve() raises
        pytest.raises(UnexpectedData) as caught,
        peer.serve(),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.sendto(b"x", peer.address[:2])
        peer.wait_for_connections(1, timeout=5)
    assert "a step closes the connection" not in str(caught.value)
    assert "UDP peer has no connection" not in str(caught.value)


def test_what_a_recording_leaves_out_is_said(tmp_path: Path) -> None:
    """A server that closes in the middle of the client's message: that part is left out of
    the recording (no rule can answer it), and the file's header says so."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(100)
            conn.sendall(b"bye\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        proxy = Proxy(listener.getsockname(), transcript_budget=None)
        with proxy.serve(), socket.create_connection(proxy.address, timeout=5) as sock:
            sock.sendall(b"par")
            assert sock.recv(100) == b"bye\n"
            assert sock.recv(100) == b""
        thread.join(5)
    finally:
        listener.close()
    text = proxy.record(tmp_path / "closed.toml", framing=Lines())
    assert (
        "# connection #1: the client's last 3 bytes are left out: the server closed "
        "before they could be answered\n"
    ) in text, text
    assert text.endswith('[[greeting]]\nsend = "bye\\n"\nclose = true\n'), text


def test_fakepeer_record_records_a_reset_and_says_what_it_left_out(tmp_path: Path) -> None:
    listener, thread = _resetting_server()
    try:
        with recording(tmp_path, listener.getsockname(), "--connections", "1") as recorder:
            assert _client(recorder.address) == (b"bye\n", "reset")
            out = recorder.finish()
        thread.join(5)
    finally:
        listener.close()
    assert recorder.path.read_text().endswith('reply = "bye\\n"\nreset = true\n'), out

    def close_mid_message() -> None:
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(100)
            conn.sendall(b"bye\n")

    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=close_mid_message, daemon=True)
    thread.start()
    try:
        options = ("--connections", "1", "--framing", "lines")
        with recording(tmp_path, listener.getsockname(), *options) as recorder:
            with socket.create_connection(recorder.address, timeout=5) as sock:
                sock.sendall(b"par")
                assert sock.recv(100) == b"bye\n"
                assert sock.recv(100) == b""
            out = recorder.finish()
        thread.join(5)
    finally:
        listener.close()
    assert (
        "fakepeer: connection #1: the client's last 3 bytes are left out: the server closed "
        "before they could be answered\n"
    ) in out, out
