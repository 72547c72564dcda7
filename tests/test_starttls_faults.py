"""The TLS handshake faults in STARTTLS upgrades (``FakePeer(tls="starttls")``), and mutual
TLS there: real clients (smtplib's ``starttls()``, asyncio's ``writer.start_tls()``) on both
hosts meet each fault with the exact exception a real server would give them, and the
peer's transcript records the failed upgrade with its fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Coroutine

import pytest
import trustme  # noqa: F401 - loaded here, as in tests/test_starttls.py

from fakepeer import ANY, FakePeer, Fault, Lines, ScriptError, faults

HOSTS = ["hub", "in-loop"]


def smtp_peer(**options: object) -> FakePeer:
    """An SMTP server that offers STARTTLS, its rules always there (nothing is left unmet
    by an upgrade that fails)."""
    peer = FakePeer(tls="starttls", framing=Lines(b"\r\n"), **options)  # type: ignore[arg-type]
    peer.on_connect().send("220 mail.test ESMTP")
    # (smtplib sends its commands in lower case, STARTTLS and QUIT aside)
    peer.always(b"ehlo client.test").reply("250-mail.test").send("250 STARTTLS")
    peer.always(b"STARTTLS").reply("220 Ready to start TLS").start_tls()
    peer.always(b"QUIT").reply("221 Bye").close()
    peer.always(ANY).reply("250 OK")
    return peer


def smtp_upgrade(
    peer: FakePeer, context: ssl.SSLContext | None = None, handshake_timeout: float = 5.0
) -> None:
    """smtplib: EHLO, STARTTLS, EHLO and NOOP inside TLS."""
    host, port = peer.address
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.sock is not None
        smtp.sock.settimeout(handshake_timeout)
        smtp.starttls(context=peer.client_ssl_context() if context is None else context)
        smtp.sock.settimeout(5)
        smtp.ehlo()
        assert smtp.noop()[0] == 250


async def asyncio_upgrade(
    peer: FakePeer, context: ssl.SSLContext | None = None, handshake_timeout: float = 5.0
) -> None:
    """asyncio streams: STARTTLS, ``writer.start_tls()``, NOOP inside TLS."""
    host, port = peer.address
    reader, writer = await asyncio.open_connection(host, port)
    upgraded = False
    try:
        assert await reader.readline() == b"220 mail.test ESMTP\r\n"
        writer.write(b"STARTTLS\r\n")
        assert await reader.readline() == b"220 Ready to start TLS\r\n"
        await writer.start_tls(
            peer.client_ssl_context() if context is None else context,
            server_hostname="localhost",
            ssl_handshake_timeout=handshake_timeout,
        )
        upgraded = True
        writer.write(b"NOOP\r\n")
        assert await reader.readline() == b"250 OK\r\n"
    finally:
        writer.close()
        # (after a failed start_tls(), asyncio's wait_closed() never returns: the stream's
        # protocol is never told the connection was lost)
        if upgraded:
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()


def served(hosted: str, peer: FakePeer, client: Callable[[], Coroutine[None, None, None]]) -> None:
    """Run ``client`` against ``peer`` served on the hub or in the client's own loop."""

    async def in_the_loop() -> None:
        async with peer.serve():
            await client()

    if hosted == "hub":
        with peer.serve():
            asyncio.run(client())
    else:
        asyncio.run(in_the_loop())


def tls_notes(peer: FakePeer) -> list[str]:
    return [event.note for event in peer.transcript.events if event.kind == "tls"]


# -- the certificate faults -----------------------------------------------------------------------

# (the fault, what the client sees, the alert smtplib's client sends back)
CERTIFICATE_FAULTS = [
    (
        faults.UntrustedCertificate(),
        "unable to get local issuer certificate",
        "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca",
    ),
    (
        faults.WrongHostname(),
        "certificate is not valid for ",  # smtplib checks the address; asyncio, the name
        "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate",
    ),
    (
        faults.ExpiredCertificate(),
        "certificate has expired",
        "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired",
    ),
]


