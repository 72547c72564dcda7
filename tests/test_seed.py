"""The seed's scenario, rewritten with fake_peer.

The original (shared/seed) ran a blocking ``accept()`` loop inside a pytest-asyncio fixture,
starved the event loop, and hung until pytest-timeout killed the run. Here the peer lives on
the hub thread, listens on a free port before the test starts, and needs no sleep: the test
calls the same blocking ``client.connect()`` inside an async test, and passes at once.
"""

from __future__ import annotations

import socket

import pytest

from fakepeer import FakePeer


@pytest.mark.asyncio
async def test_simple_server(fake_peer: FakePeer) -> None:
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(fake_peer.address)  # blocking, inside an async test, like the seed
    client.close()
    await fake_peer.wait_for_connections_async(1)
    assert len(fake_peer.connections) == 1


def test_simple_server_sync(fake_peer: FakePeer) -> None:
    with socket.create_connection(fake_peer.address) as client:
        assert client.getpeername() == fake_peer.address
    fake_peer.wait_for_connections(1)
    assert fake_peer.connections[0].client.startswith("127.0.0.1:")
