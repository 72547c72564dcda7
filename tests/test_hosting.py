"""Where a peer listens, what leaving it costs, and the errors at its bounds."""

from __future__ import annotations

import asyncio
import socket

import pytest

from fakepeer import (
    ClientNotReading,
    FakePeer,
    FramingError,
    Lines,
    Proxy,
    ScriptError,
)

# -- loopback unless told otherwise -------------------------------------------------------------


@pytest.mark.parametrize("host", ["", None, "   "])
def test_an_empty_host_is_a_script_error(host: object) -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(host=host)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"FakePeer(host=...) takes the address to listen on, such as '127.0.0.1' or '::1'; "
        f"got {host!r}. An empty host would listen on every interface: for that, say "
        "host='0.0.0.0' and external=True"
    )


@pytest.mark.parametrize(
    ("host", "what"),
    [
        ("0.0.0.0", "every interface"),
        ("::", "every interface"),
        ("192.0.2.1", "a non-loopback address"),
    ],
)
def test_listening_beyond_loopback_needs_external(host: str, what: str) -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(host=host)
    assert str(info.value) == (
        f"FakePeer(host={host!r}) listens on {what}, so other hosts could reach the peer; "
        "say external=True if that is meant (the default, '127.0.0.1', is loopback only)"
    )


def test_a_proxy_checks_its_host_too() -> None:
    with pytest.raises(ScriptError, match=r"^Proxy\(host='0\.0\.0\.0'\) listens on every"):
        Proxy(("127.0.0.1", 9), host="0.0.0.0")


def test_a_wildcard_with_external_listens_and_says_so() -> None:
    peer = FakePeer(host="0.0.0.0", external=True)
    with peer.serve():
        host, port = peer.address
        assert host == "0.0.0.0"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            peer.wait_for_connections(1)
    title = peer.render_transcript().splitlines()[0]
    assert (
        title
        == f"fake peer 'fake peer' on 0.0.0.0:{port} (external=True: reachable beyond loopback)"
    )


def test_localhost_listens_on_one_address() -> None:
    peer = FakePeer(host="localhost")
    with peer.serve():
        assert peer.host in ("127.0.0.1", "::1")
        with socket.create_connection(peer.address, timeout=5):
            peer.wait_for_connections(1)


def test_ipv6_loopback_renders_in_brackets() -> None:
    peer = FakePeer(host="::1")
    with peer.serve():
        assert peer.host == "::1"
    assert peer.render_transcript().startswith(f"fake peer 'fake peer' on [::1]:{peer.port}")


def test_the_marker_with_no_host_fails_the_test_at_setup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.fakepeer(host=os.environ.get("FAKEPEER_TEST_UNSET_VARIABLE"))
        def test_one(fake_peer):
            pass
        """
    )
    result = pytester.runpytest("-W", "error", "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ScriptError: FakePeer(host=...) takes the address to listen on*got None*"]
    )


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4MiB"])
def test_max_send_buffer_is_checked(value: object) -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(max_send_buffer=value)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"FakePeer(max_send_buffer=...) takes a whole number of bytes >= 1, got {value!r}"
    )


# -- errors at the bounds, as the test sees them ------------------------------------------------


def test_a_handler_over_max_length_fails_with_a_framing_error_not_handler_failed() -> None:
    peer = FakePeer(framing=Lines(max_length=1024))
    received: list[bytes] = []

    @peer.handler
    async def handle(connection):  # type: ignore[no-untyped-def]
        received.append(await connection.receive())

    with (  # noqa: PT012 - the serve block is the subject
        pytest.raises(FramingError) as info,
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"x" * 4096)
        assert sock.recv(16) == b""  # the peer closed the connection
    assert received == []
    assert str(info.value).startswith(
        "connection #1: the client sent 4096 bytes without the delimiter b'\\n': the message "
        "is longer than allowed, over the limit of 1024 bytes of Lines(b'\\n', "
        "max_length=1024)\n"
    )
    assert info.value.connection == 1


def test_a_handler_that_is_not_receiving_still_fails_at_max_length() -> None:
    peer = FakePeer(framing=Lines(max_length=1024))

    @peer.handler
    async def handle(connection):  # type: ignore[no-untyped-def]
        await connection.receive()
        await asyncio.sleep(60)  # receives nothing more; the peer's stop cancels it

    with (  # noqa: PT012 - the serve block is the subject
        pytest.raises(FramingError, match="over the limit of 1024 bytes"),
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"ok\n")
        sock.sendall(b"y" * 4096)
        assert sock.recv(16) == b""


def test_pushes_past_the_send_buffer_raise_at_the_push_and_fail_the_test_once() -> None:
    peer = FakePeer(max_send_buffer=64 * 1024)
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.wait_for_connections(1)
        (connection,) = peer.connections
        with pytest.raises(ClientNotReading) as info:  # noqa: PT012 - until it is full
            for _ in range(10_000):
                connection.send(b"z" * 16384)
        error = info.value
        assert error.connection == 1
        assert 0 < error.waiting <= 64 * 1024
        assert str(error).startswith(
            f"connection #1: the client is not reading: {error.waiting:,} bytes wait to be "
            "sent to it, and 16,384 more would go over the limit of 65,536 bytes "
            "(FakePeer(max_send_buffer=...) changes it)"
        )
    # raised once: leaving serve() does not raise it again


def test_broadcast_raises_client_not_reading_too() -> None:
    peer = FakePeer(max_send_buffer=64 * 1024)
    with peer.serve(), socket.create_connection(peer.address, timeout=5):
        peer.wait_for_connections(1)
        with pytest.raises(ClientNotReading):  # noqa: PT012 - until it is full
            for _ in range(10_000):
                peer.broadcast(b"z" * 16384)


# -- what the fixture costs: blocking hand-overs to the hub ----------------------------------


def test_fixture_tests_whose_clients_are_done_make_no_blocking_hand_over(
    pytester: pytest.Pytester,
) -> None:
    """The fixture binds in the test's thread, and skips the settle and the stop's wait
    when all the hub has left to read are clients' closes: no thread hand-over at all."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(
        """
        import pytest
        from fakepeer._hub import hub

        counts = []

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_protocol(item, nextitem):
            before = hub.handovers
            result = yield
            counts.append(hub.handovers - before)
            return result

        def pytest_sessionfinish(session):
            made = [(test, count) for test, count in enumerate(counts) if count]
            assert len(counts) == 200 and not made, made
        """
    )
    pytester.makepyfile(
        """
        import asyncio
        import socket
        import pytest
        from fakepeer import Lines

        @pytest.mark.parametrize("n", range(100))
        @pytest.mark.fakepeer(framing=Lines())
        def test_sync(fake_peer, n):
            fake_peer.expect(b"PING").reply(b"PONG")
            with socket.create_connection(fake_peer.address, timeout=5) as sock:
                sock.sendall(b"PING\\n")
                assert sock.recv(16) == b"PONG\\n"

        @pytest.mark.asyncio
        @pytest.mark.parametrize("n", range(100))
        @pytest.mark.fakepeer(framing=Lines())
        async def test_async(fake_peer, n):
            fake_peer.expect(b"PING").reply(b"PONG")
            reader, writer = await asyncio.open_connection(*fake_peer.address)
            writer.write(b"PING\\n")
            assert await reader.readline() == b"PONG\\n"
            writer.close()
            await writer.wait_closed()
        """
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:randomly")
    result.assert_outcomes(passed=200)


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "5", True, None])
def test_the_timeout_is_checked(value: object) -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(timeout=value)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"FakePeer(timeout=...) takes a positive number of seconds, got {value!r}"
    )
