"""``FakePeer(tls=True)``: TLS with a certificate made for the test, real clients on loopback.

Blocking and asyncio clients on both hosts (the hub, ``with``; the test's loop, ``async
with``; uvloop too), the standard library's own TLS clients, a client that does not trust
the CA (its own error; the transcript records the failed handshake), the options (host
names, versions, ALPN), the CA file's life and the error when trustme is missing.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fakepeer import ANY, FakePeer, Lines, ScriptError


def greeting_peer(**options: object) -> FakePeer:
    peer = FakePeer(tls=True, framing=Lines(), **options)  # type: ignore[arg-type]
    peer.on_connect().send(b"hello")
    peer.expect(b"ping").reply(b"pong")
    return peer


def tls_events(peer: FakePeer) -> list[tuple[int, str]]:
    """The ``tls`` events: (the connection, 0 for the peer's own; the note)."""
    return [
        (event.connection, event.note) for event in peer.transcript.events if event.kind == "tls"
    ]


def blocking_talk(peer: FakePeer, context: ssl.SSLContext, name: str = "localhost") -> bytes:
    with (
        socket.create_connection(peer.address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as sock,
    ):
        reader = sock.makefile("rb")
        assert reader.readline() == b"hello\n"
        sock.sendall(b"ping\n")
        line = reader.readline()
        reader.close()
        return line


async def asyncio_talk(peer: FakePeer) -> None:
    host, port = peer.address
    reader, writer = await asyncio.open_connection(
        host, port, ssl=peer.client_ssl_context(), server_hostname="localhost"
    )
    assert await reader.readline() == b"hello\n"
    writer.write(b"ping\n")
    assert await reader.readline() == b"pong\n"
    writer.close()
    await writer.wait_closed()


def check_served(peer: FakePeer) -> None:
    peer.verify()
    [(connection, note)] = tls_events(peer)
    assert connection == 1
    assert note.startswith("TLSv1.3, ")
    assert note.endswith(", sni 'localhost'")
    kinds = [event.kind for event in peer.transcript.events if event.connection == 1]
    assert kinds[:3] == ["connected", "tls", "sent"]


def test_a_blocking_client_on_the_hub() -> None:
    peer = greeting_peer()
    with peer.serve():
        assert blocking_talk(peer, peer.client_ssl_context()) == b"pong\n"
    check_served(peer)


@pytest.mark.asyncio
async def test_an_asyncio_client_in_the_loop() -> None:
    peer = greeting_peer()
    async with peer.serve():
        await asyncio_talk(peer)
    check_served(peer)


@pytest.mark.asyncio
async def test_an_asyncio_client_of_a_peer_on_the_hub() -> None:
    peer = greeting_peer()
    with peer.serve():
        await asyncio_talk(peer)
    check_served(peer)


def test_in_a_uvloop_loop() -> None:
    import uvloop  # noqa: PLC0415 - as tests/test_uvloop.py, where it runs

    peer = greeting_peer()

    async def main() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with peer.serve():
            await asyncio_talk(peer)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    check_served(peer)


def test_smtp_ssl_checks_the_certificate_of_the_ip_address() -> None:
    peer = FakePeer(tls=True, framing=Lines())
    peer.on_connect().send(b"220 fake ESMTP")
    peer.expect(ANY).reply(b"250 fake")
    peer.expect(b"QUIT\r").reply(b"221 bye")
    with peer.serve():
        host, port = peer.address
        with smtplib.SMTP_SSL(host, port, context=peer.client_ssl_context(), timeout=5) as smtp:
            assert smtp.ehlo()[0] == 250
    peer.verify()
    [(_, note)] = tls_events(peer)
    assert "no sni" in note  # a client does not send an IP address as the server's name


def test_a_client_that_does_not_trust_the_ca_fails_and_the_handshake_is_recorded() -> None:
    peer = greeting_peer()
    with peer.serve():
        with pytest.raises(ssl.SSLCertVerificationError):
            blocking_talk(peer, ssl.create_default_context())
        assert blocking_talk(peer, peer.client_ssl_context()) == b"pong\n"
    peer.verify()  # not a problem of the test by itself
    failed, served = tls_events(peer)
    assert failed == (0, "handshake failed: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    assert served[0] == 1  # the failed client is no connection of the script
    assert "tls        handshake failed" in str(peer.transcript)
    assert "#1 tls" in str(peer.transcript)


def test_the_ca_file_serves_a_cafile_client_and_is_removed_at_stop() -> None:
    peer = greeting_peer()
    with peer.serve():
        path = peer.ca_path
        assert peer.ca_path == path
        with open(path, "rb") as file:
            assert file.read() == peer.ca_pem
        assert peer.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
        assert blocking_talk(peer, ssl.create_default_context(cafile=path)) == b"pong\n"
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))
    with pytest.raises(ScriptError, match="removed when the peer stopped"):
        _ = peer.ca_path
    peer.verify()


def test_host_names_alpn_and_versions() -> None:
    peer = greeting_peer(
        tls_hostnames=["fake.example"],
        tls_alpn=["h2", "http/1.1"],
        tls_max_version=ssl.TLSVersion.TLSv1_2,
    )
    with peer.serve():
        context = peer.client_ssl_context()
        assert blocking_talk(peer, context, "fake.example") == b"pong\n"
        with pytest.raises(ssl.SSLCertVerificationError):  # not a name of the certificate
            blocking_talk(peer, peer.client_ssl_context(), "localhost")
    [(first, note), (second, failed)] = tls_events(peer)
    assert (first, second) == (1, 0)
    assert (
        failed == "handshake failed: [SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"
    )
    assert note.startswith("TLSv1.2, ")
    assert note.endswith(", sni 'fake.example', alpn 'h2'")


def test_a_minimum_version_refuses_older_clients() -> None:
    peer = FakePeer(tls=True, tls_min_version=ssl.TLSVersion.TLSv1_3)
    with peer.serve():
        old = peer.client_ssl_context()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            blocking_talk(peer, old)
    [(connection, note)] = tls_events(peer)
    assert connection == 0
    assert note.startswith("handshake failed: ")
    assert peer.connections == []


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (
            {"tls_alpn": ["h2"]},
            r"FakePeer\(tls_alpn=\.\.\.\) applies to a TLS peer: "
            r"add tls=True \(or tls='starttls'\)",
        ),
        ({"tls": True, "tls_alpn": "h2"}, "list of protocol names"),
        ({"tls": True, "tls_alpn": []}, "non-empty list"),
        ({"tls": True, "tls_hostnames": "localhost"}, "list of host names"),
        ({"tls": True, "tls_min_version": "1.2"}, "ssl.TLSVersion"),
        ({"tls": "yes"}, "takes True, False or 'starttls'"),
    ],
)
def test_wrong_options(options: dict[str, object], words: str) -> None:
    with pytest.raises(ScriptError, match=words):
        FakePeer(**options)  # type: ignore[arg-type]


