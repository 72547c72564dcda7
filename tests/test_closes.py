"""Closes: waiting for the client (or the peer) to close, and asserting on who did.

Real clients on loopback: raw sockets (a close, a reset, a half-close), smtplib after a
``421``, asyncio streams, trio streams, a Proxy's client; the wait is raced against a client
closing as it begins, 150 times.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import trio

from _hosts import Host, hosted
from fakepeer import (
    Connection,
    ConversationError,
    FakePeer,
    Lines,
    Proxy,
    ScriptError,
    WaitTimeout,
)
from fakepeer._conversation import Conversation
from test_conversation import T0, always, connect, perform, send

TIMEOUT = 5.0
HOSTS: tuple[Host, ...] = ("hub", "loop")


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def lines_peer(**options: float) -> FakePeer:
    peer = FakePeer(framing=Lines(), **options)  # type: ignore[arg-type]
    peer.always("PING").reply("PONG")
    return peer


def ping(sock: socket.socket) -> None:
    sock.sendall(b"PING\n")
    assert sock.recv(16) == b"PONG\n"


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """A plain TCP echo server, upstream of a proxy."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    listener.settimeout(0.02)  # to see the stop: close() wakes no thread in accept()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with sock:
                sock.settimeout(0.02)
                while not stop.is_set():
                    try:
                        data = sock.recv(4096)
                        if not data:
                            break
                        sock.sendall(data)
                    except TimeoutError:
                        continue
                    except OSError:  # the proxy reset its connection
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    thread.join(TIMEOUT)
    listener.close()


# -- the client closes: a socket, a reset, smtplib ----------------------------------------------


def test_a_client_close_is_waited_for_and_asserted() -> None:
    peer = lines_peer()
    with peer.serve():
        sock = socket.create_connection(peer.address)
        ping(sock)
        assert peer.connections[0].closed_by is None
        sock.close()
        peer.wait_for_closes()
        peer.wait_for_closes(connection=1)
        assert peer.connections[0].closed_by == "client"
        peer.assert_client_closed()
        peer.assert_client_closed(connection=1)
        peer.assert_none_open()


def test_the_assertions_read_a_close_the_client_just_made() -> None:
    """On the hub, the assertions first read the closes already in the kernel: no wait."""
    peer = lines_peer()
    with peer.serve():
        for _ in range(20):
            sock = socket.create_connection(peer.address)
            ping(sock)
            sock.close()
            peer.assert_client_closed()
            peer.assert_none_open()


def test_a_client_reset_is_a_close_of_the_client() -> None:
    peer = lines_peer()
    with peer.serve():
        sock = socket.create_connection(peer.address)
        ping(sock)
        reset(sock)
        peer.wait_for_closes(connection=1)
        peer.assert_client_closed()
    assert peer.connections[0].closed_by == "client"
    assert "Connection reset" in peer.render_transcript()


def test_a_half_close_of_the_peer_is_no_close() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect("BYE").reply("BYE").half_close()
    with peer.serve():
        sock = socket.create_connection(peer.address)
        sock.sendall(b"BYE\n")
        assert sock.recv(16) == b"BYE\n"
        assert sock.recv(16) == b""  # the peer's EOF
        with pytest.raises(ConversationError) as failed:
            peer.assert_none_open()
        assert failed.value.diagnosis.startswith(
            "1 of 1 connection(s) still open (neither side closed them)\n  #1 open (from "
        )
        sock.close()
        peer.wait_for_closes()
        peer.assert_client_closed()


def test_smtplib_closes_after_a_421() -> None:
    peer = FakePeer(framing=Lines(b"\r\n"))
    peer.on_connect().send("220 fake ESMTP")
    peer.expect(re.compile(rb"(?i)ehlo .*")).reply("250 fake")
    # (smtplib writes "mail FROM:" up to 3.12, "mail from:" from 3.13)
    peer.expect(re.compile(rb"(?i)mail from:<a@example\.com>")).reply("421 4.3.2 shutting down")
    with peer.serve():
        client = smtplib.SMTP(peer.host, peer.port, timeout=TIMEOUT)
        try:
            with pytest.raises(smtplib.SMTPSenderRefused):
                client.sendmail("a@example.com", ["b@example.com"], "hi")
            peer.wait_for_closes(connection=1)  # smtplib's own close, after the 421
            peer.assert_client_closed()
            peer.assert_none_open()
        finally:
            client.close()  # (a no-op: smtplib closed already)


