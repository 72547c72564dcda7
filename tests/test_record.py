"""Record and replay (issue 16): ``fakepeer record`` as a subprocess in front of real servers
(the standard library's HTTP server, an asyncio line server), the recording edited by hand,
replayed with ``FakePeer.from_file`` against the same clients; ``Proxy.record()``."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from fakepeer import FakePeer, Lines, Proxy, Raw, ScriptError, UnexpectedData

SCHEMA = json.loads(files("fakepeer").joinpath("script.schema.json").read_text(encoding="utf-8"))


def check_schema(text: str) -> None:
    """A recorded script is valid by the published JSON Schema, as an editor checks it."""
    jsonschema.Draft202012Validator(SCHEMA).validate(tomllib.loads(text))


# -- the real servers ----------------------------------------------------------------------------


@contextlib.contextmanager
def line_server() -> Iterator[tuple[str, int]]:
    """A small asyncio line server (CRLF lines), in a thread with its own loop: a greeting,
    then TIME, ECHO text, QUIT (which closes)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ready\r\n")
        while line := await reader.readline():
            command, _, rest = line.rstrip(b"\r\n").partition(b" ")
            if command == b"QUIT":
                writer.write(b"+OK bye\r\n")
                break
            writer.write(b"12:00\r\n" if command == b"TIME" else rest + b"\r\n")
            await writer.drain()
        writer.close()

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(server.wait_closed())
        loop.close()


def line_client(address: tuple[str, int], *lines: bytes) -> list[bytes]:
    """Read the greeting, send each line and read its answer, then QUIT; what it read."""
    with socket.create_connection(address, timeout=5) as sock, sock.makefile("rb") as reader:
        answers = [reader.readline()]
        for line in (*lines, b"QUIT"):
            sock.sendall(line + b"\r\n")
            answers.append(reader.readline())
        answers.append(reader.read())  # b"": the server closed
        return answers