def test_plain_peers_have_no_tls_to_give() -> None:
    peer = FakePeer()
    with pytest.raises(ScriptError, match=r"plain TCP; FakePeer\(tls=True\)"):
        peer.client_ssl_context()
    with pytest.raises(ScriptError, match="plain TCP"):
        _ = peer.ca_pem


def test_without_trustme_the_error_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["trustme"] = None  # importing it raises ImportError
        from fakepeer import FakePeer, ScriptError
        try:
            FakePeer(tls=True)
        except ScriptError as error:
            print(error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == (
        "FakePeer(tls=True) makes the test's certificates with trustme, which is not "
        "installed: pip install 'fakepeer[tls]'"
    )


# -- a stop with handshakes going on ---------------------------------------------------------


def test_a_client_silent_in_its_handshake_holds_the_stop_for_a_second_at_most() -> None:
    # A pool that connects ahead, or a probe: a TCP connection, no ClientHello ever.
    peer = FakePeer(framing=Lines(), tls=True)
    serving = peer.serve()
    with serving:
        silent = socket.create_connection(peer.address)
        stopped_at = time.monotonic()
    took = time.monotonic() - stopped_at
    with silent:
        assert 0.9 <= took < 2.5  # the stop's own bound (1 s), not the peer's timeout (5 s)
        assert tls_events(peer) == [(0, "a handshake cut off: the peer stopped before it ended")]
        silent.settimeout(5)
        assert silent.recv(10) == b""  # the peer let go of it


@pytest.mark.asyncio
async def test_a_silent_handshake_in_the_loop_holds_the_stop_for_a_second_at_most() -> None:
    peer = FakePeer(framing=Lines(), tls=True)
    async with peer.serve():
        _, writer = await asyncio.open_connection(*peer.address)
        stopped_at = time.monotonic()
    took = time.monotonic() - stopped_at
    writer.close()
    assert 0.9 <= took < 2.5
    assert tls_events(peer) == [(0, "a handshake cut off: the peer stopped before it ended")]


def test_a_message_sent_right_after_the_handshake_is_judged_by_a_stop_at_once() -> None:
    # The stop begins the moment the handshake is over (the connection counted): the
    # client's first message, sent once its handshake returned, is waited for. A race, x100.
    for _ in range(100):
        peer = FakePeer(framing=Lines(), tls=True)
        peer.always(b"ping").reply(b"pong")
        context = peer.client_ssl_context()
        replies: list[bytes] = []

        def client(
            peer: FakePeer = peer, replies: list[bytes] = replies, context: ssl.SSLContext = context
        ) -> None:
            with (
                socket.create_connection(peer.address, timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as sock,
            ):
                sock.sendall(b"ping\n")
                replies.append(sock.recv(10))

        thread = threading.Thread(target=client)
        with peer.serve():
            thread.start()
            peer.wait_for_connections(1)
        thread.join(5)
        assert (peer.received, replies) == ([b"ping"], [b"pong\n"])
