"""The proxy in front of a real server: a stdlib http.server on loopback, started here."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from fakepeer import FakePeer, Lines, Proxy, ScriptError, UpstreamError

TIMEOUT = 5.0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so one connection carries several requests

    def do_GET(self) -> None:
        body = b"hello " + self.path.encode() + b"\n" * 100
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # serve_forever polls for shutdown every poll_interval (0.5 s by default): every test
    # would wait that long in server.shutdown(), after its checks.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="upstream-http"
    )
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield (str(host), int(port))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def fetch(address: tuple[str, int], *paths: str) -> list[tuple[int, bytes]]:
    connection = http.client.HTTPConnection(*address, timeout=TIMEOUT)
    try:
        results = []
        for path in paths:
            connection.request("GET", path)
            response = connection.getresponse()
            results.append((response.status, response.read()))
        return results
    finally:
        connection.close()


def test_without_faults_traffic_passes_unchanged(upstream: tuple[str, int]) -> None:
    direct = fetch(upstream, "/a", "/b")
    proxy = Proxy(upstream)
    with proxy.serve():
        proxied = fetch(proxy.address, "/a", "/b")
    assert proxied == direct
    assert len(proxy.connections) == 1
    text = proxy.render_transcript()
    assert text.startswith(f"proxy 'proxy' to {upstream[0]}:{upstream[1]} on 127.0.0.1:")
    assert "#1 received   'GET /a HTTP/1.1\\r\\n" in text
    assert "-> upstream" in text
    assert "#1 sent       'HTTP/1.1 200 OK\\r\\n" in text


def test_latency_slows_the_answers(upstream: tuple[str, int]) -> None:
    proxy = Proxy(upstream)
    with proxy.serve(), proxy.faults.latency(0.2):
        started = time.monotonic()
        assert fetch(proxy.address, "/slow")[0][0] == 200
        assert time.monotonic() - started >= 0.2


def test_slicing_is_invisible_to_a_good_client(upstream: tuple[str, int]) -> None:
    proxy = Proxy(upstream)
    proxy.faults.slice(7)
    with proxy.serve():
        assert fetch(proxy.address, "/a") == fetch(upstream, "/a")
    sent = [event.data for event in proxy.transcript.events if event.kind == "sent"]
    assert len(sent) > 10
    assert all(len(chunk) <= 7 for chunk in sent)


def test_reset_peer_breaks_the_client(upstream: tuple[str, int]) -> None:
    proxy = Proxy(upstream)
    proxy.faults.reset_peer()
    with proxy.serve(), pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        fetch(proxy.address, "/a")


def test_limit_data_cuts_the_response(upstream: tuple[str, int]) -> None:
    proxy = Proxy(upstream)
    proxy.faults.limit_data(150)  # past the headers (about 110 bytes), inside the body
    with proxy.serve(), pytest.raises(http.client.IncompleteRead):
        fetch(proxy.address, "/a")


def test_an_unreachable_upstream_fails_with_the_reason() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # free now, and closed: nobody listens there
    proxy = Proxy(("127.0.0.1", port))
    failure = pytest.raises(UpstreamError)
    with failure as info, proxy.serve(), socket.create_connection(proxy.address) as sock:
        assert sock.recv(10) == b""
    assert info.value.diagnosis.startswith(
        f"connection #1: the proxy could not connect to the upstream server 127.0.0.1:{port}: "
        "ConnectionRefusedError"
    )


def test_a_proxy_has_no_script() -> None:
    proxy = Proxy(("127.0.0.1", 1))
    # No such methods (the type checker says so too); the script's get a friendly error.
    for name in ("on_connect", "expect", "always", "otherwise", "handler", "on_connection"):
        with pytest.raises(ScriptError, match=f"proxy.{name}: a Proxy forwards to its upstream"):
            getattr(proxy, name)
    with pytest.raises(ScriptError, match="a Proxy forwards to its upstream server"):
        proxy.expect(b"x")  # type: ignore[attr-defined]
    for name in ("on_connect", "expect", "handler", "nothing"):
        assert not hasattr(proxy, name)  # an AttributeError too, as hasattr() expects
    # What works on a proxy, it has: pushes and the waits (no script: nothing to wait for).
    assert proxy.done
    for name in ("broadcast", "wait_until_done", "wait_until_done_async"):
        assert callable(getattr(proxy, name))
    # The assertions on messages received it has not: a relay frames no messages and keeps
    # none, so they could never pass (assert on the transcript, or on the upstream server).
    for name in ("assert_received", "assert_received_in_order", "assert_no_unmatched"):
        assert not hasattr(proxy, name)
    with pytest.raises(ScriptError, match=r"takes a \(host, port\) tuple"):
        Proxy("localhost:80")  # a path needs a "/": this is a mistaken host:port


def test_a_proxy_pushes_to_its_clients(fake_peer: FakePeer) -> None:
    fake_peer.always(b"PING").reply(b"PONG")
    proxy = Proxy(fake_peer.address)
    with proxy.serve(), socket.create_connection(proxy.address, timeout=5) as client:
        client.sendall(b"PING")
        assert client.recv(100) == b"PONG"
        proxy.wait_for_connections(1)
        assert proxy.broadcast(b"NEWS") == 1
        assert client.recv(100) == b"NEWS"
        proxy.wait_until_done()


def test_a_proxy_in_front_of_a_fake_peer(fake_peer: FakePeer) -> None:
    fake_peer.always(b"PING").reply(b"PONG")
    proxy = Proxy(fake_peer.address)
    with proxy.serve(), socket.create_connection(proxy.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"PING")
        assert sock.recv(10) == b"PONG"


def test_the_proxy_fixture(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:hypothesispytest\n"
    )
    pytester.makepyfile(
        """
        import socket

        def test_through(fake_peer, fake_proxy_factory):
            fake_peer.always(b"PING").reply(b"PONG")
            proxy = fake_proxy_factory(fake_peer.address, name="slow link")
            proxy.faults.slice(1)
            with socket.create_connection(proxy.address, timeout=5) as sock:
                sock.sendall(b"PING")
                data = b""
                while len(data) < 4:
                    data += sock.recv(10)
            assert data == b"PONG"

        def test_unreachable(fake_proxy_factory):
            with socket.create_server(("127.0.0.1", 0)) as probe:
                port = probe.getsockname()[1]
            proxy = fake_proxy_factory(("127.0.0.1", port))
            with socket.create_connection(proxy.address, timeout=5) as sock:
                assert sock.recv(10) == b""
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*UpstreamError: connection #1: the proxy could not connect to the upstream server*"]
    )