def test_a_handler_connection_closed_by_the_client() -> None:
    peer = FakePeer(framing=Lines())

    @peer.handler
    async def echo(connection: Connection) -> None:
        try:
            while True:
                connection.send(await connection.receive())
        except EOFError:
            return

    with peer.serve():
        sock = socket.create_connection(peer.address)
        sock.sendall(b"hi\n")
        assert sock.recv(16) == b"hi\n"
        sock.close()
        peer.wait_for_closes()
        peer.assert_client_closed()


# -- the peer closes ------------------------------------------------------------------------------


def test_a_close_of_the_peer_is_counted_by_peer_and_any() -> None:
    peer = FakePeer(framing=Lines(), timeout=0.2)
    peer.expect("QUIT").reply("BYE").close()
    with peer.serve():
        sock = socket.create_connection(peer.address)
        sock.sendall(b"QUIT\n")
        peer.wait_for_closes(by="peer")
        peer.wait_for_closes(by="any")
        peer.wait_for_closes(connection=1, by="peer")
        assert peer.connections[0].closed_by == "peer"
        with pytest.raises(ConversationError) as wrong:
            peer.wait_for_closes(connection=1)
        assert wrong.value.diagnosis == (
            "connection #1 was closed by the peer (closed), not by the client"
        )
        assert "#1 closed" in wrong.value.transcript
        with pytest.raises(ConversationError) as asserted:
            peer.assert_client_closed()
        assert asserted.value.diagnosis == (
            "expected the client to close every connection, but\n  #1 closed by the peer (closed)"
        )
        peer.assert_none_open()
        sock.close()


def test_the_timeout_says_how_each_connection_stands() -> None:
    peer = FakePeer(framing=Lines())
    peer.always("PING").reply("PONG")
    peer.always("KILL").reset()
    with peer.serve():
        first = socket.create_connection(peer.address)
        second = socket.create_connection(peer.address)
        third = socket.create_connection(peer.address)
        ping(first)
        ping(second)
        first.close()
        third.sendall(b"KILL\n")
        peer.wait_for_closes(2, by="any")
        with pytest.raises(WaitTimeout) as timed_out:
            peer.wait_for_closes(2, timeout=0.1)
        client = peer.connections[1].client
        assert timed_out.value.diagnosis == (
            "timed out after 0.1 s waiting for 2 connection(s) to be closed by the client: "
            "1 of 3 were\n"
            "  #1 closed by the client (EOF)\n"
            f"  #2 open (from {client})\n"
            "  #3 closed by the peer (reset)\n"
            "  hint:      1 connection(s) were closed by the peer first (a rule's .close() or "
            ".reset(), a fault, a failure, or a preset's rule, such as mqtt.handshake()'s on a "
            'DISCONNECT): to count them, pass by="any" (or by="peer")'
        )
        assert "#3 reset" in timed_out.value.transcript
        with pytest.raises(ConversationError) as asserted:
            peer.assert_none_open()
        assert asserted.value.diagnosis == (
            f"1 of 3 connection(s) still open (neither side closed them)\n  #2 open (from {client})"
        )
        with pytest.raises(ConversationError) as one:
            peer.assert_client_closed(connection=2)
        assert one.value.diagnosis == (
            f"expected the client to close connection #2, but\n  #2 open (from {client})"
        )
        second.close()
        third.close()


def test_waiting_for_a_connection_that_did_not_come_or_stays_open() -> None:
    peer = lines_peer()
    with peer.serve():
        with pytest.raises(WaitTimeout) as absent:
            peer.wait_for_closes(connection=2, timeout=0.05)
        assert absent.value.diagnosis == (
            "timed out after 0.05 s waiting for connection #2 to be closed by the client: "
            "it has not arrived (0 connection(s) did)"
        )
        with socket.create_connection(peer.address) as sock:
            ping(sock)
            with pytest.raises(WaitTimeout) as still:
                peer.wait_for_closes(connection=1, timeout=0.05)
            assert still.value.diagnosis == (
                "timed out after 0.05 s waiting for connection #1 to be closed by the client: "
                f"it is still open (from {peer.connections[0].client})"
            )
        with pytest.raises(WaitTimeout) as nobody:
            peer.wait_for_closes(2, by="peer", timeout=0.05)
        assert nobody.value.diagnosis.startswith(
            "timed out after 0.05 s waiting for 2 connection(s) to be closed by the peer: "
            "0 of 1 were\n  #1 "
        )


