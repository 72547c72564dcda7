"""Errors raised while serving reach the test: nothing is only logged, nothing is lost."""

from __future__ import annotations

import socket

import pytest

from fakepeer import (
    ConversationError,
    FakePeer,
    IncompleteMessage,
    Lines,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
)


class ExplodingFraming:
    """A custom framing with a bug: decode raises on the word BOOM."""

    streaming = False

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        if b"BOOM" in buffer:
            raise ValueError("cannot frame BOOM")
        return Lines().decode(buffer, eof)

    def encode(self, message: bytes) -> bytes:
        return message + b"\n"


def exchange(peer: FakePeer, data: bytes) -> bytes:
    with socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_custom_framing_that_raises_fails_the_test() -> None:
    peer = FakePeer(framing=ExplodingFraming(), name="exploding")
    peer.always(b"PING").reply(b"PONG")
    with pytest.raises(ConversationError) as info, peer.serve():
        assert exchange(peer, b"PING\nBOOM\n") == b""
    error = info.value
    assert error.diagnosis == (
        "connection #1: handling an event raised ValueError: cannot frame BOOM"
    )
    assert isinstance(error.__cause__, ValueError)
    assert "fake peer 'exploding' on 127.0.0.1:" in str(error)


def test_a_reply_callable_that_raises_fails_the_test() -> None:
    peer = FakePeer(framing=Lines(), name="replier")

    def answer(match: bytes) -> bytes:
        raise KeyError(match)

    peer.expect(b"GET").reply(answer)
    with pytest.raises(ReplyFailed) as info, peer.serve():
        assert exchange(peer, b"GET\n") == b""
    assert info.value.diagnosis.startswith(
        "the reply callable test_a_reply_callable_that_raises_fails_the_test.<locals>.answer "
        "of expect #1 'GET' (test_runtime_errors.py:"
    )
    assert info.value.diagnosis.endswith("raised KeyError: b'GET'")
    assert isinstance(info.value.__cause__, KeyError)


def test_a_message_cut_by_eof_is_reported() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect(b"HELLO")
    with pytest.raises(IncompleteMessage) as info, peer.serve():
        exchange(peer, b"HEL")
    assert info.value.leftover == b"HEL"
    assert "connection #1 ended in the middle of a message (Lines(b'\\n'))" in str(info.value)
    assert "leftover:  'HEL'" in str(info.value)


def test_an_error_in_the_with_body_keeps_propagating_with_a_note() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect(b"PING").reply(b"PONG")
    # PT012 ignored: the error under test is raised when leaving serve(), after the body.
    with pytest.raises(OSError, match="the client gave up") as info, peer.serve():  # noqa: PT012
        exchange(peer, b"PANG\n")
        raise OSError("the client gave up")
    [note] = info.value.__notes__
    assert note.startswith("\nfakepeer: the peer also saw a problem:\n")
    assert "received:  'PANG'" in note
    assert "fake peer 'fake peer' on 127.0.0.1:" in note


def test_several_problems_are_all_listed() -> None:
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")
    with pytest.raises(UnexpectedData) as info, peer.serve():  # noqa: PT012 - raised at exit
        exchange(peer, b"ONE\n")
        exchange(peer, b"TWO\n")
    text = str(info.value)
    assert "received:  'ONE'" in text
    assert "and 1 more problem(s):\n  - connection #2 received data that no rule expected" in text


def test_not_a_framing_is_a_script_error() -> None:
    with pytest.raises(ScriptError, match=r"is not a framing: it needs \.streaming"):
        FakePeer(framing=object())  # type: ignore[arg-type]
    with pytest.raises(ScriptError, match=r"use Lines\(\)"):
        FakePeer(framing=Lines)  # type: ignore[arg-type]
