"""One scripted conversation, four real clients, both hosts; then the ways it can go wrong.

The conversation::

    peer -> HELLO fakepeer            (on connect)
    LOGIN alice   -> OK
    GET answer    -> VALUE 42         (regex ``GET (\\w+)``, reply computed from the capture)
    QUIT          -> BYE, then the peer closes

Clients: a blocking ``socket`` client, an asyncio streams client, an asyncio ``Protocol`` client
and a trio client. Hosts: the hub thread (``with peer.serve()``) and the test's own asyncio loop
(``async with peer.serve()``); under trio ``async with`` uses the hub too.

Transports: the conversation, the wrong bytes and the sync points (every client, both hosts)
run over each of :data:`TRANSPORTS`: plain TCP on 127.0.0.1, TLS, a Unix socket, TLS over a
Unix socket, IPv6 (``::1``) and a peer on ``localhost`` reached on 127.0.0.1 and on ``::1``
(the same port). The other scenarios (faults, misuse) run over plain TCP only: what they test
is above the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
import trio

from _hosts import Host, hosted
from fakepeer import (
    Connection,
    ConversationError,
    Error,
    FakePeer,
    Lines,
    Rule,
    UnexpectedData,
    UnmetExpectations,
    WaitTimeout,
)

Address = tuple[str, int]
HOSTS: list[Host] = ["hub", "loop"]
HUB_THREAD = "fakepeer-hub"

#: Bounds every client-side read, so a broken peer fails a test instead of hanging it.
CLIENT_TIMEOUT = 5.0
#: What a client waits before concluding that the peer does not answer (hang()).
NO_ANSWER = 0.2

REQUESTS = [b"LOGIN alice", b"GET answer", b"QUIT"]
#: What every client reads: four lines, then end of file.
REPLIES = [b"HELLO fakepeer\n", b"OK\n", b"VALUE 42\n", b"BYE\n", b""]
VALUES = {b"answer": b"42"}


# -- the transports --------------------------------------------------------------------------


@dataclass(frozen=True)
class Transport:
    """How a client reaches the peer: TCP (an address, maybe another of the peer's addresses
    on its port), a Unix socket, either with TLS."""

    id: str
    tls: bool = False
    unix: bool = False
    #: Where the peer listens (TCP).
    host: str = "127.0.0.1"
    #: The address a client connects to, on the peer's port; ``None``: :attr:`FakePeer.address`.
    connect_to: str | None = None

    def peer(self, name: str) -> FakePeer:
        if self.unix:
            return FakePeer(framing=Lines(), name=name, unix=True, tls=self.tls)
        return FakePeer(framing=Lines(), name=name, host=self.host, tls=self.tls)

    def target(self, peer: FakePeer) -> Address:
        host, port = peer.address
        return (self.connect_to or host, port)

    def server_hostname(self, peer: FakePeer) -> str:
        """The name a TLS client checks: an address of the certificate, or ``localhost``."""
        return "localhost" if self.unix else self.target(peer)[0]

    def context(self, peer: FakePeer) -> ssl.SSLContext | None:
        return peer.client_ssl_context() if self.tls else None

    @property
    def client_prefix(self) -> str:
        """How the peer's transcript names a client of this transport."""
        if self.unix:
            return "unix socket client"
        return "[::1]:" if (self.connect_to or self.host) == "::1" else "127.0.0.1:"

    def title(self, peer: FakePeer) -> str:
        """The first line of the peer's transcript (it says TLS after the address)."""
        over = " over TLS" if self.tls else ""
        if self.unix:
            return f"fake peer {peer.name!r} on unix socket {peer.address}{over}"
        if self.host == "localhost":
            both = f"127.0.0.1:{peer.port}, [::1]:{peer.port}"
            return f"fake peer {peer.name!r} on {both}{over}"
        host = "[::1]" if self.host == "::1" else self.host
        return f"fake peer {peer.name!r} on {host}:{peer.port}{over}"

    def check_tls_event(self, events: list[tuple[str, bytes, str]]) -> list[tuple[str, bytes, str]]:
        """``events`` of a connection without its ``tls`` event, checked: one, after
        ``connected``, for a TLS transport; none for the others."""
        kinds = [kind for kind, _, _ in events]
        if not self.tls:
            assert "tls" not in kinds
            return events
        assert kinds.count("tls") == 1
        assert kinds.index("tls") == 1
        note = events[1][2]
        assert note.startswith("TLSv1.3, "), note
        # a client sends a name (SNI), not an address: the Unix socket's clients say localhost
        assert note.endswith(", sni 'localhost'" if self.unix else ", no sni"), note
        return [events[0], *events[2:]]


TCP = Transport("tcp")
TRANSPORTS = [
    TCP,
    Transport("tls", tls=True),
    Transport("unix", unix=True),
    Transport("tls-unix", tls=True, unix=True),
    Transport("ipv6", host="::1"),
    Transport("localhost-ipv4", host="localhost", connect_to="127.0.0.1"),
    Transport("localhost-ipv6", host="localhost", connect_to="::1"),
]
over_transports = pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.id)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


# -- the script ------------------------------------------------------------------------------


