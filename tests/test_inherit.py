"""Per-connection scripts that add to the peer's script: ``on_connection(n, inherit=True)``.

redis-py's handshake (``HELLO 3``, ``CLIENT SETINFO`` twice) written once, as the peer's
``always`` rules, and each connection's own ``expect``; the order rules are tried in; the
greeting; what is not inherited; unmet expectations of both; the diagnosis that says which
scripts were tried. RESP is written by hand here (no kit): a command is an array of bulk
strings.
"""

from __future__ import annotations

import re
import socket

import pytest
import redis

from fakepeer import (
    Connection,
    FakePeer,
    Lines,
    ScriptError,
    UnexpectedData,
    UnmetExpectations,
)

TIMEOUT = 5.0


def command(*words: str) -> bytes:
    """A RESP command: an array of bulk strings."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        parts.append(f"${len(word.encode())}\r\n{word}\r\n".encode())
    return b"".join(parts)


def bulk(value: str) -> bytes:
    return f"${len(value.encode())}\r\n{value}\r\n".encode()


#: The reply to ``HELLO 3``: a RESP3 map, of which redis-py checks ``proto``.
HELLO_REPLY = b"%1\r\n$5\r\nproto\r\n:3\r\n"
#: ``CLIENT SETINFO LIB-NAME ...`` and ``LIB-VER ...``, whatever the library and version.
SETINFO = re.compile(
    rb"\*4\r\n\$6\r\nCLIENT\r\n\$7\r\nSETINFO\r\n\$\d\r\nLIB-(?:NAME|VER)\r\n\$\d+\r\n[^\r]*\r\n"
)


#: redis-py 8 with RESP3 also asks ``CLIENT MAINT_NOTIFICATIONS ON <two words>``.
MAINT = re.compile(
    rb"\*5\r\n\$6\r\nCLIENT\r\n\$19\r\nMAINT_NOTIFICATIONS\r\n(?:\$\d+\r\n[^\r]*\r\n){3}"
)


def redis_peer() -> FakePeer:
    """The handshake, once, for every connection (Raw framing: each rule takes its bytes)."""
    peer = FakePeer()
    peer.always(command("HELLO", "3")).reply(HELLO_REPLY)
    peer.always(MAINT).reply(b"+OK\r\n")
    peer.always(SETINFO).reply(b"+OK\r\n")
    return peer


def test_redis_py_handshake_inherited_by_three_connections() -> None:
    peer = redis_peer()
    for number, key in enumerate("abc", 1):
        peer.on_connection(number, inherit=True).expect(command("GET", key)).reply(
            bulk(f"value of {key}")
        )
    with peer.serve():
        for key in "abc":
            client = redis.Redis(host=peer.host, port=peer.port, protocol=3, socket_timeout=TIMEOUT)
            try:
                assert client.get(key) == f"value of {key}".encode()
            finally:
                client.close()
        peer.wait_until_done()
    assert len(peer.connections) == 3
    # HELLO 3, CLIENT MAINT_NOTIFICATIONS, CLIENT SETINFO twice, then GET
    assert [len(c.received) for c in peer.connections] == [5, 5, 5]


def test_raw_sockets_handshake_then_own_expectations() -> None:
    peer = redis_peer()
    peer.on_connection(1, inherit=True).expect(command("GET", "a")).reply(bulk("1"))
    peer.on_connection(2, inherit=True).expect(command("SET", "a", "2")).reply(b"+OK\r\n")
    handshake = (
        command("HELLO", "3")
        + command("CLIENT", "SETINFO", "LIB-NAME", "mine")
        + command("CLIENT", "SETINFO", "LIB-VER", "1.0")
    )
    with peer.serve():
        for request, reply in (
            (command("GET", "a"), bulk("1")),
            (command("SET", "a", "2"), b"+OK\r\n"),
        ):
            with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
                sock.sendall(handshake + request)  # pipelined: one segment
                expected = HELLO_REPLY + b"+OK\r\n+OK\r\n" + reply
                received = b""
                while len(received) < len(expected):
                    received += sock.recv(4096)
                assert received == expected
            peer.wait_for_closes(len(peer.connections))
    peer.assert_client_closed()


def lines_client(peer: FakePeer, *lines: bytes) -> list[bytes]:
    """One connection: send each line, read one line back for each."""
    with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        reader = sock.makefile("rb")
        replies = []
        for line in lines:
            sock.sendall(line + b"\n")
            replies.append(reader.readline().rstrip(b"\n"))
        reader.close()
        return replies


def unexpected(peer: FakePeer, data: bytes) -> UnexpectedData:
    """Serve ``peer``, send ``data`` on one connection: the failure it meets."""
    with pytest.raises(UnexpectedData) as failed:
        send_once(peer, data)
    return failed.value


def send_once(peer: FakePeer, data: bytes) -> None:
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(data)
        assert sock.recv(16) == b""  # the peer closed after the failure


def ping_once(peer: FakePeer) -> None:
    with peer.serve():
        assert lines_client(peer, b"PING") == [b"PONG"]
        peer.wait_for_closes()


def test_the_order_rules_are_tried_in() -> None:
    """Own next expectation, own always, the peer's always, own otherwise, the peer's."""
    peer = FakePeer(framing=Lines())
    peer.always("A").reply("peer A")
    peer.always("B").reply("peer B")
    peer.always("C").reply("peer C")
    peer.otherwise().reply("peer otherwise")
    mine = peer.on_connection(1, inherit=True)
    mine.expect("A").reply("own expect A")
    mine.always("B").reply("own B")
    mine.otherwise().reply("own otherwise")
    with peer.serve():
        replies = lines_client(peer, b"A", b"A", b"B", b"C", b"D")
        assert replies == [
            b"own expect A",  # its next expectation first
            b"peer A",  # once met: the peer's always
            b"own B",  # its own always before the peer's
            b"peer C",  # the peer's always before its own otherwise
            b"own otherwise",  # its own otherwise before the peer's
        ]
        assert lines_client(peer, b"D") == [b"peer otherwise"]  # connection 2: the peer's


def test_the_peer_otherwise_comes_last() -> None:
    peer = FakePeer(framing=Lines())
    peer.otherwise().reply("peer otherwise")
    peer.on_connection(1, inherit=True).always("A").reply("own A")
    with peer.serve():
        assert lines_client(peer, b"A", b"Z") == [b"own A", b"peer otherwise"]


def test_rules_added_to_the_peer_later_are_inherited() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connection(1, inherit=True).expect("GET").reply("own")
    peer.always("PING").reply("PONG")  # after the connection's script
    with peer.serve():
        assert lines_client(peer, b"PING", b"GET") == [b"PONG", b"own"]


def test_the_greeting_is_inherited_unless_the_connection_has_its_own() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connect().send("220 peer")
    peer.always("NOOP").reply("250 ok")
    peer.on_connection(1, inherit=True).always("X").reply("x")
    peer.on_connection(2, inherit=True).on_connect().send("421 busy")
    with peer.serve():
        for greeting in (b"220 peer\n", b"421 busy\n"):
            with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
                reader = sock.makefile("rb")
                assert reader.readline() == greeting
                sock.sendall(b"NOOP\n")
                assert reader.readline() == b"250 ok\n"
                reader.close()


def test_the_peer_expectations_are_not_inherited() -> None:
    """The peer's expects are one sequence over the connections that follow its script."""
    peer = FakePeer(framing=Lines())
    peer.expect("LOGIN").reply("peer login")
    peer.always("PING").reply("PONG")
    peer.on_connection(1, inherit=True).expect("QUIT").reply("bye")
    with peer.serve():
        assert lines_client(peer, b"PING", b"QUIT") == [b"PONG", b"bye"]
        assert lines_client(peer, b"LOGIN") == [b"peer login"]  # connection 2


