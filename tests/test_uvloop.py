"""``async with peer.serve()`` in a uvloop event loop: the peer served in the caller's loop.

uvloop's transports are not :class:`asyncio.Transport` subclasses, their sockets are libuv
handles seen through a pseudo-socket, and they pause, write and close in their own code: a
check of ``isinstance(transport, asyncio.Transport)`` in ``connection_made`` once failed
there, the loop only logged it, and the client hung. Each test runs its coroutine in a new
uvloop loop (:func:`in_uvloop` checks that it is one), with real sockets on loopback: the
conformance clients of ``test_conformance``, the framings, a handler, backpressure both
ways, the stop's verdict on a message cut short, the send-and-close race at the stop, and
the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from fakepeer import (
    ANY,
    FakePeer,
    IncompleteMessage,
    LengthPrefixed,
    Lines,
    Proxy,
    UnexpectedData,
    UnmetExpectations,
    UpstreamError,
    _runtime,
)
from fakepeer._host import Host
from fakepeer._hub import hub
from test_conformance import (
    ALL_REPLIES,
    ALL_REQUESTS,
    CLIENT_TIMEOUT,
    NO_ANSWER,
    REPLIES,
    REQUESTS,
    TCP,
    TRANSPORTS,
    Address,
    Transport,
    blocking_client,
    check_conversation,
    check_delayed,
    check_hung,
    check_reset,
    check_unexpected,
    close_writer,
    delaying,
    hanging,
    protocol_client,
    resetting,
    scripted,
    stalled_asyncio,
    streams_client,
    wrong_streams_client,
    wrong_then_wait_asyncio,
)

# Not on Windows or PyPy (see the test extra's marker); everywhere else CI has it.
pytest.importorskip("uvloop")
import uvloop

T = TypeVar("T")
H = TypeVar("H", bound=Host)  # a FakePeer or a Proxy


def in_uvloop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to its end in a new uvloop loop, as ``uvloop.run()`` does (the loop is
    not set as the thread's current one, so pytest-asyncio's are left alone)."""

    async def checked() -> T:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, uvloop.Loop), f"not a uvloop loop: {loop!r}"
        return await main()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(checked())


@contextlib.asynccontextmanager
async def served_here(peer: H) -> AsyncIterator[H]:
    """``async with peer.serve()``, checked to serve in this loop, not on the hub."""
    before = hub.handovers
    serving = peer.serve()
    async with serving as served:
        assert serving.in_loop
        yield served
    assert hub.handovers == before  # no call went to the hub


def this_thread() -> str:
    return threading.current_thread().name


def only_connection(peer: FakePeer) -> _runtime._PeerProtocol:
    """The peer's one open connection, as the runtime serves it."""
    server = peer._server
    assert server is not None
    (protocol,) = server.protocols
    return protocol


