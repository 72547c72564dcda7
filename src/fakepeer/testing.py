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

from collections.abc import Iterable

from ._actions import Action, Call, Close, HalfClose, Hold, Later, Push, Reset, Stop, Write
from ._connection import Connection
from ._conversation import Conversation
from ._errors import Error, FramingError, IncompleteMessage, ScriptError
from ._framing import Decoder, Framing, _incremental, _Marking, _Waiting
from ._framing import check_framing as _valid_framing
from ._peer import FakePeer
from ._state import ConnectionRecord
from ._transcript import show

__all__ = ["Rehearsal", "check_framing", "splits"]


class _Offline:
    """What a rehearsed connection does when the script pushes, closes or resets it."""

    def __init__(self, rehearsal: Rehearsal, record: ConnectionRecord) -> None:
        self._rehearsal = rehearsal
        self._record = record

    def send(self, data: bytes) -> None:
        conversation = self._rehearsal.conversation
        framed = conversation.reply_framing.encode(data)
        self._rehearsal._written += self._rehearsal._perform(self._record, [Push(framed)])

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
    (framed, in order, pushes from reply callables included), and records everything in
    ``peer``'s transcript as a served peer would. Time stands still at ``at`` (seconds, any
    float; it only orders the transcript): waits (``.after()``) and the delays of faults
    (``reset_peer(0.1)``) are skipped, their actions done at once. A ``stop_reading`` fault
    stops the rehearsal of that connection: sending more raises
    :class:`~fakepeer.ScriptError`, as would sending on a closed connection.

    Raises :class:`~fakepeer.ScriptError` (the test's mistake) for a ``peer`` that is not a
    new :class:`~fakepeer.FakePeer` (a rehearsal takes it over, as ``serve()`` would: it
    cannot be served afterwards), for a script with a handler (``@peer.handler``) and for an
    ``async`` reply callable: those need a serving peer.
    """

    def __init__(self, peer: FakePeer, *, at: float = 0.0) -> None:
        if not isinstance(peer, FakePeer):
            raise ScriptError(f"Rehearsal() takes a FakePeer, got {peer!r}")
        if peer._state != "new":
            raise ScriptError(
                f"Rehearsal() takes a new FakePeer, never served nor rehearsed: {peer!r}"
            )
        peer._claim()
        peer._state = "rehearsed"
        self.peer = peer
        self.conversation: Conversation = peer._conversation
        self.at = at
        self._handles: dict[int, Connection] = {}
        self._stopped: set[int] = set()  # connections a stop_reading fault stopped
        self._written: list[bytes] = []  # pushed by a reply callable, during an event
        self._greetings: list[bytes] = []

    def connect(self, client: str = "127.0.0.1:50000") -> Connection:
        """A client connects: its handle (what the greeting wrote: :meth:`greeting`)."""
        record, actions = self.conversation.connect(client, self.at)
        if record.handled:
            raise ScriptError(
                f"connection #{record.id} is taken over by a handler "
                f"({record.script.handler_where}): a handler needs a serving peer"
            )
        handle = Connection(record, _Offline(self, record))
        self._handles[record.id] = handle
        self.peer._handles.append(handle)
        self._greetings = self._event(record, actions)
        return handle

    def greeting(self) -> list[bytes]:
        """What the peer wrote when the last client connected (its ``on_connect`` rules)."""
        return list(self._greetings)

    def send(self, connection: Connection, data: bytes | str) -> list[bytes]:
        """The client sends ``data`` (str: UTF-8) in one segment: the bytes the peer writes
        back."""
        record = self._record(connection, "send")
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            raise ScriptError(f"Rehearsal.send() takes bytes or str, got {data!r}")
        return self._event(record, self.conversation.receive(record, data, self.at))

    def close(self, connection: Connection) -> list[bytes]:
        """The client closes its sending side (EOF): what the peer writes before it closes."""
        record = self._record(connection, "close")
        written = self._event(record, self.conversation.eof(record, self.at))
        self._event(record, self.conversation.lost(record, self.at, None))
        return written

    def verify(self) -> None:
        """Raise what leaving ``serve()`` would: the first problem (bytes that form no whole
        message on a connection still open are an :class:`~fakepeer.IncompleteMessage`),
        else the expectations not met."""
        __tracebackhide__ = True
        conversation = self.conversation
        if not conversation.closed_for_good:
            for record in conversation.connections:
                conversation.stop(record, self.at)
            conversation.finish()
            self.peer._state = "stopped"  # as after serve(): the verdict is final
        self.peer.verify()

    def _record(self, connection: Connection, what: str) -> ConnectionRecord:
        record = connection._record
        if self._handles.get(record.id) is not connection:
            raise ScriptError(f"{connection!r} is not a connection of this rehearsal")
        if self.conversation.closed_for_good:
            raise ScriptError(f"Rehearsal.{what}() after verify(): the rehearsal is over")
        if not record.open:
            raise ScriptError(
                f"Rehearsal.{what}() on connection #{record.id}, which is closed: a client "
                "cannot send there"
            )
        if record.id in self._stopped:
            raise ScriptError(
                f"Rehearsal.{what}() on connection #{record.id}, which a stop_reading fault "
                "stopped reading: the client's bytes would wait in the kernel"
            )
        return record

    def _event(self, record: ConnectionRecord, actions: list[Action]) -> list[bytes]:
        """What one event wrote: its actions' writes, with the pushes made meanwhile."""
        self._written = []
        written = self._perform(record, actions)
        pushed, self._written = self._written, []
        return pushed + written if pushed else written

    def _perform(self, record: ConnectionRecord, actions: list[Action]) -> list[bytes]:
        """Do what ``actions`` ask, as the runtime would (waits skipped); the bytes written."""
        conversation = self.conversation
        written: list[bytes] = []
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Later):  # a fault's delay: skipped, as the waits are
                pending.insert(0, action.action)  # type: ignore[arg-type]  # an action
                continue
            if isinstance(action, Stop):
                self._stopped.add(record.id)
                conversation.note(record, self.at, "stopped", "(reading: a stop_reading fault)")
                continue
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


