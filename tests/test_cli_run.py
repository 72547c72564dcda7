"""``fakepeer run SCRIPT`` as a process, with clients in other languages: a bash script
(``/dev/tcp``) that starts the peer in the background and polls its address file, and a
``node`` script; passing and failing, checking the exit status, the output and the journal."""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from _cli_process import WAIT, command, environment, finish, journal, kinds, run, started

SCRIPT = """\
version = 1

[peer]
name = "smtp"

[framing]
kind = "lines"
delimiter = "\\r\\n"

[[greeting]]
send = "220 ready"

[[expect]]
match = "HELO me"
reply = "250 hi"

[[expect]]
match = "QUIT"
reply = "221 bye"
close = true
"""

BASH_CLIENT = r"""
set -u
trap '' PIPE  # the peer may hang up first: a write then fails, the script goes on
$FAKEPEER run smtp.toml --quiet --address-file addr --journal journal.jsonl --timeout 20 \
    > peer.out 2> peer.err &
peer=$!
for _ in $(seq 1 400); do
    [ -s addr ] && break
    kill -0 "$peer" 2>/dev/null || { echo "the peer exited"; exit 3; }
    sleep 0.05
done
address=$(cat addr)
exec 3<>"/dev/tcp/${address%:*}/${address##*:}"
IFS= read -r greeting <&3
printf '%s\r\n' "$1" >&3
IFS= read -r reply <&3
printf 'QUIT\r\n' >&3
IFS= read -r bye <&3
exec 3<&-
wait "$peer"
echo "peer=$?"
echo "greeting=${greeting%$'\r'}"
echo "reply=${reply%$'\r'}"
echo "bye=${bye%$'\r'}"
"""