def test_upstream_faults_shape_what_the_client_sends(upstream: tuple[str, int]) -> None:
    proxy = Proxy(upstream)
    with proxy.serve():
        with proxy.faults.slice(5, 0.001, direction="upstream"):
            assert fetch(proxy.address, "/sliced") == fetch(upstream, "/sliced")
        with proxy.faults.latency(0.2, direction="upstream"):
            started = time.monotonic()
            assert fetch(proxy.address, "/late")[0][0] == 200
            assert time.monotonic() - started >= 0.2
        with (
            proxy.faults.limit_data(10, direction="upstream"),
            pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)),
        ):
            fetch(proxy.address, "/cut")  # the server gets 10 bytes, then EOF: no answer


def test_a_fake_peer_has_no_upstream_to_fault() -> None:
    with pytest.raises(ScriptError, match="a FakePeer has no upstream"):
        FakePeer().faults.latency(0.1, direction="upstream")


@pytest.mark.parametrize("latency", [0.0, 0.01])
def test_the_server_closing_first_then_the_client_ends_the_proxied_connection(
    latency: float,
) -> None:
    # The server's EOF reaches the client as a half-close; the client's close that follows
    # must end the connection then, not when the proxy stops (it stayed open before), also
    # when a downstream fault still holds the half-close.
    peer = FakePeer(framing=Lines())
    peer.always("BYE").reply("bye").close()
    with peer.serve():
        proxy = Proxy(peer.address, transcript_budget=None)
        if latency:
            proxy.faults.latency(latency)
        with proxy.serve():
            for number in range(1, 101):
                with socket.create_connection(proxy.address, timeout=5) as sock:
                    sock.sendall(b"BYE\n")
                    received = b""
                    while chunk := sock.recv(100):
                        received += chunk
                    assert received == b"bye\n"
                proxy.wait_for_closes(number, timeout=5)
                connection = proxy.connections[number - 1]
                # without latency at once; with it, once the fault lets the close through
                deadline = time.monotonic() + (latency and 2.0)
                while connection.open and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert (connection.open, connection.closed_by) == (False, "client")
            kinds = [event.kind for event in proxy.transcript.for_connection(100)]
            assert kinds[-3:] == ["half-closed", "eof", "closed"]


def _undelivered(event_note: str) -> int:
    """The byte count of a ``dropped`` note of a reset passed on: ``(up to 1,234 bytes not
    yet delivered, discarded by the reset passed on)``."""
    count, _, rest = event_note.removeprefix("(up to ").partition(" bytes ")
    assert rest == "not yet delivered, discarded by the reset passed on)", event_note
    return int(count.replace(",", ""))


def test_a_reset_passed_on_says_how_many_bytes_the_client_never_got() -> None:
    # The server sends 2 MB and resets while the client reads nothing: the proxy's reset
    # discards what waits in its buffers for the client, which the transcript must say
    # (it showed 2 MB sent, nothing dropped, and the client got 128 KB).
    reset_now = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"x" * 2_000_000)
                reset_now.wait(10)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")

        server = threading.Thread(target=serve)
        server.start()
        proxy = Proxy(listener.getsockname()[:2], transcript_budget=None, timeout=2)
        got = 0
        try:
            with proxy.serve(), socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the rest waits
                sock.settimeout(5)
                sock.connect(proxy.address)
                sock.sendall(b"GO\n")
                deadline = time.monotonic() + 10  # the proxy has all 2 MB (the client reads none)
                while sum(len(e.data) for e in proxy.transcript.events if e.kind == "sent") < (
                    2_000_000
                ):
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                reset_now.set()
                proxy.wait_for_closes(by="peer", timeout=5)  # the reset passed on
                with contextlib.suppress(ConnectionResetError):
                    while data := sock.recv(65536):
                        got += len(data)
        finally:
            reset_now.set()
            server.join(10)
    events = proxy.transcript.events
    sent = sum(len(e.data) for e in events if e.kind == "sent")
    dropped = sum(_undelivered(e.note) for e in events if e.kind == "dropped")
    assert sent == 2_000_000
    assert got < 2_000_000  # the reset cut the reply short, as the server's would
    # Most of it waited in the proxy (the client's window is a few KB): said so. Not exact:
    # the kernels decide what of their queues the client still reads after the RST.
    assert dropped >= 1_000_000, (sent, dropped, got)