def splits(data: bytes | bytearray | memoryview) -> Iterable[list[bytes]]:
    """Ways to cut ``data`` (bytes, or a bytes-like object) into segments, as TCP may
    deliver it: whole, byte by byte, and in two at every point. No data: no segment.
    :class:`~fakepeer.ScriptError` for anything but bytes."""
    data = _as_bytes(data, "splits()")
    if not data:
        yield []
        return
    yield [data]
    if len(data) > 1:
        yield [data[i : i + 1] for i in range(len(data))]
        for cut in range(1, len(data)):
            yield [data[:cut], data[cut:]]


def check_framing(
    framing: Framing,
    data: bytes | bytearray | memoryview,
    expected: Iterable[bytes] | None = None,
    *,
    eof: bool = True,
) -> list[bytes]:
    """The messages ``framing`` cuts from ``data`` (bytes), checked to be the same however
    the bytes are split (see :func:`splits`), and equal to ``expected`` (messages as bytes:
    a list, a tuple, any iterable) if given. ``eof``: the client closes after ``data``; a
    framing may then yield a last message, and bytes left over that form no whole message
    are what a served peer reports as an :class:`~fakepeer.IncompleteMessage` (raised here
    too). With ``eof`` false, bytes may be left over (a message still on its way).

    A framing with the optional ``waiting`` and ``mark`` (see :class:`~fakepeer.Framing`)
    is decoded through them, as a served peer decodes, and each mark ``waiting`` returns is
    checked: ``decode`` on the same bytes must cut nothing and raise nothing.

    Raises ``AssertionError`` naming the first split that differs, or a ``waiting`` that
    disagrees with ``decode``: a framing bug;
    :class:`~fakepeer.FramingError` if the framing refuses ``data`` (however it is split);
    :class:`~fakepeer.ScriptError` for a wrong argument, or a streaming framing such as
    :class:`~fakepeer.Raw` (it cuts no messages: rules match the stream).
    """
    __tracebackhide__ = True
    framing = _valid_framing(framing)
    if framing.streaming:
        raise ScriptError(
            f"check_framing() needs a framing that cuts messages; {framing!r} is a stream"
        )
    data = _as_bytes(data, "check_framing()")
    if not isinstance(eof, bool):
        raise ScriptError(f"check_framing(eof=...) takes True or False, got {eof!r}")
    wanted: list[bytes] | None = None
    if expected is not None:
        wanted = [] if isinstance(expected, bytes | str) else list(expected)
        if isinstance(expected, bytes | str) or not all(isinstance(m, bytes) for m in wanted):
            raise ScriptError(
                "check_framing(expected=...) takes a sequence of messages (bytes), "
                f"got {expected!r}"
            )
    reference: list[bytes] | Error | None = None
    for segments in splits(data):
        got = _frame(framing, segments, eof)
        if reference is None:
            reference = got
            if wanted is not None and not isinstance(got, Error) and got != wanted:
                raise AssertionError(f"{framing!r} cut {got!r} from {data!r}, expected {wanted!r}")
        elif _differs(got, reference):
            raise AssertionError(
                f"{framing!r} depends on how the bytes are split: {reference!r} from "
                f"{data!r} in one segment, but {got!r} from the segments {segments!r}"
            )
    if isinstance(reference, Error):
        raise reference
    return list(reference or [])


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if not isinstance(data, bytes):
        raise ScriptError(f"{what} takes the data as bytes, got {data!r}")
    return data