async def until(peer: FakePeer, condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` on the peer's own wake-ups (it is tested after every event of
    the peer, lock held), for at most ``CLIENT_TIMEOUT``: no polling, no sleep."""
    if not await peer._waiters.wait_async(condition, CLIENT_TIMEOUT):
        pytest.fail(f"{what}: not within {CLIENT_TIMEOUT} s\n{peer.render_transcript()}")


# -- the conformance clients ---------------------------------------------------------------------


async def conversation(
    client: Callable[[FakePeer, Transport], Awaitable[list[bytes]]], transport: Transport = TCP
) -> None:
    script = scripted(transport=transport)
    async with served_here(script.peer) as peer:
        lines = await client(peer, transport)
    check_conversation(script, lines, thread=this_thread(), transport=transport)


async def conversation_from_a_thread() -> None:
    await conversation(lambda peer, transport: asyncio.to_thread(blocking_client, peer, transport))


async def wrong_bytes() -> None:
    script = scripted()
    with pytest.raises(UnexpectedData) as info:
        await wrong_streams_client(script, "loop")
    check_unexpected(info.value, script)


async def reset() -> None:
    peer = resetting()
    async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        try:
            assert await reader.readline() == b"HELLO\n"
            writer.write(b"LOGIN alice\n")
            with pytest.raises(ConnectionResetError):
                await reader.read(100)
        finally:
            await close_writer(writer)
    check_reset(peer)


async def after() -> None:
    peer = delaying()
    async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        try:
            writer.write(b"LOGIN alice\nNOOP\n")
            lines = [await reader.readline(), await reader.readline()]
        finally:
            await close_writer(writer)
    check_delayed(peer, lines)


async def hang() -> None:
    peer = hanging()
    async with contextlib.AsyncExitStack() as client:
        async with served_here(peer):
            reader, writer = await asyncio.open_connection(*peer.address)
            client.push_async_callback(close_writer, writer)
            assert await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT) == b"HELLO\n"
            writer.write(b"LOGIN alice\n")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readline(), NO_ANSWER)
        assert await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT) == b""
    check_hung(peer)


async def waits() -> None:
    script = scripted()
    async with served_here(script.peer) as peer, asyncio.timeout(CLIENT_TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        try:
            await peer.wait_for_connections_async(1)
            writer.write(ALL_REQUESTS)
            await peer.wait_until_done_async()
            assert peer.received == REQUESTS
            assert await reader.read() == ALL_REPLIES
        finally:
            await close_writer(writer)
    check_conversation(script, list(REPLIES), thread=this_thread(), pipelined=True)


async def wait_timeout() -> None:
    with pytest.raises(UnmetExpectations):
        await stalled_asyncio(scripted(), "loop")


async def wrong_then_wait() -> None:
    await wrong_then_wait_asyncio(scripted(), "loop")


SCENARIOS: dict[str, Callable[[], Awaitable[None]]] = {
    "streams": lambda: conversation(streams_client),
    "protocol": lambda: conversation(protocol_client),
    **{
        f"{client}-{transport.id}": functools.partial(conversation, function, transport)
        for client, function in [("streams", streams_client), ("protocol", protocol_client)]
        for transport in TRANSPORTS
        if transport is not TCP
    },
    "blocking-in-a-thread": conversation_from_a_thread,
    "wrong-bytes": wrong_bytes,
    "reset": reset,
    "after": after,
    "hang": hang,
    "waits": waits,
    "wait-timeout": wait_timeout,
    "wrong-then-wait": wrong_then_wait,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_conformance_in_a_uvloop_loop(scenario: str) -> None:
    async def main() -> None:
        await SCENARIOS[scenario]()

    in_uvloop(main)


# -- framings and a handler -------------------------------------------------------------------


def test_lines_echo() -> None:
    """Lines of every length up to 40,000 bytes, in one write and in 1-byte segments."""
    lines = [bytes([65 + n % 26]) * (n * 97 % 40_000) for n in range(300)]

    async def main() -> None:
        peer = FakePeer(framing=Lines(), name="echo")
        served_by: list[str] = []

        def echo(message: bytes) -> bytes:
            served_by.append(this_thread())
            return message

        peer.always(ANY).reply(echo)
        async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
            reader, writer = await asyncio.open_connection(*peer.address)
            try:
                writer.write(b"".join(line + b"\n" for line in lines))
                for byte in b"slow\n":
                    writer.write(bytes([byte]))
                    await writer.drain()
                writer.write_eof()
                assert await reader.read() == b"".join(line + b"\n" for line in [*lines, b"slow"])
            finally:
                await close_writer(writer)
        assert peer.received == [*lines, b"slow"]
        assert set(served_by) == {this_thread()}

    in_uvloop(main)


def test_length_prefixed() -> None:
    """A 4 MiB message, empty ones, and a prefix split across writes, answered framed."""
    framing = LengthPrefixed()
    messages = [b"", b"PING", b"z" * (4 << 20), b"", b"x" * 70_000]

    async def main() -> None:
        peer = FakePeer(framing=framing, name="length-prefixed")
        peer.always(ANY).reply(lambda message: b"%d" % len(message))
        async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
            reader, writer = await asyncio.open_connection(*peer.address)
            try:
                stream = b"".join(framing.encode(message) for message in messages)
                writer.write(stream[:2])  # half a prefix, then the rest
                await writer.drain()
                writer.write(stream[2:])
                for message in messages:
                    size = int.from_bytes(await reader.readexactly(4), "big")
                    assert await reader.readexactly(size) == b"%d" % len(message)
            finally:
                await close_writer(writer)
        assert peer.received == messages

    in_uvloop(main)


def test_a_handler() -> None:
    """A count, then that many numbers, one a line, then 3 raw bytes; runs in this thread."""
    numbers = list(range(1, 2001))

    async def main() -> None:
        peer = FakePeer(framing=Lines(), name="handler")
        ran_in: list[str] = []

        @peer.handler
        async def add_up(connection):  # type: ignore[no-untyped-def]
            ran_in.append(this_thread())
            count = int(await connection.receive())
            total = 0
            for _ in range(count):
                total += int(await connection.receive())
            connection.send(b"sum %d" % total)
            connection.send(b"tail " + await connection.receive_exactly(3))
            with pytest.raises(EOFError):
                await connection.receive()

        async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
            reader, writer = await asyncio.open_connection(*peer.address)
            try:
                writer.write(b"%d\n" % len(numbers))
                writer.write(b"".join(b"%d\n" % n for n in numbers))
                writer.write(b"END")
                writer.write_eof()
                assert await reader.read() == b"sum %d\ntail END\n" % sum(numbers)
            finally:
                await close_writer(writer)
        assert ran_in == [this_thread()]
        assert peer.received[0] == b"%d" % len(numbers)
        assert peer.received[-1] == b"END"

    in_uvloop(main)


# -- backpressure ---------------------------------------------------------------------------------


def sent_before_accept(address: Address, data: bytes) -> socket.socket:
    """A connected socket that sent ``data`` before the peer could accept it: connect()
    completes in the kernel, and the loop, this thread's, has not run since."""
    sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)
    sock.sendall(data)
    sock.setblocking(False)
    return sock


class Unread(asyncio.Protocol):
    """A client that reads nothing until told to, then everything, to the end (see
    :func:`unread`)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(exc)


async def unread(address: Address, first: bytes = b"") -> tuple[asyncio.Transport, Unread]:
    """An :class:`Unread` client, reading nothing from now on; ``first`` is sent before the
    peer accepts the connection. Paused here, not in its connection_made, where uvloop
    ignores a pause."""
    loop = asyncio.get_running_loop()
    sock = sent_before_accept(address, first)
    transport, client = await loop.create_connection(Unread, sock=sock)
    transport.pause_reading()
    return transport, client


REPLY = 256 * 1024
REQUEST_PAD = b"." * 30_000  # a few requests a segment: replies are written per segment
PIPELINED = 200  # 50 MiB of replies, far more than the kernel's buffers hold


def test_a_client_that_does_not_read_big_replies_then_reads_them() -> None:
    """While the client reads nothing, the peer stops reading it (pause_writing ->
    pause_reading on uvloop's transport); once it reads, every reply comes, in order."""

    async def main() -> None:
        peer = FakePeer(framing=Lines(), name="backpressure")
        peer.always(re.compile(rb"GET (\d+) \.*")).reply(lambda m: b"R" + m[1] + b"x" * REPLY)
        async with served_here(peer):
            transport, client = await unread(peer.address)
            try:
                for number in range(PIPELINED):
                    transport.write(b"GET %03d " % number + REQUEST_PAD + b"\n")
                await peer.wait_for_connections_async(1)
                served = only_connection(peer)
                assert served.transport is not None
                await until(
                    peer,
                    lambda: bool(served.paused & _runtime._SENDING),
                    "the peer paused reading its client that reads nothing",
                )
                assert not served.transport.is_reading()
                assert served.transport.get_write_buffer_size() > 0
                assert len(peer.received) < PIPELINED  # it stopped reading requests

                transport.resume_reading()
                transport.write_eof()  # the peer closes after
                assert await asyncio.wait_for(client.ended, CLIENT_TIMEOUT) is None
                assert client.data == b"".join(
                    b"R%03d" % number + b"x" * REPLY + b"\n" for number in range(PIPELINED)
                )
            finally:
                transport.close()
        assert len(peer.connections) == 1
        assert [message[:7] for message in peer.received] == [
            b"GET %03d" % number for number in range(PIPELINED)
        ]

    in_uvloop(main)


def test_a_handler_behind_stops_reading_its_client_until_it_receives() -> None:
    """Bytes the handler has not received yet stop the peer reading (pause_reading from
    data_received); once it receives, the client's flood goes through, none of it lost."""
    line = b"y" * 1000 + b"\n"
    count = 8_000  # 8 MB: more than the kernel's buffers between the two

    async def main() -> None:
        peer = FakePeer(framing=Lines(), name="behind")
        go = asyncio.Event()
        got: list[bytes] = []

        @peer.handler
        async def late(connection):  # type: ignore[no-untyped-def]
            await go.wait()
            for _ in range(count):
                got.append(await connection.receive())
            connection.send(b"got %d" % len(got))

        async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
            reader, writer = await asyncio.open_connection(*peer.address)
            try:
                writer.write(line * count)  # not drained: the peer is about to stop reading
                await peer.wait_for_connections_async(1)
                served = only_connection(peer)
                await until(
                    peer,
                    lambda: bool(served.paused & _runtime._HANDLER_BEHIND),
                    "the peer paused reading for its handler",
                )
                assert served.transport is not None
                assert not served.transport.is_reading()
                assert writer.transport.get_write_buffer_size() > 0  # the client is held up
                go.set()
                await writer.drain()
                assert await reader.readline() == b"got %d\n" % count
            finally:
                await close_writer(writer)
        assert got == [line[:-1]] * count

    in_uvloop(main)


GREETING = b"g" * (8 << 20)  # past the high-water mark and the kernel's buffers


@pytest.mark.parametrize("then", ["client-reads", "peer-stops"])
def test_what_came_while_a_greeting_paused_reading_is_read_when_it_resumes(then: str) -> None:
    """A greeting past the high-water mark pauses reading in connection_made; a request the
    client sent at once is held unread (uvloop read it anyway), then read when the client
    reads the greeting, or when the peer stops: it is never lost."""

    async def main() -> None:
        peer = FakePeer(framing=Lines(), name="greeting")
        peer.on_connect().send(GREETING)
        peer.expect(b"PING").reply(b"PONG")
        async with served_here(peer):
            transport, client = await unread(peer.address, b"PING\n")
            try:
                await peer.wait_for_connections_async(1)
                served = only_connection(peer)
                await until(peer, lambda: bool(served.paused & _runtime._SENDING), "paused")
                assert peer.received == []  # not read yet: the client reads nothing
                if then == "client-reads":
                    transport.resume_reading()
                    await peer.wait_until_done_async()
                    transport.write_eof()  # the peer closes
                    assert await asyncio.wait_for(client.ended, CLIENT_TIMEOUT) is None
                    assert client.data == GREETING + b"\nPONG\n"
            finally:
                transport.close()
        assert peer.received == [b"PING"]
        peer.verify()

    in_uvloop(main)


# -- the stop ---------------------------------------------------------------------------------


def partial_peer(kind: str) -> FakePeer:
    peer = FakePeer(framing=Lines(), name="partial")
    if kind == "always":
        peer.always(ANY)
    elif kind == "expect":
        peer.expect(b"partial")
    else:

        @peer.handler
        async def handle(connection):  # type: ignore[no-untyped-def]
            await connection.receive()

    return peer


@pytest.mark.parametrize("kind", ["always", "expect", "handler"])
@pytest.mark.parametrize("close", [True, False], ids=["client-closed", "client-connected"])
def test_a_partial_message_at_the_stop_is_an_incomplete_message(kind: str, close: bool) -> None:
    async def main() -> None:
        peer = partial_peer(kind)
        writers: list[asyncio.StreamWriter] = []

        async def serve() -> None:
            async with served_here(peer):
                _, writer = await asyncio.open_connection(*peer.address)
                writers.append(writer)
                writer.write(b"partial")
                await writer.drain()
                await peer.wait_for_connections_async(1)
                if close:
                    await close_writer(writer)

        with pytest.raises(IncompleteMessage) as info:
            await serve()
        await close_writer(writers[0])
        text = str(info.value)
        assert "connection #1" in text
        assert "in the middle of a message (Lines(b'\\n'))\n  leftover:  'partial'" in text
        assert "#1 received   'partial'" in text
        how = "ended" if close else "was cut off by the peer's stop"
        assert f"connection #1 {how} in the middle" in text

    in_uvloop(main)


def test_a_partial_length_prefixed_message_at_the_stop() -> None:
    async def main() -> None:
        peer = FakePeer(framing=LengthPrefixed(), name="partial")
        peer.always(ANY)
        writers: list[asyncio.StreamWriter] = []

        async def serve() -> None:
            async with served_here(peer):
                _, writer = await asyncio.open_connection(*peer.address)
                writers.append(writer)
                writer.write(b"\x00\x00\x00\x05ab")

        with pytest.raises(
            IncompleteMessage, match=r"leftover:  6 bytes:\n {13}00000000  00 00 00 05 61 62 "
        ):
            await serve()
        await close_writer(writers[0])

    in_uvloop(main)


RACES = 200


def fire_and_forget(address: Address) -> None:
    """Connect, send, close: connect() completes in the kernel, so this works in-loop."""
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"HELLO\n")


@pytest.mark.parametrize("client", ["socket", "uvloop-stream"])
def test_a_client_that_sends_and_closes_just_before_the_stop_loses_nothing(client: str) -> None:
    async def main() -> None:
        for run in range(RACES):
            peer = FakePeer(framing=Lines(), name="race")
            peer.expect(b"HELLO")
            writers: list[asyncio.StreamWriter] = []
            async with served_here(peer):
                if client == "socket":
                    fire_and_forget(peer.address)
                else:  # closed, and the stop begins, before the loop ran the close
                    _, writer = await asyncio.open_connection(*peer.address)
                    writers.append(writer)
                    writer.write(b"HELLO\n")
                    writer.close()
            for writer in writers:
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            assert peer.received == [b"HELLO"], f"run {run}: {peer.render_transcript()}"
            kinds = [event.kind for event in peer.transcript.for_connection(1)]
            assert kinds[:2] == ["connected", "received"], f"run {run}: {kinds}"
            assert len(peer.connections) == 1
            assert not peer.connections[0].open

    in_uvloop(main)


# -- faults that stop and resume listening or reading ------------------------------------------


def test_refuse_then_listen_again_in_the_loop() -> None:
    """A refuse fault closes the listener (remove_reader) and listens again (add_reader on
    a new socket, maybe on the same descriptor number)."""

    async def ping(address: Address) -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(b"PING\n")
            return await reader.readline()
        finally:
            await close_writer(writer)

    async def main() -> None:
        peer = FakePeer(framing=Lines(), name="refuse")
        peer.always(b"PING").reply(b"PONG")
        async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
            assert await ping(peer.address) == b"PONG\n"
            for _ in range(3):
                with peer.faults.refuse(), pytest.raises(ConnectionRefusedError):
                    await asyncio.open_connection(*peer.address)
                assert await ping(peer.address) == b"PONG\n"
        assert len(peer.connections) == 4

    in_uvloop(main)


@pytest.mark.parametrize("first", ["client-sends-at-once", "client-sends-later"])
def test_a_stop_reading_fault_holds_and_pushes_from_another_thread_still_go(first: str) -> None:
    """A stop_reading fault pauses reading in connection_made, and uvloop starts reading once
    connection_made returns, paused or not: bytes the client sent at once are held unread,
    and a client that sends later finds the peer not reading. Pushes from another thread
    (call_soon_threadsafe into the uvloop loop) are still written."""

    async def main() -> None:
        peer = FakePeer(framing=Lines(), name="stop-reading")
        peer.otherwise()
        peer.faults.stop_reading()
        async with served_here(peer), asyncio.timeout(CLIENT_TIMEOUT):
            early = b"PING\n" if first == "client-sends-at-once" else b""
            reader, writer = await asyncio.open_connection(
                sock=sent_before_accept(peer.address, early)
            )
            try:
                await peer.wait_for_connections_async(1)
                served = only_connection(peer)
                assert served.reading_stopped
                assert await asyncio.to_thread(peer.broadcast, b"news") == 1
                assert await reader.readline() == b"news\n"
                assert served.transport is not None
                assert not served.transport.is_reading()
                writer.write(b"PONG\n")
                assert await asyncio.to_thread(peer.broadcast, b"more") == 1
                assert await reader.readline() == b"more\n"
            finally:
                await close_writer(writer)
        assert peer.received == []
        text = peer.render_transcript()
        assert "#1 stopped    (reading: a stop_reading fault)" in text
        assert "received" not in text

    in_uvloop(main)


# -- the proxy ----------------------------------------------------------------------------------


def test_a_proxy_in_the_loop_in_front_of_a_peer_in_the_loop() -> None:
    """Both served in this uvloop loop: the proxy's upstream connection is a uvloop
    transport too; a 4 MiB answer, then the upstream's close, reach the client."""
    big = 4 << 20

    async def main() -> None:
        upstream = FakePeer(framing=Lines(), name="upstream")
        upstream.on_connect().send(b"HELLO")
        upstream.expect(b"BIG").reply(b"b" * big)
        upstream.expect(b"QUIT").reply(b"BYE").close()
        async with served_here(upstream):
            proxy = Proxy(upstream.address, transcript_budget=None)  # every byte kept
            proxy.faults.slice(65_536)
            async with served_here(proxy), asyncio.timeout(CLIENT_TIMEOUT):
                reader, writer = await asyncio.open_connection(*proxy.address)
                try:
                    assert await reader.readline() == b"HELLO\n"
                    writer.write(b"BIG\n")
                    assert await reader.readexactly(big + 1) == b"b" * big + b"\n"
                    writer.write(b"QUIT\n")
                    assert await reader.read() == b"BYE\n"
                finally:
                    await close_writer(writer)
        assert upstream.received == [b"BIG", b"QUIT"]
        upstream.verify()
        relayed = b"".join(event.data for event in proxy.transcript.events if event.kind == "sent")
        assert relayed == b"HELLO\n" + b"b" * big + b"\nBYE\n"
        assert "#1 received   'BIG\\n' -> upstream" in proxy.render_transcript()

    in_uvloop(main)


def test_a_proxy_in_the_loop_with_an_unreachable_upstream() -> None:
    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as probe:
            port = probe.getsockname()[1]  # free now, and closed: nobody listens there
        proxy = Proxy(("127.0.0.1", port))

        async def serve() -> None:
            async with served_here(proxy), asyncio.timeout(CLIENT_TIMEOUT):
                reader, writer = await asyncio.open_connection(*proxy.address)
                try:
                    assert await reader.read() == b""  # the proxy closed it
                finally:
                    await close_writer(writer)

        with pytest.raises(UpstreamError) as info:
            await serve()
        assert info.value.diagnosis.startswith(
            f"connection #1: the proxy could not connect to the upstream server "
            f"127.0.0.1:{port}: ConnectionRefusedError"
        )

    in_uvloop(main)
