"""Real clients over TLS and Unix sockets: redis-py (sync and ``redis.asyncio``, both hosts),
``smtplib.SMTP_SSL``, ``http.client.HTTPSConnection``, asyncio streams with ``ssl=`` and trio
with ``ssl_context=``; and how each fails when it should: a client that does not trust the
test's CA, a Unix socket path where nothing listens.

The Redis script is RESP written by hand. What redis-py 8 sends when it connects, recorded by
a peer that answered ``+OK`` to everything: ``HELLO 3`` by default (RESP3); with
``protocol=2``, ``CLIENT SETINFO LIB-NAME redis-py`` and ``CLIENT SETINFO LIB-VER <version>``
(each answered before the next is sent), then the commands. The tests use ``protocol=2``.
The Redis clients do not retry (redis-py retries three times by default, with a backoff:
seconds per failing test).
"""

from __future__ import annotations

import asyncio
import http.client
import re
import smtplib
import ssl
from pathlib import Path

import pytest
import redis
import redis.asyncio
import trio
import trustme
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from _hosts import Host, hosted
from fakepeer import FakePeer, Lines, Raw, prefix

HOSTS: list[Host] = ["hub", "loop"]
TIMEOUT = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def tls_notes(peer: FakePeer) -> list[str]:
    return [event.note for event in peer.transcript.events if event.kind == "tls"]


# -- Redis: RESP by hand -------------------------------------------------------------------------


def command(*words: bytes) -> bytes:
    """A RESP command as a client sends it: an array of bulk strings."""
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


#: ``CLIENT SETINFO <attribute> <value>``, whatever the attribute and the value (redis-py's
#: version is one of them).
SETINFO = re.compile(rb"\*4\r\n\$6\r\nCLIENT\r\n\$7\r\nSETINFO\r\n(\$\d+\r\n[^\r]*\r\n){2}")


def redis_peer(**options: object) -> FakePeer:
    """A Redis that greets redis-py (``protocol=2``), then stores and returns one value."""
    peer = FakePeer(framing=Raw(), name="redis", **options)  # type: ignore[arg-type]
    peer.always(SETINFO).reply(b"+OK\r\n")
    peer.expect(command(b"SET", b"greeting", b"hello")).reply(b"+OK\r\n")
    peer.expect(command(b"GET", b"greeting")).reply(b"$5\r\nhello\r\n")
    return peer


def check_redis(peer: FakePeer, *, tls: bool) -> None:
    peer.verify()
    assert peer.received[-2:] == [
        command(b"SET", b"greeting", b"hello"),
        command(b"GET", b"greeting"),
    ]
    # the pair, at least once per connection (redis.asyncio 8.1 over a Unix socket sends it
    # twice on its one connection)
    greetings = peer.received[:-2]
    assert all(SETINFO.fullmatch(message) for message in greetings)
    assert len(greetings) >= 2 * len(peer.connections)
    notes = tls_notes(peer)
    if tls:
        assert len(notes) == len(peer.connections) >= 1
        assert all(note.startswith("TLSv1.3, ") for note in notes)
    else:
        assert notes == []
        assert {connection.client for connection in peer.connections} == {"unix socket client"}


def sync_redis_talk(client: redis.Redis) -> None:
    with client:
        assert client.set("greeting", "hello") is True
        assert client.get("greeting") == b"hello"


async def async_redis_talk(client: redis.asyncio.Redis) -> None:
    async with client:
        assert await client.set("greeting", "hello") is True
        assert await client.get("greeting") == b"hello"


#: No retries: a failure fails at once (redis-py retries three times by default).
RETRY = Retry(NoBackoff(), 0)
ASYNC_RETRY = AsyncRetry(NoBackoff(), 0)


def sync_redis_tls(peer: FakePeer, ca_path: str) -> redis.Redis:
    return redis.Redis(
        host=peer.host,
        port=peer.port,
        ssl=True,
        ssl_ca_certs=ca_path,
        protocol=2,
        socket_timeout=TIMEOUT,
        retry=RETRY,
    )


def async_redis_tls(peer: FakePeer, ca_path: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=peer.host,
        port=peer.port,
        ssl=True,
        ssl_ca_certs=ca_path,
        protocol=2,
        socket_timeout=TIMEOUT,
        retry=ASYNC_RETRY,
    )


def test_redis_over_tls() -> None:
    peer = redis_peer(tls=True)
    with peer.serve():
        sync_redis_talk(sync_redis_tls(peer, peer.ca_path))
    check_redis(peer, tls=True)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_redis_asyncio_over_tls(host: Host) -> None:
    peer = redis_peer(tls=True)
    async with hosted(peer, host):
        await async_redis_talk(async_redis_tls(peer, peer.ca_path))
    check_redis(peer, tls=True)


def test_redis_over_a_unix_socket() -> None:
    peer = redis_peer(unix=True)
    with peer.serve():
        sync_redis_talk(redis.Redis(unix_socket_path=peer.address, protocol=2))
    check_redis(peer, tls=False)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_redis_asyncio_over_a_unix_socket(host: Host) -> None:
    peer = redis_peer(unix=True)
    async with hosted(peer, host):
        await async_redis_talk(redis.asyncio.Redis(unix_socket_path=peer.address, protocol=2))
    check_redis(peer, tls=False)


