"""Mutual TLS (``tls_client_cert=True``) and the TLS handshake faults, with real clients.

Blocking ``ssl`` sockets, asyncio clients on both hosts (and uvloop), ``smtplib.SMTP_SSL``
and redis-py meet each fault and see what a real server would give them: the exact
exception, and the peer's transcript records the failed handshake with its fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from fakepeer import ANY, FakePeer, Fault, Lines, ScriptError, faults


def peer_of(**options: object) -> FakePeer:
    peer = FakePeer(tls=True, framing=Lines(), **options)  # type: ignore[arg-type]
    peer.always(b"ping").reply(b"pong")
    return peer


def tls_notes(peer: FakePeer) -> list[tuple[int, str]]:
    """The ``tls`` events: (the connection, 0 for the peer's own; the note)."""
    return [(e.connection, e.note) for e in peer.transcript.events if e.kind == "tls"]


def ping(
    peer: FakePeer,
    context: ssl.SSLContext | None = None,
    name: str = "localhost",
    timeout: float = 5.0,
) -> bytes:
    """A blocking TLS client: ``ping``, and the answer."""
    context = peer.client_ssl_context() if context is None else context
    with (
        socket.create_connection(peer.address, timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=name) as sock,
    ):
        sock.sendall(b"ping\n")
        return sock.recv(100)


async def aping(peer: FakePeer, context: ssl.SSLContext | None = None) -> bytes:
    """An asyncio TLS client: ``ping``, and the answer."""
    host, port = peer.address
    context = peer.client_ssl_context() if context is None else context
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="localhost"
    )
    try:
        writer.write(b"ping\n")
        return await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


