"""The conversation language end to end: states, fallbacks, per-connection scripts, replies,
handlers, pushes and assertions, with real clients on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fakepeer import (
    Connection,
    ConversationError,
    FakePeer,
    Fixed,
    HandlerFailed,
    Lines,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
    UnmetExpectations,
    WaitTimeout,
)

TIMEOUT = 5.0


def where(fragment: str) -> str:
    """``test_language.py:N`` of the first line of this file that contains ``fragment``."""
    with open(__file__, encoding="utf-8") as source:
        for number, line in enumerate(source, 1):
            if fragment in line:
                return f"test_language.py:{number}"
    raise AssertionError(fragment)


class LineClient:
    """A blocking line client: send a line, read a line."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.reader = self.sock.makefile("rb")

    def call(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\n")
        return self.reader.readline()

    def read(self) -> bytes:
        return self.reader.readline()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@contextmanager
def client(address: tuple[str, int]) -> Iterator[LineClient]:
    line_client = LineClient(address)
    try:
        yield line_client
    finally:
        line_client.close()


# -- states ------------------------------------------------------------------------------------


def stateful() -> FakePeer:
    peer = FakePeer(framing=Lines(), name="kv")
    peer.always(re.compile(rb"LOGIN \w+")).reply(b"OK").goto("authed")
    peer.always(b"GET").when("authed").reply(b"DATA")  # GET_RULE
    peer.always(b"LOGOUT").when("authed").reply(b"BYE").goto("start")
    return peer


def test_a_state_lets_get_through_after_login() -> None:
    peer = stateful()
    with peer.serve(), client(peer.address) as kv:
        assert kv.call(b"LOGIN alice") == b"OK\n"
        assert kv.call(b"GET") == b"DATA\n"
        assert kv.call(b"LOGOUT") == b"BYE\n"
    assert "#1 state      connection 'start' -> 'authed'" in str(peer.transcript)


def test_get_before_login_is_rejected_with_the_reason() -> None:
    peer = stateful()
    with pytest.raises(UnexpectedData) as info, peer.serve(), client(peer.address) as kv:
        assert kv.call(b"GET") == b""  # the peer hangs up on it
    diagnosis = info.value.diagnosis
    assert "received:  'GET'" in diagnosis
    assert "similar rules:" in diagnosis
    rule = f"always #2 'GET' [when 'authed'] ({where('GET_RULE')})"
    assert (
        f"{rule}: matches, but needs connection state 'authed' (connection #1 is in 'start')"
    ) in diagnosis


def test_states_are_per_connection_unless_the_peer_moves() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"ARM").reply(b"ARMED").goto(peer="armed")
    peer.always(b"FIRE").when(peer="armed").reply(b"BOOM")
    peer.always(b"FIRE").when(peer="start").reply(b"SAFE")
    with peer.serve(), client(peer.address) as first, client(peer.address) as second:
        assert second.call(b"FIRE") == b"SAFE\n"
        assert first.call(b"ARM") == b"ARMED\n"
        assert second.call(b"FIRE") == b"BOOM\n"


def test_when_and_goto_need_a_state() -> None:
    peer = FakePeer()
    with pytest.raises(ScriptError, match=r"\.when\(\) needs a state"):
        peer.always(b"X").when()
    with pytest.raises(ScriptError, match=r"\.goto\(\) takes a state name as a non-empty str"):
        peer.always(b"X").goto("")


# -- fallbacks and strictness ------------------------------------------------------------------


def test_otherwise_answers_unmatched_traffic_and_counts_it() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")
    peer.otherwise().reply(b"ERR unknown command")
    with peer.serve(), client(peer.address) as c:
        assert c.call(b"PING") == b"PONG\n"
        assert c.call(b"HELP") == b"ERR unknown command\n"
    with pytest.raises(ConversationError) as info:
        peer.assert_no_unmatched()
    assert str(info.value).startswith(
        "1 message(s) matched no rule (answered by otherwise())\n  connection #1: 'HELP'\n\n"
        "fake peer 'fake peer' on 127.0.0.1:"
    )


