"""The client's EOF after the peer ended the connection is no event of the conversation.

A TLS transport that closes sends its close_notify and reads on until the client's reply
or FIN: the client's EOF then reaches the protocol after the peer's own close. The core
records nothing for it and answers nothing (over TCP a closed transport reads nothing more,
so this never happened there).
"""

from __future__ import annotations

from fakepeer import Lines
from fakepeer._actions import Close, Write
from fakepeer._conversation import Conversation
from test_conversation import T0, connect, expect, rendered, send


def test_eof_after_the_peer_closed_is_not_recorded() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"QUIT").reply(b"BYE").close()
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"QUIT\n") == [Write(b"BYE\n"), Close()]
    assert connection.ended
    before = rendered(conversation)
    assert before[-1] == "  #1 closed"
    assert conversation.eof(connection, T0 + 0.001) == []
    assert rendered(conversation) == before
    assert conversation.verdict() is None


def test_eof_of_an_open_connection_is_still_recorded() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"QUIT").reply(b"BYE")
    connection, _ = connect(conversation)
    send(conversation, connection, b"QUIT\n")
    assert conversation.eof(connection, T0 + 0.001) == [Close()]
    assert rendered(conversation)[-1] == "  #1 eof"