def test_a_problem_ends_the_wait_with_the_problem() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect("HELLO").reply("HI")
    with peer.serve():
        sock = socket.create_connection(peer.address)
        sock.sendall(b"NOPE\n")
        with pytest.raises(ConversationError) as failed:
            peer.wait_for_closes()
        assert "received data that no rule expected" in failed.value.diagnosis
        sock.close()
    assert peer.connections[0].closed_by == "peer"


def test_no_connection_fails_the_assertion() -> None:
    peer = lines_peer()
    with peer.serve():
        with pytest.raises(ConversationError) as failed:
            peer.assert_client_closed()
        assert failed.value.diagnosis == "the client closed no connection: no client connected"
        peer.assert_none_open()  # nothing is open
        with pytest.raises(WaitTimeout) as timed_out:
            peer.wait_for_closes(timeout=0.01)
        assert timed_out.value.diagnosis == (
            "timed out after 0.01 s waiting for 1 connection(s) to be closed by the client: "
            "0 of 0 were\n  (no client connected)"
        )


# -- bad arguments, the wrong place ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda p: p.wait_for_closes(by="server"),
            "wait_for_closes(by=...) takes 'client', 'peer' or 'any' (whose closes count), "
            "got 'server'",
        ),
        (
            lambda p: p.wait_for_closes(0),
            "wait_for_closes(count=...) takes a whole number >= 1, got 0",
        ),
        (
            lambda p: p.wait_for_closes(True),
            "wait_for_closes(count=...) takes a whole number >= 1, got True",
        ),
        (
            lambda p: p.wait_for_closes(2, connection=1),
            "wait_for_closes(count=2, connection=1): a count is for any connections; "
            "one connection closes once",
        ),
        (
            lambda p: p.wait_for_closes(connection="1"),
            "wait_for_closes(connection=...) takes a connection's number (an int, from 1), got '1'",
        ),
        (
            lambda p: p.assert_client_closed(connection=0),
            "assert_client_closed(connection=...) takes a connection's number (an int, "
            "from 1), got 0",
        ),
        (
            lambda p: p.assert_client_closed(connection=-1),
            "assert_client_closed(connection=...) takes a connection's number (an int, "
            "from 1), got -1",
        ),
        (
            lambda p: p.assert_client_closed(connection=True),
            "assert_client_closed(connection=...) takes a connection's number (an int, "
            "from 1), got True",
        ),
    ],
)
def test_bad_arguments_are_script_errors(call: object, message: str) -> None:
    peer = lines_peer()
    with peer.serve(), pytest.raises(ScriptError) as error:
        call(peer)  # type: ignore[operator]
    assert str(error.value) == message


WAITS = [
    "wait_for_closes",
    "wait_for_closes_async",
    "wait_for_connections",
    "wait_for_connections_async",
    "wait_until_done",
    "wait_until_done_async",
]


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf"), True, "1"])
@pytest.mark.parametrize("method", WAITS)
def test_a_bad_timeout_of_a_wait_is_a_script_error_naming_the_keyword(
    method: str, timeout: object
) -> None:
    peer = lines_peer()  # (its timeout: 5 s)

    def call() -> None:
        wait = getattr(peer, method)(timeout=timeout)
        if method.endswith("_async"):
            asyncio.run(wait)

    with peer.serve(), pytest.raises(ScriptError) as error:
        call()
    assert str(error.value) == (
        f"{method}(timeout=...) takes a positive number of seconds (None: the peer's "
        f"timeout, 5 s), got {timeout!r}"
    )


@pytest.mark.parametrize(("timeout", "shown"), [(None, "0.05"), (0.02, "0.02")])
@pytest.mark.parametrize("method", [w for w in WAITS if not w.startswith("wait_until")])
def test_a_wait_s_timeout_is_seconds_or_none_for_the_peer_s(
    method: str, timeout: float | None, shown: str
) -> None:
    peer = lines_peer(timeout=0.05)

    def call(timeout: float | None) -> None:
        wait = getattr(peer, method)(timeout=timeout)
        if method.endswith("_async"):
            asyncio.run(wait)

    with peer.serve(), pytest.raises(WaitTimeout, match=rf"^timed out after {shown} s waiting"):
        call(timeout)


def test_a_udp_peer_has_no_closes() -> None:
    peer = FakePeer(transport="udp")
    peer.always("PING").reply("PONG")
    with peer.serve(), pytest.raises(ScriptError) as error:
        peer.wait_for_closes()
    assert str(error.value) == (
        "wait_for_closes(): a UDP peer's clients (transport='udp') are addresses, which never close"
    )


