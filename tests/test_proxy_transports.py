"""The proxy over TLS (either side, both), Unix sockets and IPv6, in front of REAL servers:
an asyncio echo server (plain or TLS with a trustme certificate, on TCP or a Unix socket)
running in a thread of its own, and http.server wrapped in TLS; clients are blocking
sockets, asyncio streams and http.client, with the proxy on the hub and in the loop."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from _hosts import Host, hosted
from fakepeer import Proxy, ScriptError, UpstreamError

TIMEOUT = 5.0
HOSTS: list[Host] = ["hub", "loop"]


# -- real servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The test's own CA: it signs the upstream servers' certificates."""
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*(names or ("127.0.0.1", "::1", "localhost"))).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts ``ca``: what the proxy needs to reach a test server."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class EchoServer:
    """A real asyncio line echo server in a thread of its own (its own loop), on TCP or a
    Unix socket, plain or TLS. ``connections`` counts the clients it served."""

    def __init__(self, *, host: str = "127.0.0.1", path: str | None = None, tls: Any = None):
        self.host, self.path, self.tls = host, path, tls
        self.loop = asyncio.new_event_loop()
        self.address: Any = None
        self.connections = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="echo-server")

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass  # the client went away: nothing for an echo server to do
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _start(self) -> None:
        if self.path is not None:
            self.server = await asyncio.start_unix_server(self._echo, self.path, ssl=self.tls)
            self.address = self.path
        else:
            self.server = await asyncio.start_server(self._echo, self.host, 0, ssl=self.tls)
            self.address = self.server.sockets[0].getsockname()[:2]

    async def _stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):  # its handler reads an EOF, and ends
            writer.transport.abort()
        async with asyncio.timeout(TIMEOUT):  # bounded: a handler that never ends fails
            while self.writers:  # its handlers are gone once their EOF ended them
                await asyncio.sleep(0.001)
            await self.server.wait_closed()

    def __enter__(self) -> EchoServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)
            self.loop.close()


@pytest.fixture
def socket_dir() -> Iterator[str]:
    """A short private directory for Unix sockets (a path has at most 107 bytes)."""
    directory = tempfile.mkdtemp(prefix="fp-test-")
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def tls_echo(ca: trustme.CA) -> Iterator[EchoServer]:
    with EchoServer(tls=server_context(ca)) as server:
        yield server


@pytest.fixture
def plain_echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


# -- clients --------------------------------------------------------------------------------------


def blocking_echo(
    address: Any, lines: list[bytes], context: ssl.SSLContext | None = None
) -> list[bytes]:
    """Send each line through a blocking socket (TLS if ``context``); what came back."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET6
    if not isinstance(address, str) and ":" not in address[0]:
        family = socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as raw:
        raw.settimeout(TIMEOUT)
        raw.connect(address)
        sock = raw if context is None else context.wrap_socket(raw, server_hostname="localhost")
        with sock, sock.makefile("rb") as reader:
            answers = []
            for line in lines:
                sock.sendall(line)
                answers.append(reader.readline())
            return answers


async def asyncio_echo(address: Any, lines: list[bytes], context: ssl.SSLContext) -> list[bytes]:
    """The same with asyncio streams, TLS with ``context``."""
    if isinstance(address, str):
        opening = asyncio.open_unix_connection(address, ssl=context, server_hostname="localhost")
    else:
        opening = asyncio.open_connection(*address, ssl=context, server_hostname="localhost")
    reader, writer = await asyncio.wait_for(opening, TIMEOUT)
    try:
        answers = []
        for line in lines:
            writer.write(line)
            answers.append(await asyncio.wait_for(reader.readline(), TIMEOUT))
        return answers
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def the_end(address: tuple[str, int]) -> bytes:
    """Send a line, then read to the end of the connection: what came (the proxy closed it
    with the line unread, so the kernel may reset it: nothing came either)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(b"hello\n")
        try:
            return await asyncio.wait_for(reader.read(), TIMEOUT)
        except ConnectionResetError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def tls_notes(proxy: Proxy) -> list[tuple[int, str]]:
    return [(e.connection, e.note) for e in proxy.transcript.events if e.kind == "tls"]


# -- TLS on either side ----------------------------------------------------------------------------