NODE_CLIENT = r"""
const net = require("net");
const address = process.argv[2];
const [host, port] = [address.replace(/:\d+$/, ""), Number(address.split(":").pop())];
const lines = process.argv.slice(3);
let received = "";
const socket = net.connect(port, host, () => {
    for (const line of lines) socket.write(line + "\r\n");
});
socket.on("data", (chunk) => { received += chunk.toString("utf8"); });
socket.on("end", () => { console.log(JSON.stringify(received)); socket.end(); });
socket.on("error", (error) => { console.log(JSON.stringify(received)); });
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "smtp.toml"
    path.write_text(SCRIPT)
    return path


def bash(tmp_path: Path, helo: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "client.sh").write_text(BASH_CLIENT)
    env = environment() | {"FAKEPEER": " ".join(command())}
    return subprocess.run(
        ["bash", "client.sh", helo],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_a_shell_script_starts_the_peer_in_the_background_and_passes(
    tmp_path: Path, script: Path
) -> None:
    done = bash(tmp_path, "HELO me")
    assert done.stdout.splitlines() == [
        "peer=0",
        "greeting=220 ready",
        "reply=250 hi",
        "bye=221 bye",
    ], done.stderr
    out = (tmp_path / "peer.out").read_text().splitlines()
    assert out[0].startswith("fakepeer: serving 'smtp' on 127.0.0.1:")
    assert out[1:] == [
        "fakepeer: stopped: the script is done: every expect was met and every connection "
        "is closed",
        "fakepeer: passed",
    ]
    lines = journal(tmp_path / "journal.jsonl")
    assert kinds(lines) == [
        "serving",
        "#1 connected",
        "#1 sent",
        "#1 received",
        "#1 sent",
        "#1 received",
        "#1 sent",
        "#1 closed",
        "verdict",
    ]
    assert lines[0]["name"] == "smtp"
    assert lines[0]["address"] == out[0].rsplit(" ", 1)[1]
    assert lines[2] == {"t": lines[2]["t"], "connection": 1, "kind": "sent",
                        "data": "220 ready\r\n", "note": ""}  # fmt: skip
    assert lines[3]["data"] == "HELO me"
    assert lines[3]["note"] == "-> expect #1 'HELO me' (smtp.toml:13)"
    assert 0 < lines[1]["t"] <= lines[-1]["t"]
    assert lines[-1] == {"t": lines[-1]["t"], "kind": "verdict", "passed": True,
                         "ended": "done", "diagnosis": None}  # fmt: skip
    assert not (tmp_path / "addr").exists()  # removed at the end


def test_a_shell_script_whose_client_is_wrong_gets_status_1_and_the_diagnosis(
    tmp_path: Path, script: Path
) -> None:
    done = bash(tmp_path, "HELO you")
    assert done.stdout.splitlines() == ["peer=1", "greeting=220 ready", "reply=", "bye="]
    out = (tmp_path / "peer.out").read_text()
    assert "fakepeer: stopped: the peer saw a problem and every connection is closed\n" in out
    diagnosis = (
        "connection #1 received data that no rule expected\n"
        "  received:  'HELO you'\n"
        "  expected:  expect #1 'HELO me' (smtp.toml:13)\n"
        "             the data differs at byte 5: expected 'me', received 'you'"
    )
    assert f"fakepeer: failed:\n{diagnosis}\n\nfake peer 'smtp' on 127.0.0.1:" in out
    lines = journal(tmp_path / "journal.jsonl")
    assert kinds(lines)[-3:] == ["#1 unexpected", "#1 closed", "verdict"]
    assert lines[-1]["passed"] is False
    assert lines[-1]["ended"] == "failed"
    assert lines[-1]["diagnosis"] == diagnosis


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed (CI machines have it)")
@pytest.mark.parametrize(
    ("lines", "status", "answer"),
    [
        (["HELO me", "QUIT"], 0, "220 ready\r\n250 hi\r\n221 bye\r\n"),
        (["HELO me", "NOOP"], 1, "220 ready\r\n250 hi\r\n"),
    ],
)
def test_a_node_client(
    tmp_path: Path, script: Path, lines: list[str], status: int, answer: str
) -> None:
    assert NODE is not None
    (tmp_path / "client.js").write_text(NODE_CLIENT)
    args = ("run", str(script), "--journal", str(tmp_path / "j.jsonl"), "--timeout", "20")
    with started(*args, address_file=tmp_path / "addr") as (process, address):
        client = subprocess.run(
            [NODE, str(tmp_path / "client.js"), address, *lines],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        code, out, err = finish(process)
    assert client.stdout.strip() == repr(answer).replace("'", '"'), client.stderr
    assert code == status, out + err
    assert out.splitlines()[0] == f"fakepeer: serving 'smtp' on {address}"
    assert "#1 connected  from 127.0.0.1:" in out  # the live transcript
    verdict = journal(tmp_path / "j.jsonl")[-1]
    assert verdict["passed"] is (status == 0)
    if status:
        assert verdict["diagnosis"].startswith(
            "connection #1 received data that no rule expected\n  received:  'NOOP'\n"
        )


def test_ctrl_c_stops_it_with_the_verdict(tmp_path: Path, script: Path) -> None:
    with started("run", str(script), address_file=tmp_path / "addr") as (process, address):
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(b"HELO me\r\n")
            reader = sock.makefile("rb")
            assert reader.readline() == b"220 ready\r\n"
            assert reader.readline() == b"250 hi\r\n"
            code, out, _ = finish(process, signal.SIGINT)
    assert code == 1
    assert "fakepeer: stopped: interrupted (SIGINT)\nfakepeer: failed:\n" in out
    assert "  expect #2 'QUIT' (smtp.toml:17): never met" in out


def test_sigterm_with_only_always_rules_passes(tmp_path: Path) -> None:
    path = tmp_path / "ping.toml"
    path.write_text('version = 1\n[[always]]\nmatch = "PING"\nreply = "PONG"\n')
    with started("run", str(path), "--quiet", address_file=tmp_path / "a") as (process, _):
        code, out, err = finish(process, signal.SIGTERM)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("fakepeer: serving 'fake peer' on 127.0.0.1:")
    assert lines[1:] == ["fakepeer: stopped: terminated (SIGTERM)", "fakepeer: passed"]


def test_the_timeout_ends_a_script_of_always_rules(tmp_path: Path) -> None:
    path = tmp_path / "ping.toml"
    path.write_text('version = 1\n[[always]]\nmatch = "PING"\nreply = "PONG"\n')
    done = run("run", str(path), "--timeout", "0.3", "--journal", "-")
    assert done.returncode == 0
    assert done.stderr.splitlines()[1:] == [
        "fakepeer: stopped: the --timeout was reached",
        "fakepeer: passed",
    ]
    lines = [line for line in done.stdout.splitlines() if line]
    assert '"kind": "serving"' in lines[0]
    assert lines[-1].endswith('"passed": true, "ended": "timeout", "diagnosis": null}')


def test_binary_data_is_base64_in_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_text(
        'version = 1\n[[expect]]\nmatch = { hex = "00 ff" }\nreply = { hex = "ff 00 de ad" }\n'
        "close = true\n"
    )
    journal_path = tmp_path / "j.jsonl"
    args = ("run", str(path), "--journal", str(journal_path))
    with started(*args, address_file=tmp_path / "addr") as (process, address):
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(b"\x00\xff")
            assert sock.makefile("rb").read() == b"\xff\x00\xde\xad"
        code, out, _ = finish(process)
    assert code == 0
    assert "#1 sent       4 bytes:\n" in out  # the transcript's hexdump, live
    sent = next(line for line in journal(journal_path) if line["kind"] == "sent")
    assert sent["encoding"] == "base64"
    assert base64.b64decode(sent["data"]) == b"\xff\x00\xde\xad"


def test_a_unix_socket_and_a_seed_from_the_command_line(tmp_path: Path, script: Path) -> None:
    path = tmp_path / "peer.sock"
    args = ("run", str(script), "--unix", str(path), "--seed", "7")
    with started(*args, address_file=tmp_path / "addr") as (process, address):
        assert address == str(path)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(WAIT)
            sock.connect(address)
            sock.sendall(b"HELO me\r\nQUIT\r\n")
            assert sock.makefile("rb").read() == b"220 ready\r\n250 hi\r\n221 bye\r\n"
        code, out, _ = finish(process)
    assert code == 0
    assert out.splitlines()[0] == f"fakepeer: serving 'smtp' on {path}"


def test_tls_writes_the_ca_file_first(tmp_path: Path, script: Path) -> None:
    ca = tmp_path / "ca.pem"
    args = ("run", str(script), "--tls", "--ca-file", str(ca))
    with started(*args, address_file=tmp_path / "addr") as (process, address):
        context = ssl.create_default_context(cafile=str(ca))
        host, port = address.rsplit(":", 1)
        with (
            socket.create_connection((host, int(port)), timeout=WAIT) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"HELO me\r\nQUIT\r\n")
            assert sock.makefile("rb").read() == b"220 ready\r\n250 hi\r\n221 bye\r\n"
        code, out, _ = finish(process)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"fakepeer: serving 'smtp' on {address} over TLS"
    assert lines[1] == f"fakepeer: clients trust the CA certificate in {ca}"
    assert not ca.exists()  # removed at the end, with the address file


# -- errors: status 2, the text on standard error --------------------------------------------


def test_a_wrong_script_is_status_2_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('version = 1\n\n[[expect]]\nmatch = "PING"\nrepyl = "PONG"\n')
    done = run("run", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"fakepeer: error: {path}:5: expect #1: ")
    assert "'repyl'" in done.stderr
    assert "'reply'" in done.stderr  # did you mean


def test_a_missing_script_and_a_busy_port_are_status_2(tmp_path: Path) -> None:
    done = run("run", str(tmp_path / "nowhere.toml"))
    assert done.returncode == 2
    assert done.stderr == (
        f"fakepeer: error: {tmp_path / 'nowhere.toml'}: cannot read the script: "
        "No such file or directory\n"
    )
    (tmp_path / "s.toml").write_text(SCRIPT)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run("run", str(tmp_path / "s.toml"), "--port", str(port))
    assert done.returncode == 2
    assert done.stderr == (
        f"fakepeer: error: --port {port}: cannot listen on 127.0.0.1:{port}: "
        "Address already in use\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--timeout", "0"], "argument --timeout: takes a number of seconds > 0, got '0'"),
        (
            ["--port", "x"],
            "argument --port: takes a port number from 0 to 65535 (0: the OS chooses a free "
            "one), got 'x'",
        ),
        (["--ca-file", "ca.pem"], "--ca-file: the peer serves no TLS (give --tls)"),
    ],
)
def test_wrong_options_are_status_2(tmp_path: Path, args: list[str], error: str) -> None:
    (tmp_path / "s.toml").write_text(SCRIPT)
    done = run("run", str(tmp_path / "s.toml"), *args)
    assert done.returncode == 2
    assert error in done.stderr


def test_help_has_examples_and_the_exit_statuses() -> None:
    done = run("run", "--help")
    assert done.returncode == 0
    assert "fakepeer run smtp.toml --port 2525 --timeout 30 --journal smtp.jsonl" in done.stdout
    assert "exit status:\n  0  the verdict passed\n  1  it failed" in done.stdout
    assert "--address-file FILE" in done.stdout
    top = run("--help")
    for name in ("demo", "run", "proxy"):
        assert f"    {name}" in top.stdout


def test_no_command_prints_the_help_and_is_status_2() -> None:
    done = run()
    assert done.returncode == 2
    assert done.stdout.startswith("usage: fakepeer")