def test_the_wait_needs_a_serving_peer() -> None:
    peer = lines_peer()
    with pytest.raises(RuntimeError, match=r"wait_for_closes\(\) needs a serving peer"):
        peer.wait_for_closes()


@pytest.mark.asyncio
async def test_the_sync_wait_refuses_to_block_the_loop_that_serves() -> None:
    peer = lines_peer()
    async with peer.serve():
        with pytest.raises(RuntimeError) as error:
            peer.wait_for_closes()
        assert str(error.value) == (
            "peer.wait_for_closes() would block the event loop that serves this peer; "
            "use 'await peer.wait_for_closes_async()'"
        )


# -- the race: the client closes as the wait begins -----------------------------------------------


def test_a_close_racing_the_wait_is_never_missed() -> None:
    peer = lines_peer(timeout=TIMEOUT)
    rounds = 150
    with peer.serve():
        for number in range(1, rounds + 1):
            sock = socket.create_connection(peer.address)
            go = threading.Barrier(2)

            def close(sock: socket.socket = sock, go: threading.Barrier = go) -> None:
                go.wait(TIMEOUT)
                sock.close()

            closer = threading.Thread(target=close)
            closer.start()
            go.wait(TIMEOUT)
            if number % 2:
                peer.wait_for_closes(number, timeout=TIMEOUT)
            else:
                peer.wait_for_closes(connection=number, timeout=TIMEOUT)
            closer.join(TIMEOUT)
        peer.assert_client_closed()
        peer.assert_none_open()
    assert [c.closed_by for c in peer.connections] == ["client"] * rounds


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_a_close_racing_the_async_wait_is_never_missed(host: Host) -> None:
    async with hosted(lines_peer(), host) as peer:
        for number in range(1, 101):
            _, writer = await asyncio.open_connection(*peer.address)
            writer.close()  # as the wait begins: the close is on its way
            await peer.wait_for_closes_async(number, timeout=TIMEOUT)
            await writer.wait_closed()
        peer.assert_client_closed()


# -- asyncio, trio, a proxy, the fixture ---------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_asyncio_waits_for_a_close(host: Host) -> None:
    async with hosted(lines_peer(timeout=0.2), host) as peer:
        reader, writer = await asyncio.open_connection(*peer.address)
        writer.write(b"PING\n")
        assert await reader.readline() == b"PONG\n"
        with pytest.raises(WaitTimeout, match="it is still open"):
            await peer.wait_for_closes_async(connection=1)
        writer.close()
        await writer.wait_closed()
        await peer.wait_for_closes_async(connection=1)
        await peer.wait_for_closes_async()
        peer.assert_client_closed()
        peer.assert_none_open()


@pytest.mark.anyio
async def test_trio_waits_for_a_close() -> None:
    async with lines_peer(timeout=0.2).serve() as peer:  # under trio: on the hub
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream(peer.host, peer.port)
            await stream.send_all(b"PING\n")
            assert await stream.receive_some(16) == b"PONG\n"
            with pytest.raises(WaitTimeout, match="0 of 1 were"):
                await peer.wait_for_closes_async()
            await stream.aclose()
            await peer.wait_for_closes_async()
            await peer.wait_for_closes_async(connection=1, by="any")
            peer.assert_client_closed()


def test_a_proxy_waits_for_its_client_to_close(echo_server: tuple[str, int]) -> None:
    proxy = Proxy(upstream=echo_server)
    with proxy.serve():
        sock = socket.create_connection(proxy.address)
        sock.sendall(b"hello")
        assert sock.recv(16) == b"hello"
        sock.close()
        proxy.wait_for_closes(connection=1)
        proxy.assert_client_closed()
        proxy.assert_none_open()
    assert proxy.connections[0].closed_by == "client"


@pytest.mark.fakepeer(framing=Lines())
def test_the_fixture_waits_for_a_close(fake_peer: FakePeer) -> None:
    fake_peer.always("PING").reply("PONG")
    with socket.create_connection(fake_peer.address) as sock:
        ping(sock)
    fake_peer.wait_for_closes()
    fake_peer.assert_client_closed()