def test_tls_to_the_client_plain_to_the_server(plain_echo: EchoServer) -> None:
    proxy = Proxy(plain_echo.address, tls=True)
    with proxy.serve():
        assert blocking_echo(proxy.address, [b"one\n", b"two\n"], proxy.client_ssl_context()) == [
            b"one\n",
            b"two\n",
        ]
    [(connection, note)] = tls_notes(proxy)
    assert connection == 1
    assert note.startswith("TLSv1.3, ")
    assert note.endswith(", sni 'localhost'")
    text = str(proxy.transcript)
    assert "#1 received   'one\\n' -> upstream" in text  # the plain text inside TLS
    assert "#1 sent       'two\\n'" in text


def test_plain_to_the_client_tls_to_the_server(tls_echo: EchoServer, ca: trustme.CA) -> None:
    proxy = Proxy(tls_echo.address, upstream_tls=trusting(ca))
    with proxy.serve():
        assert blocking_echo(proxy.address, [b"hello\n"]) == [b"hello\n"]
    [(connection, note)] = tls_notes(proxy)
    assert connection == 1
    # an address is checked against the certificate, but never sent as SNI
    assert note.startswith("TLSv1.3, ")
    assert note.endswith(", no sni (upstream)")
    host, port = tls_echo.address
    assert proxy.render_transcript().startswith(f"proxy 'proxy' to {host}:{port} over TLS on ")
    assert repr(proxy) == f"<Proxy 'proxy' stopped to {host}:{port} over TLS>"


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_tls_on_both_sides_with_an_asyncio_client(
    tls_echo: EchoServer, ca: trustme.CA, host: Host
) -> None:
    proxy = Proxy(tls_echo.address, tls=True, upstream_tls=trusting(ca))
    proxy_ca = proxy.client_ssl_context()
    async with hosted(proxy, host):
        assert await asyncio_echo(proxy.address, [b"a\n", b"b\n"], proxy_ca) == [b"a\n", b"b\n"]
    client_side, upstream_side = tls_notes(proxy)
    assert client_side[0] == upstream_side[0] == 1
    assert client_side[1].endswith("sni 'localhost'")
    assert upstream_side[1].endswith("(upstream)")
    assert tls_echo.connections == 1


def test_the_server_name_is_sent_and_checked(ca: trustme.CA) -> None:
    with EchoServer(tls=server_context(ca, "echo.test")) as server:
        proxy = Proxy(
            server.address, upstream_tls=trusting(ca), upstream_server_hostname="echo.test"
        )
        with proxy.serve():
            assert blocking_echo(proxy.address, [b"x\n"]) == [b"x\n"]
        [(_, note)] = tls_notes(proxy)
        assert note.endswith("sni 'echo.test' (upstream)")

        wrong = Proxy(server.address, upstream_tls=trusting(ca), upstream_server_hostname="other")
        with (
            pytest.raises(UpstreamError, match="Hostname mismatch"),
            wrong.serve(),
            socket.create_connection(wrong.address, timeout=TIMEOUT) as sock,
        ):
            assert sock.recv(10) == b""  # closed by the proxy


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_an_untrusted_upstream_fails_the_test_and_closes_the_client(
    tls_echo: EchoServer, host: Host
) -> None:
    proxy = Proxy(tls_echo.address, upstream_tls=True)  # the system's CAs: not the test's
    with pytest.raises(UpstreamError) as info:
        async with hosted(proxy, host):
            assert await the_end(proxy.address) == b""  # closed by the proxy
    ip, port = tls_echo.address
    assert info.value.diagnosis.startswith(
        f"connection #1: the proxy's TLS handshake with the upstream server {ip}:{port} "
        "failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    [(connection, note)] = tls_notes(proxy)
    assert connection == 1
    assert note.startswith("handshake failed: [SSL: CERTIFICATE_VERIFY")
    assert note.endswith("(upstream)")


# -- HTTPS through a TLS proxy ---------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"hello " + self.path.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = server_context(ca).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="https-upstream"
    )
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield (str(host), int(port))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def get(host: str, port: int, context: ssl.SSLContext, *paths: str) -> list[tuple[int, bytes]]:
    connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
    try:
        results = []
        for path in paths:
            connection.request("GET", path)
            response = connection.getresponse()
            results.append((response.status, response.read()))
        return results
    finally:
        connection.close()


