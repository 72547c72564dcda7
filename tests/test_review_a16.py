"""Hostile review (issue 16), reviewer a: each test reproduced a bug and failed until fixed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from _cli_process import SIGNALS, finish, started
from fakepeer import ANY, Connection, FakePeer, Lines
from fakepeer._keeping import bound
from fakepeer.protocols import resp

TIMEOUT = 30

# -- 1. `fakepeer run` keeps a bounded window of what it received ------------------------------


def _peak_mb(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def _flood(address: str, data: bytes, times: int) -> None:
    """Send ``data`` ``times`` times, then EOF, and read until the peer closes."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        for _ in range(times):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass


@pytest.mark.parametrize(
    ("script", "data", "times"),
    [
        ("[[always]]\nmatch = { any = true }\n", bytes(range(256)) * 256, 1600),  # 100 MiB raw
        ('[framing]\nkind = "lines"\n[[always]]\nmatch = "PING"\n', b"PING\n" * 8192, 100),
    ],
    ids=["raw-100MiB", "lines-4MB"],
)
def test_run_memory_stays_bounded_when_a_client_floods_it(
    tmp_path: Path, script: str, data: bytes, times: int
) -> None:
    """What `fakepeer run` kept of what it received grew with the traffic: 40 MB of
    'PING\\n' took the process to 543 MB."""
    (tmp_path / "flood.toml").write_text(f"version = 1\n{script}")
    with started(
        "run", str(tmp_path / "flood.toml"), "--quiet", "--timeout", "120",
        address_file=tmp_path / "addr",
    ) as (process, address):  # fmt: skip
        before = _peak_mb(process.pid)
        _flood(address, data, times)
        grown = _peak_mb(process.pid) - before
        status, _, err = finish(process, SIGNALS[1])
    assert grown < 24, f"fakepeer run grew by {grown} MiB for {len(data) * times:,} bytes"
    assert status == 0, err


def test_the_bounded_window_drops_the_oldest_and_keeps_the_newest() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(ANY)
    keeping = bound(peer._conversation, most_bytes=100, most_messages=8)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(b"%d\n" % n for n in range(20)))
        sock.sendall(b"x" * 500 + b"\n")
        sock.shutdown(socket.SHUT_WR)
        sock.recv(10)
    assert peer.received[-1] == b"x" * 500  # the newest, over the byte bound by itself
    assert len(peer.received) <= 8
    assert peer.connections[0].received == peer.received
    assert keeping.dropped + len(peer.received) == 21


def test_redis_py_handshakes_through_fakepeer_run_after_many_messages(tmp_path: Path) -> None:
    """resp.protocol_of read connection.received by index: once `fakepeer run` dropped the
    oldest messages, a bare HELLO after 6,000 commands answered in RESP2 to a client that
    chose RESP3 on connect (its HELLO 3 was gone)."""
    (tmp_path / "redis.toml").write_text(
        'version = 1\n[framing]\nkind = "resp"\n[[kit]]\npreset = "resp.handshake"\n'
        '[[always]]\nmatch = { resp = ["PING"] }\nreply = "+PONG\\r\\n"\n'
    )
    with started(
        "run", str(tmp_path / "redis.toml"), "--quiet", "--timeout", "120",
        address_file=tmp_path / "addr",
    ) as (process, address):  # fmt: skip
        host, port = address.rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port), protocol=3, socket_timeout=TIMEOUT)
        try:
            with client.pipeline(transaction=False) as pipe:
                for _ in range(6000):
                    pipe.ping()
                assert all(pipe.execute())
            hello = client.execute_command("HELLO")  # type: ignore[no-untyped-call]
            assert hello[b"proto"] == 3
        finally:
            client.close()
        status, _, err = finish(process, SIGNALS[1])
    assert status == 0, err


def test_protocol_of_finds_its_place_again_when_the_oldest_messages_are_dropped() -> None:
    seen: list[int] = []
    peer = FakePeer(framing=resp.framing())
    peer.always(ANY).reply(lambda _, connection: _answer(connection, seen))
    bound(peer._conversation, most_bytes=1 << 20, most_messages=10)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        for command in [b"PING"] * 3 + [b"HELLO 3"] + [b"PING"] * 30 + [b"HELLO 2", b"PING"]:
            sock.sendall(resp.array(*(resp.bulk_string(part) for part in command.split())))
            sock.recv(100)
    assert seen == [2, 2, 2, 3] + [3] * 30 + [2, 2]


def _answer(connection: Connection, seen: list[int]) -> bytes:
    seen.append(resp.protocol_of(connection))
    return b"+OK\r\n"