def test_assert_no_unmatched_passes_when_everything_matched() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")
    with peer.serve(), client(peer.address) as c:
        assert c.call(b"PING") == b"PONG\n"
    peer.assert_no_unmatched()


# -- per-connection scripts ----------------------------------------------------------------------


def test_the_first_connection_is_reset_and_the_reconnect_succeeds() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connection(1).expect(b"HELLO").reset()
    second = peer.on_connection(2)
    second.on_connect().send(b"WELCOME")
    second.expect(b"HELLO").reply(b"HI")
    with peer.serve():
        with client(peer.address) as c:
            c.sock.sendall(b"HELLO\n")
            with pytest.raises(ConnectionResetError):
                c.sock.recv(100)
        with client(peer.address) as c:
            assert c.read() == b"WELCOME\n"
            assert c.call(b"HELLO") == b"HI\n"


def test_a_per_connection_script_that_never_ran_is_unmet() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connection(2).expect(b"HELLO")
    with pytest.raises(UnmetExpectations) as info, peer.serve():
        pass
    assert (
        f"connection #2 expect #1 'HELLO' ({where('on_connection(2).expect')}): never met "
        "(that connection never came)"
    ) in info.value.diagnosis


def test_on_connection_checks_its_number() -> None:
    with pytest.raises(ScriptError, match="takes a connection number >= 1, got 0"):
        FakePeer().on_connection(0)


# -- replies ------------------------------------------------------------------------------------


def test_echo_and_rotating_replies() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(re.compile(rb"ECHO .*")).echo()
    peer.always(b"NEXT").reply([b"one", "two", b"three"])
    with peer.serve(), client(peer.address) as c:
        assert c.call(b"ECHO hi there") == b"ECHO hi there\n"
        assert [c.call(b"NEXT") for _ in range(4)] == [b"one\n", b"two\n", b"three\n", b"one\n"]


def test_reply_callable_gets_the_connection() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"WHO").reply(lambda match, connection: f"you are #{connection.id}")
    with peer.serve(), client(peer.address) as a, client(peer.address) as b:
        assert a.call(b"WHO") == b"you are #1\n"
        assert b.call(b"WHO") == b"you are #2\n"


async def slow_upper(match: re.Match[bytes]) -> bytes:
    await asyncio.sleep(0)
    return match[1].upper()


def test_async_reply_callable_on_the_hub() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(re.compile(rb"UP (\w+)")).reply(slow_upper).send(b"done")
    with peer.serve(), client(peer.address) as c:
        assert c.call(b"UP abc") == b"ABC\n"
        assert c.read() == b"done\n"


@pytest.mark.asyncio
async def test_async_reply_callable_in_the_loop() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(re.compile(rb"UP (\w+)")).reply(slow_upper)
    async with peer.serve(), asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        writer.write(b"UP xyz\n")
        assert await reader.readline() == b"XYZ\n"
        writer.close()
        await writer.wait_closed()


def test_async_reply_callable_that_raises_fails_the_test() -> None:
    async def broken(match: bytes) -> bytes:
        raise LookupError("no such key")

    peer = FakePeer(framing=Lines())
    peer.expect(b"GET").reply(broken)
    failure = pytest.raises(ReplyFailed, match="raised LookupError: no such key")
    with failure, peer.serve(), client(peer.address) as c:
        assert c.call(b"GET") == b""


def test_a_reply_callable_runs_between_two_events_of_the_core() -> None:
    """The core never runs user code: the event stops at the callable (waiting for its
    outcome), so a push from it is an event of its own, not one in the middle of another."""
    peer = FakePeer(framing=Lines())
    waiting: list[bool] = []

    def reply(message: bytes, connection: Connection) -> bytes:
        record = peer._conversation.connections[connection.id - 1]
        waiting.append(record.suspended is not None)  # the event returned, a Call pending
        connection.send(b"pushed")
        return b"reply"

    peer.always(b"x").reply(reply)
    with peer.serve(), client(peer.address) as c:
        assert c.call(b"x") == b"pushed\n"
        assert c.read() == b"reply\n"
    assert waiting == [True]


