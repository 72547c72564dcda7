"""IPv6, names that resolve to several loopback addresses, and Unix domain sockets: the
conformance conversation over each, on both hosts, and the errors of each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from _hosts import Host, hosted
from fakepeer import ANY, FakePeer, Lines, ScriptError

Address = tuple[str, int]
HOSTS: list[Host] = ["hub", "loop"]
#: Bounds every client-side read, so a broken peer fails a test instead of hanging it.
CLIENT_TIMEOUT = 5.0
REQUESTS = [b"LOGIN alice", b"GET answer", b"QUIT"]
#: What every client reads (the conversation of tests/test_conformance.py).
REPLIES = [b"HELLO fakepeer\n", b"OK\n", b"VALUE 42\n", b"BYE\n", b""]


def converse(sock: socket.socket) -> list[bytes]:
    with sock.makefile("rb") as reader:
        lines = [reader.readline()]
        for request in REQUESTS:
            sock.sendall(request + b"\n")
            lines.append(reader.readline())
        lines.append(reader.read())
    return lines


def blocking_client(address: Address) -> list[bytes]:
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        return converse(sock)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def converse_async(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[bytes]:
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


async def streams_client(address: Address) -> list[bytes]:
    async with asyncio.timeout(CLIENT_TIMEOUT):
        return await converse_async(*await asyncio.open_connection(*address))


def scripted(**options: object) -> FakePeer:
    peer = FakePeer(framing=Lines(), **options)  # type: ignore[arg-type]
    peer.on_connect().send(b"HELLO fakepeer")
    peer.expect(b"LOGIN alice").reply(b"OK")
    peer.expect(b"GET answer").reply(b"VALUE 42")
    peer.expect(b"QUIT").reply(b"BYE").close()
    return peer


def check(peer: FakePeer, lines: list[bytes]) -> None:
    assert lines == REPLIES
    assert peer.received == REQUESTS
    peer.verify()
    (connection,) = peer.connections
    assert not connection.open


# -- IPv6 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelled", ["::1", "[::1]"])
def test_ipv6_blocking_client_on_the_hub(spelled: str) -> None:
    peer = scripted(host=spelled)
    with peer.serve():
        assert peer.host == "::1"
        assert peer.address == ("::1", peer.port)
        lines = blocking_client(peer.address)
    check(peer, lines)
    assert peer.connections[0].client.startswith("[::1]:")
    assert peer.render_transcript().startswith(f"fake peer 'fake peer' on [::1]:{peer.port}\n")


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_ipv6_streams_client(host: Host) -> None:
    peer = scripted(host="[::1]")
    async with hosted(peer, host):
        lines = await streams_client(peer.address)
    check(peer, lines)


@pytest.mark.asyncio
async def test_ipv6_blocking_client_against_the_in_loop_host() -> None:
    peer = scripted(host="::1")
    async with peer.serve():
        lines = await asyncio.to_thread(blocking_client, peer.address)
    check(peer, lines)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_localhost_serves_a_client_of_either_address_on_one_port(host: Host) -> None:
    peer = FakePeer(framing=Lines(), host="localhost")
    peer.always(b"PING").reply(b"PONG")
    async with hosted(peer, host):
        assert peer.address == ("127.0.0.1", peer.port)
        for address in ("127.0.0.1", "::1"):
            reader, writer = await asyncio.open_connection(address, peer.port)
            try:
                writer.write(b"PING\n")
                assert await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT) == b"PONG\n"
            finally:
                await close_writer(writer)
    peer.verify()
    clients = [connection.client for connection in peer.connections]
    assert clients[0].startswith("127.0.0.1:")
    assert clients[1].startswith("[::1]:")
    title = peer.render_transcript().splitlines()[0]
    assert title == f"fake peer 'fake peer' on 127.0.0.1:{peer.port}, [::1]:{peer.port}"


def test_an_address_that_cannot_be_bound_is_a_script_error() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as taken:
        port = taken.getsockname()[1]
        peer = FakePeer(host="::1", port=port)
        with pytest.raises(ScriptError) as info, peer.serve():
            pass
    assert str(info.value) == (
        f"FakePeer(host='::1'): cannot listen on [::1]:{port}: Address already in use"
    )


def test_an_address_not_of_this_machine_is_a_script_error() -> None:
    peer = FakePeer(host="192.0.2.1", external=True)
    with pytest.raises(ScriptError) as info, peer.serve():
        pass
    assert str(info.value) == (
        "FakePeer(host='192.0.2.1'): cannot listen on 192.0.2.1:0: Cannot assign requested address"
    )


@pytest.mark.parametrize("port", [-1, 65536, 1.5, True, "80"])
def test_a_wrong_port_is_a_script_error(port: object) -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(port=port)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"FakePeer(port=...) takes a port number from 0 to 65535 (0: the OS chooses a free "
        f"one), got {port!r}"
    )


# -- Unix domain sockets ----------------------------------------------------------------------


@contextlib.contextmanager
def unix_connection(path: str) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CLIENT_TIMEOUT)
        sock.connect(path)
        yield sock


def blocking_unix_client(path: str) -> list[bytes]:
    with unix_connection(path) as sock:
        return converse(sock)


async def streams_unix_client(path: str) -> list[bytes]:
    async with asyncio.timeout(CLIENT_TIMEOUT):
        return await converse_async(*await asyncio.open_unix_connection(path))


def test_unix_true_blocking_client_on_the_hub_and_nothing_left_after() -> None:
    peer = scripted(unix=True)
    with peer.serve():
        path = peer.address
        assert isinstance(path, str)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        lines = blocking_unix_client(path)
    check(peer, lines)
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))  # the private directory too
    assert peer.connections[0].client == "unix socket client"
    assert peer.render_transcript().startswith(f"fake peer 'fake peer' on unix socket {path}\n")


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_unix_true_streams_client(host: Host) -> None:
    peer = scripted(unix=True)
    async with hosted(peer, host):
        path = peer.address
        lines = await streams_unix_client(path)
    check(peer, lines)
    assert not os.path.exists(os.path.dirname(path))


@pytest.mark.asyncio
async def test_unix_blocking_client_against_the_in_loop_host() -> None:
    peer = scripted(unix=True)
    async with peer.serve():
        lines = await asyncio.to_thread(blocking_unix_client, peer.address)
    check(peer, lines)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_unix_path_is_listened_on_and_removed(host: Host, tmp_path: Path) -> None:
    path = tmp_path / "db.sock"
    peer = scripted(unix=path)
    async with hosted(peer, host):
        assert peer.address == str(path)
        lines = await streams_unix_client(peer.address)
    check(peer, lines)
    assert not path.exists()
    assert tmp_path.exists()  # not ours: only the socket file is removed


def test_unix_never_served_leaves_nothing() -> None:
    peer = FakePeer(unix=True)
    serving = peer.serve()
    serving.listen()
    path = peer.address
    assert os.path.exists(path)
    serving.stop()
    assert not os.path.exists(os.path.dirname(path))


def test_unix_peer_has_no_host_or_port() -> None:
    peer = FakePeer(unix=True)
    with peer.serve():
        for what in ("host", "port"):
            with pytest.raises(RuntimeError) as info:
                getattr(peer, what)
            assert str(info.value) == (
                f"peer.{what}: this peer listens on a Unix socket ({peer.address}), which "
                f"has no host or port; peer.address is its path"
            )


def test_unix_refuses_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    peer = FakePeer(unix=str(path))
    with pytest.raises(ScriptError) as info, peer.serve():
        pass
    assert str(info.value) == (
        f"FakePeer(unix={str(path)!r}): cannot listen on {path}: a file that is not a socket "
        f"is there; the peer does not replace it (remove it, or choose another path)"
    )
    assert path.read_text() == "keep me"


def test_unix_refuses_a_path_a_server_listens_on(tmp_path: Path) -> None:
    path = str(tmp_path / "live.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen()
        with pytest.raises(ScriptError) as info, FakePeer(unix=path).serve():
            pass
        assert os.path.exists(path)
    assert str(info.value) == (
        f"FakePeer(unix={path!r}): cannot listen on {path}: a server listens on it already"
    )


def test_unix_replaces_a_socket_file_nobody_listens_on(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)  # closed without unlinking: left over
    peer = scripted(unix=path)
    with peer.serve():
        lines = blocking_unix_client(path)
    check(peer, lines)


def test_unix_path_in_a_missing_directory_is_a_script_error(tmp_path: Path) -> None:
    path = str(tmp_path / "missing" / "x.sock")
    with pytest.raises(ScriptError) as info, FakePeer(unix=path).serve():
        pass
    assert str(info.value) == (
        f"FakePeer(unix={path!r}): cannot listen on {path}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("options", "given"),
    [
        ({"host": "::1"}, "host='::1'"),
        ({"port": 8080}, "port=8080"),
        ({"host": "localhost", "port": 1}, "host='localhost', port=1"),
        ({"external": True}, "external=True"),
    ],
)
def test_unix_with_a_host_or_port_is_a_script_error(options: dict[str, object], given: str) -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(unix=True, **options)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"FakePeer(unix=..., {given}): a Unix socket peer listens on a path, not on a host "
        f"and port; give unix= or host=/port=, not both"
    )


@pytest.mark.parametrize("unix", ["", b"/tmp/x.sock", 3])
def test_a_wrong_unix_is_a_script_error(unix: object) -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(unix=unix)  # type: ignore[arg-type]
    assert str(info.value) == (
        "FakePeer(unix=...) takes True (a fresh path in a private directory) or the socket's "
        f"path, a non-empty str or os.PathLike; got {unix!r}"
    )


def test_unix_refuse_fault_then_listen_again() -> None:
    peer = FakePeer(unix=True)
    with peer.serve():
        path = peer.address
        with peer.faults.refuse(), pytest.raises(ConnectionRefusedError), unix_connection(path):
            pass
        with unix_connection(path):
            peer.wait_for_connections(1)
    assert not os.path.exists(os.path.dirname(path))


def test_the_factory_passes_unix_through(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import socket

        def test_one(fake_peer_factory):
            peer = fake_peer_factory(unix=True)
            peer.always(b"PING").reply(b"PONG")
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(peer.address)
                sock.sendall(b"PING")
                assert sock.recv(4) == b"PONG"
            assert os.path.exists(peer.address)
        """
    )
    result = pytester.runpytest("-W", "error", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_refuse_again_before_the_loop_turned_still_closes_the_port(transport: str) -> None:
    # refuse(), remove(), refuse() in the serving loop with no await between: the second
    # refuse used to find the port "refusing" still (the re-listen not accepted yet) and
    # leave it open while the transcript said it was closed.
    async def probe(peer: FakePeer) -> bytes | str:
        if transport == "tcp":
            try:
                reader, writer = await asyncio.open_connection(*peer.address)
            except ConnectionRefusedError:
                return "refused"
            writer.write(b"x")
            answer = await reader.read(10)
            writer.close()
            return answer
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(peer.address)
            sock.send(b"x")
            try:
                return await asyncio.wait_for(loop.sock_recv(sock, 10), 5)
            except ConnectionRefusedError:
                return "refused"

    async def main() -> list[bytes | str]:
        peer = FakePeer(transport=transport)
        peer.always(ANY).reply(b"ok")
        async with peer.serve():
            seen = [await probe(peer)]
            peer.faults.refuse().remove()
            second = peer.faults.refuse()
            seen.append(await probe(peer))
            second.remove()
            seen.append(await probe(peer))
        return seen

    assert asyncio.run(main()) == [b"ok", "refused", b"ok"]
