"""``fakepeer demo``: a sample client talks to a scripted fake peer; print what happened.

The client is a tiny blocking key-value client (the kind of code fakepeer is for); the peer
plays its server from an eight-line script. The second round shows what a test sees when a
client breaks the protocol. The third act replays the story fakepeer grew from: the original
test file whose blocking ``accept()`` loop hung its test run, next to the same test written
with the ``fake_peer`` fixture, both run by pytest in a subprocess under the loop watchdog.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final, TextIO

from ._errors import ConversationError
from ._framing import Lines
from ._peer import FakePeer
from ._watchdog import Watchdog


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
    """Run the three acts, writing to ``out``; return the exit status (0)."""
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
    out.write("\n")
    seed(out)
    return 0


# -- the third act: the seed ------------------------------------------------------------------

#: The seed's test file (shared/seed), as its author wrote it; only the Japanese docstrings,
#: comment and prints are translated.
SEED: Final = '''\
"""Minimal test code to check how pytest-asyncio behaves"""
import asyncio
import socket
from typing import AsyncGenerator, Tuple
import pytest
import pytest_asyncio


@pytest_asyncio.fixture
async def simple_server() -> AsyncGenerator[Tuple[socket.socket, bool], None]:
    """A TCP server fixture with the bare minimum of features"""
    print("Server: fixture start")
    server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server_socket.bind(("localhost", 12346))
    server_socket.listen(1)
    server_socket.settimeout(0.1)
    print("Server: socket set up")

    async def handle_client():
        print("Server: handle_client start")
        while True:
            try:
                print("Server: waiting for a connection")
                client, _ = server_socket.accept()
                print("Server: client connected")
                client.close()
            except socket.timeout:
                print("Server: timeout")
                continue

    print("Server: before creating the task")
    server_task = asyncio.create_task(handle_client())
    print("Server: task created")
    try:
        yield server_socket, True
    finally:
        print("Server: cleanup start")
        server_task.cancel()
        server_socket.close()
        print("Server: cleanup done")


@pytest.mark.asyncio
@pytest.mark.timeout(1, method="thread")
async def test_simple_server(simple_server):
    """Test of the server fixture"""
    print("Test: test start")
    server_socket, is_ready = simple_server
    print("Test: got the fixture")
    # A simple connection test
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await asyncio.sleep(0.1)
    print("Test: trying to connect")
    client.connect(("localhost", 12346))
    print("Test: connected")
    client.close()
    print("Test: test done")
'''

#: The same test with the fake_peer fixture: no server code, no fixed port, no sleep.
FAKE_PEER: Final = '''\
"""The seed's test, with fakepeer's fake_peer fixture as the server"""
import socket
import pytest


@pytest.mark.asyncio
@pytest.mark.timeout(1, method="thread")
async def test_simple_server(fake_peer):
    """Test of the server fixture"""
    print("Test: test start")
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    print("Test: trying to connect")
    client.connect(fake_peer.address)  # blocking, like the seed: the peer is on its own thread
    print("Test: connected")
    client.close()
    await fake_peer.wait_for_connections_async(1)
    print("Test: test done")
'''

SEED_PORT: Final = 12346
TIMEOUT_MARKER: Final = '@pytest.mark.timeout(1, method="thread")\n'
#: The plugins the subprocess loads, and only these (no other installed plugin changes the
#: output, and none slows it down): pytest-asyncio, pytest-timeout, fakepeer.
PLUGINS: Final = ("pytest_asyncio.plugin", "pytest_timeout", "fakepeer.pytest_plugin")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("localhost", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def seed(out: TextIO) -> None:
    """The third act: the seed's hanging test, failed at once by the loop watchdog."""
    out.write(
        "3. The story fakepeer grew from. A pytest-asyncio fixture serves with a blocking\n"
        "   accept() loop; its test never started, and the run hung until pytest-timeout\n"
        "   killed it. Here is that test file next to the same test with fake_peer, run by\n"
        "   pytest under fakepeer's loop watchdog.\n"
    )
    if not Watchdog.available():
        out.write("   Skipped: the loop watchdog is not available here (it needs POSIX signals).\n")
        return
    if not _installed("pytest_asyncio"):
        out.write(
            "   Skipped: the seed's test needs pytest-asyncio, which is not installed\n"
            "   (pip install pytest-asyncio).\n"
        )
        return
    source, fake = SEED, FAKE_PEER
    plugins = list(PLUGINS)
    if not _installed("pytest_timeout"):
        source, fake = source.replace(TIMEOUT_MARKER, ""), fake.replace(TIMEOUT_MARKER, "")
        plugins.remove("pytest_timeout")
        out.write(
            "   pytest-timeout is not installed: its @pytest.mark.timeout line is left out of\n"
            "   both tests (the watchdog does not need it).\n"
        )
    if not _port_free(SEED_PORT):
        port = _free_port()
        source = source.replace(str(SEED_PORT), str(port))
        out.write(
            f"   Port {SEED_PORT} is in use here: the seed's test uses port {port} instead.\n"
        )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    for plugin in plugins:
        command += ["-p", plugin]
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "FAKEPEER_LOOP_WATCHDOG"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="fakepeer-demo-") as directory:
        folder = Path(directory)
        (folder / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        (folder / "test_server.py").write_text(source)
        (folder / "test_server_fake_peer.py").write_text(fake)
        out.write(
            "\n   In a temporary directory: test_server.py (the seed's file), the fake_peer\n"
            "   version test_server_fake_peer.py, and a pytest.ini that sets\n"
            "   asyncio_default_fixture_loop_scope = function.\n\n"
            "   $ python -m pytest -p no:cacheprovider -q\n\n"
        )
        out.flush()
        try:
            done = subprocess.run(
                command,
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            out.write("   pytest did not finish within 60 s: the act was stopped.\n")
            return
    out.write(done.stdout)