def test_an_async_reply_comes_before_the_half_close_written_after_it() -> None:
    async def answer(message: bytes) -> bytes:
        return b"A"

    peer = FakePeer(framing=Lines())
    peer.expect(b"x").reply(answer).half_close()
    with peer.serve(), client(peer.address) as c:
        assert c.call(b"x") == b"A\n"
        assert c.read() == b""  # then the half-close: EOF
    assert "#1 half-closed" in str(peer.transcript)


def test_an_async_reply_ready_after_its_connection_failed_is_not_sent() -> None:
    gate = asyncio.Event()

    async def answer(message: bytes) -> bytes:
        await gate.wait()
        return b"late"

    peer = FakePeer(framing=Lines())
    peer.expect(b"x").reply(answer)
    with peer.serve(), client(peer.address) as c:
        c.sock.sendall(b"x\nwho?\n")  # who? fails the connection while x waits
        with pytest.raises(UnexpectedData, match="received data that no rule expected"):
            peer.wait_until_done()  # returns (raising) once the failure is recorded
        peer._loop.call_soon_threadsafe(gate.set)  # type: ignore[union-attr]
        assert c.read() == b""  # the peer closed it, and sent nothing after
    rendered = str(peer.transcript)
    assert "dropped    'late' (not sent: the connection failed before the reply" in rendered
    assert "sent       'late" not in rendered


# -- pushes ---------------------------------------------------------------------------------------


def test_broadcast_and_connection_send_from_the_test() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"SUB").reply(b"OK")
    with peer.serve(), client(peer.address) as a, client(peer.address) as b:
        assert a.call(b"SUB") == b"OK\n"
        assert b.call(b"SUB") == b"OK\n"
        assert peer.broadcast(b"NEWS") == 2
        assert a.read() == b"NEWS\n"
        assert b.read() == b"NEWS\n"
        peer.connections[1].send("just for you")
        assert b.read() == b"just for you\n"


# -- handlers -------------------------------------------------------------------------------------


def handled_peer() -> FakePeer:
    peer = FakePeer(framing=Lines(), timeout=2.0)

    @peer.handler
    async def sum_numbers(connection: Connection) -> None:
        count = int(await connection.receive())
        total = 0
        for _ in range(count):
            total += int(await connection.receive())
        raw = await connection.receive_exactly(3)
        connection.send(f"{total} {raw.decode()}")

    return peer


def test_a_handler_runs_the_conversation() -> None:
    peer = handled_peer()
    with peer.serve(), client(peer.address) as c:
        c.sock.sendall(b"3\n1\n2\n")
        c.sock.sendall(b"39\nEND")
        assert c.read() == b"42 END\n"
        assert c.read() == b""  # the handler returned: the peer closed
    assert peer.received == [b"3", b"1", b"2", b"39", b"END"]


@pytest.mark.asyncio
async def test_a_handler_in_the_loop() -> None:
    peer = handled_peer()
    async with peer.serve(), asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(*peer.address)
        writer.write(b"1\n5\nabc")
        assert await reader.readline() == b"5 abc\n"
        writer.close()
        await writer.wait_closed()


def test_a_handler_that_raises_fails_the_test() -> None:
    peer = handled_peer()
    with pytest.raises(HandlerFailed) as info, peer.serve(), client(peer.address) as c:
        assert c.call(b"not a number") == b""
    assert info.value.diagnosis.startswith(
        "the handler handled_peer.<locals>.sum_numbers (test_language.py:"
    )
    assert "of connection #1 raised ValueError: invalid literal for int()" in info.value.diagnosis
    assert isinstance(info.value.__cause__, ValueError)
    assert "#1 handled   '3'" not in str(info.value)


