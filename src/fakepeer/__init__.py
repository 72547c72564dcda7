"""fakepeer: scripted fake TCP peers for testing network clients.

A fake peer is a real server on loopback that speaks a scripted conversation, records a
transcript, and fails the test with a readable diagnosis when the client misbehaves::

    from fakepeer import FakePeer, Lines

    peer = FakePeer(framing=Lines())
    peer.expect(b"PING").reply(b"PONG")
    with peer.serve():
        my_client.ping(*peer.address)

With pytest, the ``fake_peer`` fixture gives a peer that is already serving.
"""

from __future__ import annotations

from ._conversation import Connection
from ._errors import (
    ConversationError,
    Error,
    FramingError,
    IncompleteMessage,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
    UnmetExpectations,
    WaitTimeout,
)
from ._framing import Framing, Lines, Raw
from ._matchers import ANY, Matcher
from ._peer import FakePeer, Serving
from ._script import ReplyFunction, Rule
from ._transcript import Event, Transcript
from ._version import __version__

__all__ = [
    "ANY",
    "Connection",
    "ConversationError",
    "Error",
    "Event",
    "FakePeer",
    "Framing",
    "FramingError",
    "IncompleteMessage",
    "Lines",
    "Matcher",
    "Raw",
    "ReplyFailed",
    "ReplyFunction",
    "Rule",
    "ScriptError",
    "Serving",
    "Transcript",
    "UnexpectedData",
    "UnmetExpectations",
    "WaitTimeout",
    "__version__",
]
