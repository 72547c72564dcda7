"""Hostile review (issue 16), reviewer a: each test reproduced a bug and failed until fixed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from _cli_process import SIGNALS, WAIT, command, environment, finish, journal, run, started
from fakepeer import ANY, Connection, FakePeer, Lines, ScriptError, _cli_run
from fakepeer._cli import main
from fakepeer._keeping import bound
from fakepeer._scriptfile import load_text
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


# -- 2. the loader: every error a ScriptError at FILE:LINE, never a traceback ------------------

OCTAL = """version = 1
[framing]
kind = "lines"
[[expect]]
match = "A"
reply = { escaped = '\\777' }
"""


def test_an_octal_escape_over_0o377_is_a_script_error_at_its_line(tmp_path: Path) -> None:
    """The loader's escape pattern took \\777, and encoding it to bytes raised
    UnicodeEncodeError: `fakepeer run` printed a traceback and exited 1."""
    path = tmp_path / "oct.toml"
    path.write_text(OCTAL)
    with pytest.raises(ScriptError) as info:
        FakePeer.from_file(path)
    assert str(info.value) == (
        f"{path}:6: expect #1: reply: escaped: '\\\\777' is not a byte: an octal escape is at "
        "most \\\\377 (255)"
    )
    done = run("run", "oct.toml", "--timeout", "1", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("fakepeer: error: oct.toml:6: expect #1: reply: escaped:")


def test_octal_escapes_up_to_0o377_are_bytes() -> None:
    peer = load_text(
        "version = 1\n[[greeting]]\nsend = { escaped = '\\0\\12\\377' }\n[[expect]]\nmatch = 'A'\n"
    )
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        assert sock.recv(10) == b"\x00\n\xff"
        sock.sendall(b"A")


DEEP = "version = 1\n[[expect]]\nmatch = " + "{ not = " * 500 + '"A"' + " }" * 500 + "\n"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (DEEP, 3),
        ('version = 1\n[[expect]]\nmatch = "A"\nreply = ' + "[" * 600 + "]" * 600 + "\n", 4),
    ],
    ids=["not-in-not", "arrays"],
)
def test_too_deep_a_document_is_a_script_error(tmp_path: Path, text: str, line: int) -> None:
    """tomllib recursed past the interpreter's limit: RecursionError escaped from_file and
    `fakepeer run` printed some 3,000 lines of traceback, exit status 1."""
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(ScriptError) as info:
        FakePeer.from_file(path)
    assert str(info.value) == (
        f"{path}:{line}: nested too deeply: its values (tables in tables, arrays in arrays, "
        "{ not = { not = ... } }) go more levels deep than the TOML reader can take; a script "
        "needs a few"
    )
    done = run("run", "deep.toml", "--timeout", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"fakepeer: error: deep.toml:{line}: nested too deeply")


def test_a_hundred_nested_matchers_still_load() -> None:
    text = "version = 1\n[[expect]]\nmatch = " + "{ not = " * 100 + '"A"' + " }" * 100 + "\n"
    assert len(load_text(text)._conversation.expectations) == 1


def test_an_endless_file_is_not_read_to_the_end(tmp_path: Path) -> None:
    """/dev/zero was read whole: MemoryError, a traceback, exit status 1."""
    done = run("run", "/dev/zero", "--timeout", "1", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        2,
        "fakepeer: error: /dev/zero: not a script file: longer than 268,435,456 bytes\n",
    )


def test_an_unexpected_exception_is_exit_3_never_the_status_of_a_verdict(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("something fakepeer did not expect")

    monkeypatch.setattr(_cli_run, "run", broken)
    assert main(["run", str(tmp_path / "any.toml")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("fakepeer: internal error: a bug in fakepeer, please report it with")
    assert err.rstrip().endswith("RuntimeError: something fakepeer did not expect")


# -- the address file of an earlier run, when this one cannot start ---------------------------


def test_a_stale_address_file_is_removed_even_when_the_script_is_wrong(tmp_path: Path) -> None:
    """The stale file was removed only once the script loaded: a shell loop waiting for the
    address found the dead one of an earlier run instead of the peer's exit status 2."""
    (tmp_path / "bad.toml").write_text("version = 2\n")
    addr = tmp_path / "addr"
    addr.write_text("127.0.0.1:1\n")
    done = run("run", "bad.toml", "--address-file", str(addr), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert not addr.exists()


# -- 3. the console never breaks serving -------------------------------------------------------

PING = """version = 1
[framing]
kind = "lines"
[[expect]]
match = "PING"
reply = "PONG"
close = true
"""


def _serve_once(tmp_path: Path, *options: str, **popen: Any) -> tuple[int, str, str]:
    """Run `fakepeer run ping.toml OPTIONS`, ping it once: its status, stdout and stderr."""
    addr = tmp_path / "addr"
    peer = subprocess.Popen(
        command("run", "ping.toml", "--address-file", str(addr), *options),
        cwd=tmp_path, env={**environment(), **popen.pop("env", {})},
        stdout=popen.pop("stdout", subprocess.PIPE), stderr=subprocess.PIPE, **popen,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        while not (addr.exists() and addr.read_text().strip()):
            assert peer.poll() is None, peer.communicate(timeout=WAIT)
            assert time.monotonic() < deadline
            time.sleep(0.02)  # polling a file, as a shell script does
        host, port = addr.read_text().strip().rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(b"PING\n")
            assert sock.makefile("rb").read() == b"PONG\n"
        out, err = peer.communicate(timeout=WAIT)
        return peer.returncode, (out or b"").decode("ascii"), err.decode("ascii")
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.communicate(timeout=WAIT)


def _close_stdout() -> None:
    os.close(1)


def test_run_serves_and_passes_with_stdout_closed(tmp_path: Path) -> None:
    """`>&-`: sys.stdout is None, and Output._print's None.write raised AttributeError as
    the peer started listening: it never served."""
    (tmp_path / "ping.toml").write_text(PING)
    status, _, err = _serve_once(tmp_path, stdout=None, preexec_fn=_close_stdout)
    assert (status, err) == (0, "")


def test_a_journal_on_a_closed_stdout_is_said_after_the_verdict(tmp_path: Path) -> None:
    (tmp_path / "ping.toml").write_text(PING)
    status, _, err = _serve_once(tmp_path, "--journal", "-", stdout=None, preexec_fn=_close_stdout)
    assert status == 1
    assert err.endswith(
        "fakepeer: passed\nfakepeer: the journal could not be written: standard output is closed\n"
    )


def test_a_name_the_console_cannot_encode_is_escaped(tmp_path: Path) -> None:
    """PYTHONIOENCODING=ascii and a peer named 'café': UnicodeEncodeError out of the
    console's write, a traceback instead of serving."""
    named = PING.replace("version = 1\n", 'version = 1\n[peer]\nname = "café"\n')
    (tmp_path / "ping.toml").write_text(named, encoding="utf-8")
    status, out, err = _serve_once(tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert status == 0, err
    assert out.startswith("fakepeer: serving 'caf\\xe9' on ")
    status, out, err = _serve_once(tmp_path, "--journal", "-", env={"PYTHONIOENCODING": "ascii"})
    assert status == 0, err
    assert json.loads(out.splitlines()[0])["name"] == "café"
    assert err.startswith("fakepeer: serving 'caf\\xe9' on ")


# -- 4. a long `reply = [...]` loads in linear time ----------------------------------------------


def _growth(work: Callable[[int], object], n: int, factor: int = 4) -> float:
    """How much longer ``work(factor * n)`` takes than ``work(n)`` in CPU time, the least of
    three tries of each (as tests/test_review_a.py's ``growth``): about ``factor`` when the
    work is linear, ``factor**2`` when it is quadratic."""
    small: list[float] = []
    large: list[float] = []
    for _ in range(3):
        for size, times in ((n, small), (factor * n, large)):
            started = time.process_time()
            work(size)
            times.append(time.process_time() - started)
    return min(large) / max(min(small), 1e-6)


@pytest.mark.parametrize(
    "rule",
    [
        "reply = [{}]",
        "steps = [{}]",
    ],
)
def test_a_long_list_of_replies_loads_in_linear_time(rule: str) -> None:
    """Each .reply() scanned every step so far for a .half_close(): 5,000 replies took
    ~1 s, 20,000 ~17 s (what `fakepeer record` writes for a long listing)."""

    def work(n: int) -> None:
        items = ",".join(
            f'"item {i}"' if rule.startswith("reply") else f'{{ reply = "item {i}" }}'
            for i in range(n)
        )
        text = 'version = 1\n[framing]\nkind = "lines"\n[[expect]]\nmatch = "LIST"\n'
        load_text(text + rule.format(items) + "\n", "list.toml")

    assert _growth(work, 2000) < 8  # quadratic: about 16


def test_a_write_after_half_close_is_still_refused_past_other_steps() -> None:
    peer = FakePeer()
    rule = peer.expect(b"A").reply(b"1").half_close().after(0.1)
    with pytest.raises(ScriptError) as info:
        rule.reply(b"2")
    assert str(info.value).startswith(".reply() after .half_close() on expect #1 'A' (")
    assert str(info.value).endswith("): the peer can no longer write on that connection")
    with pytest.raises(ScriptError, match=r"^\.send\(\) after \.half_close\(\) on expect #1"):
        rule.send(b"2")


# -- 7. a --faults FILE of another version ------------------------------------------------------


@pytest.mark.parametrize("version", ["7", '"x"', "true"])
def test_a_faults_file_of_another_version_is_exit_2_naming_the_line(
    tmp_path: Path, version: str
) -> None:
    """Any `version` passed silently, where a script file says which version it reads."""
    (tmp_path / "f.toml").write_text(
        f'version = {version}\n[[faults]]\nkind = "latency"\nseconds = 0.1\n'
    )
    done = run("proxy", "--upstream", "127.0.0.1:1", "--faults", "f.toml", cwd=tmp_path)
    shown = {"7": "7", '"x"': "'x'", "true": "True"}[version]
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"fakepeer: error: f.toml:1: version: this fakepeer reads version 1 of the format, "
        f"got {shown}\n"
    )


# -- 9. a --fault key given twice ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "key"),
    [("slice:size=1,size=2", "size"), ("latency=0.1,seconds=0.2", "seconds")],
)
def test_a_fault_key_given_twice_is_an_error(tmp_path: Path, spec: str, key: str) -> None:
    """The last value silently won."""
    done = run("proxy", "--upstream", "127.0.0.1:1", "--fault", spec, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"fakepeer: error: --fault {spec!r}: {key} is given twice; give each key once\n"
    )


# -- 8. the journal: its data once, and a journal that cannot be written -----------------------


def test_a_raw_journal_writes_the_bytes_once(tmp_path: Path) -> None:
    """Under raw framing each chunk was written twice: `received`, then `matched`."""
    (tmp_path / "raw.toml").write_text(
        'version = 1\n[[expect]]\nmatch = "HELLO"\nreply = "HI"\nclose = true\n'
    )
    path = tmp_path / "j.jsonl"
    with started(
        "run", str(tmp_path / "raw.toml"), "--journal", str(path), address_file=tmp_path / "a"
    ) as (process, address):
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(b"HELLO")
            assert sock.makefile("rb").read() == b"HI"
        status, _, err = finish(process)
    assert status == 0, err
    lines = journal(path)
    assert [line["kind"] for line in lines][2:5] == ["received", "matched", "sent"]
    received, matched = lines[2], lines[3]
    assert received["data"] == "HELLO"
    assert "data" not in matched
    assert matched["size"] == 5
    assert matched["note"].startswith("-> expect #1 'HELLO' (raw.toml:2)")


def test_a_journal_that_cannot_be_written_is_exit_1_said_after_the_verdict(
    tmp_path: Path,
) -> None:
    """/dev/full: the close at the end raised again, out of the command as exit 2 with
    `cannot write None`."""
    (tmp_path / "raw.toml").write_text('version = 1\n[[always]]\nmatch = "A"\n')
    done = run(
        "run", "raw.toml", "--journal", "/dev/full", "--timeout", "0.2", "--quiet", cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stdout.endswith("fakepeer: passed\n")
    assert done.stderr == (
        "fakepeer: the journal could not be written: [Errno 28] No space left on device\n"
    )


# -- already fixed (the options' errors, issue 16's newcomer): kept as tests ---------------------


def test_an_unwritable_address_file_names_the_option_and_the_path(tmp_path: Path) -> None:
    (tmp_path / "ping.toml").write_text('version = 1\n[[expect]]\nmatch = "A"\n')
    done = run(
        "run", "ping.toml", "--address-file", "/nonexistent/addr", "--timeout", "5", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "--address-file /nonexistent/addr" in done.stderr
    assert "/nonexistent/.addr." not in done.stderr


def test_conflicting_options_are_not_blamed_on_line_1_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "ping.toml").write_text('version = 1\n[[expect]]\nmatch = "A"\n')
    done = run(
        "run", "ping.toml", "--unix", str(tmp_path / "s.sock"), "--host", "::1", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.startswith("fakepeer: error: ")
    assert "ping.toml:1" not in done.stderr