@dataclass
class Script:
    peer: FakePeer
    login: Rule
    get: Rule
    quit: Rule
    #: (thread name, connection id) of every call of the GET reply callable.
    served_by: list[tuple[str, int]] = field(default_factory=list)


def scripted(name: str = "conformance", transport: Transport = TCP) -> Script:
    peer = transport.peer(name)
    served_by: list[tuple[str, int]] = []

    def lookup(match: re.Match[bytes], connection: Connection) -> bytes:
        served_by.append((threading.current_thread().name, connection.id))
        return b"VALUE " + VALUES.get(match.group(1), b"NONE")

    peer.on_connect().send(b"HELLO fakepeer")
    login = peer.expect(b"LOGIN alice").reply(b"OK")
    get = peer.expect(re.compile(rb"GET (\w+)")).reply(lookup)
    quit_ = peer.expect(b"QUIT").reply(b"BYE").close()
    return Script(peer, login, get, quit_, served_by)


def event_line(kind: str, text: str, connection: int = 1) -> str:
    """An event line of a rendered transcript, after its timestamp."""
    return f"#{connection} {kind:<10} {text}"


def serving_thread(host: Host) -> str:
    return HUB_THREAD if host == "hub" else threading.current_thread().name


def check_conversation(
    script: Script,
    lines: list[bytes],
    *,
    thread: str,
    pipelined: bool = False,
    transport: Transport = TCP,
) -> None:
    """The client read what the script says, and the peer recorded exactly that (over
    ``transport``: one ``tls`` event after ``connected`` for TLS).

    ``pipelined``: the client sent every request at once, before reading any reply.
    """
    peer = script.peer
    assert lines == REPLIES
    assert peer.received == REQUESTS
    assert peer.done
    peer.verify()
    (connection,) = peer.connections
    assert connection.id == 1
    assert not connection.open
    assert connection.received == REQUESTS
    assert connection.client.startswith(transport.client_prefix)
    assert script.served_by == [(thread, 1)]
    events = [(e.kind, e.data, e.note) for e in peer.transcript.for_connection(1)]
    events = transport.check_tls_event(events)
    connected = ("connected", b"", f"from {connection.client}")
    greeted = ("sent", b"HELLO fakepeer\n", "")
    received = [
        ("received", b"LOGIN alice", f"-> {script.login.describe()}"),
        ("received", b"GET answer", f"-> {script.get.describe()}"),
        ("received", b"QUIT", f"-> {script.quit.describe()}"),
    ]
    sent = [("sent", b"OK\n", ""), ("sent", b"VALUE 42\n", ""), ("sent", b"BYE\n", "")]
    closed = ("closed", b"", "")
    if pipelined:
        assert events[:2] == [connected, greeted]
        assert events[-1] == closed
        assert [e for e in events if e[0] == "received"] == received
        assert [e for e in events[2:] if e[0] == "sent"] == sent
        for request, reply in zip(received, sent, strict=True):
            assert events.index(request) < events.index(reply)
        assert len(events) == 9
    else:
        assert events == [
            connected,
            greeted,
            *[event for pair in zip(received, sent, strict=True) for event in pair],
            closed,
        ]
    text = peer.render_transcript()
    assert text.startswith(transport.title(peer) + "\n")
    assert event_line("received", f"'GET answer' -> {script.get.describe()}") in text
    assert event_line("sent", "'VALUE 42\\n'") in text
    assert script.get.describe().startswith("expect #2 regex ")
    assert script.get.where.startswith("test_conformance.py:")


# -- the clients -----------------------------------------------------------------------------


@contextlib.contextmanager
def blocking_connection(
    peer: FakePeer, transport: Transport = TCP
) -> Iterator[tuple[socket.socket, io.BufferedReader]]:
    if transport.unix:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(CLIENT_TIMEOUT)
        raw.connect(peer.address)
    else:
        raw = socket.create_connection(transport.target(peer), timeout=CLIENT_TIMEOUT)
    context = transport.context(peer)
    sock = raw
    if context is not None:
        sock = context.wrap_socket(raw, server_hostname=transport.server_hostname(peer))
    with sock, sock.makefile("rb") as reader:
        yield sock, reader