@pytest.mark.parametrize("hosted", HOSTS)
@pytest.mark.parametrize(("fault", "error", "alert"), CERTIFICATE_FAULTS, ids=str)
def test_a_certificate_fault_fails_smtplibs_starttls(
    fault: Fault, error: str, alert: str, hosted: str
) -> None:
    peer = smtp_peer()
    peer.faults.add(fault)

    async def client() -> None:
        with pytest.raises(ssl.SSLCertVerificationError, match=error):
            await asyncio.to_thread(smtp_upgrade, peer)

    served(hosted, peer, client)
    peer.verify()  # the client's error, not the test's problem
    note = f"upgrade failed: {alert} (the fault {fault})"
    assert tls_notes(peer) == [note]
    assert f"#1 tls        {note}" in str(peer.transcript)
    assert peer.connections[0].tls is None
    assert not peer.connections[0].open


@pytest.mark.parametrize("hosted", HOSTS)
@pytest.mark.parametrize(("fault", "error", "alert"), CERTIFICATE_FAULTS, ids=str)
def test_a_certificate_fault_fails_an_asyncio_start_tls(
    fault: Fault, error: str, alert: str, hosted: str
) -> None:
    peer = smtp_peer()
    peer.faults.add(fault)

    async def client() -> None:
        with pytest.raises(ssl.SSLCertVerificationError, match=error):
            await asyncio_upgrade(peer)

    served(hosted, peer, client)
    peer.verify()
    # asyncio's client aborts without sending its alert: the peer sees the connection reset
    note = f"upgrade failed: ConnectionResetError (the fault {fault})"
    assert tls_notes(peer) == [note]
    assert f"#1 tls        {note}" in str(peer.transcript)


def test_the_fault_removed_the_upgrade_succeeds() -> None:
    peer = smtp_peer()
    with peer.serve():
        with (
            peer.faults.expired_certificate(),
            pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"),
        ):
            smtp_upgrade(peer)
        smtp_upgrade(peer)
    peer.verify()
    first, second = tls_notes(peer)
    assert first.endswith("(the fault expired_certificate())")
    assert second.startswith("upgraded: TLSv1.")
    assert [connection.tls is not None for connection in peer.connections] == [False, True]


# -- mutual TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hosted", HOSTS)
def test_mutual_tls_in_an_upgrade(hosted: str) -> None:
    peer = smtp_peer(tls_client_cert=True)
    assert peer.client_ssl_context().verify_mode == ssl.CERT_REQUIRED

    async def client() -> None:
        await asyncio_upgrade(peer)
        await asyncio.to_thread(smtp_upgrade, peer)

    served(hosted, peer, client)
    peer.verify()
    assert [connection.tls.client_subject for connection in peer.connections if connection.tls] == [
        "fakepeer client",
        "fakepeer client",
    ]
    notes = tls_notes(peer)
    assert notes[0].endswith(", sni 'localhost', client cert 'fakepeer client'")
    assert notes[1].endswith(", no sni, client cert 'fakepeer client'")
    peer.assert_tls(client_subject="fakepeer client")


@pytest.mark.parametrize("hosted", HOSTS)
def test_an_upgrade_without_the_client_certificate_gets_the_alert(hosted: str) -> None:
    peer = smtp_peer(tls_client_cert=True)
    plain = ssl.create_default_context(cadata=peer.ca_pem.decode())

    async def client() -> None:
        # TLS 1.3: the client's handshake ends first; it reads the server's alert
        with pytest.raises(ssl.SSLError, match=r"tlsv13 alert certificate required"):
            await asyncio_upgrade(peer, plain)
        with pytest.raises(
            smtplib.SMTPServerDisconnected,
            match=r"^Connection unexpectedly closed: .*tlsv13 alert certificate required",
        ):
            await asyncio.to_thread(smtp_upgrade, peer, plain)

    served(hosted, peer, client)
    peer.verify()
    note = (
        "upgrade failed: [SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] peer did not return a certificate"
    )
    assert tls_notes(peer) == [note, note]


REFUSED_NOTE = (
    "upgrade failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
    "self-signed certificate in certificate chain (the fault client_certificate_refused())"
)


@pytest.mark.parametrize("hosted", HOSTS)
def test_a_refused_client_certificate_gets_unknown_ca(hosted: str) -> None:
    peer = smtp_peer(tls_client_cert=True)
    peer.faults.client_certificate_refused()

    async def client() -> None:
        with pytest.raises(ssl.SSLError, match=r"^\[SSL: TLSV1_ALERT_UNKNOWN_CA\] tlsv1 alert"):
            await asyncio_upgrade(peer)
        with pytest.raises(
            smtplib.SMTPServerDisconnected,
            match=r"^Connection unexpectedly closed: .*tlsv1 alert unknown ca",
        ):
            await asyncio.to_thread(smtp_upgrade, peer)

    served(hosted, peer, client)
    peer.verify()
    assert tls_notes(peer) == [REFUSED_NOTE, REFUSED_NOTE]
    assert f"#2 tls        {REFUSED_NOTE}" in str(peer.transcript)