class _Pages(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        body = b"hello world\n" if self.path == "/" else b"page " + self.path.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server() -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def http_clients(address: tuple[str, int], second: str = "/about") -> list[bytes]:
    """Two requests on one kept-alive connection (http.client), then one with urllib
    (``Connection: close``): the bodies."""
    host, port = address
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        bodies = []
        for path in ("/", second):
            connection.request("GET", path)
            bodies.append(connection.getresponse().read())
    finally:
        connection.close()
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as response:
        bodies.append(response.read())
    return bodies


# -- fakepeer record, a subprocess ---------------------------------------------------------------


@contextlib.contextmanager
def recording(tmp_path: Path, upstream: tuple[str, int], *options: str) -> Iterator[Recorder]:
    address_file = tmp_path / "address"
    command = [
        sys.executable,
        "-m",
        "fakepeer",
        "record",
        "--upstream",
        f"{upstream[0]}:{upstream[1]}",
    ]
    command += ["-o", str(tmp_path / "recorded.toml"), "--address-file", str(address_file)]
    command += ["--timeout", "60", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not address_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate(timeout=10)
                pytest.fail(f"fakepeer record did not start ({process.returncode}):\n{out}{err}")
            time.sleep(0.02)  # polling a file the process writes: no other sync point
        host, _, port = address_file.read_text().strip().rpartition(":")
        yield Recorder(process, (host, int(port)), tmp_path / "recorded.toml")
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


class Recorder:
    def __init__(self, process: subprocess.Popen[str], address: tuple[str, int], path: Path):
        self.process, self.address, self.path = process, address, path

    def finish(self) -> str:
        """Wait for the command to stop by itself (--connections); its output."""
        out, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, out + err
        return out


def test_record_a_line_server_edit_and_replay(tmp_path: Path) -> None:
    with line_server() as server:
        assert line_client(server, b"TIME", b"ECHO hi") == [
            b"+OK ready\r\n",
            b"12:00\r\n",
            b"hi\r\n",
            b"+OK bye\r\n",
            b"",
        ]
        options = ("--framing", 'lines:delimiter="\\r\\n"', "--connections", "1", "--quiet")
        with recording(tmp_path, server, *options) as recorder:
            assert line_client(recorder.address, b"TIME", b"ECHO hi")[1] == b"12:00\r\n"
            out = recorder.finish()
    assert "stopped: 1 client(s) came and went (--connections)" in out
    assert f"wrote {recorder.path} (1 connection)" in out
    text = recorder.path.read_text()
    assert text.endswith(
        '[[greeting]]\nsend = "+OK ready\\r\\n"\n\n'
        '[[expect]]\nmatch = "TIME"\nreply = "12:00\\r\\n"\n\n'
        '[[expect]]\nmatch = "ECHO hi"\nreply = "hi\\r\\n"\n\n'
        '[[expect]]\nmatch = "QUIT"\nreply = "+OK bye\\r\\n"\nclose = true\n'
    )
    check_schema(text)
    recorder.path.write_text(text.replace("12:00", "13:37"))  # edited by hand

    peer = FakePeer.from_file(recorder.path)
    with peer.serve():  # leaving it checks the verdict: every expect met
        answers = line_client(peer.address, b"TIME", b"ECHO hi")
    assert answers == [b"+OK ready\r\n", b"13:37\r\n", b"hi\r\n", b"+OK bye\r\n", b""]

    peer = FakePeer.from_file(recorder.path)
    with pytest.raises(UnexpectedData) as info, peer.serve():
        line_client(peer.address, b"TIME", b"ECHO bye")
    assert info.value.diagnosis == (
        "connection #1 received data that no rule expected\n"
        "  received:  'ECHO bye'\n"
        "  expected:  expect #2 'ECHO hi' (recorded.toml:19)\n"
        "             the data differs at byte 5: expected 'hi', received 'bye'"
    )


def test_record_an_http_server_edit_and_replay(tmp_path: Path) -> None:
    with http_server() as server:
        expected = [b"hello world\n", b"page /about\n", b"hello world\n"]
        assert http_clients(server) == expected
        options = ("--framing", "http1", "--connections", "2")
        with recording(tmp_path, server, *options) as recorder:
            assert http_clients(recorder.address) == expected
            out = recorder.finish()
    assert "#1 received   'GET / HTTP/1.1\\r\\n" in out  # the live transcript
    text = recorder.path.read_text()
    assert '[framing]\nkind = "http1"\n' in text
    assert "[[connection]]\nnumber = 2\n" in text
    assert 'match = { http = ["GET", "/about"] }\n' in text
    check_schema(text)
    recorder.path.write_text(text.replace("hello world", "HELLO WORLD"))  # same length

    peer = FakePeer.from_file(recorder.path)
    with peer.serve():
        assert http_clients(peer.address) == [b"HELLO WORLD\n", b"page /about\n", b"HELLO WORLD\n"]

    peer = FakePeer.from_file(recorder.path)
    with (
        pytest.raises(UnexpectedData) as info,
        peer.serve(),
        pytest.raises(http.client.RemoteDisconnected),
    ):
        http_clients(peer.address, second="/contact")
    diagnosis = info.value.diagnosis
    assert diagnosis.startswith(
        "connection #1 received data that no rule expected\n"
        "  received:  'GET /contact HTTP/1.1\\r\\nHost: "
    )
    assert diagnosis.endswith(
        "\\r\\nAccept-Encoding: identity\\r\\n\\r\\n'\n"
        "  expected:  connection #1 expect #2 request('GET', '/about') (recorded.toml:18)\n"
        "             the data is a request for '/contact': its target differs at byte 1: "
        "expected 'about', received 'contact'\n"
        "  scripts:   connection #1's own only (on_connection(1) replaces the peer's script)"
    )


def test_the_command_says_what_is_wrong(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "fakepeer", "record", "--upstream", "127.0.0.1:1"]
    command += ["-o", str(tmp_path / "x.toml"), "--framing", "line"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == (
        "fakepeer: error: --framing 'line': kind: unknown framing kind 'line' (did you mean "
        "'lines'?); known: raw, lines, delimited, fixed, length-prefixed, length-field, "
        "stx-etx, resp, http1, mqtt, modbus\n"
    )


# -- Proxy.record() ------------------------------------------------------------------------------


def test_proxy_record_while_and_after_serving(tmp_path: Path) -> None:
    with line_server() as server:
        proxy = Proxy(server, transcript_budget=None)
        with proxy.serve():
            line_client(proxy.address, b"TIME")
            proxy.wait_for_connections(1)
            during = proxy.record(framing=Lines(b"\r\n"))
            line_client(proxy.address, b"ECHO again")
        after = proxy.record(tmp_path / "two.toml", framing=Lines(b"\r\n"))
    assert "[[connection]]" not in during
    assert (tmp_path / "two.toml").read_text() == after
    assert after.count("[[connection]]") == 2
    peer = FakePeer.from_file(tmp_path / "two.toml")
    with peer.serve():
        line_client(peer.address, b"TIME")
        line_client(peer.address, b"ECHO again")


def test_proxy_record_refuses_faults_and_a_cut_transcript() -> None:
    with line_server() as server:
        proxy = Proxy(server)
        proxy.faults.latency(0.01)
        with pytest.raises(ScriptError) as info:
            proxy.record()
        assert str(info.value) == (
            "Proxy.record(): this proxy has faults (latency(0.01, 0)), and a recording is of "
            "what the server said: record through a proxy with no faults"
        )
        proxy = Proxy(server, transcript_budget=1024)
        with proxy.serve():
            line_client(proxy.address, *[b"ECHO " + b"x" * 200] * 10)
        with pytest.raises(ScriptError, match="transcript_budget=None"):
            proxy.record()

        class Mine(Raw):
            """A framing of the user's own: a script file cannot name it."""

        with pytest.raises(ScriptError, match="a script file names built-in framings only"):
            proxy.record(framing=Mine())


# -- fakepeer learn ------------------------------------------------------------------------------


def test_learn_answers_from_the_script_and_forwards_the_rest(tmp_path: Path) -> None:
    known = tmp_path / "known.toml"
    with line_server() as server:
        proxy = Proxy(server, transcript_budget=None)
        with proxy.serve():
            line_client(proxy.address, b"TIME")
        proxy.record(known, framing=Lines(b"\r\n"))
        known.write_text(known.read_text().replace("12:00", "09:30"))  # the script's own answer

        address_file, learned = tmp_path / "address", tmp_path / "learned.toml"
        command = [sys.executable, "-m", "fakepeer", "learn", str(known), "-o", str(learned)]
        command += ["--upstream", f"{server[0]}:{server[1]}", "--connections", "1"]
        command += ["--address-file", str(address_file), "--timeout", "60"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while not address_file.exists():
                assert process.poll() is None, process.communicate(timeout=10)
                assert time.monotonic() < deadline, "fakepeer learn did not start"
                time.sleep(0.02)  # polling a file the process writes: no other sync point
            host, _, port = address_file.read_text().strip().rpartition(":")
            answers = line_client((host, int(port)), b"TIME", b"ECHO news")
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)
    # TIME from the script, ECHO from the server (the script does not know it)
    assert answers == [b"+OK ready\r\n", b"09:30\r\n", b"news\r\n", b"+OK bye\r\n", b""]
    assert process.returncode == 0, out + err
    assert f"wrote {learned} (1 exchange(s) learned)" in out
    text = learned.read_text()
    assert text.startswith(known.read_text())
    check_schema(text)
    assert text.endswith(
        f"# Learned by fakepeer from {server[0]}:{server[1]}\n# (what {known} did not know)\n\n"
        '[[always]]\nmatch = "ECHO news"\nreply = "news\\r\\n"\n'
    )
    peer = FakePeer.from_file(learned)  # replays the whole conversation now
    with peer.serve():
        assert line_client(peer.address, b"TIME", b"ECHO news")[1:3] == [b"09:30\r\n", b"news\r\n"]