def test_the_peer_handler_is_not_inherited() -> None:
    peer = FakePeer(framing=Lines())

    @peer.handler
    async def echo(connection: Connection) -> None:
        connection.send(b"handled " + await connection.receive())

    peer.on_connection(1, inherit=True).expect("A").reply("own A")
    with peer.serve():
        assert lines_client(peer, b"A") == [b"own A"]
        assert lines_client(peer, b"B") == [b"handled B"]


def test_unmet_expectations_of_both_scripts_fail_the_test() -> None:
    peer = FakePeer(framing=Lines())
    login = peer.expect("LOGIN").reply("ok").describe()
    peer.always("PING").reply("PONG")
    get = peer.on_connection(1, inherit=True).expect("GET").reply("value").describe()
    with pytest.raises(UnmetExpectations) as unmet:
        ping_once(peer)
    assert unmet.value.unmet == [f"{login}: never met", f"{get}: never met"]
    assert "expect #1 'LOGIN'" in unmet.value.diagnosis
    assert "connection #1 expect #1 'GET'" in unmet.value.diagnosis


def test_the_diagnosis_names_the_scripts_tried() -> None:
    peer = FakePeer(framing=Lines())
    peer.always("PING").reply("PONG")
    peer.on_connection(1, inherit=True).expect("GET").reply("value")
    failed = unexpected(peer, b"NOPE\n")
    lines = failed.diagnosis.splitlines()
    assert lines[0] == "connection #1 received data that no rule expected"
    assert lines[4] == (
        "  scripts:   connection #1's own, then the peer's always and otherwise rules "
        "(on_connection(1, inherit=True))"
    )


