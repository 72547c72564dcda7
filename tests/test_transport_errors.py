"""Where a peer listens, said wrong: each mistake a new user makes is a ScriptError that
names what was given and the spelling that works (issue 14's "clear errors")."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from fakepeer import (
    FakePeer,
    IncompleteMessage,
    Lines,
    Proxy,
    ScriptError,
    UnexpectedData,
    UnmetExpectations,
)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"host": "/tmp/app.sock"},
            "FakePeer(host='/tmp/app.sock'): a host is an address or a name, and this looks "
            "like a path; a Unix domain socket peer is FakePeer(unix='/tmp/app.sock')",
        ),
        (
            {"host": "[::1"},
            "an IPv6 address is written '::1' or '[::1]'",
        ),
        (
            {"host": "localhost:8080"},
            "FakePeer(host='localhost:8080'): cannot resolve it: ",
        ),
        (
            {"host": "localhost:8080"},
            "the port is a keyword of its own: host='localhost', port=8080",
        ),
        (
            {"tls_hostnames": ["example.test"], "tls_alpn": ["h2"]},
            "FakePeer(tls_hostnames=..., tls_alpn=...) applies to a TLS peer: "
            "add tls=True (or tls='starttls')",
        ),
    ],
)
def test_a_wrong_address_names_the_spelling_that_works(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        FakePeer(**options)  # type: ignore[arg-type]
    assert message in str(caught.value)


def _serve(peer: FakePeer, client: Callable[[socket.socket], object]) -> None:
    with peer.serve(), socket.create_connection(peer.address) as sock:
        sock.settimeout(5)
        client(sock)


def _tls_client(sock: socket.socket) -> None:
    with pytest.raises((ssl.SSLError, OSError)):
        ssl.create_default_context().wrap_socket(sock, server_hostname="localhost")


def test_a_tls_client_at_a_plain_peer_is_told_to_serve_tls() -> None:
    peer = FakePeer()
    peer.expect("EHLO client")
    with pytest.raises(UnexpectedData) as caught:
        _serve(peer, _tls_client)
    assert caught.value.diagnosis.endswith(
        "\n  hint:      these bytes look like a TLS ClientHello: the client speaks TLS here; "
        "serve TLS with FakePeer(tls=True), or upgrade the connection with a .start_tls() step"
    )


def test_a_tls_record_cut_short_gets_the_hint_too() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect("EHLO client")
    with pytest.raises(IncompleteMessage) as caught:
        _serve(peer, lambda sock: sock.sendall(b"\x16\x03\x01\x02\x00"))
    assert "hint:      these bytes look like a TLS ClientHello" in caught.value.diagnosis


def test_plain_bytes_get_no_tls_hint() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect("EHLO client")
    with pytest.raises(UnexpectedData) as caught:
        _serve(peer, lambda sock: sock.sendall(b"\x16\x02 HELO\n"))
    assert "hint:" not in caught.value.diagnosis


def test_a_unix_path_too_long_says_the_limit_and_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / ("x" * (120 - len(str(tmp_path))) + ".sock")
    peer = FakePeer(unix=path)
    with pytest.raises(ScriptError) as caught:
        peer.serve().listen()
    message = str(caught.value)
    assert message.startswith(f"FakePeer(unix={str(path)!r}): cannot listen on {path}: ")
    assert message.endswith(
        f" ({len(str(path))} bytes; a Unix socket's path holds at most 107 on Linux, 103 on "
        "macOS: choose a shorter one, or unix=True for a fresh short path)"
    )
    assert list(tmp_path.iterdir()) == []


def _min_above_max() -> None:
    FakePeer(
        tls=True, tls_min_version=ssl.TLSVersion.TLSv1_3, tls_max_version=ssl.TLSVersion.TLSv1_2
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            _min_above_max,
            "FakePeer(tls_min_version=ssl.TLSVersion.TLSv1_3, tls_max_version=ssl.TLSVersion."
            "TLSv1_2): the minimum is above the maximum, so no version is left for a handshake; "
            "swap them",
        ),
        (
            lambda: FakePeer(tls=True, tls_min_version=ssl.TLSVersion.MINIMUM_SUPPORTED),
            "FakePeer(tls_min_version=ssl.TLSVersion.MINIMUM_SUPPORTED): a peer serves "
            "TLSv1_2 or TLSv1_3",
        ),
        (
            lambda: FakePeer(tls=True, tls_max_version=ssl.TLSVersion.TLSv1_1),
            "FakePeer(tls_max_version=ssl.TLSVersion.TLSv1_1): a peer serves TLSv1_2 or "
            "TLSv1_3 (TLS 1.0 and 1.1 are deprecated by RFC 8996 and refused by OpenSSL's "
            "default security level",
        ),
        (
            lambda: FakePeer(tls=True, tls_alpn=["a" * 255] * 300),
            "FakePeer(tls_alpn=...): the protocol names take over 65,535 bytes, more than the "
            "ALPN extension holds (RFC 7301 section 3.1)",
        ),
        (
            lambda: FakePeer(tls=True, tls_alpn=["x" * 300]),
            "FakePeer(tls_alpn=...): a protocol name is 1 to 255 bytes (RFC 7301), and "
            "'xxxxxxxxxxxxxxxxxxxx'... is 300",
        ),
        (
            lambda: FakePeer(max_clients=1),
            "FakePeer(max_clients=1) bounds the client addresses of a UDP peer: add "
            "transport='udp'",
        ),
        (
            lambda: Proxy(("127.0.0.1", 9), tls=True, tls_client_cert=True),
            "Proxy(tls_client_cert=...): a proxy asks its clients for no certificate (no "
            "mutual TLS); to test a client's certificate, serve FakePeer(tls=True, "
            "tls_client_cert=True) in the server's place",
        ),
        (
            lambda: Proxy(("127.0.0.1", 9), tls=True).faults.client_certificate_refused(),  # noqa: PLW0108 - made when the test runs
            "a Proxy asks its clients for none (no mutual TLS)",
        ),
        (
            lambda: Proxy(("127.0.0.1", 9)).faults.drop(),  # noqa: PLW0108 - made when the test runs
            "drop(1) on a Proxy: it is a datagram fault, and a proxy relays byte streams",
        ),
        (
            lambda: Proxy(("127.0.0.1", 9)).faults.reorder(),  # noqa: PLW0108 - made when the test runs
            "on a Proxy: it is a datagram fault",
        ),
        (
            lambda: FakePeer(transport="udp").assert_tls(),
            "assert_tls(): a UDP peer (transport='udp') has no TLS",
        ),
        (
            lambda: FakePeer(tls=True).assert_tls(connection="1"),  # type: ignore[arg-type]
            "assert_tls(connection=...) takes a connection's number (an int, from 1), got '1'",
        ),
    ],
)
def test_what_a_transport_cannot_do_is_a_script_error(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        make()
    assert message in str(caught.value)


def test_a_peer_whose_options_are_wrong_has_a_repr_pytest_can_show() -> None:
    # pytest shows `self` of the frame that raised: the constructor's, half made
    peer = FakePeer.__new__(FakePeer)
    assert repr(peer) == "<FakePeer, not made>"
    proxy = Proxy.__new__(Proxy)
    assert repr(proxy) == "<Proxy, not made>"


def test_the_proxy_fixture_refuses_mutual_tls_with_the_proxys_words(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:hypothesispytest\n"
    )
    pytester.makepyfile(
        """
        def test_mutual(fake_proxy_factory):
            fake_proxy_factory(("127.0.0.1", 9), tls=True, tls_client_cert=True)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Proxy(tls_client_cert=...): a proxy asks its clients for no*"])
    result.stdout.no_fnmatch_line("*raised in repr()*")


def _send_udp(peer: FakePeer, data: bytes) -> None:
    with peer.serve(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(data, peer.address)


def test_a_udp_client_at_a_tcp_peer_is_told_about_transport_udp() -> None:
    peer = FakePeer()
    peer.expect(b"gauge:1|c")
    with pytest.raises(UnmetExpectations) as caught:
        _send_udp(peer, b"gauge:1|c")
    assert caught.value.diagnosis.startswith(
        "1 expectation was not met when the peer stopped (no client ever connected; a UDP "
        "client needs FakePeer(transport='udp')):"
    )


def test_a_udp_peer_nobody_sent_to_says_no_datagram_came() -> None:
    peer = FakePeer(transport="udp")
    peer.expect(b"gauge:1|c")
    with pytest.raises(UnmetExpectations) as caught, peer.serve():
        pass
    assert caught.value.diagnosis.startswith(
        "1 expectation was not met when the peer stopped (no datagram came; a TCP client "
        "needs FakePeer() (transport='tcp')):"
    )
