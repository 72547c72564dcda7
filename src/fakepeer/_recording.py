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
    server closed its side first, ``left_out``: how many bytes the client sent after that
    (no reply can follow them: they are not in the exchanges), and ``relayed``: its number
    in the proxy's transcript (0: the same as ``number``)."""

    number: int
    greeting: bytes
    exchanges: tuple[Exchange, ...]
    closed: bool = False
    left_out: int = 0
    relayed: int = 0

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

    def received(self, data: bytes) -> None:
        if self.closed or self.eof:  # after the server's close: nothing answers it
            self.left_out += len(data)
            return
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

    def client_eof(self) -> None:
        if not self.framing.streaming and not self.eof and not self.closed:
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
        elif kind == "half-closed":  # the server closed: the proxy passed its EOF on
            state.closed = True
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
        if event.kind in _FAULT_KINDS:
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
