"""``fakepeer demo``: a sample client talks to a scripted fake peer; print what happened.

The client is a tiny blocking key-value client (the kind of code fakepeer is for); the peer
plays its server from an eight-line script. The second round shows what a test sees when a
client breaks the protocol.
"""

from __future__ import annotations

import re
import socket
from typing import TextIO

from ._errors import ConversationError
from ._framing import Lines
from ._peer import FakePeer


class KVClient:
    """A line-protocol client: ``HELLO``, ``SET k v``, ``GET k``, ``QUIT``."""

    def __init__(self, address: tuple[str, int]) -> None:
        self._sock = socket.create_connection(address, timeout=5)
        self._file = self._sock.makefile("rb")
        self.banner = self._readline()

    def _readline(self) -> str:
        return self._file.readline().decode().rstrip("\r\n")

    def _call(self, line: str) -> str:
        self._sock.sendall(line.encode() + b"\r\n")
        return self._readline()

    def set(self, key: str, value: str) -> None:
        if self._call(f"SET {key} {value}") != "OK":
            raise RuntimeError("SET failed")

    def get(self, key: str) -> str:
        return self._call(f"GET {key}").removeprefix("VALUE ")

    def close(self, polite: bool = True) -> None:
        if polite:
            self._call("QUIT")
        self._file.close()
        self._sock.close()


def _script(peer: FakePeer) -> None:
    peer.on_connect().send("+ kv-server ready")
    peer.expect(re.compile(rb"SET (\w+) (\w+)")).reply("OK")
    peer.expect(re.compile(rb"GET (\w+)")).reply(lambda m: b"VALUE " + m[1].upper())
    peer.expect("QUIT").reply("BYE").close()


def run(out: TextIO) -> int:
    """Run both rounds, writing to ``out``; return the exit status (0)."""
    peer = FakePeer(framing=Lines(b"\r\n"), name="kv")
    _script(peer)
    with peer.serve():
        client = KVClient(peer.address)
        client.set("colour", "blue")
        value = client.get("colour")
        client.close()
    out.write(
        f"1. A well-behaved client. It read the banner {client.banner!r} and got {value!r}.\n"
    )
    out.write("   The peer's transcript:\n\n")
    out.write(peer.render_transcript() + "\n\n")

    peer = FakePeer(framing=Lines(b"\r\n"), name="kv")
    _script(peer)
    try:
        with peer.serve():
            client = KVClient(peer.address)
            client.set("colour", "blue")
            client.close(polite=False)  # the bug: forgets QUIT and never asks GET
    except ConversationError as error:
        out.write("2. A client that hangs up early. Leaving serve() raised:\n\n")
        out.write(f"{type(error).__name__}: {error}\n")
    return 0