def test_a_refused_client_certificate_needs_mutual_tls() -> None:
    with pytest.raises(ScriptError, match=r"client_certificate_refused\(\) refuses the client"):
        FakePeer(tls="starttls").faults.client_certificate_refused()
    FakePeer(tls="starttls", tls_client_cert=True).faults.client_certificate_refused()


# -- the reset and the stall ----------------------------------------------------------------------

RESET_NOTE = "upgrade failed: reset after the ClientHello (the fault handshake_reset())"
STALL_NOTE = "upgrade stalled: the ClientHello read, never answered (the fault handshake_stall())"
STALL_CLOSED = (
    "upgrade failed: the client closed its stalled handshake (the fault handshake_stall())"
)


@pytest.mark.parametrize("hosted", HOSTS)
def test_a_reset_in_the_upgrade(hosted: str) -> None:
    peer = smtp_peer()
    peer.faults.handshake_reset()

    async def client() -> None:
        with pytest.raises(ConnectionResetError):
            await asyncio_upgrade(peer)
        with pytest.raises(ConnectionResetError):
            await asyncio.to_thread(smtp_upgrade, peer)

    served(hosted, peer, client)
    peer.verify()
    assert tls_notes(peer) == [RESET_NOTE, RESET_NOTE]
    assert f"#1 tls        {RESET_NOTE}" in str(peer.transcript)
    assert not any(connection.open for connection in peer.connections)


@pytest.mark.parametrize("hosted", HOSTS)
def test_a_stall_in_the_upgrade_times_the_clients_out(hosted: str) -> None:
    peer = smtp_peer(timeout=30)  # the peer's own bound plays no part

    async def client() -> None:
        peer.faults.handshake_stall()
        with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
            await asyncio_upgrade(peer, handshake_timeout=0.2)
        with pytest.raises(TimeoutError, match="handshake operation timed out"):
            await asyncio.to_thread(smtp_upgrade, peer, None, 0.2)

    served(hosted, peer, client)
    peer.verify()
    # each client closed its stalled handshake: the peer saw it (at the latest, at its stop)
    notes = tls_notes(peer)
    assert sorted(notes) == sorted([STALL_NOTE, STALL_CLOSED, STALL_NOTE, STALL_CLOSED])
    assert f"#1 tls        {STALL_NOTE}" in str(peer.transcript)


