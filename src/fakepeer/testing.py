"""Test helpers for your own framings and scripts, without sockets.

fakepeer's core is sans-IO: a script turns events (a client connected, bytes arrived, the
client closed) into actions (write these bytes, wait, close). These helpers drive it by hand,
with fake timestamps, so a framing or a script can be tested in microseconds, in any test,
with no port, thread or event loop:

- :class:`Rehearsal` plays a :class:`~fakepeer.FakePeer`'s script against events you give
  it, and returns what the peer would write;
- :func:`check_framing` checks that a framing yields the same messages however the bytes
  are split into segments (TCP keeps no message boundaries: a framing that depends on them
  is a bug).

Example::

    peer = FakePeer(framing=Lines())
    peer.expect(b"PING").reply(b"PONG")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, b"PING\\n") == [b"PONG\\n"]
    rehearsal.verify()   # raises what leaving serve() would raise
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._actions import Action, Call, Close, HalfClose, Hold, Push, Reset, Write
from ._connection import Connection
from ._conversation import Conversation
from ._errors import Error, FramingError, ScriptError
from ._framing import Decoder, Framing
from ._peer import FakePeer
from ._state import ConnectionRecord

__all__ = ["Rehearsal", "check_framing", "splits"]


class _Offline:
    """What a rehearsed connection does when the script pushes, closes or resets it."""

    def __init__(self, rehearsal: Rehearsal, record: ConnectionRecord) -> None:
        self._rehearsal = rehearsal
        self._record = record

    def send(self, data: bytes) -> None:
        conversation = self._rehearsal.conversation
        self._rehearsal._perform(self._record, [Push(conversation.framing.encode(data))])

    def close(self) -> None:
        self._rehearsal._perform(self._record, [Close()])

    def reset(self) -> None:
        self._rehearsal._perform(self._record, [Reset()])

    async def receive(self) -> bytes:
        raise RuntimeError("a handler needs a serving peer: Rehearsal plays scripts only")

    async def receive_exactly(self, count: int) -> bytes:
        raise RuntimeError("a handler needs a serving peer: Rehearsal plays scripts only")


class Rehearsal:
    """A :class:`~fakepeer.FakePeer`'s script, played without sockets.

    Each method is an event of the network; it returns the bytes the peer writes in answer
    (framed, in order), and records everything in ``peer``'s transcript as a served peer
    would. Waits (``.after()``) are skipped, and time stands at ``at`` (seconds, any float;
    it only orders the transcript). ``async`` reply callables and handlers need a serving
    peer: they raise :class:`~fakepeer.ScriptError` here.

    The ``peer`` must be new (never served); a rehearsal takes it over, as ``serve()``
    would.
    """

    def __init__(self, peer: FakePeer, *, at: float = 0.0) -> None:
        if not isinstance(peer, FakePeer):
            raise ScriptError(f"Rehearsal() takes a FakePeer, got {peer!r}")
        self.peer = peer
        self.conversation: Conversation = peer._conversation
        self.at = at
        self._handles: dict[int, Connection] = {}

    def connect(self, client: str = "127.0.0.1:50000") -> Connection:
        """A client connects: its handle (what the greeting wrote is in the transcript)."""
        record, actions = self.conversation.connect(client, self.at)
        handle = Connection(record, _Offline(self, record))
        self._handles[record.id] = handle
        self.peer._handles.append(handle)
        self._perform(record, actions)
        return handle

    def send(self, connection: Connection, data: bytes) -> list[bytes]:
        """The client sends ``data`` in one segment: the bytes the peer writes back."""
        record = self._record(connection)
        return self._perform(record, self.conversation.receive(record, data, self.at))

    def close(self, connection: Connection) -> list[bytes]:
        """The client closes its sending side (EOF): what the peer writes before it closes."""
        record = self._record(connection)
        written = self._perform(record, self.conversation.eof(record, self.at))
        self._perform(record, self.conversation.lost(record, self.at, None))
        return written

    def verify(self) -> None:
        """Raise what leaving ``serve()`` would: the first problem, else unmet expectations."""
        __tracebackhide__ = True
        self.conversation.finish()
        self.peer.verify()

    def _record(self, connection: Connection) -> ConnectionRecord:
        record = connection._record
        if self._handles.get(record.id) is not connection:
            raise ScriptError(f"{connection!r} is not a connection of this rehearsal")
        return record

    def _perform(self, record: ConnectionRecord, actions: list[Action]) -> list[bytes]:
        """Do what ``actions`` ask, as the runtime would (waits skipped); the bytes written."""
        conversation = self.conversation
        written: list[bytes] = []
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Call):
                handle = self._handles.get(record.id)
                try:
                    if action.wants_connection:
                        result = action.function(action.value, handle)
                    else:
                        result = action.function(action.value)
                    error: Exception | None = None
                except Exception as exc:
                    result, error = None, exc
                if hasattr(result, "__await__"):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    raise ScriptError("an async reply callable needs a serving peer")
                pending[:0] = conversation.replied(record, result, error, self.at)
                continue
            if record.ended:
                continue
            if isinstance(action, Write):
                if type(action) is Push and record.failed:
                    continue
                written.append(action.data)
                conversation.sent(record, action.data, self.at)
            elif isinstance(action, Close | Reset):
                conversation.closed(
                    record, self.at, "closed" if isinstance(action, Close) else "reset"
                )
            elif isinstance(action, HalfClose):
                conversation.closed(record, self.at, "half-closed")
            elif isinstance(action, Hold):
                conversation.held(record, self.at)
        return written


def splits(data: bytes) -> Iterable[list[bytes]]:
    """Ways to cut ``data`` into segments, as TCP may deliver it: whole, byte by byte, and
    in two at every point."""
    yield [data]
    if len(data) > 1:
        yield [data[i : i + 1] for i in range(len(data))]
        for cut in range(1, len(data)):
            yield [data[:cut], data[cut:]]


def check_framing(
    framing: Framing, data: bytes, expected: Sequence[bytes] | None = None, *, eof: bool = True
) -> list[bytes]:
    """The messages ``framing`` cuts from ``data``, checked to be the same however the
    bytes are split (see :func:`splits`), and equal to ``expected`` if given. ``eof``: the
    client closes after ``data`` (a framing may then yield a last message, or raise
    :class:`~fakepeer.FramingError` for an incomplete one).

    Raises ``AssertionError`` naming the first split that differs: a framing bug.
    """
    __tracebackhide__ = True
    reference: list[bytes] | Error | None = None
    for segments in splits(data):
        got = _frame(framing, segments, eof)
        if reference is None:
            reference = got
            if expected is not None and got != list(expected):
                raise AssertionError(
                    f"{framing!r} cut {got!r} from {data!r}, expected {list(expected)!r}"
                )
        elif _differs(got, reference):
            raise AssertionError(
                f"{framing!r} depends on how the bytes are split: {reference!r} from "
                f"{data!r} in one segment, but {got!r} from the segments {segments!r}"
            )
    if isinstance(reference, Error):
        raise reference
    return list(reference or [])


def _frame(framing: Framing, segments: Iterable[bytes], eof: bool) -> list[bytes] | Error:
    decoder = Decoder(framing)
    buffer = bytearray()
    messages: list[bytes] = []
    try:
        for segment in segments:
            messages.extend(decoder.feed(buffer, segment))
        if eof:
            messages.extend(decoder.take(buffer, True))
    except FramingError as problem:
        return problem
    return messages


def _differs(got: list[bytes] | Error, reference: list[bytes] | Error) -> bool:
    if isinstance(got, Error) or isinstance(reference, Error):
        return type(got) is not type(reference)
    return got != reference
