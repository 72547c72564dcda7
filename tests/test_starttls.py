"""STARTTLS (``FakePeer(tls="starttls")`` and ``.start_tls()``), ``connection.tls`` and
``peer.assert_tls()``: real clients on loopback (smtplib, asyncio streams, trio) on both
hosts, the faults (plain text before the handshake, a client that does not trust the CA)
and the script's errors.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
import ssl

import pytest
import trio
import trustme  # noqa: F401 - loaded here: an in-process pytester run that loads it first unloads it after, and trustme breaks

from fakepeer import (
    ANY,
    ConversationError,
    FakePeer,
    Lines,
    ScriptError,
    TLSInfo,
    UnexpectedData,
    UnmetExpectations,
)


def smtp_peer() -> FakePeer:
    peer = FakePeer(tls="starttls", framing=Lines(b"\r\n"), name="smtp")
    peer.on_connect().send("220 mail.test ESMTP")
    # (smtplib sends its commands in lower case, STARTTLS and QUIT aside)
    peer.expect(b"ehlo client.test").reply("250-mail.test").send("250 STARTTLS")
    peer.expect(b"STARTTLS").reply("220 Ready to start TLS").start_tls()
    peer.expect(b"ehlo client.test").reply("250-mail.test").send("250 HELP")
    # (mail FROM: up to Python 3.12, mail from: since 3.13)
    peer.expect(re.compile(rb"mail (FROM|from):<a@client\.test>")).reply("250 OK")
    peer.expect(re.compile(rb"rcpt (TO|to):<b@mail\.test>")).reply("250 OK")
    peer.expect(b"data").reply("354 Go ahead")
    peer.expect(b"Subject: hi")
    peer.expect(b"")
    peer.expect(b"hello")
    peer.expect(b".").reply("250 Queued")
    peer.expect(b"QUIT").reply("221 Bye").close()
    return peer


def send_mail(peer: FakePeer) -> None:
    host, port = peer.address
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=5) as smtp:
        smtp.ehlo()
        smtp.starttls(context=peer.client_ssl_context())
        smtp.ehlo()
        smtp.sendmail("a@client.test", ["b@mail.test"], "Subject: hi\r\n\r\nhello\r\n")


def tls_notes(peer: FakePeer) -> list[str]:
    return [event.note for event in peer.transcript.events if event.kind == "tls"]


def test_smtplib_starttls_on_the_hub() -> None:
    peer = smtp_peer()
    with peer.serve():
        send_mail(peer)
        peer.wait_until_done()
    (connection,) = peer.connections
    info = connection.tls
    assert isinstance(info, TLSInfo)
    assert info.starttls
    assert info.version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert info.sni is None  # smtplib connects to 127.0.0.1: no name to send
    assert info.client_subject is None
    (note,) = tls_notes(peer)
    assert note.startswith("upgraded: TLSv1.")
    assert note.endswith(", no sni")
    kinds = [event.kind for event in peer.transcript.events]
    tls_at = kinds.index("tls")
    assert kinds[tls_at - 1] == "sent"  # the 220 reply goes out in plain text, then TLS
    # what came inside TLS is in the transcript in plain text
    assert b"mail from:<a@client.test>" in [message.lower() for message in peer.received]
    peer.assert_tls(version=info.version, connection=1)
    peer.assert_received_in_order(b"STARTTLS", b"ehlo client.test", b"QUIT")


@pytest.mark.asyncio
async def test_smtplib_starttls_in_the_running_loop() -> None:
    peer = smtp_peer()
    async with peer.serve():
        await asyncio.to_thread(send_mail, peer)
        await peer.wait_until_done_async()
    assert tls_notes(peer)[0].startswith("upgraded: ")
    assert peer.connections[0].tls is not None


def lines_peer(**options: object) -> FakePeer:
    peer = FakePeer(tls="starttls", framing=Lines(), **options)  # type: ignore[arg-type]
    peer.expect(b"PLAIN").reply(b"ok")
    peer.expect(b"STARTTLS").reply(b"go").start_tls()
    peer.expect(b"SECRET").reply(b"kept")
    return peer


async def asyncio_upgrade(peer: FakePeer, name: str = "localhost") -> None:
    host, port = peer.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"PLAIN\n")
    assert await reader.readline() == b"ok\n"
    writer.write(b"STARTTLS\n")
    assert await reader.readline() == b"go\n"
    await writer.start_tls(peer.client_ssl_context(), server_hostname=name)
    writer.write(b"SECRET\n")
    assert await reader.readline() == b"kept\n"
    writer.close()
    await writer.wait_closed()


def test_asyncio_streams_upgrade_with_sni_and_alpn() -> None:
    peer = lines_peer(tls_alpn=["imap"], tls_min_version=ssl.TLSVersion.TLSv1_3)
    with peer.serve():
        asyncio.run(asyncio_upgrade(peer))
        peer.wait_until_done()
    peer.assert_tls(sni="localhost", alpn="imap", version=ssl.TLSVersion.TLSv1_3)
    info = peer.connections[0].tls
    assert info is not None
    assert (info.sni, info.alpn, info.starttls) == ("localhost", "imap", True)
    assert info.cipher
    assert tls_notes(peer) == [f"upgraded: {info.describe()}"]
    assert info.describe().endswith(", sni 'localhost', alpn 'imap'")


def test_asyncio_streams_upgrade_on_the_hub() -> None:
    peer = lines_peer()
    with peer.serve():
        asyncio.run(asyncio_upgrade(peer))
        peer.wait_until_done()
    peer.assert_tls(sni="localhost")


@pytest.mark.asyncio
async def test_asyncio_streams_upgrade_in_the_running_loop() -> None:
    peer = lines_peer()
    async with peer.serve():
        await asyncio_upgrade(peer)
        await peer.wait_until_done_async()
    peer.assert_tls(sni="localhost")
    assert [event.kind for event in peer.transcript.events][-5:] == [
        "tls",
        "received",
        "sent",
        "eof",
        "closed",
    ]


@pytest.mark.parametrize("hosted", ["hub", "in-loop"])
def test_bytes_right_after_the_handshake_are_never_taken_for_plain_text(hosted: str) -> None:
    # The TLS layer hands the protocol the client's first bytes inside TLS as soon as the
    # handshake ends, before start_tls() returns to the peer: a race, run 200 times.
    rounds = 200
    peer = FakePeer(tls="starttls", framing=Lines())
    peer.always(b"STARTTLS").reply(b"go").start_tls()
    peer.always(b"SECRET").reply(b"kept")
    context = peer.client_ssl_context()

    async def client() -> None:
        host, port = peer.address
        for _ in range(rounds):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"go\n"
            await writer.start_tls(context, server_hostname="localhost")
            writer.write(b"SECRET\n")
            assert await reader.readline() == b"kept\n"
            writer.close()
            await writer.wait_closed()

    async def in_loop() -> None:
        async with peer.serve():
            await client()

    if hosted == "hub":
        with peer.serve():
            asyncio.run(client())
    else:
        asyncio.run(in_loop())
    assert len(peer.connections) == rounds
    assert all(connection.tls is not None for connection in peer.connections)


def test_assert_tls_fails_with_the_transcript() -> None:
    peer = lines_peer()
    with peer.serve():
        asyncio.run(asyncio_upgrade(peer))
        peer.wait_until_done()
    with pytest.raises(ConversationError) as caught:
        peer.assert_tls(sni="other.test", alpn="h2")
    text = str(caught.value)
    assert "expected TLS with sni='other.test', alpn='h2'" in text
    assert "connection #1: sni is 'localhost', not 'other.test'" in text
    assert "connection #1: alpn is None, not 'h2'" in text
    assert "upgraded: TLSv1." in text  # the transcript
    with pytest.raises(ScriptError, match=r"assert_tls\(connection=2\): 1 connection"):
        peer.assert_tls(connection=2)


def test_assert_tls_takes_the_version_as_the_transcript_names_it() -> None:
    peer = lines_peer(tls_max_version=ssl.TLSVersion.TLSv1_2)
    with peer.serve():
        asyncio.run(asyncio_upgrade(peer))
        peer.wait_until_done()
    peer.assert_tls(version="TLSv1.2")
    peer.assert_tls(version="TLSv1_2")
    with pytest.raises(ConversationError) as caught:
        peer.assert_tls(version="TLSv1.3")
    assert "connection #1: version is ssl.TLSVersion.TLSv1_2, not ssl.TLSVersion.TLSv1_3" in str(
        caught.value
    )
    with pytest.raises(ScriptError) as wrong:
        peer.assert_tls(version="1.3")
    assert str(wrong.value) == (
        "assert_tls(version='1.3'): not a TLS version; one of 'SSLv3', 'TLSv1', 'TLSv1.1', "
        "'TLSv1.2', 'TLSv1.3', or an ssl.TLSVersion"
    )


def test_assert_tls_fails_on_a_plain_connection() -> None:
    peer = FakePeer(tls="starttls", framing=Lines())
    peer.expect(b"hi").reply(b"hello")
    with peer.serve():
        with socket.create_connection(peer.address, timeout=5) as sock:
            sock.sendall(b"hi\n")
            assert sock.recv(100) == b"hello\n"
        peer.wait_until_done()
    assert peer.connections[0].tls is None
    with pytest.raises(ConversationError, match=r"connection #1: plain text"):
        peer.assert_tls()


def test_assert_tls_without_connections() -> None:
    peer = FakePeer(tls=True)
    with peer.serve():
        pass
    with pytest.raises(ConversationError, match="no client connected"):
        peer.assert_tls()


def test_a_tls_peer_records_what_each_handshake_agreed() -> None:
    peer = FakePeer(tls=True, framing=Lines(), tls_alpn=["h2"])
    peer.expect(b"ping").reply(b"pong")
    context = peer.client_ssl_context()
    with peer.serve():
        with (
            socket.create_connection(peer.address, timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"ping\n")
            assert sock.recv(100) == b"pong\n"
            version = sock.version()
        peer.wait_until_done()
    info = peer.connections[0].tls
    assert info is not None
    assert info.starttls is False
    assert info.version is not None
    assert version == info.version.name.replace("_", ".")
    peer.assert_tls(sni="localhost", alpn="h2")
    assert tls_notes(peer) == [info.describe()]


async def trio_upgrade(peer: FakePeer) -> None:
    host, port = peer.address
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"PLAIN\n")
    assert await stream.receive_some(100) == b"ok\n"
    await stream.send_all(b"STARTTLS\n")
    assert await stream.receive_some(100) == b"go\n"
    secure = trio.SSLStream(stream, peer.client_ssl_context(), server_hostname="localhost")
    await secure.do_handshake()
    await secure.send_all(b"SECRET\n")
    assert await secure.receive_some(100) == b"kept\n"
    await secure.aclose()


def test_trio_ssl_stream_upgrade() -> None:
    peer = lines_peer()
    with peer.serve():
        trio.run(trio_upgrade, peer)
        peer.wait_until_done()
    peer.assert_tls(sni="localhost")


def test_trio_open_ssl_over_tcp_stream_to_a_tls_peer() -> None:
    peer = FakePeer(tls=True, framing=Lines())
    peer.expect(b"ping").reply(b"pong")

    async def talk() -> None:
        stream = await trio.open_ssl_over_tcp_stream(
            "localhost", peer.address[1], ssl_context=peer.client_ssl_context()
        )
        await stream.send_all(b"ping\n")
        assert await stream.receive_some(100) == b"pong\n"
        await stream.aclose()

    with peer.serve():
        trio.run(talk)
        peer.wait_until_done()
    peer.assert_tls(sni="localhost")


def test_a_client_that_does_not_trust_the_ca_fails_the_upgrade() -> None:
    peer = lines_peer()
    with pytest.raises(UnmetExpectations, match=r"expect #3 'SECRET' .*never met"):
        serve_untrusted(peer)
    (note,) = tls_notes(peer)
    assert note.startswith("upgrade failed: ")
    assert peer.connections[0].tls is None
    assert not peer.connections[0].open
    assert peer.connections[0].closed_by == "peer"  # it aborts a failed upgrade
    assert peer._conversation.connections[0].ending == ("peer", f"reset (its TLS {note})")


def serve_untrusted(peer: FakePeer) -> None:
    with peer.serve(), pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(asyncio_upgrade_untrusted(peer))


def inject(peer: FakePeer, data: bytes) -> None:
    """Send ``data`` at once, the STARTTLS command and what follows it in one segment."""
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        assert reader.readline() == b"ok\n"
        assert reader.readline() == b"go\n"
        assert reader.readline() == b""  # closed, no handshake
        reader.close()


async def asyncio_upgrade_untrusted(peer: FakePeer) -> None:
    host, port = peer.address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"PLAIN\nSTARTTLS\n")
        assert await reader.readline() == b"ok\n"
        assert await reader.readline() == b"go\n"
        await writer.start_tls(ssl.create_default_context(), server_hostname="localhost")
    finally:
        writer.close()


def test_plain_text_after_the_command_is_a_problem() -> None:
    peer = lines_peer()
    with pytest.raises(UnexpectedData) as caught:
        inject(peer, b"PLAIN\nSTARTTLS\nSECRET\n")  # SECRET injected before the handshake
    text = str(caught.value)
    assert "the client sent 'SECRET' in plain text after the message that started TLS" in text
    assert "(plain text before the TLS handshake)" in text
    assert tls_notes(peer) == []


def test_an_incomplete_message_after_the_command_is_a_problem() -> None:
    peer = lines_peer()
    with pytest.raises(UnexpectedData, match=r"sent 'SEC' in plain text"):
        inject(peer, b"PLAIN\nSTARTTLS\nSEC")


def test_start_tls_needs_a_starttls_peer() -> None:
    with pytest.raises(ScriptError) as caught:
        FakePeer().expect(b"STARTTLS").reply(b"go").start_tls()
    assert str(caught.value).endswith(
        ": this peer has no TLS certificate to upgrade with: FakePeer(tls='starttls') (or "
        "@pytest.mark.fakepeer(tls='starttls') for the fixture) makes the test's certificates "
        "and serves plain text until .start_tls()"
    )
    with pytest.raises(ScriptError, match="serves TLS from the first byte already"):
        FakePeer(tls=True).expect(b"STARTTLS").start_tls()
    peer = FakePeer(tls="starttls")
    with pytest.raises(ScriptError, match="a TLS handshake needs both directions"):
        peer.expect(b"STARTTLS").half_close().start_tls()
    with pytest.raises(ScriptError, match=r"after \.close\(\)"):
        peer.expect(ANY).close().start_tls()
    # a connection's own script can upgrade too
    peer.on_connection(1).expect(b"STARTTLS").start_tls()


def test_a_starttls_peer_gives_the_client_its_ca() -> None:
    peer = FakePeer(tls="starttls", tls_hostnames=["mail.test"])
    assert peer.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    context = peer.client_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ScriptError, match="tls='starttls'"):
        FakePeer(tls_alpn=["h2"])


def test_the_fixtures_take_the_tls_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import ssl

        import pytest

        from fakepeer import Lines


        async def upgrade(peer):
            host, port = peer.address
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"STARTTLS\\n")
            assert await reader.readline() == b"go\\n"
            await writer.start_tls(peer.client_ssl_context(), server_hostname="mail.test")
            writer.write(b"SECRET\\n")
            assert await reader.readline() == b"kept\\n"
            writer.close()
            await writer.wait_closed()


        @pytest.mark.fakepeer(
            framing=Lines(),
            tls="starttls",
            tls_hostnames=["mail.test"],
            tls_min_version=ssl.TLSVersion.TLSv1_3,
            tls_alpn=["smtp"],
        )
        def test_marker(fake_peer):
            fake_peer.expect(b"STARTTLS").reply(b"go").start_tls()
            fake_peer.expect(b"SECRET").reply(b"kept")
            asyncio.run(upgrade(fake_peer))
            fake_peer.wait_until_done()
            fake_peer.assert_tls(
                sni="mail.test", alpn="smtp", version=ssl.TLSVersion.TLSv1_3
            )


        def test_factory(fake_peer_factory):
            peer = fake_peer_factory(
                framing=Lines(), tls=True, tls_max_version=ssl.TLSVersion.TLSv1_2
            )
            peer.expect(b"ping").reply(b"pong")

            async def talk():
                host, port = peer.address
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=peer.client_ssl_context(), server_hostname="localhost"
                )
                writer.write(b"ping\\n")
                assert await reader.readline() == b"pong\\n"
                writer.close()
                await writer.wait_closed()

            asyncio.run(talk())
            peer.wait_until_done()
            peer.assert_tls(version=ssl.TLSVersion.TLSv1_2)


        @pytest.mark.fakepeer(tls_alpn=["h2"])
        def test_options_without_tls(fake_peer):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*applies to a TLS peer: add tls=True (or tls='starttls')*"])
