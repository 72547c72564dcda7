"""A newcomer's review of issue 15's features: the friction points, each a regression test
of the exact text or behaviour (real sockets, bounded waits)."""

from __future__ import annotations

import smtplib
import socket

import pytest

from fakepeer import FakePeer, Fixed, LengthField, Lines, UnmetExpectations, prefix

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
    with pytest.raises(UnmetExpectations) as unmet, peer.serve():
        with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
            got = b""
            while len(got) < read:
                got += sock.recv(100)
    return unmet.value


# -- 1. a Raw greeting with no line end ------------------------------------------------------


def test_smtplib_waiting_for_a_greeting_line_gets_the_lines_hint() -> None:
    peer = FakePeer()  # Raw: the greeting goes out as written, with no line end
    peer.on_connect().send("220 ready")
    ehlo = peer.expect(prefix(b"EHLO")).reply("250 ok\r\n")
    with pytest.raises(UnmetExpectations) as unmet, peer.serve():
        with pytest.raises(smtplib.SMTPServerDisconnected):  # it timed out on the line
            smtplib.SMTP(*peer.address, timeout=0.3)
    assert unmet.value.diagnosis.splitlines() == [
        "1 expectation was not met when the peer stopped (1 connection(s), 0 message(s) "
        "received):",
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
    with pytest.raises(UnmetExpectations) as unmet, peer.serve():
        with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
            assert sock.recv(9) == b"220 ready"
            sock.sendall(b"NOOP")
            assert sock.recv(8) == b"250 ok\r\n"
    assert "hint" not in unmet.value.diagnosis, unmet.value.diagnosis


def test_no_line_end_hint_when_the_client_sent_after_the_text() -> None:
    peer = FakePeer()
    peer.on_connect().send("220 ready")
    peer.always(b"NOOP")  # takes it, answers nothing
    peer.expect(b"EHLO").reply(b"250 ok")
    with pytest.raises(UnmetExpectations) as unmet, peer.serve():
        with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
            assert sock.recv(9) == b"220 ready"
            sock.sendall(b"NOOP")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(9) == b""  # the peer read it, and closed after the EOF
    assert "1 message(s) received" in unmet.value.diagnosis, unmet.value.diagnosis
    assert "hint" not in unmet.value.diagnosis, unmet.value.diagnosis