class _Checked:
    """``framing``, its ``waiting`` checked against its ``decode`` at every call: a mark
    means ``decode`` would cut nothing and raise nothing (see ``fakepeer._framing``)."""

    streaming = False

    def __init__(self, framing: Framing, waiting: _Waiting, mark: _Marking) -> None:
        self._framing, self._waiting, self._mark = framing, waiting, mark

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        return self._framing.decode(buffer, eof)

    def encode(self, message: bytes) -> bytes:
        return self._framing.encode(message)

    def waiting(self, buffer: bytearray, mark: int) -> int | None:
        __tracebackhide__ = True
        new = self._waiting(buffer, mark)
        if new is None:
            return None
        said = f"{self._framing!r}.waiting() returned the mark {new!r} for {bytes(buffer)!r}"
        if isinstance(new, bool) or not isinstance(new, int):
            raise AssertionError(f"{said}: a mark is an int, or None")
        try:
            messages, consumed = self._framing.decode(bytes(buffer), False)
        except FramingError as problem:
            raise AssertionError(f"{said}, but decode() raises: {problem}") from None
        if messages or consumed:
            raise AssertionError(f"{said}, but decode() cuts {messages!r} (using {consumed} bytes)")
        return new

    def mark(self, rest: bytearray) -> int:
        __tracebackhide__ = True
        new = self._mark(rest)
        if isinstance(new, bool) or not isinstance(new, int):
            raise AssertionError(
                f"{self._framing!r}.mark() returned {new!r} for {bytes(rest)!r}: a mark is an int"
            )
        return new


def _frame(framing: Framing, segments: Iterable[bytes], eof: bool) -> list[bytes] | Error:
    incremental = _incremental(framing)
    decoder = Decoder(framing if incremental is None else _Checked(framing, *incremental))
    buffer = bytearray()
    messages: list[bytes] = []
    try:
        for segment in segments:
            messages.extend(decoder.feed(buffer, segment))
        if eof:
            messages.extend(decoder.take(buffer, True))
    except FramingError as problem:
        return problem
    if eof and buffer:
        return IncompleteMessage(
            f"{framing!r} leaves bytes that form no whole message when the client closes"
            f"\n  leftover:  {show(bytes(buffer))}",
            connection=None,
            leftover=bytes(buffer),
        )
    return messages


def _differs(got: list[bytes] | Error, reference: list[bytes] | Error) -> bool:
    if isinstance(got, IncompleteMessage) and isinstance(reference, IncompleteMessage):
        return got.leftover != reference.leftover
    if isinstance(got, Error) or isinstance(reference, Error):
        return type(got) is not type(reference)
    return got != reference