def another_ca(tmp_path: Path) -> str:
    """The path of a CA certificate that did not sign the peer's."""
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def check_refused_handshake(peer: FakePeer) -> None:
    """The client hung up during the handshake: a ``tls`` event of the peer, not a problem
    of the test; no connection was served, no rule was met."""
    assert peer.connections == []
    assert peer.received == []
    assert any(note.startswith("handshake failed") for note in tls_notes(peer))


def test_redis_that_does_not_trust_the_ca(tmp_path: Path) -> None:
    peer = FakePeer(framing=Raw(), name="redis", tls=True)
    with peer.serve():
        client = sync_redis_tls(peer, another_ca(tmp_path))
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
            client.ping()
        client.close()
    check_refused_handshake(peer)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_redis_asyncio_that_does_not_trust_the_ca(host: Host, tmp_path: Path) -> None:
    peer = FakePeer(framing=Raw(), name="redis", tls=True)
    async with hosted(peer, host):
        client = async_redis_tls(peer, another_ca(tmp_path))
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
            await client.ping()
        await client.aclose()
    check_refused_handshake(peer)


def served_and_gone() -> str:
    """The path of a Unix socket a peer listened on, removed when it stopped."""
    peer = FakePeer(unix=True)
    with peer.serve():
        path: str = peer.address
        assert Path(path).is_socket()
    assert not Path(path).exists()
    return path


def test_redis_unix_socket_path_that_does_not_exist() -> None:
    client = redis.Redis(unix_socket_path=served_and_gone(), protocol=2, retry=RETRY)
    with pytest.raises(redis.exceptions.ConnectionError, match="No such file or directory"):
        client.ping()
    client.close()


@pytest.mark.asyncio
async def test_redis_asyncio_unix_socket_path_that_does_not_exist() -> None:
    client = redis.asyncio.Redis(unix_socket_path=served_and_gone(), protocol=2, retry=ASYNC_RETRY)
    with pytest.raises(redis.exceptions.ConnectionError, match="No such file or directory"):
        await client.ping()
    await client.aclose()


# -- the standard library's TLS clients, asyncio and trio ---------------------------------------


def test_smtp_ssl_with_a_context_made_from_the_ca_file() -> None:
    peer = FakePeer(framing=Lines(b"\r\n"), name="smtp", host="localhost", tls=True)
    peer.on_connect().send("220 mail.test ESMTP")
    peer.expect(prefix("ehlo ")).reply("250-mail.test\r\n250 8BITMIME")
    peer.expect("noop").reply("250 OK")
    peer.expect("QUIT").reply("221 bye").close()
    context = ssl.create_default_context(cafile=peer.ca_path)
    with peer.serve(), smtplib.SMTP_SSL("localhost", peer.port, context=context) as smtp:
        assert smtp.ehlo()[0] == 250
        assert smtp.noop() == (250, b"OK")
    peer.verify()
    assert tls_notes(peer)[0].endswith(", sni 'localhost'")


def test_https_connection() -> None:
    peer = FakePeer(framing=Raw(), name="web", tls=True, tls_alpn=["http/1.1"])
    head = re.compile(rb"GET /status HTTP/1\.1\r\n.*?\r\n\r\n", re.DOTALL)  # the whole head
    peer.expect(head).reply(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    ).close()
    with peer.serve():
        client = http.client.HTTPSConnection(
            "localhost", peer.port, context=peer.client_ssl_context(), timeout=TIMEOUT
        )
        client.request("GET", "/status")
        response = client.getresponse()
        assert (response.status, response.read()) == (200, b"ok")
        client.close()
    peer.verify()
    assert peer.received[0].startswith(b"GET /status HTTP/1.1\r\nHost: localhost:")
    assert tls_notes(peer)[0].endswith(", sni 'localhost', alpn 'http/1.1'")


def echo_peer(**options: object) -> FakePeer:
    peer = FakePeer(framing=Lines(), name="echo", tls=True, **options)  # type: ignore[arg-type]
    peer.expect("ping").reply("pong").close()
    return peer


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_asyncio_open_connection_with_ssl(host: Host) -> None:
    peer = echo_peer(host="localhost")
    async with hosted(peer, host), asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(
            "localhost", peer.port, ssl=peer.client_ssl_context()
        )
        writer.write(b"ping\n")
        assert await reader.readline() == b"pong\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
    peer.verify()
    assert tls_notes(peer)[0].endswith(", sni 'localhost'")


@pytest.mark.anyio
async def test_trio_open_ssl_over_tcp_stream() -> None:
    peer = echo_peer(host="localhost")
    async with peer.serve():
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_ssl_over_tcp_stream(
                "localhost", peer.port, ssl_context=peer.client_ssl_context()
            )
            async with stream:
                await stream.send_all(b"ping\n")
                received = b""
                while chunk := await stream.receive_some():
                    received += chunk
                assert received == b"pong\n"
    peer.verify()
    assert tls_notes(peer)[0].endswith(", sni 'localhost'")
