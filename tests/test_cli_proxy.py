"""``fakepeer proxy --upstream HOST:PORT`` as a process, in front of a real server (the
standard library's HTTP server), with faults from the command line and from a file."""

from __future__ import annotations

import http.client
import http.server
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from _cli_process import WAIT, finish, journal, run, started
from fakepeer import ScriptError
from fakepeer._cli_proxy import upstream_address


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello, " + self.path.encode() * 40
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """A real HTTP server on loopback: its HOST:PORT."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)


def get(address: str, path: str) -> bytes:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


def test_a_proxy_with_faults_relays_and_journals(tmp_path: Path, server: str) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text('version = 1\n\n[[faults]]\nkind = "slice"\nsize = 50\n')
    journal_path = tmp_path / "proxy.jsonl"
    args = ["proxy", "--upstream", server, "--fault", "latency=0.05", "--faults", str(faults)]
    args += ["--journal", str(journal_path)]
    with started(*args, address_file=tmp_path / "addr") as (process, address):
        assert get(address, "/x") == b"hello, " + b"/x" * 40
        code, out, err = finish(process, signal.SIGTERM)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"fakepeer: proxy 'proxy' on {address} to {server}"
    assert lines[-2:] == ["fakepeer: stopped: terminated (SIGTERM)", "fakepeer: passed"]
    records = journal(journal_path)
    assert records[0] == {"t": 0.0, "kind": "serving", "name": "proxy", "upstream": server,
                          "address": address}  # fmt: skip
    notes = [r["note"] for r in records if r["kind"] == "fault"]
    assert notes == ["+ slice(50, 0)", "+ latency(0.05, 0)"]  # the file's first
    received = [r for r in records if r["kind"] == "received"]
    assert received[0]["data"].startswith("GET /x HTTP/1.1\r\n")
    assert received[0]["note"] == "-> upstream"
    sent = [r["data"] for r in records if r["kind"] == "sent"]
    assert all(len(piece) <= 50 for piece in sent)  # sliced
    response = "".join(sent)
    assert response.startswith("HTTP/1.0 200 OK\r\n")
    assert response.endswith("\r\n\r\nhello, " + "/x" * 40)
    assert records[-1]["kind"] == "verdict"
    assert records[-1]["passed"] is True
    assert records[-1]["ended"] == "SIGTERM"


def test_an_upstream_that_cannot_be_reached_is_status_1(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        upstream = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
        args = ("proxy", "--upstream", upstream, "--quiet")
        with started(*args, address_file=tmp_path / "addr") as (process, address):
            host, port = address.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=WAIT) as client:
                assert client.recv(1) == b""  # closed after the error
            code, out, _ = finish(process, signal.SIGINT)
    assert code == 1
    assert (
        "fakepeer: stopped: interrupted (SIGINT)\nfakepeer: failed:\nconnection #1: the proxy "
        f"could not connect to the upstream server {upstream}: ConnectionRefusedError"
    ) in out


def test_the_timeout_stops_a_proxy(server: str) -> None:
    done = run("proxy", "--upstream", server, "--timeout", "0.2", "--fault", "reset_peer")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[1].endswith("fault      + reset_peer(0)")
    assert lines[-2:] == ["fakepeer: stopped: the --timeout was reached", "fakepeer: passed"]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            "latncy=0.1",
            "--fault 'latncy=0.1': no fault named 'latncy' (did you mean 'latency'?); the "
            "faults: accept_delay, ",
        ),
        (
            "latency:speed=2",
            "--fault 'latency:speed=2': latency has no key 'speed'; it takes seconds, jitter, "
            "probability, direction, and the schedule's after, lasting, first, per",
        ),
        ("latency:0.1", "--fault 'latency:0.1': expected KEY=VALUE, got '0.1'"),
        ("latency=abc", "--fault 'latency=abc': latency() takes a finite number, got 'abc'"),
        ("refuse=1", "--fault 'refuse=1': refuse() takes no value; write refuse"),
        (
            "slice:size=1,first=0",
            "--fault 'slice:size=1,first=0': peer.faults.add(first=) takes a whole number "
            ">= 1, got 0",
        ),
        (
            "drop",
            "--fault 'drop': drop(1) on a Proxy: it is a datagram fault",
        ),
    ],
)
def test_a_wrong_fault_is_status_2_and_says_why(spec: str, error: str) -> None:
    done = run("proxy", "--upstream", "127.0.0.1:9", "--fault", spec)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"fakepeer: error: {error}")


def test_a_wrong_faults_file_says_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text('version = 1\n\n[[faults]]\nkind = "latency"\nsecond = 0.1\n')
    done = run("proxy", "--upstream", "127.0.0.1:9", "--faults", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"fakepeer: error: {path}:5: faults #1: ")
    assert "'second'" in done.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--upstream", "nowhere"], "--upstream 'nowhere': expected HOST:PORT (such as "),
        (["--upstream", "127.0.0.1:9", "--upstream-ca", "ca.pem"], "--upstream-ca: add "),
        (["--upstream", "127.0.0.1:9", "--ca-file", "ca.pem"], "--ca-file: the proxy serves "),
    ],
)
def test_wrong_options_are_status_2(args: list[str], error: str) -> None:
    done = run("proxy", *args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"fakepeer: error: {error}")


def test_help_has_examples_and_the_fault_syntax() -> None:
    done = run("proxy", "--help")
    assert done.returncode == 0
    assert "KIND:KEY=VALUE[,KEY=VALUE...]     latency:seconds=0.2" in done.stdout
    assert "fakepeer proxy --upstream 127.0.0.1:6379 --port 16379 --fault latency=0.2" in (
        done.stdout
    )
    assert "exit status:\n  0  stopped, and the proxy saw no error" in done.stdout


def test_upstream_addresses() -> None:
    assert upstream_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert upstream_address("[::1]:80") == ("[::1]", 80)  # the Proxy takes it bracketed
    assert upstream_address("/run/app.sock") == "/run/app.sock"
    with pytest.raises(ScriptError, match=r"^--upstream 'a:b': expected HOST:PORT"):
        upstream_address("a:b")