def test_a_handler_waiting_for_a_silent_client_times_out() -> None:
    peer = FakePeer(framing=Lines(), timeout=0.2)

    @peer.handler
    async def wait_forever(connection: Connection) -> None:
        await connection.receive()

    with pytest.raises(HandlerFailed) as info, peer.serve(), client(peer.address) as c:
        assert c.read() == b""
    assert isinstance(info.value.__cause__, WaitTimeout)
    assert "the handler waited 0.2 s for a message from the client" in str(info.value)


def test_a_handler_must_be_async() -> None:
    peer = FakePeer()
    with pytest.raises(ScriptError, match="a handler must be an 'async def' function"):
        peer.handler(lambda connection: None)  # type: ignore[arg-type,return-value]


# -- assertions -----------------------------------------------------------------------------------


def test_assert_received_and_in_order() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(re.compile(rb".*")).reply(b"OK")
    with peer.serve(), client(peer.address) as c:
        for line in (b"LOGIN bob", b"NOOP", b"GET a", b"GET b", b"QUIT"):
            assert c.call(line) == b"OK\n"
    peer.assert_received(b"NOOP")
    peer.assert_received(re.compile(rb"GET \w"), times=2)
    peer.assert_received_in_order(b"LOGIN bob", re.compile(rb"GET .*"), b"QUIT")
    with pytest.raises(ConversationError) as info:
        peer.assert_received(b"GET a", times=2)
    assert str(info.value).startswith(
        "expected the client to send 'GET a' exactly 2 time(s), but it did 1 time(s)\n"
        "  received:  5 message(s)\n    1. 'LOGIN bob'\n    2. 'NOOP'"
    )
    with pytest.raises(ConversationError) as info:
        peer.assert_received_in_order(b"QUIT", b"LOGIN bob")
    assert (
        "expected the client to send, in this order: 'QUIT', 'LOGIN bob'\n"
        "  missing:   'LOGIN bob' after 'QUIT' (message 5)"
    ) in str(info.value)


def test_the_transcript_renders_the_same_every_run() -> None:
    renderings = []
    for _ in range(2):
        peer = FakePeer(framing=Lines(), name="snap")
        peer.on_connect().send(b"HELLO")
        peer.expect(b"PING").reply(b"PONG").close()  # PING_RULE
        with peer.serve(), client(peer.address) as c:
            assert c.read() == b"HELLO\n"
            assert c.call(b"PING") == b"PONG\n"
            assert c.read() == b""
        renderings.append(str(peer.transcript))
    assert renderings[0] == renderings[1]
    assert renderings[0].splitlines()[:5] == [
        "fake peer 'snap'",
        "  #1 connected",
        "  #1 sent       'HELLO\\n'",
        f"  #1 received   'PING' -> expect #1 'PING' ({where('PING_RULE')})",
        "  #1 sent       'PONG\\n'",
    ]


def test_a_reply_the_framing_cannot_frame_is_a_script_error() -> None:
    peer = FakePeer(framing=Fixed(4))
    peer.expect(b"PIN\n").reply(lambda _: b"TOO LONG")  # REPLY_RULE
    with pytest.raises(ScriptError) as info, peer.serve(), client(peer.address) as c:
        assert c.call(b"PIN") == b""  # "PIN\n" is one Fixed(4) message: PING's twin
    assert info.value.diagnosis.startswith(f"expect #1 'PIN\\n' ({where('REPLY_RULE')}): ")
    assert "Fixed(4)" in info.value.diagnosis
    assert "fake peer 'fake peer' on 127.0.0.1:" in str(info.value)


def test_a_blank_line_is_an_empty_message() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect(b"").reply(b"you sent a blank line")
    with peer.serve(), client(peer.address) as c:
        assert c.call(b"") == b"you sent a blank line\n"
    assert "#1 received   '' -> expect #1 ''" in str(peer.transcript)


def test_an_empty_message_cannot_be_expected_from_a_raw_stream() -> None:
    with pytest.raises(ScriptError, match=r"expect\(b''\) can never be met with Raw\(\)"):
        FakePeer().expect(b"")
