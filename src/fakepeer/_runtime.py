"""The runtime: an asyncio server that executes the conversation's actions.

It lives in four modules, one seam each: :mod:`fakepeer._steps` (the executor, and the
runtime's clock), :mod:`fakepeer._peerprotocol` (one served connection: the loop's callbacks,
backpressure, the actions on its transport), :mod:`fakepeer._handleio` (what the user's
handle does to a connection) and :mod:`fakepeer._peerserver` (listening, accepting, settling
and stopping). This module gathers the names the rest of the package imports from it.

Every call into the conversation holds the peer's lock, so the test's thread can read the
transcript or add rules while the hub thread serves.
"""

from __future__ import annotations

from ._handleio import HandleIO
from ._peerprotocol import (
    _BULK,
    _FAULT,
    _HANDLER_BEHIND,
    _SENDING,
    _UPSTREAM,
    IN_FLIGHT_GRACE,
    _PeerProtocol,
    stream_transport,
)
from ._peerserver import BACKLOG, MAX_SEND_BUFFER, PeerServer
from ._steps import Side, Steps, clock

__all__ = [
    "BACKLOG",
    "IN_FLIGHT_GRACE",
    "MAX_SEND_BUFFER",
    "_BULK",
    "_FAULT",
    "_HANDLER_BEHIND",
    "_SENDING",
    "_UPSTREAM",
    "HandleIO",
    "PeerServer",
    "Side",
    "Steps",
    "_PeerProtocol",
    "clock",
    "stream_transport",
]
