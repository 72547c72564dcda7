"""What a long-running peer keeps of the messages it received: a bounded window.

A test's peer keeps every message it received (``peer.received``, each
``connection.received``): the test's assertions read them, and a test ends. A peer that
serves for hours (``fakepeer run``, ``fakepeer learn``) would grow with its traffic, so the
command line bounds what it keeps (:func:`bound`): at most a number of bytes and of messages
across the peer, the oldest dropped first, from the peer's list and from the list of the
connection that received them (both stay in order: a connection's list is the part of the
peer's that came from it). The newest message is always kept, however large: a reply
callable reads it. ``otherwise`` rules' unmatched messages are bounded with them.

A list that drops its oldest items moves the indexes of the others: code that reads
``connection.received`` incrementally (a protocol kit's ``protocol_of``) must find where it
was by the last message it read, not by a count (see :func:`fakepeer.protocols.resp.protocol_of`).
Pure data: no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._conversation import Conversation
    from ._state import ConnectionRecord

__all__ = ["MOST_BYTES", "MOST_MESSAGES", "Keeping", "bound"]

#: What the command line keeps of the messages received, across the peer: bytes...
MOST_BYTES: Final = 1 << 20
#: ... and messages (each costs about 100 bytes besides its data).
MOST_MESSAGES: Final = 4096


class Keeping:
    """The bound on a conversation's received messages: at most ``most_bytes`` bytes of
    them and ``most_messages`` messages, the newest always kept. Past either, the oldest
    are dropped until half of each is left (so a drop is rare: the cost per message is
    constant). ``dropped`` counts the messages dropped so far."""

    __slots__ = (
        "dropped",
        "most_bytes",
        "most_messages",
        "owners",
        "received",
        "size",
        "unmatched",
    )

    def __init__(self, convo: Conversation, *, most_bytes: int, most_messages: int) -> None:
        self.most_bytes = most_bytes
        self.most_messages = max(2, most_messages)
        self.received = convo.received
        self.unmatched = convo.unmatched
        #: The record of the connection that received each message of ``received``.
        self.owners: list[ConnectionRecord] = []
        self.size = 0
        self.dropped = 0

    def add(self, record: ConnectionRecord, message: bytes) -> None:
        """``message`` was appended to the peer's list and to ``record``'s: drop the
        oldest messages if the bound is passed."""
        self.owners.append(record)
        self.size += len(message)
        if self.size > self.most_bytes or len(self.owners) > self.most_messages:
            self._trim()

    def _trim(self) -> None:
        received, owners = self.received, self.owners
        keep_bytes, keep_messages = self.most_bytes // 2, self.most_messages // 2
        count, size, drop = len(received), self.size, 0
        while drop < count - 1 and (size > keep_bytes or count - drop > keep_messages):
            size -= len(received[drop])
            drop += 1
        per_record: dict[int, tuple[ConnectionRecord, int]] = {}
        for owner in owners[:drop]:
            _, dropped = per_record.get(id(owner), (owner, 0))
            per_record[id(owner)] = (owner, dropped + 1)
        for owner, dropped in per_record.values():
            del owner.received[:dropped]
        del received[:drop]
        del owners[:drop]
        del self.unmatched[: max(0, len(self.unmatched) - keep_messages)]
        self.size = size
        self.dropped += drop


def bound(
    convo: Conversation, *, most_bytes: int = MOST_BYTES, most_messages: int = MOST_MESSAGES
) -> Keeping:
    """Bound what ``convo`` keeps of the messages it receives (see :class:`Keeping`): for
    a process that serves for long, not for a test. Before it serves: it has received nothing."""
    if convo.received:
        raise RuntimeError("bound() comes before the peer receives anything")
    keeping = Keeping(convo, most_bytes=most_bytes, most_messages=most_messages)
    convo.keeping = keeping
    return keeping