def blocking_client(peer: FakePeer, transport: Transport = TCP) -> list[bytes]:
    with blocking_connection(peer, transport) as (sock, reader):
        lines = [reader.readline()]
        for request in REQUESTS:
            sock.sendall(request + b"\n")
            lines.append(reader.readline())
        lines.append(reader.read())
    return lines


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def open_streams(
    peer: FakePeer, transport: Transport = TCP
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = transport.context(peer)
    hostname = transport.server_hostname(peer) if context else None
    if transport.unix:
        return await asyncio.open_unix_connection(
            peer.address, ssl=context, server_hostname=hostname
        )
    return await asyncio.open_connection(
        *transport.target(peer), ssl=context, server_hostname=hostname
    )


async def streams_client(peer: FakePeer, transport: Transport = TCP) -> list[bytes]:
    async with asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await open_streams(peer, transport)
        try:
            lines = [await reader.readline()]
            for request in REQUESTS:
                writer.write(request + b"\n")
                await writer.drain()
                lines.append(await reader.readline())
            lines.append(await reader.read())
        finally:
            await close_writer(writer)
    return lines


class LineProtocol(asyncio.Protocol):
    """A client protocol that queues each line it receives, then ``b""`` at the end."""

    def __init__(self) -> None:
        self.lines: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.ended = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            self.lines.put_nowait(line + b"\n")

    def eof_received(self) -> bool:
        self._end()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        if not self.closed.done():
            self.closed.set_result(exc)

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self.lines.put_nowait(b"")


async def protocol_client(peer: FakePeer, transport: Transport = TCP) -> list[bytes]:
    loop = asyncio.get_running_loop()
    context = transport.context(peer)
    hostname = transport.server_hostname(peer) if context else None
    async with asyncio.timeout(CLIENT_TIMEOUT):
        if transport.unix:
            connecting = loop.create_unix_connection(
                LineProtocol, peer.address, ssl=context, server_hostname=hostname
            )
        else:
            connecting = loop.create_connection(
                LineProtocol, *transport.target(peer), ssl=context, server_hostname=hostname
            )
        transport_, protocol = await connecting
        try:
            lines = [await protocol.lines.get()]
            for request in REQUESTS:
                transport_.write(request + b"\n")
                lines.append(await protocol.lines.get())
            lines.append(await protocol.lines.get())
            assert await protocol.closed is None
        finally:
            transport_.close()
    return lines


class TrioLines:
    """Line reads over a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def readline(self) -> bytes:
        """The next line with its ``\\n``; what is left (``b""`` at EOF) once the peer closed."""
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)


async def open_trio_stream(peer: FakePeer, transport: Transport = TCP) -> trio.abc.Stream:
    """A trio stream to the peer: ``trio.open_unix_socket`` or ``open_tcp_stream``, then a
    ``trio.SSLStream`` for TLS, its handshake done."""
    stream: trio.abc.Stream
    if transport.unix:
        stream = await trio.open_unix_socket(peer.address)
    else:
        stream = await trio.open_tcp_stream(*transport.target(peer))
    context = transport.context(peer)
    if context is None:
        return stream
    tls = trio.SSLStream(stream, context, server_hostname=transport.server_hostname(peer))
    # trio handshakes on the first send or receive; the peer counts a TLS connection once
    # its handshake is over (wait_for_connections() waits for that)
    await tls.do_handshake()
    return tls


async def trio_client(peer: FakePeer, transport: Transport = TCP) -> list[bytes]:
    with trio.fail_after(CLIENT_TIMEOUT):
        async with await open_trio_stream(peer, transport) as stream:
            client = TrioLines(stream)
            lines = [await client.readline()]
            for request in REQUESTS:
                await client.send(request + b"\n")
                lines.append(await client.readline())
            lines.append(await client.readline())
    return lines


# -- the conversation, every client, both hosts ----------------------------------------------


@over_transports
def test_blocking_client_on_hub(transport: Transport) -> None:
    script = scripted(transport=transport)
    with script.peer.serve() as peer:
        lines = blocking_client(peer, transport)
    check_conversation(script, lines, thread=HUB_THREAD, transport=transport)


@pytest.mark.asyncio
@over_transports
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("client", [streams_client, protocol_client], ids=["streams", "protocol"])
async def test_asyncio_client(
    host: Host,
    client: Callable[[FakePeer, Transport], Awaitable[list[bytes]]],
    transport: Transport,
) -> None:
    script = scripted(transport=transport)
    async with hosted(script.peer, host) as peer:
        lines = await client(peer, transport)
    check_conversation(script, lines, thread=serving_thread(host), transport=transport)


@pytest.mark.asyncio
@over_transports
async def test_blocking_client_in_a_thread_against_the_in_loop_host(transport: Transport) -> None:
    script = scripted(transport=transport)
    async with script.peer.serve() as peer:
        lines = await asyncio.to_thread(blocking_client, peer, transport)
    check_conversation(script, lines, thread=threading.current_thread().name, transport=transport)


@pytest.mark.asyncio
async def test_blocking_client_blocking_the_test_loop_is_served_by_the_hub() -> None:
    script = scripted()
    with script.peer.serve() as peer:
        lines = blocking_client(peer)  # the test's loop is blocked; the hub is not
    check_conversation(script, lines, thread=HUB_THREAD)


@pytest.mark.anyio
@over_transports
@pytest.mark.parametrize("enter", ["with", "async with"])
async def test_trio_client(enter: str, transport: Transport) -> None:
    script = scripted(transport=transport)
    if enter == "with":
        with script.peer.serve() as peer:
            lines = await trio_client(peer, transport)
    else:
        async with script.peer.serve() as peer:  # under trio: hosted by the hub
            lines = await trio_client(peer, transport)
    check_conversation(script, lines, thread=HUB_THREAD, transport=transport)


# -- wrong bytes: the peer closes, leaving serve() raises UnexpectedData ---------------------


def check_unexpected(
    error: UnexpectedData, script: Script, *, final: bool = True, transport: Transport = TCP
) -> None:
    """``final``: raised when leaving serve(); else raised by a sync point, maybe before the
    peer had closed the connection."""
    text = str(error)
    peer = script.peer
    assert error.connection == 1
    assert error.received == b"LOGIN mallory"
    assert error.expected == script.login.describe()
    assert script.login.where.startswith("test_conformance.py:")
    diagnosis = (
        "connection #1 received data that no rule expected\n"
        "  received:  'LOGIN mallory'\n"
        f"  expected:  {script.login.describe()}\n"
        "             the data differs at byte 6: expected 'alice', received 'mallory'"
    )
    assert error.diagnosis == diagnosis
    assert text.startswith(diagnosis + "\n\n" + transport.title(peer) + "\n")
    assert event_line("sent", "'HELLO fakepeer\\n'") in text
    assert event_line("unexpected", "'LOGIN mallory'") in text
    events = [(e.kind, e.data, e.note) for e in peer.transcript.for_connection(1)]
    kinds = [(kind, data) for kind, data, _ in transport.check_tls_event(events)]
    assert kinds[:3] == [
        ("connected", b""),
        ("sent", b"HELLO fakepeer\n"),
        ("unexpected", b"LOGIN mallory"),
    ]
    assert peer.received == [b"LOGIN mallory"]
    if final:
        assert kinds[3:] == [("closed", b"")]
        assert not peer.connections[0].open
        assert event_line("closed", "").rstrip() in text


def wrong_blocking_client(script: Script, transport: Transport) -> None:
    with (
        script.peer.serve() as peer,
        blocking_connection(peer, transport) as (sock, reader),
    ):
        assert reader.readline() == b"HELLO fakepeer\n"
        sock.sendall(b"LOGIN mallory\n")
        assert reader.read() == b""  # the peer closed the connection


@over_transports
def test_wrong_bytes_blocking_client(transport: Transport) -> None:
    script = scripted(transport=transport)
    with pytest.raises(UnexpectedData) as info:
        wrong_blocking_client(script, transport)
    check_unexpected(info.value, script, transport=transport)
    assert not getattr(info.value, "__notes__", None)


async def wrong_streams_client(script: Script, host: Host, transport: Transport = TCP) -> None:
    async with hosted(script.peer, host) as peer, asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await open_streams(peer, transport)
        try:
            assert await reader.readline() == b"HELLO fakepeer\n"
            writer.write(b"LOGIN mallory\n")
            assert await reader.read() == b""  # the peer closed the connection
        finally:
            await close_writer(writer)


@pytest.mark.asyncio
@over_transports
@pytest.mark.parametrize("host", HOSTS)
async def test_wrong_bytes_asyncio_client(host: Host, transport: Transport) -> None:
    script = scripted(transport=transport)
    with pytest.raises(UnexpectedData) as info:
        await wrong_streams_client(script, host, transport)
    check_unexpected(info.value, script, transport=transport)


async def wrong_trio_client(script: Script, transport: Transport) -> None:
    async with script.peer.serve() as peer:
        with trio.fail_after(CLIENT_TIMEOUT):
            async with await open_trio_stream(peer, transport) as stream:
                client = TrioLines(stream)
                assert await client.readline() == b"HELLO fakepeer\n"
                await client.send(b"LOGIN mallory\n")
                assert await client.readline() == b""  # the peer closed the connection


@pytest.mark.anyio
@over_transports
async def test_wrong_bytes_trio_client(transport: Transport) -> None:
    script = scripted(transport=transport)
    with pytest.raises(UnexpectedData) as info:
        await wrong_trio_client(script, transport)
    check_unexpected(info.value, script, transport=transport)


# -- a client that stops early: UnmetExpectations --------------------------------------------


def early_quitter(script: Script) -> None:
    with script.peer.serve() as peer, blocking_connection(peer) as (sock, reader):
        assert reader.readline() == b"HELLO fakepeer\n"
        sock.sendall(b"LOGIN alice\n")
        assert reader.readline() == b"OK\n"
        peer.check()  # nothing wrong so far: the client may still be talking
        with pytest.raises(UnmetExpectations):
            peer.verify()


def test_client_stopping_early_leaves_unmet_expectations() -> None:
    script = scripted()
    with pytest.raises(UnmetExpectations) as info:
        early_quitter(script)
    error = info.value
    unmet = [f"{script.get.describe()}: never met", f"{script.quit.describe()}: never met"]
    assert error.unmet == unmet
    assert error.diagnosis == (
        "2 expectations were not met when the peer stopped "
        "(1 connection(s), 1 message(s) received):\n"
        f"  {unmet[0]}\n"
        f"  {unmet[1]}"
    )
    assert f"  {script.get.describe()}: never met\n" in str(error)
    assert f"fake peer 'conformance' on 127.0.0.1:{script.peer.port}" in str(error)
    # the client's FIN was read before the peer stopped: it is not reported as a peer close
    assert event_line("eof", "").rstrip() in str(error)
    assert "(the peer stopped)" not in str(error)


def partial_repeater(peer: FakePeer) -> Rule:
    rule = peer.expect(b"PING").reply(b"PONG").times(3)
    with peer.serve(), blocking_connection(peer) as (sock, reader):
        sock.sendall(b"PING\n")
        assert reader.readline() == b"PONG\n"
    return rule


def test_expectation_met_fewer_times_than_required() -> None:
    peer = FakePeer(framing=Lines(), name="times")
    rules: list[Rule] = []
    with pytest.raises(UnmetExpectations) as info:
        rules.append(partial_repeater(peer))
    (rule,) = peer._conversation.expectations
    assert info.value.unmet == [f"{rule.describe()}: met 1 of 3 times"]
    assert rule.describe().startswith("expect #1 'PING' x3 (test_conformance.py:")
    assert "1 expectation was not met when the peer stopped" in str(info.value)
    assert rules == []


# -- reset(): the client sees ConnectionResetError -------------------------------------------


def resetting() -> FakePeer:
    peer = FakePeer(framing=Lines(), name="reset")
    peer.on_connect().send(b"HELLO")
    peer.expect(b"LOGIN alice").reset()
    return peer


def check_reset(peer: FakePeer) -> None:
    kinds = [(e.kind, e.data) for e in peer.transcript.for_connection(1)]
    assert kinds == [
        ("connected", b""),
        ("sent", b"HELLO\n"),
        ("received", b"LOGIN alice"),
        ("reset", b""),
    ]
    assert not peer.connections[0].open
    assert "#1 reset" in peer.render_transcript()


def test_reset_blocking_client() -> None:
    peer = resetting()
    with peer.serve(), blocking_connection(peer) as (sock, reader):
        assert reader.readline() == b"HELLO\n"
        sock.sendall(b"LOGIN alice\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    check_reset(peer)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_reset_asyncio_client(host: Host) -> None:
    peer = resetting()
    async with hosted(peer, host), asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        try:
            assert await reader.readline() == b"HELLO\n"
            writer.write(b"LOGIN alice\n")
            with pytest.raises(ConnectionResetError):
                await reader.read(100)
        finally:
            await close_writer(writer)
    check_reset(peer)


@pytest.mark.anyio
async def test_reset_trio_client() -> None:
    peer = resetting()
    async with peer.serve():
        with trio.fail_after(CLIENT_TIMEOUT):
            async with await trio.open_tcp_stream(*peer.address) as stream:
                client = TrioLines(stream)
                assert await client.readline() == b"HELLO\n"
                await client.send(b"LOGIN alice\n")
                with pytest.raises(trio.BrokenResourceError) as info:
                    await stream.receive_some()
                assert isinstance(info.value.__cause__, ConnectionResetError)
    check_reset(peer)


# -- after(): the reply is delayed, the connection keeps reading -----------------------------


def delaying() -> FakePeer:
    peer = FakePeer(framing=Lines(), name="after")
    peer.expect(b"LOGIN alice").after(0.05).reply(b"OK")
    peer.always(b"NOOP").reply(b"NOOPED")
    return peer


def check_delayed(peer: FakePeer, lines: list[bytes]) -> None:
    # Steps of a connection run in order: NOOPED waits behind the delayed OK.
    assert lines == [b"OK\n", b"NOOPED\n"]
    events = peer.transcript.for_connection(1)
    assert [(e.kind, e.data) for e in events[:5]] == [
        ("connected", b""),
        ("received", b"LOGIN alice"),
        ("received", b"NOOP"),  # read while the reply to LOGIN was being delayed
        ("sent", b"OK\n"),
        ("sent", b"NOOPED\n"),
    ]
    # asyncio.sleep never wakes early by more than the clock's resolution.
    assert events[3].at - events[1].at >= 0.049


def test_after_delays_the_reply_blocking_client() -> None:
    peer = delaying()
    with peer.serve(), blocking_connection(peer) as (sock, reader):
        sock.sendall(b"LOGIN alice\nNOOP\n")
        lines = [reader.readline(), reader.readline()]
    check_delayed(peer, lines)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_after_delays_the_reply_asyncio_client(host: Host) -> None:
    peer = delaying()
    async with hosted(peer, host), asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        try:
            writer.write(b"LOGIN alice\nNOOP\n")
            lines = [await reader.readline(), await reader.readline()]
        finally:
            await close_writer(writer)
    check_delayed(peer, lines)


# -- hang(): no reply, and teardown still finishes -------------------------------------------


def hanging() -> FakePeer:
    peer = FakePeer(framing=Lines(), name="hang")
    peer.on_connect().send(b"HELLO")
    peer.expect(b"LOGIN alice").hang()
    return peer


def check_hung(peer: FakePeer) -> None:
    events = [(e.kind, e.data, e.note) for e in peer.transcript.for_connection(1)]
    assert [(kind, data) for kind, data, _ in events[:4]] == [
        ("connected", b""),
        ("sent", b"HELLO\n"),
        ("received", b"LOGIN alice"),
        ("hanging", b""),
    ]
    assert events[3][2] == "(answering nothing more)"
    assert events[4:] == [("closed", b"", "(the peer stopped)")]
    assert not peer.connections[0].open


def test_hang_blocking_client() -> None:
    peer = hanging()
    with contextlib.ExitStack() as client:
        with peer.serve():
            sock, reader = client.enter_context(blocking_connection(peer))
            assert reader.readline() == b"HELLO\n"
            sock.sendall(b"LOGIN alice\n")
            sock.settimeout(NO_ANSWER)
            with pytest.raises(TimeoutError):
                sock.recv(100)
        sock.settimeout(CLIENT_TIMEOUT)
        assert sock.recv(100) == b""  # leaving serve() closed the hanging connection
    check_hung(peer)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_hang_asyncio_client(host: Host) -> None:
    peer = hanging()
    async with contextlib.AsyncExitStack() as client:
        async with hosted(peer, host):
            reader, writer = await asyncio.open_connection(*peer.address)
            client.push_async_callback(close_writer, writer)
            assert await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT) == b"HELLO\n"
            writer.write(b"LOGIN alice\n")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readline(), NO_ANSWER)
        # leaving serve() closed the hanging connection
        assert await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT) == b""
    check_hung(peer)


@pytest.mark.anyio
async def test_hang_trio_client() -> None:
    peer = hanging()
    async with contextlib.AsyncExitStack() as client:
        async with peer.serve():
            stream = await trio.open_tcp_stream(*peer.address)
            client.push_async_callback(stream.aclose)
            lines = TrioLines(stream)
            with trio.fail_after(CLIENT_TIMEOUT):
                assert await lines.readline() == b"HELLO\n"
                await lines.send(b"LOGIN alice\n")
            with trio.move_on_after(NO_ANSWER) as waited:
                await stream.receive_some()
            assert waited.cancelled_caught
        with trio.fail_after(CLIENT_TIMEOUT):
            assert await stream.receive_some() == b""  # leaving serve() closed it
    check_hung(peer)


# -- half_close(): the client reads EOF, the peer keeps reading -----------------------------


def test_half_close_blocking_client() -> None:
    peer = FakePeer(framing=Lines(), name="half")
    peer.expect(b"QUIT").reply(b"BYE").half_close()
    peer.expect(b"STATS")
    with peer.serve(), blocking_connection(peer) as (sock, reader):
        sock.sendall(b"QUIT\n")
        assert reader.readline() == b"BYE\n"
        assert reader.read() == b""  # the peer's side is shut down...
        sock.sendall(b"STATS\n")  # ...but it still reads
        peer.wait_until_done()
        assert peer.connections[0].open
    assert peer.received == [b"QUIT", b"STATS"]
    kinds = [(e.kind, e.data) for e in peer.transcript.for_connection(1)]
    assert kinds[:5] == [
        ("connected", b""),
        ("received", b"QUIT"),
        ("sent", b"BYE\n"),
        ("half-closed", b""),
        ("received", b"STATS"),
    ]


def replier_after_half_close(peer: FakePeer) -> None:
    with peer.serve(), blocking_connection(peer) as (sock, reader):
        sock.sendall(b"QUIT\n")
        assert reader.readline() == b"BYE\n"
        assert reader.read() == b""
        sock.sendall(b"NOOP\n")  # the script answers it, on a connection it half-closed
        peer.wait_until_done()


def test_a_reply_after_half_close_fails_the_test() -> None:
    # Each rule alone is valid; together the script writes after half_close(). The peer
    # cannot write: the test must say so, not pass with the error only logged.
    peer = FakePeer(framing=Lines(), name="half")
    peer.expect(b"QUIT").reply(b"BYE").half_close()
    noop = peer.expect(b"NOOP").reply(b"NOOPED")
    with pytest.raises(Error, match=r"half[-_]clos") as info:
        replier_after_half_close(peer)
    assert noop.describe() in str(info.value)


# -- sync points: wait_for_connections, wait_until_done --------------------------------------

ALL_REQUESTS = b"".join(request + b"\n" for request in REQUESTS)
ALL_REPLIES = b"".join(REPLIES)


@over_transports
def test_waits_blocking(transport: Transport) -> None:
    script = scripted(transport=transport)
    with (
        script.peer.serve() as peer,
        blocking_connection(peer, transport) as (sock, reader),
    ):
        peer.wait_for_connections(1)
        assert len(peer.connections) == 1
        sock.sendall(ALL_REQUESTS)  # no reads: the peer's waits are the sync points
        peer.wait_until_done()
        assert peer.done
        assert peer.received == REQUESTS
        assert reader.read() == ALL_REPLIES
    check_conversation(
        script, list(REPLIES), thread=HUB_THREAD, pipelined=True, transport=transport
    )


@pytest.mark.asyncio
async def test_blocking_waits_in_an_async_test_when_the_hub_serves() -> None:
    script = scripted()
    with script.peer.serve() as peer, blocking_connection(peer) as (sock, reader):
        peer.wait_for_connections(1)
        sock.sendall(ALL_REQUESTS)
        peer.wait_until_done()
        assert peer.received == REQUESTS
        assert reader.read() == ALL_REPLIES
    check_conversation(script, list(REPLIES), thread=HUB_THREAD, pipelined=True)


@pytest.mark.asyncio
@over_transports
@pytest.mark.parametrize("host", HOSTS)
async def test_waits_asyncio(host: Host, transport: Transport) -> None:
    script = scripted(transport=transport)
    async with hosted(script.peer, host) as peer, asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await open_streams(peer, transport)
        try:
            await peer.wait_for_connections_async(1)
            assert len(peer.connections) == 1
            writer.write(ALL_REQUESTS)
            await peer.wait_until_done_async()
            assert peer.done
            assert peer.received == REQUESTS
            assert await reader.read() == ALL_REPLIES
        finally:
            await close_writer(writer)
    check_conversation(
        script,
        list(REPLIES),
        thread=serving_thread(host),
        pipelined=True,
        transport=transport,
    )


@pytest.mark.anyio
@over_transports
async def test_waits_trio(transport: Transport) -> None:
    script = scripted(transport=transport)
    async with script.peer.serve() as peer:
        with trio.fail_after(CLIENT_TIMEOUT):
            async with await open_trio_stream(peer, transport) as stream:
                await peer.wait_for_connections_async(1)
                assert len(peer.connections) == 1
                await stream.send_all(ALL_REQUESTS)
                await peer.wait_until_done_async()
                assert peer.done
                assert peer.received == REQUESTS
                received = b""
                while chunk := await stream.receive_some():
                    received += chunk
                assert received == ALL_REPLIES
    check_conversation(
        script, list(REPLIES), thread=HUB_THREAD, pipelined=True, transport=transport
    )


def check_wait_timeout(error: WaitTimeout, script: Script, what: str, timeout: float) -> None:
    assert isinstance(error, TimeoutError)
    assert isinstance(error, ConversationError)
    assert error.diagnosis == (
        f"timed out after {timeout} s waiting for {what}\n"
        f"  still expected: {script.get.describe()}\n"
        f"  still expected: {script.quit.describe()}"
    )
    text = str(error)
    assert text.startswith(error.diagnosis + "\n\n")
    assert f"fake peer 'conformance' on 127.0.0.1:{script.peer.port}" in text
    assert event_line("received", "'LOGIN alice' -> expect #1 'LOGIN alice'") in text


def stalled_blocking(script: Script) -> None:
    with script.peer.serve() as peer, blocking_connection(peer) as (sock, reader):
        assert reader.readline() == b"HELLO fakepeer\n"
        sock.sendall(b"LOGIN alice\n")
        assert reader.readline() == b"OK\n"
        with pytest.raises(WaitTimeout) as done:
            peer.wait_until_done(timeout=0.2)
        check_wait_timeout(done.value, script, "the script to be done", 0.2)
        with pytest.raises(WaitTimeout) as connected:
            peer.wait_for_connections(2, timeout=0.1)
        check_wait_timeout(connected.value, script, "2 connection(s)", 0.1)


def test_wait_timeout_blocking() -> None:
    script = scripted()
    with pytest.raises(UnmetExpectations):  # leaving serve() with the script unfinished
        stalled_blocking(script)


async def stalled_asyncio(script: Script, host: Host) -> None:
    async with hosted(script.peer, host) as peer, asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        try:
            assert await reader.readline() == b"HELLO fakepeer\n"
            writer.write(b"LOGIN alice\n")
            assert await reader.readline() == b"OK\n"
            with pytest.raises(WaitTimeout) as done:
                await peer.wait_until_done_async(timeout=0.2)
            check_wait_timeout(done.value, script, "the script to be done", 0.2)
            with pytest.raises(WaitTimeout) as connected:
                await peer.wait_for_connections_async(2, timeout=0.1)
            check_wait_timeout(connected.value, script, "2 connection(s)", 0.1)
        finally:
            await close_writer(writer)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_wait_timeout_asyncio(host: Host) -> None:
    script = scripted()
    with pytest.raises(UnmetExpectations):
        await stalled_asyncio(script, host)


async def stalled_trio(script: Script) -> None:
    async with script.peer.serve() as peer, await trio.open_tcp_stream(*peer.address) as stream:
        client = TrioLines(stream)
        with trio.fail_after(CLIENT_TIMEOUT):
            assert await client.readline() == b"HELLO fakepeer\n"
            await client.send(b"LOGIN alice\n")
            assert await client.readline() == b"OK\n"
        with pytest.raises(WaitTimeout) as done:
            await peer.wait_until_done_async(timeout=0.2)
        check_wait_timeout(done.value, script, "the script to be done", 0.2)
        with pytest.raises(WaitTimeout) as connected:
            await peer.wait_for_connections_async(2, timeout=0.1)
        check_wait_timeout(connected.value, script, "2 connection(s)", 0.1)


@pytest.mark.anyio
async def test_wait_timeout_trio() -> None:
    script = scripted()
    with pytest.raises(UnmetExpectations):
        await stalled_trio(script)


# -- a problem ends a wait early, raised at once ---------------------------------------------

#: Far longer than the test should take: reaching it would raise WaitTimeout, failing the test.
PATIENCE = 5.0


def wrong_then_wait_blocking(script: Script) -> None:
    with script.peer.serve() as peer, blocking_connection(peer) as (sock, _reader):
        sock.sendall(b"LOGIN mallory\n")
        with pytest.raises(UnexpectedData) as early:
            peer.wait_for_connections(2, timeout=PATIENCE)
        check_unexpected(early.value, script, final=False)
        with pytest.raises(UnexpectedData):
            peer.wait_until_done(timeout=PATIENCE)
        with pytest.raises(UnexpectedData):
            peer.check()


def test_wait_raises_the_recorded_problem_early_blocking() -> None:
    script = scripted()
    # The waits raise it; the test caught it there, so leaving serve() does not raise it again.
    wrong_then_wait_blocking(script)


async def wrong_then_wait_asyncio(script: Script, host: Host) -> None:
    async with hosted(script.peer, host) as peer:
        _reader, writer = await asyncio.open_connection(*peer.address)
        try:
            writer.write(b"LOGIN mallory\n")
            with pytest.raises(UnexpectedData) as early:
                await peer.wait_for_connections_async(2, timeout=PATIENCE)
            check_unexpected(early.value, script, final=False)
            with pytest.raises(UnexpectedData):
                await peer.wait_until_done_async(timeout=PATIENCE)
        finally:
            await close_writer(writer)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_wait_raises_the_recorded_problem_early_asyncio(host: Host) -> None:
    # The waits raise it; caught there, it is handled: leaving serve() does not raise again.
    await wrong_then_wait_asyncio(scripted(), host)


async def wrong_then_wait_trio(script: Script) -> None:
    async with script.peer.serve() as peer, await trio.open_tcp_stream(*peer.address) as stream:
        await stream.send_all(b"LOGIN mallory\n")
        with pytest.raises(UnexpectedData) as early:
            await peer.wait_for_connections_async(2, timeout=PATIENCE)
        check_unexpected(early.value, script, final=False)
        with pytest.raises(UnexpectedData):
            await peer.wait_until_done_async(timeout=PATIENCE)


@pytest.mark.anyio
async def test_wait_raises_the_recorded_problem_early_trio() -> None:
    await wrong_then_wait_trio(scripted())


def wrong_then_wait_uncaught(script: Script) -> None:
    with script.peer.serve() as peer, blocking_connection(peer) as (sock, _reader):
        sock.sendall(b"LOGIN mallory\n")
        peer.wait_for_connections(2, timeout=PATIENCE)


def test_a_problem_raised_by_a_wait_is_not_repeated_when_leaving_serve() -> None:
    script = scripted()
    with pytest.raises(UnexpectedData) as info:
        wrong_then_wait_uncaught(script)
    error = info.value
    check_unexpected(error, script)
    notes = getattr(error, "__notes__", [])
    repeated = [note for note in notes if error.diagnosis in note]
    assert repeated == [], "leaving serve() added the error it was raising as a note to itself"


# -- misuse: RuntimeError with a pointer to the right call -----------------------------------


def test_address_before_serve() -> None:
    peer = FakePeer(framing=Lines())
    with pytest.raises(RuntimeError, match=r"^peer\.address is known once the peer serves: use "):
        _ = peer.address
    with pytest.raises(RuntimeError, match=r"^peer\.host is known once the peer serves"):
        _ = peer.host
    with pytest.raises(RuntimeError, match=r"^peer\.port is known once the peer serves"):
        _ = peer.port


def test_blocking_wait_before_serve() -> None:
    peer = FakePeer(framing=Lines())
    with pytest.raises(RuntimeError, match=r"^peer\.wait_for_connections\(\) needs a serving peer"):
        peer.wait_for_connections(1)
    with pytest.raises(RuntimeError, match=r"^peer\.wait_until_done\(\) needs a serving peer"):
        peer.wait_until_done()


SERVED_TWICE = r"already served; a FakePeer serves once, make a new one"


def test_serving_twice() -> None:
    peer = FakePeer(framing=Lines(), name="twice")
    peer.expect(b"PING").reply(b"PONG")
    with peer.serve():
        with pytest.raises(RuntimeError, match=SERVED_TWICE), peer.serve():
            pass
        with blocking_connection(peer) as (sock, reader):  # still serving
            sock.sendall(b"PING\n")
            assert reader.readline() == b"PONG\n"
    with pytest.raises(RuntimeError, match=SERVED_TWICE), peer.serve():
        pass
    assert "'twice' stopped" in repr(peer)


@pytest.mark.asyncio
async def test_serving_twice_async() -> None:
    peer = FakePeer(framing=Lines(), name="twice")
    async with peer.serve():
        with pytest.raises(RuntimeError, match=SERVED_TWICE):
            async with peer.serve():
                pass
        with pytest.raises(RuntimeError, match=SERVED_TWICE), peer.serve():
            pass
    with pytest.raises(RuntimeError, match=SERVED_TWICE):
        async with peer.serve():
            pass


@pytest.mark.asyncio
async def test_blocking_wait_in_the_loop_that_hosts_the_peer() -> None:
    peer = FakePeer(framing=Lines(), name="in-loop")
    async with peer.serve():
        with pytest.raises(
            RuntimeError,
            match=r"^peer\.wait_for_connections\(\) would block the event loop that serves this "
            r"peer; use 'await peer\.wait_for_connections_async\(\)'$",
        ):
            peer.wait_for_connections(1)
        with pytest.raises(
            RuntimeError,
            match=r"^peer\.wait_until_done\(\) would block the event loop that serves this "
            r"peer; use 'await peer\.wait_until_done_async\(\)'$",
        ):
            peer.wait_until_done()
