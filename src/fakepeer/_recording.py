"""Recording: a relayed conversation, cut into the exchanges of a script that replays it.

Pure (no I/O, no clock): :func:`conversations` takes a proxy's transcript events, what the
client sent (``received``), what the server sent (``sent``) and the server's close
(``half-closed``: the proxy passed the server's EOF on), and gives, per connection, the
exchanges a replay needs::

    events of connection #1                     Recorded(number=1,
      sent      '220 ready\\r\\n'                   greeting=b'220 ready\\r\\n',
      received  'HE'                               exchanges=(
      received  'LO me\\r\\n'                          Exchange(b'HELO me', b'250 hi\\r\\n'),
      sent      '250 hi\\r\\n'                         Exchange(b'QUIT', b'221 bye\\r\\n')),
      received  'QUIT\\r\\n'                        closed=True)
      sent      '221 bye\\r\\n'
      half-closed

The client's bytes are cut into messages by the framing the user names (``Lines(b"\\r\\n")``
above), however its writes were split; the server's bytes after a message, up to the next
message, are that message's reply (its bytes before the first message: the greeting). Under
a streaming framing (:class:`~fakepeer.Raw`, which has no messages) a message is a *turn*:
what the client sent until the server answered. Either way the replies, greeting first,
concatenate to what the server sent, and a peer scripted with these exchanges (replies
unframed) sends the client the same bytes in the same order as the server did.

:mod:`fakepeer._recording_toml` writes the exchanges as a script file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._errors import FramingError, ScriptError
from ._framing import Decoder, Framing
from ._show import show
from ._transcript import Event

__all__ = ["Exchange", "Recorded", "conversations", "refuse_cut_or_shaped"]

#: Transcript events that show a fault had a hand in what passed: a recording refuses them.
_FAULT_KINDS = frozenset({"fault", "dropped", "accept"})
#: The note of bytes dropped because their connection was closed (no fault): the client's,
#: after the server's end, which a recording leaves out (see Recorded.left_out).
_UNSENT = "(not sent: "
#: Transcript events of the server's end, as the proxy passed it on to the client.
_SERVER_ENDS = frozenset({"half-closed", "reset", "closed"})


@dataclass(frozen=True)
class Exchange:
    """One message of the client (``message``, as the framing cut it) and what the server
    sent after it until the client's next message (``reply``; ``b""``: nothing)."""

    message: bytes
    reply: bytes = b""


@dataclass(frozen=True)
class Recorded:
    """One connection's conversation: ``number``, its place among the conversations kept
    (from 1: the connection of a replay that answers it), ``greeting`` (what the server
    sent before the client's first message), its exchanges in order, ``closed`` when the
    server closed its side first, ``left_out``: how many bytes of the client's are not in
    the exchanges (sent after the server closed for good, or a message it cut short), and
    ``relayed``: its number in the proxy's transcript (0: the same as ``number``).

    ``end`` is how the server ended, when ``closed``: ``"close"``, ``"half_close"`` (it
    closed its side and still read: the client's bytes after that are exchanges with no
    reply) or ``"reset"``; the step of the rule of exchange number ``end_at`` (1-based; 0:
    the greeting's; None: the last one's)."""

    number: int
    greeting: bytes
    exchanges: tuple[Exchange, ...]
    closed: bool = False
    left_out: int = 0
    relayed: int = 0
    end: str = "close"
    end_at: int | None = None

    @property
    def transcript_number(self) -> int:
        """Its number in the proxy's transcript (``#N`` there)."""
        return self.relayed or self.number

    @property
    def replies(self) -> bytes:
        """Everything the server sent: the greeting, then each reply."""
        return self.greeting + b"".join(exchange.reply for exchange in self.exchanges)


