"""Reviewer B (issue 16) on ``fakepeer learn``: a server that closes after each answer, one
that refuses or does not answer, a slow greeting, a raw script, a script's own otherwise.
Real line servers in threads, ``fakepeer learn`` as a process (killed in a finally)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from _cli_process import WAIT, command, environment, run

SCRIPT = """\
version = 1
[framing]
kind = "lines"
[reply_framing]
kind = "none"
[[always]]
match = "PING"
reply = "PONG\\n"
"""


@contextmanager
def line_server(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """A real TCP server on loopback: ``handler(conn)`` per connection, each in a thread;
    yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(WAIT)
            with suppress(OSError):
                handler(conn)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=serve, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


@contextmanager
def learning(
    tmp_path: Path, upstream: str, *extra: str, script: str = SCRIPT
) -> Iterator[tuple[tuple[str, int], Path, list[str]]]:
    """``fakepeer learn`` on ``script``: yields the address to connect to, the output file
    and a list that holds the exit status and output once it ended."""
    source = tmp_path / "script.toml"
    source.write_text(script)
    address_file, output = tmp_path / "address", tmp_path / "learned.toml"
    process = subprocess.Popen(
        command("learn", str(source), "--upstream", upstream, "-o", str(output),
                "--connections", "1", "--address-file", str(address_file), "--timeout", "30",
                *extra),
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    ended: list[str] = []
    try:
        deadline = time.monotonic() + WAIT
        while not (address_file.exists() and address_file.read_text().strip()):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "fakepeer learn did not start"
            time.sleep(0.02)
        host, _, port = address_file.read_text().strip().rpartition(":")
        yield (host.strip("[]"), int(port)), output, ended
        out = process.communicate(timeout=WAIT)[0]
        ended += [str(process.returncode), out]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def ask(address: tuple[str, int], *lines: bytes) -> list[bytes]:
    """Send each line, read its answer line (b"" when none came or the connection ended)."""
    answers = []
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as f:
        for line in lines:
            sock.sendall(line)
            try:
                answers.append(f.readline())
            except (TimeoutError, ConnectionError):
                answers.append(b"")
    return answers


def answer_once_and_close(conn: socket.socket) -> None:
    line = conn.makefile("rb").readline()
    conn.sendall(b"ANS " + line)


def echo_lines(conn: socket.socket) -> None:
    for line in conn.makefile("rb"):
        conn.sendall(b"ANS " + line)


def test_a_server_that_closes_after_each_answer_is_connected_to_again(tmp_path: Path) -> None:
    with (
        line_server(answer_once_and_close) as port,
        learning(tmp_path, f"127.0.0.1:{port}") as (
            address,
            output,
            ended,
        ),
    ):
        assert ask(address, b"FOO\n", b"BAR\n") == [b"ANS FOO\n", b"ANS BAR\n"]
    status, out = ended
    assert status == "0", out
    learned = output.read_text()
    assert 'match = "BAR"\nreply = "ANS BAR\\n"' in learned, learned


def test_a_server_that_closes_without_answering_is_an_error(tmp_path: Path) -> None:
    def close_at_once(conn: socket.socket) -> None:
        conn.recv(100)

    with (
        line_server(close_at_once) as port,
        learning(tmp_path, f"127.0.0.1:{port}") as (
            address,
            output,
            ended,
        ),
    ):
        assert ask(address, b"FOO\n") == [b""]
    status, out = ended
    assert status == "1", out
    assert (
        f"connection #1: the upstream server 127.0.0.1:{port} closed the connection without "
        "answering 'FOO'"
    ) in out
    assert 'reply = ""' not in output.read_text()


def test_a_refused_upstream_is_reported_by_its_address(tmp_path: Path) -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with learning(tmp_path, f"127.0.0.1:{port}") as (address, _, ended):
        assert ask(address, b"FOO\n") == [b""]
    status, out = ended
    assert status == "1", out
    assert f"connection #1: the upstream server 127.0.0.1:{port} refused the connection" in out, out
    assert "Learner" not in out, out
    assert "_learning.py" not in out, out
    assert f"otherwise (forwarded to 127.0.0.1:{port})" in out, out


def test_a_silent_upstream_gives_an_empty_reply_in_time_and_says_so(tmp_path: Path) -> None:
    done = threading.Event()

    def silent(conn: socket.socket) -> None:
        done.wait(WAIT)

    try:
        with (
            line_server(silent) as port,
            learning(tmp_path, f"127.0.0.1:{port}") as (
                address,
                output,
                ended,
            ),
        ):
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(b"FOO\n")
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(100) == b""  # no reply, then the peer's close
            done.set()
    finally:
        done.set()
    status, out = ended
    assert status == "0", out
    assert "Learner" not in out, out
    assert "_learning.py" not in out, out
    assert "TimeoutError" not in out, out
    assert (
        f"fakepeer: connection #1: the upstream server 127.0.0.1:{port} did not answer 'FOO' "
        "within 4.5 s: learned with no reply"
    ) in out, out
    assert 'match = "FOO"\nreply = ""' in output.read_text()


def test_a_slow_greeting_is_set_aside_within_settle(tmp_path: Path) -> None:
    def slow_greeter(conn: socket.socket) -> None:
        time.sleep(0.5)
        conn.sendall(b"WELCOME\n")
        echo_lines(conn)

    with (
        line_server(slow_greeter) as port,
        learning(tmp_path, f"127.0.0.1:{port}", "--settle", "1") as (address, output, ended),
    ):
        assert ask(address, b"FOO\n") == [b"ANS FOO\n"]
    assert ended[0] == "0", ended[1]
    assert "WELCOME" not in output.read_text()


def test_settle_names_the_greeting() -> None:
    out = run("learn", "--help").stdout
    assert "a greeting later than this after connecting is taken for the first" in " ".join(
        out.split()
    )


def test_a_raw_script_is_refused_with_why(tmp_path: Path) -> None:
    script = tmp_path / "raw.toml"
    script.write_text('version = 1\n[[always]]\nmatch = "PING\\n"\nreply = "PONG\\n"\n')
    result = run("learn", str(script), "--upstream", "127.0.0.1:9", "-o", str(tmp_path / "o"))
    assert result.returncode == 2
    assert (
        "learning forwards the client's messages, and the script's framing is Raw(), which "
        "has none (a request would be whatever one read brought: half of it, or two): set "
        "[framing] to the client's protocol"
    ) in result.stdout + result.stderr


def test_a_script_with_its_own_otherwise_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "other.toml"
    script.write_text(SCRIPT + '[[otherwise]]\nreply = "?\\n"\n')
    result = run("learn", str(script), "--upstream", "127.0.0.1:9", "-o", str(tmp_path / "o"))
    assert result.returncode == 2
    assert (
        "the script has an [[otherwise]] rule (other.toml:9): it answers every message no "
        "other rule expects, so nothing would reach the server and nothing would be learned"
    ) in result.stdout + result.stderr