def test_a_replacing_script_hints_at_the_peer_rule_that_would_take_it() -> None:
    peer = FakePeer(framing=Lines())
    ping = peer.always("PING").reply("PONG")
    peer.on_connection(1).expect("GET").reply("value")  # replaces: the default
    failed = unexpected(peer, b"PING\n")
    lines = failed.diagnosis.splitlines()
    assert lines[4:] == [
        "  scripts:   connection #1's own only (on_connection(1) replaces the peer's script)",
        f"  hint:      the peer's {ping.describe()} would take it: "
        "on_connection(1, inherit=True) adds the peer's always and otherwise rules",
    ]


def test_a_replacing_script_hints_at_the_peer_otherwise() -> None:
    peer = FakePeer(framing=Lines())
    fallback = peer.otherwise().reply("?")
    peer.on_connection(1).expect("GET").reply("value")
    failed = unexpected(peer, b"HELP\n")
    assert failed.diagnosis.splitlines()[-1] == (
        f"  hint:      the peer's {fallback.describe()} would take it: "
        "on_connection(1, inherit=True) adds the peer's always and otherwise rules"
    )


def test_a_replacing_script_without_peer_rules_gives_no_hint() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connection(1).expect("GET").reply("value")
    failed = unexpected(peer, b"HELP\n")
    assert "hint:" not in failed.diagnosis
    assert failed.diagnosis.splitlines()[-1] == (
        "  scripts:   connection #1's own only (on_connection(1) replaces the peer's script)"
    )


def test_inherit_holds_once_given_and_takes_a_bool() -> None:
    peer = FakePeer(framing=Lines())
    peer.always("PING").reply("PONG")
    peer.on_connection(1, inherit=True)
    peer.on_connection(1).expect("GET").reply("value")  # the same script: it inherits
    with pytest.raises(ScriptError) as error:
        peer.on_connection(2, inherit="yes")  # type: ignore[arg-type]
    assert str(error.value) == (
        "on_connection(2, inherit=...) takes True (add to the peer's script) or False "
        "(replace it), got 'yes'"
    )
    with peer.serve():
        assert lines_client(peer, b"PING", b"GET") == [b"PONG", b"value"]


def test_a_raw_stream_inherits_too() -> None:
    peer = FakePeer()
    peer.always(b"PING").reply(b"PONG")
    peer.on_connection(1, inherit=True).expect(b"GET").reply(b"VALUE")
    peer.on_connection(1).otherwise()
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"PINGGET")
        received = b""
        while len(received) < len(b"PONGVALUE"):
            received += sock.recv(64)
        assert received == b"PONGVALUE"


def test_an_inheriting_script_hints_at_the_peer_expect_that_would_take_it() -> None:
    # A newcomer expects the peer's expect to be inherited too: say it is not.
    peer = FakePeer(framing=Lines())
    login = peer.expect("LOGIN").reply("ok")
    peer.always("PING").reply("PONG")
    peer.on_connection(1, inherit=True).expect("GET").reply("value")
    failed = unexpected(peer, b"LOGIN\n")
    assert (
        f"  hint:      the peer's {login.describe()} would take it, but expect rules are "
        "not inherited (they are one sequence over the connections that follow the peer's "
        "script): write it on connection #1's script too"
    ) in failed.diagnosis.splitlines(), failed.diagnosis
    assert "hint" not in unexpected_inheriting(b"NOPE\n").diagnosis


def unexpected_inheriting(data: bytes) -> UnexpectedData:
    peer = FakePeer(framing=Lines())
    peer.expect("LOGIN").reply("ok")
    peer.on_connection(1, inherit=True).expect("GET").reply("value")
    return unexpected(peer, data)