def test_the_failures_in_a_pytest_report(pytester: pytest.Pytester) -> None:
    """What the user reads: the diagnosis, how each connection stands, the transcript."""
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:hypothesispytest\n"
    )
    pytester.makepyfile(
        """
        import socket

        import pytest
        from fakepeer import Lines

        @pytest.mark.fakepeer(framing=Lines(), name="keepalive")
        def test_left_open(fake_peer):
            with socket.create_connection(fake_peer.address):
                fake_peer.wait_for_closes(timeout=0.1)

        @pytest.mark.fakepeer(framing=Lines())
        def test_closed_by_the_peer(fake_peer):
            fake_peer.expect("QUIT").close()
            with socket.create_connection(fake_peer.address) as sock:
                sock.sendall(b"QUIT\\n")
                assert sock.recv(1) == b""
                fake_peer.assert_client_closed()
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E*fakepeer.WaitTimeout: timed out after 0.1 s waiting for 1 connection(s) to be "
            "closed by the client: 0 of 1 were",
            "E*  #1 open (from 127.0.0.1:*)",
            "E*fake peer 'keepalive' on 127.0.0.1:*",
            "E* ms  #1 connected  from 127.0.0.1:*",
            "*",
            "E*fakepeer.ConversationError: expected the client to close every connection, but",
            "E*  #1 closed by the peer (closed)",
            "*",
            "E* ms  #1 closed",
        ]
    )


def test_a_proxy_fault_that_resets_is_a_close_of_the_proxy(echo_server: tuple[str, int]) -> None:
    proxy = Proxy(upstream=echo_server, timeout=0.2)
    proxy.faults.reset_peer()  # instead of the first write to the client
    with proxy.serve(), socket.create_connection(proxy.address) as sock:
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(16)
        proxy.wait_for_closes(by="peer")
        with pytest.raises(ConversationError, match=r"#1 closed by the peer \(reset"):
            proxy.assert_client_closed()
    assert proxy.connections[0].closed_by == "peer"


# -- the core: who closed first, without sockets --------------------------------------------------


def _script(conversation: Conversation, how: str) -> None:
    rule = always(conversation, b"BYE")
    if how == "close":
        rule.close()
    elif how == "reset":
        rule.reset()
    elif how == "half_close":
        rule.half_close()
    elif how == "hang":
        rule.hang()


@pytest.mark.parametrize(
    ("script", "events", "ending"),
    [
        ("none", ["eof"], ("client", "EOF")),
        ("none", ["eof", "lost"], ("client", "EOF")),
        ("none", ["lost"], ("client", "closed")),
        ("none", ["reset by the client"], ("client", "ConnectionResetError: reset")),
        ("close", ["bye"], ("peer", "closed")),
        ("close", ["bye", "eof", "lost"], ("peer", "closed")),
        ("reset", ["bye"], ("peer", "reset")),
        ("half_close", ["bye"], None),  # a half-close of the peer is no close
        ("half_close", ["bye", "eof"], ("client", "EOF")),
        ("hang", ["bye", "eof"], ("client", "EOF")),
        ("none", ["garbage"], ("peer", "closed")),  # a failure: the peer closes
        ("none", ["stop"], ("peer", "closed (the peer stopped)")),
    ],
)
def test_who_closed_first(script: str, events: list[str], ending: tuple[str, str] | None) -> None:
    conversation = Conversation(Lines())
    _script(conversation, script)
    if script == "none":
        always(conversation, b"PING")
    record, _ = connect(conversation)
    for event in events:
        if event == "eof":
            perform(conversation, record, conversation.eof(record, T0), T0)
        elif event == "lost":
            conversation.lost(record, T0, None)
        elif event == "reset by the client":
            conversation.lost(record, T0, "ConnectionResetError: reset")
        elif event == "bye":
            send(conversation, record, b"BYE\n")
        elif event == "garbage":
            send(conversation, record, b"NOPE\n")
        elif event == "stop":
            conversation.closed(record, T0, "closed", "(the peer stopped)")
    assert record.ending == ending


def test_asserting_a_connection_that_never_came_is_the_clients_failure() -> None:
    # Only two clients connected: the third never came, which the client under test did
    # (or did not do), not a mistake in the script. The wait says "it has not arrived" too.
    peer = lines_peer()
    with peer.serve():
        for _ in range(2):
            with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
                ping(sock)
        peer.wait_for_closes(2)
        with pytest.raises(ConversationError) as failed:
            peer.assert_client_closed(connection=3)
    assert not isinstance(failed.value, ScriptError)
    assert failed.value.diagnosis.splitlines()[0] == (
        "expected the client to close connection #3, but it has not arrived (2 connection(s) did)"
    )