def client_hello(peer: FakePeer) -> bytes:
    """The first flight of a TLS client: its ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = peer.client_ssl_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- mutual TLS -----------------------------------------------------------------------------------


def test_mutual_tls_with_a_blocking_client_names_its_certificate() -> None:
    peer = peer_of(tls_client_cert=True)
    with peer.serve():
        assert ping(peer) == b"pong\n"
        # the same certificate as files, for clients that take certfile=/keyfile=
        context = ssl.create_default_context(cafile=peer.ca_path)
        context.load_cert_chain(certfile=peer.client_cert_path, keyfile=peer.client_key_path)
        assert ping(peer, context) == b"pong\n"
        with open(peer.client_cert_path, "rb") as cert, open(peer.client_key_path, "rb") as key:
            assert (cert.read(), key.read()) == (peer.client_cert_pem, peer.client_key_pem)
        paths = [peer.ca_path, peer.client_cert_path, peer.client_key_path]
    peer.verify()
    assert peer.client_cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in peer.client_key_pem
    assert not any(os.path.exists(path) for path in paths)  # removed at the stop
    with pytest.raises(
        ScriptError, match=r"^client_key_path: the file was removed .*client_key_pem"
    ):
        _ = peer.client_key_path
    [(one, first), (two, second)] = tls_notes(peer)
    assert (one, two) == (1, 2)
    assert first.endswith(", sni 'localhost', client cert 'fakepeer client'")
    assert second.endswith(", client cert 'fakepeer client'")
    assert "#1 tls        TLSv1.3" in str(peer.transcript)


@pytest.mark.asyncio
async def test_mutual_tls_with_asyncio_clients_on_both_hosts() -> None:
    in_the_loop, on_the_hub = peer_of(tls_client_cert=True), peer_of(tls_client_cert=True)
    async with in_the_loop.serve():
        assert await aping(in_the_loop) == b"pong\n"
    with on_the_hub.serve():
        assert await aping(on_the_hub) == b"pong\n"
    for peer in (in_the_loop, on_the_hub):
        peer.verify()
        [(_, note)] = tls_notes(peer)
        assert note.endswith("sni 'localhost', client cert 'fakepeer client'")


def test_mutual_tls_with_smtp_ssl() -> None:
    peer = FakePeer(tls=True, tls_client_cert=True, framing=Lines())
    peer.on_connect().send(b"220 fake ESMTP")
    peer.expect(ANY).reply(b"250 fake")
    peer.expect(b"QUIT\r").reply(b"221 bye")
    with peer.serve():
        host, port = peer.address
        with smtplib.SMTP_SSL(host, port, context=peer.client_ssl_context(), timeout=5) as smtp:
            assert smtp.ehlo()[0] == 250
    peer.verify()
    [(_, note)] = tls_notes(peer)
    assert note.endswith("no sni, client cert 'fakepeer client'")


def test_mutual_tls_with_redis_py() -> None:
    import redis  # noqa: PLC0415 - a real client, installed in every venv of this project

    peer = FakePeer(tls=True, tls_client_cert=True, framing=Lines(b"\r\n"))
    peer.always(b"PING").reply(b"+PONG")
    peer.always(ANY)  # the rest of RESP's lines: "*1", "$4"
    with peer.serve():
        client = redis.Redis(
            host="localhost",
            port=peer.port,
            ssl=True,
            ssl_ca_certs=peer.ca_path,
            ssl_certfile=peer.client_cert_path,
            ssl_keyfile=peer.client_key_path,
            protocol=2,  # RESP2: no HELLO 3
            driver_info=None,  # no CLIENT SETINFO
            socket_timeout=5,
        )
        try:
            assert client.ping() is True
        finally:
            client.close()
    peer.verify()
    [(_, note)] = tls_notes(peer)
    assert note.endswith("sni 'localhost', client cert 'fakepeer client'")


def test_a_client_without_a_certificate_gets_the_alert_a_real_server_sends() -> None:
    peer = peer_of(tls_client_cert=True)
    with peer.serve():
        plain = ssl.create_default_context(cadata=peer.ca_pem.decode())
        # TLS 1.3: the client's handshake ends first; it reads the server's alert
        with pytest.raises(ssl.SSLError, match="tlsv13 alert certificate required"):
            ping(peer, plain)
        assert ping(peer) == b"pong\n"
    peer.verify()  # not a problem of the test by itself
    assert tls_notes(peer)[0] == (
        0,
        "handshake failed: [SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] peer did not return a "
        "certificate",
    )


def test_mutual_tls_options_and_their_errors() -> None:
    with pytest.raises(ScriptError, match=r"tls_client_cert=\.\.\.\) takes True or False"):
        FakePeer(tls=True, tls_client_cert="yes")  # type: ignore[arg-type]
    with pytest.raises(
        ScriptError,
        match=r"^FakePeer\(tls_client_cert=\.\.\.\) applies to a TLS peer: "
        r"add tls=True \(or tls='starttls'\)$",
    ):
        FakePeer(tls_client_cert=True)
    peer = FakePeer(tls=True)
    with pytest.raises(ScriptError, match=r"^client_cert_pem: this peer asks for no client"):
        _ = peer.client_cert_pem
    with pytest.raises(ScriptError, match=r"^client_key_path: .*tls_client_cert=True"):
        _ = peer.client_key_path
    with pytest.raises(ScriptError, match=r"^client_cert_path: this peer serves plain TCP"):
        _ = FakePeer().client_cert_path


# -- the handshake faults ------------------------------------------------------------------------

CERTIFICATE_FAULTS = [
    (
        faults.UntrustedCertificate(),
        "unable to get local issuer certificate",
        "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca",
    ),
    (
        faults.WrongHostname(),
        "Hostname mismatch, certificate is not valid for 'localhost'",
        "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate",
    ),
    (
        faults.ExpiredCertificate(),
        "certificate has expired",
        "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired",
    ),
]


@pytest.mark.parametrize(("fault", "error", "alert"), CERTIFICATE_FAULTS, ids=str)
def test_a_certificate_fault_fails_the_clients_verification(
    fault: Fault, error: str, alert: str
) -> None:
    peer = peer_of()
    with peer.serve():
        active = peer.faults.add(fault)
        with pytest.raises(ssl.SSLCertVerificationError, match=error):
            ping(peer)
        active.remove()
        assert ping(peer) == b"pong\n"
    peer.verify()
    assert tls_notes(peer)[0] == (0, f"handshake failed: {alert} (the fault {fault})")
    assert f"fault      + {fault}" in str(peer.transcript)


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "error", "alert"), CERTIFICATE_FAULTS, ids=str)
async def test_a_certificate_fault_with_an_asyncio_client_in_the_loop(
    fault: Fault, error: str, alert: str
) -> None:
    peer = peer_of()
    async with peer.serve():
        with peer.faults.add(fault), pytest.raises(ssl.SSLCertVerificationError, match=error):
            await aping(peer)
        assert await aping(peer) == b"pong\n"
    # asyncio's client aborts without sending its alert: the peer sees the connection reset
    assert alert not in str(peer.transcript)
    assert tls_notes(peer)[0] == (0, f"handshake failed: ConnectionResetError (the fault {fault})")


def test_a_refused_client_certificate_gets_unknown_ca() -> None:
    peer = peer_of(tls_client_cert=True)
    with peer.serve():
        peer.faults.client_certificate_refused()
        with pytest.raises(ssl.SSLError, match=r"tlsv1 alert unknown ca"):
            ping(peer)
    assert tls_notes(peer) == [
        (
            0,
            "handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "self-signed certificate in certificate chain "
            "(the fault client_certificate_refused())",
        )
    ]


RESET_NOTE = "handshake reset after the ClientHello (the fault handshake_reset())"
STALL_NOTE = "handshake stalled: the ClientHello read, never answered (handshake_stall())"


def test_a_reset_in_the_handshake_with_a_blocking_client() -> None:
    peer = peer_of()
    with peer.serve():
        with peer.faults.handshake_reset(), pytest.raises(ConnectionResetError):
            ping(peer)
        assert ping(peer) == b"pong\n"
    peer.verify()
    assert tls_notes(peer)[0] == (0, RESET_NOTE)


@pytest.mark.asyncio
async def test_a_reset_in_the_handshake_with_asyncio_clients_on_both_hosts() -> None:
    in_the_loop, on_the_hub = peer_of(), peer_of()
    for peer in (in_the_loop, on_the_hub):
        peer.faults.handshake_reset()
    async with in_the_loop.serve():
        with pytest.raises(ConnectionResetError):
            await aping(in_the_loop)
    with on_the_hub.serve(), pytest.raises(ConnectionResetError):
        await aping(on_the_hub)
    for peer in (in_the_loop, on_the_hub):
        assert tls_notes(peer) == [(0, RESET_NOTE)]


def test_a_stall_in_the_handshake_times_the_client_out_and_ends_at_the_stop() -> None:
    peer = peer_of(timeout=30)  # the peer's own bound plays no part
    with peer.serve():
        peer.faults.handshake_stall()
        with socket.create_connection(peer.address, timeout=5) as raw:
            raw.settimeout(0.2)
            with pytest.raises(TimeoutError, match="handshake operation timed out"):
                peer.client_ssl_context().wrap_socket(raw, server_hostname="localhost")
        stuck = socket.create_connection(peer.address, timeout=5)  # and stays connected:
        stuck.sendall(client_hello(peer))  # ssl closes the socket of a failed handshake
        began = time.monotonic()  # the stop ends its stalled handshake
    assert time.monotonic() - began < 3
    assert stuck.recv(100) == b""  # the peer closed it
    stuck.close()
    peer.verify()
    assert tls_notes(peer) == [
        (0, STALL_NOTE),
        (0, "the client closed its stalled handshake"),
        (0, STALL_NOTE),
    ]


@pytest.mark.asyncio
async def test_a_stall_with_an_asyncio_client_in_the_loop() -> None:
    peer = peer_of()
    peer.faults.handshake_stall()
    async with peer.serve():
        host, port = peer.address
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await asyncio.open_connection(
                    host, port, ssl=peer.client_ssl_context(), server_hostname="localhost"
                )
    assert tls_notes(peer)[0] == (0, STALL_NOTE)


def test_in_a_uvloop_loop() -> None:
    import uvloop  # noqa: PLC0415 - as tests/test_uvloop.py, where it runs

    peer = peer_of(tls_client_cert=True)

    async def main() -> None:
        async with peer.serve():
            with peer.faults.handshake_reset(), pytest.raises(ConnectionResetError):
                await aping(peer)
            plain = ssl.create_default_context(cadata=peer.ca_pem.decode())
            with pytest.raises(ssl.SSLError, match="tlsv13 alert certificate required"):
                await aping(peer, plain)
            with peer.faults.expired_certificate(), pytest.raises(ssl.SSLCertVerificationError):
                await aping(peer)
            assert await aping(peer) == b"pong\n"

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    notes = [note for _, note in tls_notes(peer)]
    assert notes[0] == RESET_NOTE
    assert "peer did not return a certificate" in notes[1]
    assert notes[2].endswith("(the fault expired_certificate())")
    assert notes[3].endswith("client cert 'fakepeer client'")


def outcomes(peer: FakePeer, count: int) -> Iterator[bool]:
    for _ in range(count):
        try:
            yield ping(peer) == b"pong\n"
        except ConnectionResetError:
            yield False


def test_the_probability_is_drawn_for_each_handshake_from_the_seed() -> None:
    runs = []
    for _ in range(2):
        peer = peer_of(seed=11)
        with peer.serve():
            peer.faults.handshake_reset(probability=0.5)
            runs.append(list(outcomes(peer, 16)))
    assert runs[0] == runs[1]  # the same seed replays the same draws
    assert 0 < sum(runs[0]) < 16


def test_a_handshake_fault_on_a_peer_that_does_not_serve_it_is_a_script_error() -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer().faults.expired_certificate()
    assert str(info.value) == (
        "peer.faults: expired_certificate() is a TLS handshake fault, and this FakePeer "
        "serves plain TCP: FakePeer(tls=True) serves TLS"
    )
    with pytest.raises(ScriptError, match=r"client_certificate_refused\(\) refuses the client"):
        FakePeer(tls=True).faults.client_certificate_refused()
    with pytest.raises(ScriptError, match=r"acts on the connection or the server"):
        FakePeer(tls=True).expect(b"x").fault(faults.handshake_stall())


@pytest.mark.parametrize("kind", ["handshake_reset", "handshake_stall"])
def test_many_interrupted_handshakes_leak_nothing_and_never_hang(kind: str) -> None:
    peer = peer_of(timeout=30)
    before = open_fds()
    with peer.serve():
        getattr(peer.faults, kind)()
        context = peer.client_ssl_context()
        for _ in range(200):
            with socket.create_connection(peer.address, timeout=5) as raw:
                raw.settimeout(0.01 if kind == "handshake_stall" else 5)
                with pytest.raises((ConnectionResetError, TimeoutError)):
                    context.wrap_socket(raw, server_hostname="localhost")
        began = time.monotonic()
    assert time.monotonic() - began < 5  # the stop did not wait for the stalled ones
    peer.verify()
    assert open_fds() <= before + 2  # the loop's own may come and go; 200 sockets would not
    notes = [note for _, note in tls_notes(peer)]
    expected = RESET_NOTE if kind == "handshake_reset" else STALL_NOTE
    assert notes.count(expected) == 200
