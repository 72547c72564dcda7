"""A newcomer's review of issue 16's command line and script files: each test is one of
their findings, reproduced with the real command (a process of its own) or a real peer."""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from _cli_process import finish, journal, run, started
from fakepeer import FakePeer, Lines, Proxy, Raw, UnexpectedData, UnmetExpectations
from fakepeer._cli_options import add_output_options, add_where_options, in_option_terms
from fakepeer._learning import Learner

SCRIPT = 'version = 1\n[[expect]]\nmatch = "A"\n'
PING = (
    'version = 1\n[framing]\nkind = "lines"\n'
    '[[expect]]\nmatch = "PING"\nreply = "PONG"\nclose = true\n'
)
EDITED = '# my hand-edited recording\nversion = 1\n[[expect]]\nmatch = "A"\n'


def ping(address: tuple[str, int] | str) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:  # type: ignore[arg-type]
        sock.sendall(b"PING\n")
        return sock.makefile("rb").read()


def split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


# 1. record never replaces a file with a recording of nothing


def test_record_with_no_client_leaves_the_existing_file_alone(tmp_path: Path) -> None:
    (tmp_path / "web.toml").write_text(EDITED)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        done = run(
            "record", "--upstream", f"127.0.0.1:{port}", "-o", "web.toml",
            "--timeout", "0.5", "-q", cwd=tmp_path,
        )  # fmt: skip
    assert (tmp_path / "web.toml").read_text() == EDITED
    assert done.returncode == 1, done
    assert done.stdout.splitlines()[-1] == (
        "fakepeer: error: nothing was recorded (no client talked to the server): "
        "web.toml is not written"
    )