def test_https_through_the_proxy_with_latency(
    https_server: tuple[str, int], ca: trustme.CA
) -> None:
    direct = get(*https_server, trusting(ca), "/a", "/b")
    proxy = Proxy(https_server, tls=True, upstream_tls=trusting(ca))
    with proxy.serve():
        assert get("localhost", proxy.port, proxy.client_ssl_context(), "/a", "/b") == direct
        with proxy.faults.latency(0.2):  # on the plain text inside TLS, server to client
            started = time.monotonic()
            assert get("localhost", proxy.port, proxy.client_ssl_context(), "/c") == [
                (200, b"hello /c\n")
            ]
            assert time.monotonic() - started >= 0.2
    assert "'GET /a HTTP/1.1\\r\\n" in str(proxy.transcript)
    assert direct == [(200, b"hello /a\n"), (200, b"hello /b\n")]


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_a_cut_through_a_tls_proxy_is_seen_by_the_client(
    tls_echo: EchoServer, ca: trustme.CA, host: Host
) -> None:
    proxy = Proxy(tls_echo.address, tls=True, upstream_tls=trusting(ca))
    proxy.faults.limit_data(5)  # 5 plain bytes reach the client, then the connection ends
    context = proxy.client_ssl_context()
    async with hosted(proxy, host):
        reader, writer = await asyncio.open_connection(
            *proxy.address, ssl=context, server_hostname="localhost"
        )
        writer.write(b"hello world\n")
        got = b""
        with contextlib.suppress(ssl.SSLError, ConnectionError):  # however TLS ends it
            while chunk := await asyncio.wait_for(reader.read(100), TIMEOUT):
                got += chunk
        assert got == b"hello"
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    assert "#1 dropped    ' world\\n' (by limit_data)" in str(proxy.transcript)


# -- Unix sockets and IPv6 -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_unix_sockets_on_both_sides(socket_dir: str, host: Host) -> None:
    with EchoServer(path=os.path.join(socket_dir, "echo.sock")) as server:
        proxy = Proxy(Path(server.address), unix=True)
        async with hosted(proxy, host):
            listening = proxy.address
            assert isinstance(listening, str)
            answers = await asyncio.to_thread(blocking_echo, listening, [b"via unix\n"])
            assert answers == [b"via unix\n"]
            with pytest.raises(RuntimeError, match="Unix socket"):
                proxy.port  # noqa: B018 - a Unix socket has no port
        assert proxy.upstream == server.address
        assert not os.path.exists(os.path.dirname(listening))  # its private directory: gone
        assert proxy.render_transcript().startswith(
            f"proxy 'proxy' to unix socket {server.address} on unix socket {listening}"
        )


@pytest.mark.asyncio
async def test_tls_over_unix_sockets_on_both_sides(socket_dir: str, ca: trustme.CA) -> None:
    path = os.path.join(socket_dir, "tls.sock")
    with EchoServer(path=path, tls=server_context(ca, "localhost")) as server:
        proxy = Proxy(
            server.address,
            unix=os.path.join(socket_dir, "proxy.sock"),
            tls=True,
            upstream_tls=trusting(ca),
            upstream_server_hostname="localhost",
        )
        async with proxy.serve():
            context = proxy.client_ssl_context()
            assert await asyncio_echo(proxy.address, [b"tls\n"], context) == [b"tls\n"]
        assert sorted(os.listdir(socket_dir)) == ["tls.sock"]  # the proxy's socket: removed
        assert [connection for connection, _ in tls_notes(proxy)] == [1, 1]


@pytest.mark.parametrize("upstream_host", ["::1", "[::1]"])
def test_ipv6_on_both_sides(upstream_host: str) -> None:
    with EchoServer(host="::1") as server:
        port = server.address[1]
        proxy = Proxy((upstream_host, port), host="::1")
        with proxy.serve():
            assert proxy.address[0] == "::1"
            assert blocking_echo(proxy.address, [b"six\n"]) == [b"six\n"]
        assert proxy.upstream == ("::1", port)
        assert proxy.render_transcript().startswith(f"proxy 'proxy' to [::1]:{port} on [::1]:")


def test_a_localhost_proxy_serves_ipv4_and_ipv6_clients(plain_echo: EchoServer) -> None:
    proxy = Proxy(plain_echo.address, host="localhost", tls=True)
    with proxy.serve():
        context = proxy.client_ssl_context()
        for host in ("127.0.0.1", "::1"):
            assert blocking_echo((host, proxy.port), [host.encode() + b"\n"], context) == [
                host.encode() + b"\n"
            ]
        ca_file = proxy.ca_path
        assert Path(ca_file).read_bytes() == proxy.ca_pem
    assert not os.path.exists(ca_file)  # removed with its directory at the stop
    assert len(proxy.connections) == 2


