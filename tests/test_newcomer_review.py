"""A newcomer's review of issue 15's features: the friction points, each a regression test
of the exact text or behaviour (real sockets, bounded waits)."""

from __future__ import annotations

import smtplib
import socket

import pytest

from fakepeer import (
    FakePeer,
    Fixed,
    LengthField,
    Lines,
    Raw,
    ScriptError,
    UnmetExpectations,
    prefix,
)

TIMEOUT = 5.0

#: The hint of a Raw peer whose greeting has no line end.
LINE_END_HINT = (
    "  hint:      the peer's last bytes on connection #1, '220 ready', end in no line end, "
    "and the client sent nothing after them: a client of a line protocol (SMTP, FTP, POP3...) "
    'waits for the end of the line; use FakePeer(framing=Lines(b"\\r\\n")), which ends each '
    "reply and .send() with '\\r\\n' (or end the text with \"\\r\\n\" yourself)"
)


def _unmet_after_greeting(peer: FakePeer, *, read: int = 9) -> UnmetExpectations:
    """Serve ``peer``; a client reads the greeting's ``read`` bytes and waits in vain."""
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(UnmetExpectations) as unmet,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        got = b""
        while len(got) < read:
            got += sock.recv(100)
    return unmet.value


# -- 1. a Raw greeting with no line end ------------------------------------------------------


def test_smtplib_waiting_for_a_greeting_line_gets_the_lines_hint() -> None:
    peer = FakePeer()  # Raw: the greeting goes out as written, with no line end
    peer.on_connect().send("220 ready")
    ehlo = peer.expect(prefix(b"EHLO")).reply("250 ok\r\n")
    with pytest.raises(UnmetExpectations) as unmet, peer.serve():  # noqa: PT012 - then the stop
        host, port = peer.address
        with pytest.raises(smtplib.SMTPServerDisconnected):  # it timed out waiting for the line
            smtplib.SMTP(host, port, timeout=0.3)
    assert unmet.value.diagnosis.splitlines() == [
        "1 expectation was not met when the peer stopped (1 connection(s), 0 message(s) received):",
        f"  {ehlo.describe()}: never met",
        LINE_END_HINT,
    ]


@pytest.mark.parametrize(
    ("framing", "greeting"),
    [
        (None, b"\x00\x01\x02\x03\x04\x05\x06\x07\x08"),  # binary: no line protocol
        (None, b"220 ready\r\n"),  # a whole line
        (Lines(b"\r\n"), b"220 ready"),  # framed: the line end is added
    ],
)
def test_no_line_end_hint_without_a_text_line_cut_short(
    framing: Lines | None, greeting: bytes
) -> None:
    peer = FakePeer(framing=framing)
    peer.on_connect().send(greeting)
    peer.expect(b"EHLO").reply(b"250 ok")
    unmet = _unmet_after_greeting(peer)
    assert "hint" not in unmet.diagnosis, unmet.diagnosis


def test_no_line_end_hint_once_the_client_answered() -> None:
    # The client sent something after the text: it did not wait for a line end (and the
    # peer's last bytes are a whole line).
    peer = FakePeer()
    peer.on_connect().send("220 ready")
    peer.always(b"NOOP").reply(b"250 ok\r\n")
    peer.expect(b"EHLO").reply(b"250 ok")
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(UnmetExpectations) as unmet,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        assert sock.recv(9) == b"220 ready"
        sock.sendall(b"NOOP")
        assert sock.recv(8) == b"250 ok\r\n"
    assert "hint" not in unmet.value.diagnosis, unmet.value.diagnosis


def test_no_line_end_hint_when_the_client_sent_after_the_text() -> None:
    peer = FakePeer()
    peer.on_connect().send("220 ready")
    peer.always(b"NOOP")  # takes it, answers nothing
    peer.expect(b"EHLO").reply(b"250 ok")
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(UnmetExpectations) as unmet,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        assert sock.recv(9) == b"220 ready"
        sock.sendall(b"NOOP")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(9) == b""  # the peer read it, and closed after the EOF
    assert "1 message(s) received" in unmet.value.diagnosis, unmet.value.diagnosis
    assert "hint" not in unmet.value.diagnosis, unmet.value.diagnosis


# -- 3. a constant reply its framing cannot encode fails where the test wrote it -------------


def test_a_constant_reply_of_the_wrong_size_fails_at_its_line() -> None:
    rule = FakePeer(framing=Fixed(4)).expect(b"PING")
    with pytest.raises(ScriptError) as error:
        rule.reply(b"TOO LONG")
    assert str(error.value) == (
        f".reply() on {rule.describe()}: Fixed(4) sends messages of exactly 4 bytes, got a "
        "reply of 8 bytes: 'TOO LONG'"
    )
    assert rule.steps == []  # not added: the peer would not send it


def test_a_greeting_and_each_answer_of_a_rotation_are_checked_too() -> None:
    peer = FakePeer(framing=Fixed(4))
    with pytest.raises(ScriptError, match=r"^\.send\(\) on on_connect \(test_newcomer_review"):
        peer.on_connect().send("hi")
    with pytest.raises(ScriptError, match=r"got a reply of 2 bytes: 'no'$"):
        peer.expect(b"PING").reply([b"PONG", b"no"])


def test_a_length_field_whose_header_cannot_be_put_back_fails_at_the_reply() -> None:
    rule = FakePeer(framing=LengthField(offset=2, size=2, strip="header")).expect(b"x")
    with pytest.raises(ScriptError) as error:
        rule.reply(b"answer")
    assert str(error.value) == (
        f".reply() on {rule.describe()}: LengthField(offset=2, size=2, strip=4) "
        "cannot frame a reply: it strips 4 bytes off the front of each frame, which a reply "
        "does not give back; write whole frames and pass "
        "FakePeer(reply_framing=LengthField(offset=2, size=2)), or reply_framing=Raw() to "
        "send replies as written"
    )


def test_reply_framing_raw_sends_any_constant_and_callables_are_checked_as_they_reply() -> None:
    peer = FakePeer(framing=Fixed(4), reply_framing=Raw())
    peer.expect(b"PING").reply(b"PONG!")  # Raw() takes it as written
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"PING")
        assert sock.recv(5) == b"PONG!"
    callable_peer = FakePeer(framing=Fixed(4))
    rule = callable_peer.expect(b"PING").reply(lambda _: b"TOO LONG")  # judged at the send
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(ScriptError) as error,
        callable_peer.serve(),
        socket.create_connection(callable_peer.address, timeout=TIMEOUT) as sock,
    ):
        sock.sendall(b"PING")
        assert sock.recv(5) == b""  # the peer failed the connection
    assert error.value.diagnosis.startswith(f"{rule.describe()}: Fixed(4) sends messages")
