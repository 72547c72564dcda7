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

from ._connection import Connection
from ._errors import (
    ClientNotReading,
    ConversationError,
    Error,
    FramingError,
    HandlerFailed,
    HubBlocked,
    IncompleteMessage,
    LoopBlocked,
    ReplyFailed,
    ScriptError,
    TaskDied,
    UnexpectedData,
    UnmetExpectations,
    UpstreamError,
    WaitTimeout,
)
from ._faults import Fault
from ._faultset import ActiveFault, Faults
from ._framing import (
    Delimited,
    Fixed,
    Framing,
    LengthField,
    LengthPrefixed,
    Lines,
    Raw,
    StxEtx,
)
from ._matchers import (
    ANY,
    NEED_MORE,
    Matched,
    Matcher,
    MatchOutcome,
    all_of,
    any_of,
    contains,
    exact,
    json,
    not_,
    predicate,
    prefix,
    regex,
)
from ._peer import ConnectionScript, FakePeer
from ._proxy import Proxy
from ._script import HandlerFunction, ReplyFunction, Rule
from ._serving import Serving
from ._tlsinfo import TLSInfo
from ._transcript import Event, Transcript
from ._version import __version__

__all__ = [
    "ANY",
    "NEED_MORE",
    "ActiveFault",
    "ClientNotReading",
    "Connection",
    "ConnectionScript",
    "ConversationError",
    "Delimited",
    "Error",
    "Event",
    "FakePeer",
    "Fault",
    "Faults",
    "Fixed",
    "Framing",
    "FramingError",
    "HandlerFailed",
    "HandlerFunction",
    "HubBlocked",
    "IncompleteMessage",
    "LengthField",
    "LengthPrefixed",
    "Lines",
    "LoopBlocked",
    "MatchOutcome",
    "Matched",
    "Matcher",
    "Proxy",
    "Raw",
    "ReplyFailed",
    "ReplyFunction",
    "Rule",
    "ScriptError",
    "Serving",
    "StxEtx",
    "TLSInfo",
    "TaskDied",
    "Transcript",
    "UnexpectedData",
    "UnmetExpectations",
    "UpstreamError",
    "WaitTimeout",
    "__version__",
    "all_of",
    "any_of",
    "contains",
    "exact",
    "json",
    "not_",
    "predicate",
    "prefix",
    "regex",
]