def client_hello(peer: FakePeer) -> bytes:
    """The first flight of a TLS client: its ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = peer.client_ssl_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def stalled(peer: FakePeer) -> bool:
    return STALL_NOTE in tls_notes(peer)


def test_the_stop_ends_a_stalled_upgrade_on_the_hub() -> None:
    peer = smtp_peer(timeout=30)
    peer.faults.handshake_stall()
    with peer.serve():
        stuck = socket.create_connection(peer.address, timeout=5)
        reader = stuck.makefile("rb")
        assert reader.readline() == b"220 mail.test ESMTP\r\n"
        stuck.sendall(b"STARTTLS\r\n")
        assert reader.readline() == b"220 Ready to start TLS\r\n"
        stuck.sendall(client_hello(peer))  # and never closes: the stop ends its handshake
        assert peer._waiters.wait(lambda: stalled(peer), 5)
        began = time.monotonic()
    assert time.monotonic() - began < 3
    assert stuck.recv(100) == b""  # the peer closed it
    reader.close()
    stuck.close()
    peer.verify()
    assert tls_notes(peer) == [STALL_NOTE]
    assert str(peer.transcript).endswith(
        f"#1 tls        {STALL_NOTE}\n  #1 closed     (the peer stopped)"
    )


@pytest.mark.asyncio
async def test_the_stop_ends_a_stalled_upgrade_in_the_loop() -> None:
    peer = smtp_peer(timeout=30)
    peer.faults.handshake_stall()
    async with peer.serve():
        upgrade = asyncio.create_task(asyncio_upgrade(peer, handshake_timeout=30))
        assert await peer._waiters.wait_async(lambda: stalled(peer), 5)
        began = time.monotonic()
    assert time.monotonic() - began < 3
    with pytest.raises(ConnectionResetError):  # the peer dropped the connection
        await upgrade
    peer.verify()
    assert tls_notes(peer) == [STALL_NOTE]


def test_in_a_uvloop_loop() -> None:
    import uvloop  # noqa: PLC0415 - as tests/test_uvloop.py, where it runs

    peer = smtp_peer(tls_client_cert=True)

    async def main() -> None:
        async with peer.serve():
            with peer.faults.handshake_reset(), pytest.raises(ConnectionResetError):
                await asyncio_upgrade(peer)
            with (
                peer.faults.expired_certificate(),
                pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"),
            ):
                await asyncio_upgrade(peer)
            with (
                peer.faults.client_certificate_refused(),
                pytest.raises(ssl.SSLError, match="tlsv1 alert unknown ca"),
            ):
                await asyncio_upgrade(peer)
            await asyncio_upgrade(peer)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    peer.verify()
    notes = tls_notes(peer)
    assert notes[0] == RESET_NOTE
    assert notes[1].endswith("(the fault expired_certificate())")
    assert notes[2] == REFUSED_NOTE
    assert notes[3].endswith("client cert 'fakepeer client'")


# -- the draws ------------------------------------------------------------------------------------


async def outcomes(peer: FakePeer, count: int, plain_between: bool) -> list[bool]:
    """``count`` upgrades: which of them succeeded; with ``plain_between``, a connection that
    never upgrades between each two (it draws nothing)."""
    results = []
    host, port = peer.address
    for _ in range(count):
        try:
            await asyncio_upgrade(peer)
            results.append(True)
        except ConnectionResetError:
            results.append(False)
        if plain_between:
            reader, writer = await asyncio.open_connection(host, port)
            assert await reader.readline() == b"220 mail.test ESMTP\r\n"
            writer.close()
            await writer.wait_closed()
    return results


@pytest.mark.parametrize("hosted", HOSTS)
def test_the_probability_is_drawn_for_each_upgrade_from_the_seed(hosted: str) -> None:
    runs = []
    for plain_between in (False, True):
        peer = smtp_peer(seed=11)
        peer.faults.handshake_reset(probability=0.5)
        run: list[bool] = []

        async def client(
            peer: FakePeer = peer, run: list[bool] = run, plain: bool = plain_between
        ) -> None:
            run.extend(await outcomes(peer, 16, plain))

        served(hosted, peer, client)
        peer.verify()
        runs.append(run)
        reset = RESET_NOTE.replace("reset()", "reset(probability=0.5)")
        assert tls_notes(peer).count(reset) == run.count(False)
    assert runs[0] == runs[1]  # the same seed replays the same draws: one per upgrade
    assert 0 < sum(runs[0]) < 16


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["handshake_reset", "handshake_stall"])
def test_many_interrupted_upgrades_leak_nothing_and_never_hang(kind: str) -> None:
    rounds = 100
    peer = smtp_peer(timeout=30)
    stall = kind == "handshake_stall"
    context = peer.client_ssl_context()

    def upgrade() -> None:
        with socket.create_connection(peer.address, timeout=5) as raw:
            reader = raw.makefile("rb")
            assert reader.readline() == b"220 mail.test ESMTP\r\n"
            raw.sendall(b"STARTTLS\r\n")
            assert reader.readline() == b"220 Ready to start TLS\r\n"
            reader.close()
            raw.settimeout(0.01 if stall else 5)
            with pytest.raises(TimeoutError if stall else ConnectionResetError):
                context.wrap_socket(raw, server_hostname="localhost")

    with peer.serve():
        smtp_upgrade(peer)  # the hub's loop and the peer's first connection, before counting
        before = open_fds()
        getattr(peer.faults, kind)()
        for _ in range(rounds):
            upgrade()
        began = time.monotonic()
    assert time.monotonic() - began < 5  # the stop did not wait for the stalled ones
    assert open_fds() <= before
    peer.verify()
    assert len(peer.connections) == rounds + 1
    assert not any(connection.open for connection in peer.connections)
    notes = tls_notes(peer)
    failed = [note for note in notes if note.startswith("upgrade failed")]
    assert len(failed) <= rounds  # (a stalled one the stop ended says no more)
    assert notes.count(STALL_NOTE if stall else RESET_NOTE) == rounds
