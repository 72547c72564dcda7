from __future__ import annotations

import socket

import pytest

from fakepeer import FakePeer, Lines


@pytest.mark.fakepeer(framing=Lines())
def test_sync(fake_peer: FakePeer) -> None:
    fake_peer.expect(b"PING").reply(b"PONG")
    with socket.create_connection(fake_peer.address) as sock:
        sock.sendall(b"PING\n")
        assert sock.recv(100) == b"PONG\n"


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines())
async def test_async(fake_peer: FakePeer) -> None:
    import asyncio

    fake_peer.expect(b"PING").reply(b"PONG")
    reader, writer = await asyncio.open_connection(*fake_peer.address)
    writer.write(b"PING\n")
    assert await reader.readline() == b"PONG\n"
    writer.close()
    await writer.wait_closed()
