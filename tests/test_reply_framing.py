"""``reply_framing=``: what the peer sends framed otherwise than what it receives, on every
path a peer writes by (replies, greetings, steps, pushes, broadcasts, handlers, rehearsals),
with real clients on loopback, and through the pytest fixtures."""

from __future__ import annotations

import socket

import pytest

from fakepeer import (
    Connection,
    FakePeer,
    Fixed,
    LengthField,
    Lines,
    Raw,
    ScriptError,
)
from fakepeer.settings import PeerFactory
from fakepeer.testing import Rehearsal
from test_lengthfield import MBAP_REQUEST, TPKT_CR, read_mbap, recv_exactly

TIMEOUT = 5.0

#: A Modbus/TCP exception response (function 0x83, exception 2): 9 bytes, not 12.
MBAP_EXCEPTION = bytes.fromhex("0001 0000 0003 01 83 02")


def test_fixed_requests_and_replies_of_another_length() -> None:
    """The issue's example: Fixed(12) fits Modbus requests; replies go out as written."""
    peer = FakePeer(framing=Fixed(12), reply_framing=Raw())
    peer.expect(MBAP_REQUEST).reply(MBAP_EXCEPTION)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(MBAP_REQUEST)
        assert read_mbap(sock) == MBAP_EXCEPTION
    assert peer.received == [MBAP_REQUEST]


def test_without_reply_framing_the_reply_must_fit_the_request_framing() -> None:
    rule = FakePeer(framing=Fixed(12)).expect(MBAP_REQUEST)
    with pytest.raises(ScriptError) as excinfo:  # a constant reply: as the test writes it
        rule.reply(MBAP_EXCEPTION)
    assert str(excinfo.value) == (
        f".reply() on {rule.describe()}: Fixed(12) sends messages of exactly 12 bytes, got a "
        "reply of 9 bytes: '\\x00\\x01\\x00\\x00\\x00\\x03\\x01\\x83\\x02'"
    )


def test_a_reply_callable_must_fit_the_request_framing_as_it_replies() -> None:
    peer = FakePeer(framing=Fixed(12))
    peer.expect(MBAP_REQUEST).reply(lambda _: MBAP_EXCEPTION)
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(ScriptError) as excinfo,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        sock.sendall(MBAP_REQUEST)
        assert sock.recv(100) == b""  # the peer failed the connection
    assert "Fixed(12) sends messages of exactly 12 bytes, got a reply of 9 bytes" in str(
        excinfo.value
    )


class LineClient:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.reader = self.sock.makefile("rb")

    def read(self) -> bytes:
        return self.reader.readline()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def test_every_write_of_the_peer_is_framed_by_reply_framing() -> None:
    """Requests end with \\n, everything the peer writes with \\r\\n."""
    peer = FakePeer(framing=Lines(), reply_framing=Lines(b"\r\n"))
    peer.on_connect().send(b"HELLO").send(b"READY")

    def pushing(message: bytes, connection: Connection) -> bytes:
        connection.send(b"PUSHED")
        return b"PONG"

    peer.expect(b"PING").reply(pushing)
    peer.expect(b"WAIT")
    with peer.serve():
        client = LineClient(peer.address)
        try:
            assert client.read() == b"HELLO\r\n"
            assert client.read() == b"READY\r\n"
            client.sock.sendall(b"PING\n")
            assert {client.read(), client.read()} == {b"PUSHED\r\n", b"PONG\r\n"}
            client.sock.sendall(b"WAIT\n")
            peer.wait_until_done(timeout=TIMEOUT)
            assert peer.broadcast(b"ALL") == 1
            assert client.read() == b"ALL\r\n"
            peer.connections[0].send(b"ONE")
            assert client.read() == b"ONE\r\n"
        finally:
            client.close()
    assert peer.received == [b"PING", b"WAIT"]


def test_a_handler_s_sends_are_framed_by_reply_framing() -> None:
    peer = FakePeer(framing=LengthField(size=2, strip=2), reply_framing=Lines())

    @peer.handler
    async def echo(connection: Connection) -> None:
        connection.send(await connection.receive())

    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"\x00\x02hi")
        assert recv_exactly(sock, 3) == b"hi\n"


