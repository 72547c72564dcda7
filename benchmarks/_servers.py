"""The servers and clients the cases share: bare asyncio baselines, fakepeer peers, clients.

Every exchange is ``PING\\n`` -> ``PONG\\n`` on loopback. The bare servers are what a careful
user writes by hand; fakepeer's are what its docs show.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Final

from fakepeer import ANY, FakePeer, Lines, Raw

HOST: Final = "127.0.0.1"
REQUEST: Final = b"PING\n"
RESPONSE: Final = b"PONG\n"
#: Bound on every blocking client call and every wait, so a broken server fails, never hangs.
TIMEOUT: Final = 10.0

Address = tuple[str, int]


# -- bare asyncio servers -----------------------------------------------------------------------


class StreamsServer:
    """The baseline: ``asyncio.start_server`` with a handler per connection.

    ``mode`` is ``"pingpong"`` (readline, answer ``PONG``), ``"echo"`` (write back what comes)
    or ``"sink"`` (read and drop). Each handler closes its side when the client's side ends.
    ``stop()`` closes the server and waits until every handler has finished: the teardown a
    test needs so that nothing of it runs on into the next one (what Python 3.12's
    ``Server.wait_closed()`` waits for; 3.11's does not).
    """

    def __init__(self, mode: str = "pingpong") -> None:
        self.mode = mode
        self.handlers: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            if self.mode == "pingpong":
                while line := await reader.readline():
                    if line == REQUEST:
                        writer.write(RESPONSE)
            elif self.mode == "echo":
                while data := await reader.read(262144):
                    writer.write(data)
                    await writer.drain()
            else:
                while await reader.read(262144):
                    pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def start(self) -> Address:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        sockname = self.server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))

    async def close(self) -> None:
        """Close the listener and wait for it: all most hand-written fixtures do."""
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def join_handlers(self) -> None:
        """Wait until every handler has seen its client go and closed its side."""
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=TIMEOUT)
        await asyncio.sleep(0)  # the transports' connection_lost

    async def stop(self) -> None:
        await self.close()
        await self.join_handlers()


class BareProtocol(asyncio.Protocol):
    """The lower bound: a bare protocol, no streams, no tasks; answers from data_received."""

    def __init__(self, mode: str = "pingpong") -> None:
        self.mode = mode
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.mode == "pingpong":
            if lines := data.count(b"\n"):
                self.transport.write(RESPONSE * lines)
        elif self.mode == "echo":
            self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close our side too


class ProtocolServer:
    """A server of :class:`BareProtocol`; ``stop()`` closes the listener and waits for it."""

    def __init__(self, mode: str = "pingpong") -> None:
        self.mode = mode
        self.server: asyncio.Server | None = None

    async def start(self) -> Address:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: BareProtocol(self.mode), HOST, 0)
        sockname = self.server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await settle()


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


# -- fakepeer -----------------------------------------------------------------------------------


def pingpong_peer(*, always: bool) -> FakePeer:
    """``expect`` (one exchange, as in a per-test script) or ``always`` (many round trips)."""
    peer = FakePeer(framing=Lines())
    if always:
        peer.always(b"PING").reply(b"PONG")
    else:
        peer.expect(b"PING").reply(b"PONG")
    return peer


def bulk_peer(mode: str) -> FakePeer:
    """``echo``: every byte goes back; ``sink``: every byte is taken and dropped."""
    peer = FakePeer(framing=Raw())
    rule = peer.always(ANY)
    if mode == "echo":
        rule.echo()
    return peer


# -- clients ------------------------------------------------------------------------------------


async def async_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    if (line := await reader.readline()) != RESPONSE:
        raise AssertionError(f"the server answered {line!r}, not PONG")


async def async_close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def blocking_connect(address: Address) -> socket.socket:
    sock = socket.create_connection(address, timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
    return sock


def blocking_trip(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    data = sock.recv(64)
    while data and not data.endswith(b"\n"):
        more = sock.recv(64)
        if not more:
            break
        data += more
    if data != RESPONSE:
        raise AssertionError(f"the server answered {data!r}, not PONG")