@dataclass
class _Cutting:
    """The state of one connection while its events are read."""

    number: int
    framing: Framing
    decoder: Decoder
    buffer: bytearray = field(default_factory=bytearray)  # the client's, not cut yet
    greeting: bytearray = field(default_factory=bytearray)
    messages: list[bytes] = field(default_factory=list)
    replies: list[bytearray] = field(default_factory=list)
    closed: bool = False
    eof: bool = False
    left_out: int = 0
    end: str = "close"
    end_at: int = 0
    after: int = 0  # bytes the client sent after the server's EOF
    reset_after: bool = False  # and the server's connection was reset or lost after its EOF
    cut_short: int = 0  # the bytes of a message the server's EOF came in the middle of

    def received(self, data: bytes) -> None:
        if self.eof or (self.closed and self.end != "half_close"):  # nothing answers it
            self.left_out += len(data)
            return
        if self.closed:  # the server half-closed (so far): it may still read
            self.after += len(data)
        if self.framing.streaming:
            self.buffer += data  # a turn, cut when the server answers
            return
        try:
            self._add(self.decoder.feed(self.buffer, data))
        except FramingError as error:
            raise self._unfit(error.diagnosis) from None

    def sent(self, data: bytes) -> None:
        if self.framing.streaming and self.buffer:
            self._add([bytes(self.buffer)])
            self.buffer.clear()
        (self.replies[-1] if self.replies else self.greeting).extend(data)

    def server_end(self, kind: str, note: str) -> None:
        """The server closed (``half-closed``: the proxy passed its EOF on), or reset the
        connection (``reset``), or was lost (``closed`` after the error)."""
        if kind == "closed" and note != "(after the error)":
            return  # the proxy's own close, after both sides were done
        if self.closed:
            self.reset_after = self.reset_after or kind != "half-closed"
            return
        if self.framing.streaming and self.buffer:  # the server's end ends a turn
            self._add([bytes(self.buffer)])
            self.buffer.clear()
        self.closed = True
        self.end = {"half-closed": "half_close", "reset": "reset"}.get(kind, "close")
        self.end_at = len(self.messages)
        self.cut_short = len(self.buffer)

    def client_eof(self) -> None:
        over = self.closed and self.end != "half_close"
        if not self.framing.streaming and not self.eof and not over:
            try:
                self._add(self.decoder.take(self.buffer, True))
            except FramingError as error:
                raise self._unfit(error.diagnosis) from None
        self.eof = True

    def _add(self, messages: list[bytes]) -> None:
        for message in messages:
            self.messages.append(message)
            self.replies.append(bytearray())

    def done(self) -> Recorded:
        if self.end == "half_close" and (self.reset_after or not self.after):
            # Reset for what the client sent after its EOF, the server had closed for good
            # (a replayed close resets those bytes likewise); nothing sent: a close is likelier.
            self.end = "close"
            self.left_out += self.after + self.cut_short
            del self.messages[self.end_at :], self.replies[self.end_at :]
            self.buffer.clear()
        if self.buffer and self.closed and not self.framing.streaming:
            self.left_out += len(self.buffer)  # a message cut short by the server's close
        elif self.buffer and self.framing.streaming:
            self._add([bytes(self.buffer)])
        elif self.buffer:
            raise self._unfit(
                f"the client's last {len(self.buffer)} bytes {show(bytes(self.buffer))} "
                "are no whole message"
            )
        return Recorded(
            self.number,
            bytes(self.greeting),
            tuple(Exchange(m, bytes(r)) for m, r in zip(self.messages, self.replies, strict=True)),
            self.closed,
            self.left_out,
            end=self.end,
            end_at=self.end_at if self.end == "half_close" else None,
        )

    def _unfit(self, why: str) -> ScriptError:
        return ScriptError(
            f"connection #{self.number}: what the client sent does not fit "
            f"{self.framing!r}: {why}; record with the framing of the client's protocol, "
            "or with Raw() (one rule per turn of the conversation)"
        )


def conversations(events: Iterable[Event], framing: Framing) -> list[Recorded]:
    """The conversation of each connection in ``events`` (a relay's transcript events, in
    order), by connection number, the client's bytes cut by ``framing``.

    Raises :class:`~fakepeer.ScriptError` when the client's bytes do not fit ``framing``
    (a :class:`~fakepeer.FramingError` while cutting them, or bytes at the end that are no
    whole message: the framing named is not the client's), naming the connection.
    Connections with nothing sent either way (a port probe: a client that connected and
    closed) are left out, and the others numbered from 1 in order (``relayed`` keeps the
    transcript's number): a replay's first connection is answered as the first that spoke.
    """
    cutting: dict[int, _Cutting] = {}
    for event in events:
        if event.connection == 0:
            continue
        state = cutting.get(event.connection)
        if state is None:
            state = cutting[event.connection] = _Cutting(
                event.connection, framing, Decoder(framing)
            )
        kind = event.kind
        if kind == "received":
            state.received(event.data)
        elif kind == "sent":
            state.sent(event.data)
        elif kind in _SERVER_ENDS:  # the server closed (the proxy passed its EOF on), or reset
            state.server_end(kind, event.note)
        elif kind == "eof":
            state.client_eof()
    recorded = [state.done() for _, state in sorted(cutting.items())]
    kept = [one for one in recorded if one.greeting or one.exchanges or one.closed]
    return [
        dataclasses.replace(one, number=number, relayed=0 if one.number == number else one.number)
        for number, one in enumerate(kept, 1)
    ]


def refuse_cut_or_shaped(events: Iterable[Event], omitted: int) -> None:
    """Raise :class:`~fakepeer.ScriptError` when the transcript cannot be replayed as it
    stands: ``omitted`` events were left out, or an event's data was cut, to fit the
    transcript's budget; or a fault acted on what passed."""
    for event in events:
        if event.kind in _FAULT_KINDS and not event.note.startswith(_UNSENT):
            raise ScriptError(
                f"a recording is of what the server said, and a fault acted on it "
                f"({event.kind}: {event.note or show(event.data)}): record through a proxy "
                "with no faults"
            )
        if event.size >= 0:
            omitted += 1
    if omitted:
        raise ScriptError(
            "the transcript was cut to fit its budget, so it cannot be replayed whole: "
            "record through Proxy(..., transcript_budget=None)"
        )