def test_record_with_an_unreachable_upstream_leaves_the_existing_file_alone(
    tmp_path: Path,
) -> None:
    (tmp_path / "web.toml").write_text(EDITED)
    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead = closed.getsockname()[1]
    args = ("record", "--upstream", f"127.0.0.1:{dead}", "-o", str(tmp_path / "web.toml"))
    with started(
        *args, "--connections", "1", "--timeout", "20", "-q", address_file=tmp_path / "addr"
    ) as (process, address):
        with socket.create_connection(split(address), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            client.settimeout(5)
            try:
                while client.recv(1000):
                    pass
            except ConnectionResetError:
                pass  # the proxy resets the client when the upstream is unreachable
        status, out, _ = finish(process)
    assert status == 1
    assert (tmp_path / "web.toml").read_text() == EDITED, out
    assert out.splitlines()[-1] == (
        f"fakepeer: error: the proxy saw an error, so {tmp_path / 'web.toml'} is not written "
        "(a recording is of what the server said): record again once the server is reached"
    )


def test_record_says_how_many_conversations_it_wrote(tmp_path: Path) -> None:
    server = FakePeer(framing=Lines(), name="server")
    server.always(b"PING").reply(b"PONG").close()
    with server.serve():
        host, port = server.address
        args = ("record", "--upstream", f"{host}:{port}", "-o", str(tmp_path / "ping.toml"))
        with started(
            *args, "--framing", "lines", "--connections", "2", "--timeout", "20", "-q",
            address_file=tmp_path / "addr",
        ) as (process, address):  # fmt: skip
            socket.create_connection(split(address), timeout=5).close()  # a port probe
            assert ping(split(address)) == b"PONG\n"
            status, out, _ = finish(process)
    assert status == 0, out
    assert out.splitlines()[-1] == f"fakepeer: wrote {tmp_path / 'ping.toml'} (1 connection)"


# 2. a recording of one conversation is top-level rules, whatever came before it


def test_one_recorded_conversation_replays_to_any_one_connection(tmp_path: Path) -> None:
    server = FakePeer(framing=Lines(), name="server")
    server.always(b"PING").reply(b"PONG").close()
    with server.serve():
        proxy = Proxy(server.address, transcript_budget=None)
        with proxy.serve():
            socket.create_connection(proxy.address, timeout=5).close()  # a port probe
            proxy.wait_for_closes(1, timeout=5)
            assert ping(proxy.address) == b"PONG\n"
            proxy.wait_for_closes(2, by="any", timeout=5)
    script = tmp_path / "ping.toml"
    text = proxy.record(script, framing=Lines())
    assert "1 connection (1 more with nothing said either way is left out)." in text, text
    assert "[[connection]]" not in text, text
    peer = FakePeer.from_file(script)
    with peer.serve():
        assert ping(peer.address) == b"PONG\n"


# 3. a connection with no script of its own is not "an empty script"


def test_diagnosis_names_the_connections_that_have_a_script() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connection(2).expect(b"GET").reply(b"OK")
    with (  # noqa: PT012 - the failure comes at the stop
        pytest.raises(UnexpectedData) as caught,
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"GET\n")
        sock.settimeout(5)
        assert sock.recv(100) == b""  # the peer failed the connection: it closed
    message = str(caught.value)
    assert "the script was empty" not in message
    assert "before serve()" not in message
    assert (
        "  expected:  nothing: connection #1 has no script: the script has rules only for "
        "connection #2 (on_connection(2), a file's [[connection]] number = 2)\n"
    ) in message, message
    assert (
        "  hint:      every connection counts, a client's port probe or retry too: script "
        "connection #1 as well, or the rules every connection follows (peer.expect(...), a "
        "file's top-level rules)"
    ) in message, message


def test_a_connection_following_the_peers_script_says_which_have_their_own() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")
    peer.on_connection(3).expect(b"GET").reply(b"OK")
    with (  # noqa: PT012 - the failure comes at the stop
        pytest.raises(UnexpectedData) as caught,
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"GET\n")
        sock.settimeout(5)
        assert sock.recv(100) == b""  # the peer failed the connection: it closed
    assert (
        "  scripts:   connection #1 follows the peer's script; connection #3 has its own"
    ) in str(caught.value)


# 4. an option's mistake names the option, not the script file


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            ("--host", "10.0.0.1"),
            "fakepeer: error: --host 10.0.0.1 listens on a non-loopback address, so other "
            "hosts could reach the peer; add --external if that is meant (the default, "
            "'127.0.0.1', is loopback only)",
        ),
        (
            ("--port", "99999"),
            "fakepeer run: error: argument --port: takes a port number from 0 to 65535 (0: "
            "the OS chooses a free one), got '99999'",
        ),
        (
            ("--host", "nosuch.invalid"),
            "fakepeer: error: --host nosuch.invalid: cannot resolve it: ",
        ),
    ],
)
def test_an_option_error_names_the_option(
    tmp_path: Path, options: tuple[str, ...], error: str
) -> None:
    (tmp_path / "nopeer.toml").write_text(SCRIPT)
    done = run("run", "nopeer.toml", *options, "--timeout", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(error), done.stderr
    assert "nopeer.toml:1" not in done.stderr


def test_a_proxy_option_error_names_the_option(tmp_path: Path) -> None:
    done = run("proxy", "--upstream", "127.0.0.1:9", "--host", "0.0.0.0", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "fakepeer: error: --host 0.0.0.0 listens on every interface, so other hosts could "
        "reach the peer; add --external if that is meant (the default, '127.0.0.1', is "
        "loopback only)\n"
    )


def test_a_port_in_use_names_the_option(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(SCRIPT)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run("run", "a.toml", "--port", str(port), "--timeout", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"fakepeer: error: --port {port}: cannot listen on 127.0.0.1:{port}: "
    ), done.stderr


def test_the_files_own_host_is_still_blamed_on_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('version = 1\n[peer]\nhost = "10.0.0.1"\n' + SCRIPT[11:])
    done = run("run", "a.toml", "--timeout", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("fakepeer: error: a.toml:3: peer: host: FakePeer(host=")


# 5. --pcapng


@pytest.mark.parametrize("tshark", [False, True], ids=["bytes", "tshark"])
def test_run_writes_the_conversation_as_a_pcapng_file(tmp_path: Path, tshark: bool) -> None:
    if tshark and shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (Debian: apt-get install tshark)")
    (tmp_path / "ping.toml").write_text(PING)
    capture = tmp_path / "ping.pcapng"
    with started(
        "run", str(tmp_path / "ping.toml"), "--pcapng", str(capture), "--timeout", "20",
        address_file=tmp_path / "addr",
    ) as (process, address):  # fmt: skip
        assert ping(split(address)) == b"PONG\n"
        status, out, _ = finish(process)
    assert status == 0, out
    assert out.splitlines()[-1] == f"fakepeer: wrote {capture} (pcapng)"
    assert capture.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    if tshark:
        shown = subprocess.run(
            ["tshark", "-r", str(capture), "-Y", "tcp.len > 0", "-T", "fields",
             "-e", "tcp.payload"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()  # fmt: skip
        assert shown == [b"PING\n".hex(), b"PONG\n".hex()]


def test_proxy_writes_a_pcapng_file_when_stopped(tmp_path: Path) -> None:
    server = FakePeer(framing=Lines(), name="server")
    server.always(b"PING").reply(b"PONG").close()
    capture = tmp_path / "proxy.pcapng"
    with server.serve():
        host, port = server.address
        with started(
            "proxy", "--upstream", f"{host}:{port}", "--pcapng", str(capture), "-q",
            address_file=tmp_path / "addr",
        ) as (process, address):  # fmt: skip
            assert ping(split(address)) == b"PONG\n"
            status, out, _ = finish(process, signal.SIGTERM)
    assert status == 0, out
    assert capture.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_a_pcapng_file_in_a_missing_directory_is_refused_before_serving(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(SCRIPT)
    done = run("run", "a.toml", "--pcapng", "nodir/a.pcapng", "--timeout", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "fakepeer: error: --pcapng nodir/a.pcapng: cannot write it: no directory nodir\n"
    )


# 6. SIGHUP is a stop like SIGTERM


def test_sighup_ends_the_run_cleanly(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(SCRIPT)
    with started(
        "run", str(tmp_path / "a.toml"), "--journal", str(tmp_path / "j.jsonl"), "--unix",
        address_file=tmp_path / "addr",
    ) as (process, address):  # fmt: skip
        status, out, _ = finish(process, signal.SIGHUP)
    assert status == 1
    assert "fakepeer: stopped: hung up (SIGHUP)" in out
    assert not (tmp_path / "addr").exists()
    assert not Path(address).exists()
    assert not Path(address).parent.exists()  # the private directory of --unix
    assert journal(tmp_path / "j.jsonl")[-1]["ended"] == "SIGHUP"


# 7. a fault's required values


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("latency", "latency needs its seconds: write latency=SECONDS or latency:seconds=..."),
        ("slice", "slice needs its size: write slice=SIZE or slice:size=..."),
    ],
)
def test_a_fault_missing_its_value_is_told_how_to_write_it(spec: str, error: str) -> None:
    done = run("proxy", "--upstream", "127.0.0.1:9", "--fault", spec)
    assert done.returncode == 2
    assert done.stderr == f"fakepeer: error: --fault {spec!r}: {error}\n"


def test_a_faults_file_missing_a_value_is_told_how_to_write_it(tmp_path: Path) -> None:
    (tmp_path / "f.toml").write_text('[[faults]]\nkind = "latency"\n')
    done = run("proxy", "--upstream", "127.0.0.1:9", "--faults", "f.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert "__init__" not in done.stderr
    assert "seconds" in done.stderr, done.stderr


# 8. --address-file in a missing directory


def test_the_error_names_the_address_file_option_and_path(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(SCRIPT)
    done = run(
        "run", "a.toml", "--address-file", "nodir/addr", "--timeout", "5", cwd=tmp_path
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""  # refused before serving
    assert done.stderr == (
        "fakepeer: error: --address-file nodir/addr: cannot write it: no directory nodir\n"
    )


def test_record_refuses_an_output_in_a_missing_directory_before_recording(
    tmp_path: Path,
) -> None:
    done = run("record", "--upstream", "127.0.0.1:9", "-o", "nodir/r.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "fakepeer: error: -o nodir/r.toml: cannot write it: no directory nodir\n"


# 9. hints in a script file's terms


def test_a_file_peer_no_client_hint_speaks_the_files_terms(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(SCRIPT)
    done = run("run", "a.toml", "--timeout", "0.3", cwd=tmp_path)
    assert done.returncode == 1
    assert (
        '(no client ever connected; a UDP client needs [peer] transport = "udp")'
    ) in done.stdout, done.stdout
    assert "FakePeer(transport" not in done.stdout


def test_a_python_peer_no_client_hint_speaks_python() -> None:
    peer = FakePeer()
    peer.expect(b"A")
    needs = r"a UDP client needs FakePeer\(transport='udp'\)"
    with pytest.raises(UnmetExpectations, match=needs), peer.serve():
        pass  # no client: the stop raises


# 10. the help of record


def test_record_help_offers_no_seed_and_no_file() -> None:
    done = run("record", "--help")
    assert "--seed" not in done.stdout
    assert "the file's" not in done.stdout
    assert "where it listens (given ones win over the file's)" in run("run", "--help").stdout
    assert "where it listens:" in run("proxy", "--help").stdout


def test_learns_rule_says_what_it_does_not_where_fakepeer_wrote_it() -> None:
    peer = FakePeer(framing=Lines(), reply_framing=Raw())  # (raw: no messages to forward)
    learner = Learner(peer, ("127.0.0.1", 9), settle=0.1)
    try:
        (rule,) = peer._conversation.script.fallbacks
        assert rule.describe() == "otherwise (forwarded to 127.0.0.1:9)"
    finally:
        learner.close()


@pytest.mark.parametrize(
    ("text", "options", "said"),
    [
        (
            "FakePeer(tls=True) makes the test's certificates with trustme, which is not "
            "installed: pip install 'fakepeer[tls]'",
            ["--tls"],
            "--tls makes the test's certificates with trustme, which is not installed: "
            "pip install 'fakepeer[tls]'",
        ),
        (
            "Proxy(unix=True): cannot listen on /x: too long",
            ["--unix"],
            "--unix: cannot listen on /x: too long",
        ),
        (  # not an option the user gave: the words stay the library's
            "FakePeer(host='10.0.0.1') listens on a non-loopback address",
            [],
            "FakePeer(host='10.0.0.1') listens on a non-loopback address",
        ),
    ],
)
def test_errors_in_option_terms(text: str, options: list[str], said: str) -> None:
    parser = argparse.ArgumentParser()
    add_where_options(parser, "the peer")
    add_output_options(parser)
    assert in_option_terms(text, parser.parse_args(options)) == said
