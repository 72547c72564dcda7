"""What a newcomer met while following the docs of issue 15: each a regression test."""

from __future__ import annotations

import socket

import pytest

from fakepeer import ConversationError, FakePeer, Lines, faults
from fakepeer.protocols import http1, resp


def _send(peer: FakePeer, data: bytes) -> None:
    with socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(data)
        sock.recv(10)  # the peer fails the connection and closes it


def _failure(peer: FakePeer, data: bytes) -> str:
    with pytest.raises(ConversationError) as info, peer.serve():
        _send(peer, data)
    return str(info.value)


def test_resp_matcher_with_the_default_framing_is_not_said_to_match() -> None:
    # A newcomer forgets framing=resp.framing(). The docs (api-protocols.md) say a kit's
    # matchers match nothing under Raw(); the failure then says "the data matches
    # command('PING')", which contradicts "no rule expected" and does not say what to fix.
    peer = FakePeer()  # forgot framing=resp.framing()
    peer.expect(resp.command("PING")).reply(resp.simple_string("PONG"))
    text = _failure(peer, b"*1\r\n$4\r\nPING\r\n")
    assert "the data matches command('PING')" not in text, text
    assert (
        "the data would match command('PING') as a whole message, but the framing is Raw(), "
        "which gives a matcher the front of a byte stream: this matcher needs a message "
        "framing (a protocol kit's own: FakePeer(framing=<kit>.framing()))"
    ) in text, text


def test_http1_matcher_with_the_default_framing_is_not_said_to_match() -> None:
    peer = FakePeer()  # forgot framing=http1.framing()
    peer.expect(http1.request("GET", "/")).reply(http1.response(200))
    text = _failure(peer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "the data matches request('GET', '/')" not in text, text


def _ping_then_close(peer: FakePeer) -> bytes:
    """One request on a fresh connection; half-close and read to the peer's EOF."""
    with socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(b"PING\n")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while data := sock.recv(100):
            answer += data
        return answer


def test_first_requests_do_not_count_the_peers_close_after_eof() -> None:
    # api-faults.md, Faults on a schedule: with per="request", `first` counts "replies
    # (batches of writes) sent on any connection". The peer's own close after the client's
    # EOF is no reply, yet it is counted: truncate(2) with first=2 cuts only ONE reply when
    # each request comes on its own connection ("fault - truncate(2) (after its first 2
    # requests)" right after "#1 eof").
    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")
    with peer.serve():
        peer.faults.add(faults.truncate(2), first=2, per="request")
        answers = [_ping_then_close(peer) for _ in range(3)]
    assert answers == [b"PO", b"PO", b"PONG\n"], str(peer.transcript)