def test_a_length_field_that_strips_replies_with_whole_frames() -> None:
    """TPKT frames, stripped for the rules; replies are whole frames, checked."""
    tpkt = LengthField(offset=2, size=2, adjustment=-4)
    peer = FakePeer(framing=LengthField(offset=2, size=2, adjustment=-4, strip=4))
    assert peer.reply_framing is peer.framing  # the default
    peer = FakePeer(
        framing=LengthField(offset=2, size=2, adjustment=-4, strip=4), reply_framing=tpkt
    )
    confirm = bytes.fromhex("0300 000b 06d0 0000 1234 00")  # X.224 Connection Confirm
    peer.expect(TPKT_CR[4:]).reply(confirm)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(TPKT_CR)
        assert recv_exactly(sock, len(confirm)) == confirm


def test_a_framing_that_cannot_frame_replies_points_to_reply_framing() -> None:
    peer = FakePeer(framing=LengthField(offset=2, size=2, adjustment=-4, strip=4))
    peer.expect(TPKT_CR[4:]).reply(lambda _: b"\x06\xd0")
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(ScriptError) as excinfo,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        sock.sendall(TPKT_CR)
        assert sock.recv(100) == b""
    text = str(excinfo.value)
    assert "test_reply_framing.py" in text  # the rule that replied
    assert (
        "LengthField(offset=2, size=2, adjustment=-4, strip=4) cannot frame a reply: it strips "
        "4 bytes off the front of each frame, which a reply does not give back; write whole "
        "frames and pass FakePeer(reply_framing=LengthField(offset=2, size=2, adjustment=-4)), "
        "or reply_framing=Raw() to send replies as written"
    ) in text


def test_a_rehearsal_frames_with_reply_framing() -> None:
    peer = FakePeer(framing=Lines(), reply_framing=Raw())
    peer.expect(b"PING").reply(b"PONG").send(b"!")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, b"PING\n") == [b"PONG", b"!"]
    rehearsal.verify()


def test_the_repr_shows_a_reply_framing_of_its_own() -> None:
    assert repr(FakePeer(framing=Fixed(12), reply_framing=Raw())) == (
        "<FakePeer 'fake peer' new framing=Fixed(12) reply_framing=Raw()>"
    )
    assert repr(FakePeer(framing=Lines(), reply_framing=Lines())) == (
        "<FakePeer 'fake peer' new framing=Lines(b'\\n')>"
    )
    assert FakePeer().reply_framing == Raw()


@pytest.mark.parametrize(
    ("arguments", "diagnosis"),
    [
        (
            {"reply_framing": Raw},
            "reply_framing must be an instance, not the class: use Raw()",
        ),
        (
            {"reply_framing": b"\n"},
            "b'\\n' is not a framing: it needs .streaming, .decode(buffer, eof) and "
            ".encode(message)",
        ),
        (
            {"transport": "udp", "reply_framing": Raw()},
            "FakePeer(transport='udp', reply_framing=Raw()): each reply is one datagram, sent "
            "as given, so a UDP peer takes no reply framing; leave reply_framing= out (build "
            "each reply's bytes whole)",
        ),
    ],
)
def test_a_wrong_reply_framing_is_a_script_error(
    arguments: dict[str, object], diagnosis: str
) -> None:
    with pytest.raises(ScriptError) as excinfo:
        FakePeer(**arguments)  # type: ignore[arg-type]
    assert str(excinfo.value) == diagnosis


@pytest.mark.fakepeer(framing=Fixed(12), reply_framing=Raw())
def test_the_marker_takes_reply_framing(fake_peer: FakePeer) -> None:
    fake_peer.expect(MBAP_REQUEST).reply(MBAP_EXCEPTION)
    assert fake_peer.reply_framing == Raw()
    with socket.create_connection(fake_peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(MBAP_REQUEST)
        assert read_mbap(sock) == MBAP_EXCEPTION


def test_the_factory_takes_reply_framing(fake_peer_factory: PeerFactory) -> None:
    peer = fake_peer_factory(framing=Lines(), reply_framing=Lines(b"\r\n"), name="smtp")
    peer.on_connect().send(b"220 ready")
    client = LineClient(peer.address)
    try:
        assert client.read() == b"220 ready\r\n"
    finally:
        client.close()