# -- wrong combinations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "options", "words"),
    [
        ("localhost:80", {}, "takes a (host, port) tuple"),
        (("127.0.0.1", 0), {}, "port: 1 to 65535"),
        (("127.0.0.1", 80), {"upstream_server_hostname": "a.test"}, "without upstream_tls"),
        (("127.0.0.1", 80), {"upstream_tls": "yes"}, "takes True (verify the server"),
        (
            ("127.0.0.1", 80),
            {"upstream_tls": ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)},
            "takes a client context",
        ),
        ("/tmp/x.sock", {"upstream_tls": True}, "give upstream_server_hostname="),
        (("127.0.0.1", 80), {"upstream_tls": True, "upstream_server_hostname": ""}, "non-empty"),
        (
            ("127.0.0.1", 80),
            {"tls_alpn": ["h2"]},
            "Proxy(tls_alpn=...) applies to a TLS proxy: add tls=True",
        ),
        (("127.0.0.1", 80), {"tls": "yes"}, "Proxy(tls=...) takes True or False"),
        (("127.0.0.1", 80), {"unix": True, "port": 5}, "give unix= or host=/port=, not both"),
        (
            ("127.0.0.1", 80),
            {"transport": "udp"},
            "Proxy(transport='udp'): a proxy relays byte streams (TCP, TLS, Unix sockets), not "
            "datagrams; for a UDP client, serve FakePeer(transport='udp') in the server's "
            "place, with its datagram faults",
        ),
    ],
)
def test_wrong_options_and_combinations(upstream: Any, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ScriptError) as info:
        Proxy(upstream, **options)
    assert words in str(info.value)


def test_a_plain_proxy_has_no_tls_to_give(plain_echo: EchoServer) -> None:
    proxy = Proxy(plain_echo.address)
    with pytest.raises(ScriptError, match=r"this proxy serves plain TCP; Proxy\(tls=True\)"):
        proxy.client_ssl_context()


def test_a_context_that_checks_no_name_needs_none_over_a_unix_socket(
    socket_dir: str, ca: trustme.CA
) -> None:
    path = os.path.join(socket_dir, "tls.sock")
    with EchoServer(path=path, tls=server_context(ca, "localhost")) as server:
        context = trusting(ca)
        context.check_hostname = False  # the chain is still verified
        proxy = Proxy(server.address, upstream_tls=context)
        with proxy.serve():
            assert blocking_echo(proxy.address, [b"ok\n"]) == [b"ok\n"]
        [(_, note)] = tls_notes(proxy)
        assert note.endswith("no sni (upstream)")


def test_the_proxy_fixture_takes_the_transport_options(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:hypothesispytest\n"
    )
    pytester.makepyfile(
        """
        import socket

        import pytest
        from fakepeer import Lines


        @pytest.mark.fakepeer(framing=Lines(), tls=True)
        def test_tls_on_both_sides_over_a_unix_socket(fake_peer, fake_proxy_factory):
            fake_peer.expect(b"PING").reply(b"PONG")
            proxy = fake_proxy_factory(
                fake_peer.address,
                unix=True,
                tls=True,
                tls_alpn=["ping"],
                upstream_tls=fake_peer.client_ssl_context(),
                upstream_server_hostname="localhost",
            )
            context = proxy.client_ssl_context()
            with socket.socket(socket.AF_UNIX) as raw:
                raw.settimeout(5)
                raw.connect(proxy.address)
                with context.wrap_socket(raw, server_hostname="localhost") as sock:
                    assert sock.selected_alpn_protocol() == "ping"
                    sock.sendall(b"PING\\n")
                    assert sock.recv(10) == b"PONG\\n"


        def test_a_wrong_option_names_the_options(fake_proxy_factory):
            fake_proxy_factory(("127.0.0.1", 9), transport="udp")
        """
    )
    result = pytester.runpytest_inprocess("-W", "error", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*unknown fakepeer option(s): transport; the options are: name, host, port, unix, "
            "timeout, seed, external, max_send_buffer, transcript_budget, tls, tls_hostnames, "
            "tls_min_version, tls_max_version, tls_alpn, tls_client_cert, upstream_tls, "
            "upstream_server_hostname"
        ]
    )
