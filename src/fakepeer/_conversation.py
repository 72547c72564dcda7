"""The conversation: a state machine from connection events to actions.

The runtime feeds it what the network did (:meth:`Conversation.connect`,
:meth:`~Conversation.receive`, :meth:`~Conversation.eof`, :meth:`~Conversation.lost`) with a
timestamp, and executes the actions it gets back, in order, per connection:

==============  =======================================================================
action           the runtime must
==============  =======================================================================
``Write(b)``     write ``b`` (already framed), then report it with :meth:`~Conversation.sent`
``Wait(s)``      wait ``s`` seconds before the next action of that connection
``Close()``      close gracefully once written bytes are flushed
``HalfClose()``  shut down writing, keep reading
``Reset()``      abort with a TCP RST
``Hold()``       nothing: the connection now hangs; report it with :meth:`~Conversation.held`
``Await(a)``     await ``a`` (what an ``async`` reply callable returned), then hand the
                 result to :meth:`~Conversation.awaited` and run the actions it returns
                 before the rest
==============  =======================================================================

The runtime reports what it did (:meth:`~Conversation.sent`, :meth:`~Conversation.closed`,
:meth:`~Conversation.held`) so the transcript shows when it really happened.

It keeps the books the verdict needs: which expectation comes next, which bytes nobody
expected (``problems``), and which expectations were never met (:meth:`unmet`). It does no I/O,
reads no clock and takes no lock; the runtime serialises calls.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Collection
from typing import Final, NamedTuple, Protocol, TypeAlias

from . import _matchers
from ._actions import Dropped, Hold, Later, Stop, Wait, Write
from ._errors import (
    Error,
    FramingError,
    IncompleteMessage,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
    UnmetExpectations,
)
from ._faults import Fault, FaultState, on_connect, shape
from ._framing import Decoder, Delimited, Fixed, Framing, LengthPrefixed, Lines, StxEtx
from ._matchers import NEED_MORE, Matched, Matcher
from ._script import (
    START,
    After,
    Close,
    Echo,
    Goto,
    HalfClose,
    Hang,
    Reply,
    Reset,
    Rule,
    Script,
    Send,
    Step,
)
from ._transcript import DEFAULT_BUDGET, INLINE_LIMIT, Event, Transcript, show

__all__ = [
    "Action",
    "Await",
    "Close",
    "Connection",
    "Conversation",
    "HalfClose",
    "Hold",
    "Reset",
    "Wait",
    "Write",
]

#: How many similar rules an unexpected-data failure lists.
SIMILAR: Final = 3
#: How close (0 to 1, see ``_closeness``) a rule must be to be listed as similar.
SIMILARITY: Final = 0.6

#: A client that sends more than this without completing a message fails the test, unless the
#: framing sets its own ``max_length``.
MAX_BUFFER: Final = 1 << 20

#: Bytes of a connection's pending (unframed) bytes a report keeps: the first and the last.
PENDING_LIMIT: Final = 4096


class Await(NamedTuple):
    """Await what a reply callable returned, then report it with ``Conversation.awaited``."""

    awaitable: Awaitable[object]
    rule: Rule
    name: str


Action: TypeAlias = Write | Wait | Close | HalfClose | Reset | Hold | Await | Stop | Later


class ConnectionIO(Protocol):
    """What the runtime plugs into a :class:`Connection` so the test can act on it."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def reset(self) -> None: ...

    async def receive(self) -> bytes: ...

    async def receive_exactly(self, count: int) -> bytes: ...


class Connection:
    """One accepted connection, as the script sees it.

    ``id`` counts connections from 1 in order of arrival; ``client`` is the client's
    ``host:port``; ``received`` the messages it sent (for :class:`~fakepeer.Raw`, the byte runs
    that rules matched); ``state`` its state for ``.when()`` rules; ``open`` is false once
    either side closed it.

    From the test (any thread) or a reply callable: :meth:`send`, :meth:`close`,
    :meth:`reset`. From a handler: also ``await`` :meth:`receive` and
    :meth:`receive_exactly`.
    """

    __slots__ = (
        "_transcript",
        "buffer",
        "client",
        "decoder",
        "ended",
        "failed",
        "faults",
        "finishing",
        "handled",
        "held",
        "id",
        "io",
        "received",
        "scanned",
        "script",
        "since",
        "state",
        "write_closed",
    )

    def __init__(
        self, id: int, client: str, transcript: Transcript, script: Script | None = None
    ) -> None:
        self.id = id
        self.client = client
        self.received: list[bytes] = []
        self.script = script if script is not None else Script()
        self.state = START
        self.handled = self.script.handler is not None
        self.io: ConnectionIO | None = None
        self.faults: FaultState | None = None
        self.buffer = bytearray()
        self.since = 0.0  # when the oldest byte of buffer arrived (when it is not empty)
        self.decoder: Decoder | None = None  # cuts messages off buffer: Conversation.decoder
        # Raw: how much of buffer each incremental matcher saw when it last said NEED_MORE.
        self.scanned: dict[Matcher, int] | None = None
        self.held = False
        self.failed = False
        # A matched rule ended the talk (close, reset or hang), perhaps after a delay: later
        # messages, even ones in the same segment, are recorded but not answered.
        self.finishing = False
        self.write_closed = False  # a HalfClose was emitted: no Write may follow
        self.ended = False
        self._transcript = transcript

    @property
    def answering(self) -> bool:
        """True while incoming messages are still matched against the script."""
        return not (self.failed or self.held or self.ended or self.finishing)

    @property
    def open(self) -> bool:
        """True until the connection was closed, reset or lost."""
        return not self.ended

    @property
    def transcript(self) -> str:
        """This connection's part of the transcript, rendered."""
        return self._transcript.render(connection=self.id)

    def _require_io(self, method: str) -> ConnectionIO:
        if self.io is None:
            raise RuntimeError(f"connection.{method}() needs a connection of a serving peer")
        return self.io

    def send(self, data: bytes | str) -> None:
        """Push ``data`` (framed) to the client now, from any thread; returns at once."""
        if isinstance(data, str):
            data = data.encode()
        self._require_io("send").send(data)

    def close(self) -> None:
        """Close the connection gracefully, from any thread."""
        self._require_io("close").close()

    def reset(self) -> None:
        """Abort the connection with a TCP RST, from any thread."""
        self._require_io("reset").reset()

    async def receive(self) -> bytes:
        """In a handler: the next message (framed); raises ``EOFError`` if the client
        closed, :class:`~fakepeer.WaitTimeout` after the peer's timeout."""
        return await self._require_io("receive").receive()

    async def receive_exactly(self, count: int) -> bytes:
        """In a handler: exactly ``count`` raw bytes (not yet framed); raises ``EOFError`` if
        the client closed first, :class:`~fakepeer.WaitTimeout` after the peer's timeout."""
        return await self._require_io("receive_exactly").receive_exactly(count)

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return f"<Connection #{self.id} from {self.client} {state}, {len(self.received)} received>"


class Conversation:
    """The peer's state machine; see the module docstring for the event/action contract."""

    def __init__(
        self,
        framing: Framing,
        title: str = "fake peer",
        *,
        transcript_budget: int | None = DEFAULT_BUDGET,
    ) -> None:
        self.framing = framing
        self.stream = framing.streaming
        limit = getattr(framing, "max_length", None)
        self.limit: int = limit if isinstance(limit, int) and limit > 0 else MAX_BUFFER
        self.script = Script()
        self.scripts: dict[int, Script] = {}  # per-connection scripts, by connection number
        self.peer_state = START
        self.unmatched: list[tuple[int, bytes]] = []  # (connection, message) via otherwise
        self.connections: list[Connection] = []
        self.faults: list[Fault] = []  # active network faults, in the order added
        self.seed = 0  # the seed of the faults' randomness
        self.received: list[bytes] = []
        self.problems: list[Error] = []
        self.raised: set[int] = set()  # id() of problems already raised to the test
        self.transcript = Transcript(title, budget=transcript_budget)
        #: Set once the peer stopped: nothing more is recorded (events are ignored).
        self.closed_for_good = False

    # -- the script --------------------------------------------------------------------------

    def script_for(self, connection: int | None) -> Script:
        """The peer's script, or the own script of the ``connection``-th connection."""
        if connection is None:
            return self.script
        script = self.scripts.get(connection)
        if script is None:
            script = self.scripts[connection] = Script(f"connection #{connection} ")
        return script

    def add_rule(
        self, kind: str, matcher: Matcher | None, where: str, connection: int | None = None
    ) -> Rule:
        """Append a rule of ``kind`` (``connect``, ``expect``, ``always``, ``otherwise``)
        to the peer's script, or to the script of the ``connection``-th connection."""
        return self.script_for(connection).add(kind, matcher, where)

    @property
    def expectations(self) -> list[Rule]:
        """The expectations of the peer's script."""
        return self.script.expectations

    def head(self) -> Rule | None:
        """The expectation the peer's script waits for now, or None when all are met."""
        return self.script.head()

    @property
    def done(self) -> bool:
        """True when every expectation, of every script, was met."""
        return not self.unmet()

    def unmet(self) -> list[Rule]:
        """Expectations not (fully) met yet, in script order, the peer's first."""
        unmet = self.script.unmet()
        for number in sorted(self.scripts):
            unmet.extend(self.scripts[number].unmet())
        return unmet

    # -- events in ---------------------------------------------------------------------------

    def connect(self, client: str, at: float) -> tuple[Connection, list[Action]]:
        """A client connected: record it and return the greeting actions."""
        number = len(self.connections) + 1
        script = self.scripts.get(number, self.script)
        connection = Connection(number, client, self.transcript, script)
        self.connections.append(connection)
        self._event(at, connection, "connected", note=f"from {client}")
        actions: list[Action] = []
        for rule in script.connect_rules:
            if self._applies(rule, connection):
                rule.count += 1
                actions.extend(self._steps(rule, connection, None, b"", at))
        connection.faults = FaultState.seeded(self.seed, number)
        if self.faults:
            actions = self.shape(connection, actions, at)
            actions.extend(on_connect(self.faults, connection.faults))  # type: ignore[arg-type]
        return connection, actions

    def shape(self, connection: Connection, actions: list[Action], at: float) -> list[Action]:
        """``actions`` as the active network faults let them happen on ``connection``."""
        state = connection.faults
        if state is None or not (self.faults or state.half_closed):
            return actions
        shaped: list[Action] = []
        for action in shape(self.faults, actions, state):
            if isinstance(action, Dropped):
                self.dropped(connection, action, at)
            else:
                shaped.append(action)  # type: ignore[arg-type]
        return shaped

    def dropped(self, connection: Connection, action: Dropped, at: float, way: str = "") -> None:
        """Record bytes a fault kept from being sent (``way``: ``" upstream"`` for a proxy)."""
        self._event(at, connection, "dropped", action.data, f"(by {action.why}{way})")

    def _faulty(self, connection: Connection, actions: list[Action], at: float) -> list[Action]:
        """``actions`` through the faults; without any, still count what is sent."""
        if not actions:
            return actions
        state = connection.faults
        if self.faults or (state is not None and state.half_closed):
            return self.shape(connection, actions, at)
        if state is not None:  # no fault now, but limit_data may come: count what is sent
            state.sent += sum(len(action.data) for action in actions if isinstance(action, Write))
        return actions

    def delivered(self, connection: Connection, message: bytes, at: float) -> None:
        """A handler took ``message`` (framed, or raw bytes) off the connection."""
        connection.received.append(message)
        self.received.append(message)
        self._event(at, connection, "handled", message, "(by the handler)")

    def receive(self, connection: Connection, data: bytes, at: float) -> list[Action]:
        """Bytes arrived on ``connection``; return what to do about them."""
        buffer = connection.buffer
        before = len(buffer)
        if not before:  # so far as is known before a reply callable runs (it may not return)
            connection.since = at
        actions = self._receive(connection, data, at)
        # Bytes left over: they came with data if the buffer was empty or a message was
        # cut off it (the bytes before the end of that message were all taken).
        if buffer and (not before or len(buffer) < before + len(data)):
            connection.since = at
        return self._faulty(connection, actions, at)

    def _receive(self, connection: Connection, data: bytes, at: float) -> list[Action]:
        if not connection.answering:
            self._unanswered(connection, data, at)
            return []
        buffer = connection.buffer
        if self.stream and not connection.handled and not buffer:
            self._event(at, connection, "received", data)
            return self._match_fresh(connection, data, at)
        if self.stream or connection.handled:
            buffer += data
            self._event(at, connection, "received", data)
            if connection.handled:  # the handler reads it with receive() or receive_exactly()
                if len(buffer) > self.limit:  # max_length holds as bytes arrive, in every mode
                    return self._check_handled(connection, at)
                return []
            return self._match_stream(connection, at)
        try:
            messages = self.decoder(connection).feed(buffer, data)
        except FramingError as problem:
            return self._framing_failed(problem, connection, at)
        actions: list[Action] = []
        for message in messages:
            if not connection.answering:
                self._unanswered(connection, message, at)
                continue
            actions.extend(self._dispatch(connection, message, at))
        if len(buffer) > self.limit and not connection.failed:
            actions += self._over_limit(connection, at)
        return actions

    def decoder(self, connection: Connection) -> Decoder:
        """The :class:`Decoder` that cuts messages off ``connection.buffer``, made on first use."""
        decoder = connection.decoder
        if decoder is None:
            decoder = connection.decoder = Decoder(self.framing)
        return decoder

    def _over_limit(self, connection: Connection, at: float) -> list[Action]:
        buffer = connection.buffer
        problem = FramingError(
            f"connection #{connection.id}: the client sent {len(buffer)} bytes without "
            f"completing a message, over the limit of {self.limit} bytes of {self.framing!r}"
            f"\n  buffered:  {show(bytes(buffer[:64]))}",
            connection=connection.id,
        )
        buffer.clear()
        return self._fail(problem, connection, at)

    def _check_handled(self, connection: Connection, at: float) -> list[Action]:
        """A handler's buffer went over the limit: a FramingError if the message it holds is
        too long (the framing says), else nothing (the handler is behind: the runtime stops
        reading until it catches up)."""
        try:
            self.framing.decode(bytes(connection.buffer), False)
        except FramingError as problem:
            return self._framing_failed(problem, connection, at)
        if self.stream:  # Raw: no message ever ends, the limit is on what waits unread
            return self._over_limit(connection, at)
        return []

    def framing_failed(self, problem: FramingError, connection: Connection, at: float) -> None:
        """The framing refused the bytes of ``connection`` while a handler read them."""
        self._framing_failed(problem, connection, at)

    def _framing_failed(
        self, problem: FramingError, connection: Connection, at: float
    ) -> list[Action]:
        problem.connection = connection.id
        problem.diagnosis = f"connection #{connection.id}: {problem.diagnosis}"
        problem.args = (problem.diagnosis,)
        connection.buffer.clear()
        return self._fail(problem, connection, at)

    def eof(self, connection: Connection, at: float) -> list[Action]:
        """The client shut down its sending side (or closed): finish, then close ours."""
        actions = self._eof(connection, at)
        return self._faulty(connection, actions, at)

    def _eof(self, connection: Connection, at: float) -> list[Action]:
        self._event(at, connection, "eof")
        if connection.handled:
            return []  # the handler sees EOF in receive(), and ends the connection itself
        if connection.answering:
            actions = self._finish_buffer(connection, at)
            if connection.failed:  # _fail already closes
                return actions
        else:
            actions = []
        actions.append(Close())
        return actions

    def stop(
        self, connection: Connection, at: float, *, receiving: bool = False, eof: bool = False
    ) -> None:
        """The peer stops while ``connection`` is open (every byte the client sent was read;
        ``eof`` if the client had closed its side).

        Bytes left that form no whole message fail it with :class:`IncompleteMessage`, as
        at EOF: for a handler, when it was waiting in ``receive()`` (``receiving``).
        """
        if connection.ended or not connection.buffer:
            return
        how = "ended" if eof else "was cut off by the peer's stop"
        if connection.handled:
            if receiving and not connection.failed:
                self._incomplete(connection, how, at)
        elif connection.answering:
            self._incomplete(connection, how, at)

    def lost(self, connection: Connection, at: float, reason: str | None) -> None:
        """The connection is gone; ``reason`` is the error text, or None for a clean close."""
        if connection.ended:
            return
        if connection.answering and not connection.handled:
            how = "ended" if reason is None else f"was lost ({reason})"
            self._finish_buffer(connection, at, how)
        connection.ended = True
        self._event(at, connection, "lost", note=reason or "closed by the client")

    # -- what the runtime did ----------------------------------------------------------------

    def sent(self, connection: Connection, data: bytes, at: float) -> None:
        """The runtime wrote ``data`` on ``connection``."""
        self._event(at, connection, "sent", data)

    def closed(self, connection: Connection, at: float, how: str, note: str = "") -> None:
        """The peer ended the connection: ``how`` is ``closed``, ``reset`` or ``half-closed``."""
        if how != "half-closed":
            if connection.ended:
                return
            connection.ended = True
        self._event(at, connection, how, note=note)

    def relayed(self, connection: Connection, data: bytes, at: float) -> None:
        """A proxy passed ``data`` from the client to its upstream server: recorded in the
        transcript (within its budget), not kept in ``received`` (a relay frames no
        messages, and must not keep every byte it passes)."""
        self._event(at, connection, "received", data, "-> upstream")

    def note(self, connection: Connection, at: float, kind: str, note: str) -> None:
        """Record something the runtime did to ``connection`` (a fault's doing)."""
        self._event(at, connection, kind, note=note)

    def note_peer(self, at: float, kind: str, note: str) -> None:
        """Record something that happened to the peer itself (a fault switched on or off)."""
        self._event(at, None, kind, note=note)

    def held(self, connection: Connection, at: float) -> None:
        """The connection hangs from now on."""
        connection.held = True
        self._event(at, connection, "hanging", note="(answering nothing more)")

    # -- the verdict -------------------------------------------------------------------------

    def verdict(self, skip: Collection[int] = ()) -> Error | None:
        """The first problem (but those whose ``id()`` is in ``skip``), or unmet expectations
        once the conversation is over, or None."""
        for problem in self.problems:
            if id(problem) not in skip:
                return problem
        unmet = self.unmet()
        if not unmet:
            return None
        arrived = len(self.connections)
        lines = []
        for rule in unmet:
            if rule.count:
                lines.append(f"{rule.describe()}: met {rule.count} of {rule.limit} times")
            elif rule.scope and int(rule.scope.split("#")[1].split()[0]) > arrived:
                lines.append(f"{rule.describe()}: never met (that connection never came)")
            else:
                lines.append(f"{rule.describe()}: never met")
        count = len(unmet)
        noun = "expectation was" if count == 1 else "expectations were"
        waiting = (
            "no client ever connected"
            if not self.connections
            else (
                f"{len(self.connections)} connection(s), {len(self.received)} message(s) received"
            )
        )
        diagnosis = f"{count} {noun} not met when the peer stopped ({waiting}):\n" + "\n".join(
            f"  {line}" for line in lines
        )
        return UnmetExpectations(diagnosis, unmet=lines)

    def pending(self, limit: int = PENDING_LIMIT) -> list[Event]:
        """The bytes each connection received that are no message yet, one ``pending``
        event per connection that holds any, in connection order (its time: when the oldest
        of them arrived). ``data`` keeps at most ``limit`` bytes of them, the first and the
        last (``size`` then says how many there are, as for an event cut by the
        transcript's budget); the note says why they are no message yet, and what the peer
        does with them. Recorded nowhere: a snapshot, for reports and diagrams."""
        events = []
        for connection in self.connections:
            buffer = connection.buffer
            if not buffer:
                continue
            count = len(buffer)
            if count > limit:
                front = (limit + 1) // 2
                data = bytes(buffer[:front]) + bytes(buffer[count - (limit - front) :])
                size = count
            else:
                data, size = bytes(buffer), -1
            note = f"({count:,} {'byte' if count == 1 else 'bytes'}, {self._waits(connection)})"
            events.append(Event(connection.since, connection.id, "pending", data, note, size))
        return events

    def _waits(self, connection: Connection) -> str:
        """Why the bytes buffered on ``connection`` are no message yet."""
        if connection.handled:
            return "not read by the connection's handler yet"
        if not connection.answering:
            return f"not answered: connection {_why_not_answering(connection)}"
        if self.stream:
            head = connection.script.head()
            waiting = f": {head.describe()} needs more bytes" if head is not None else ""
            return f"no rule matched them yet{waiting}"
        return f"no whole message yet: {waits_for(self.framing, connection.buffer)}"

    def outlook(self, *, problem: bool | None = None, unmet: bool = True) -> str:
        """What the peer would report if it stopped now, while it still serves: each
        connection whose bytes are no whole message yet (an
        :class:`~fakepeer.IncompleteMessage` at the stop) and, when the conversation has no
        problem (``problem``: whether the report shows one; default: whether there is one),
        the expectations not met yet (unless ``unmet`` is false: the report lists them
        already). Empty when there is none of either."""
        if problem is None:
            problem = bool(self.problems)
        lines = []
        for connection in self.connections:
            buffer = connection.buffer
            if not buffer or connection.ended or not connection.answering or connection.handled:
                continue  # (a handler may still read them)
            count = len(buffer)
            noun = "byte" if count == 1 else "bytes"
            lines.append(
                f"  connection #{connection.id} holds {count:,} {noun}, {self._waits(connection)}"
            )
            shown = show(bytes(buffer[:INLINE_LIMIT]))
            if count > INLINE_LIMIT:
                shown += f"... ({count:,} bytes in all)"
            lines.append(f"    pending:   {shown}")
            head = connection.script.head()
            if head is not None and not self.stream:
                lines.append(f"    expected:  {head.describe()}")
        incomplete = bool(lines)
        rules = [] if problem or not unmet else self.unmet()
        if rules:
            count = len(rules)
            noun = "expectation" if count == 1 else "expectations"
            lines.append(f"  {count} {noun} not met yet:")
            for rule in rules:
                met = f" (met {rule.count} of {rule.limit} times)" if rule.count else ""
                lines.append(f"    {rule.describe()}{met}")
        if not lines:
            return ""
        if problem:
            verdict = "also report"
        else:
            verdict = "report " + ("IncompleteMessage" if incomplete else "UnmetExpectations")
        return f"still serving; stopped now, the peer would {verdict}:\n" + "\n".join(lines)

    def awaited(
        self,
        connection: Connection,
        action: Await,
        result: object,
        error: BaseException | None,
        at: float,
    ) -> list[Action]:
        """What an :class:`Await` produced: the actions to run before the rest."""
        actions = self._awaited(connection, action, result, error, at)
        return self._faulty(connection, actions, at)

    def _awaited(
        self,
        connection: Connection,
        action: Await,
        result: object,
        error: BaseException | None,
        at: float,
    ) -> list[Action]:
        problem = self._check_reply(action.rule, action.name, connection, result, error)
        if isinstance(problem, Error):
            return self._fail(problem, connection, at)
        if problem is None:
            return []
        return self._write(action.rule, connection, problem, at)

    # -- internals ---------------------------------------------------------------------------

    def _event(
        self, at: float, connection: Connection | None, kind: str, data: bytes = b"", note: str = ""
    ) -> None:
        if self.closed_for_good:  # the peer stopped: its record is final
            return
        self.transcript.add(Event(at, connection.id if connection else 0, kind, data, note))

    def _unanswered(self, connection: Connection, data: bytes, at: float) -> None:
        why = _why_not_answering(connection)
        self._event(at, connection, "received", data, f"(not answered: connection {why})")
        connection.received.append(data)
        self.received.append(data)

    def _applies(self, rule: Rule, connection: Connection) -> bool:
        limit = rule.limit
        return (
            (limit is None or rule.count < limit)
            and (rule.state is None or rule.state == connection.state)
            and (rule.peer_state is None or rule.peer_state == self.peer_state)
        )

    def _candidates(self, connection: Connection) -> list[Rule]:
        """The rules that may match the next message of ``connection``, in order."""
        script = connection.script
        head = script.head()
        applies = self._applies
        rules = [head] if head is not None and applies(head, connection) else []
        rules.extend(rule for rule in script.permanent if applies(rule, connection))
        rules.extend(rule for rule in script.fallbacks if applies(rule, connection))
        return rules

    def _matched(
        self, rule: Rule, connection: Connection, message: bytes, value: object, at: float
    ) -> list[Action]:
        rule.count += 1
        note = f"-> {rule.describe()}"
        if rule.kind == "otherwise":
            self.unmatched.append((connection.id, message))
            note += " (unmatched)"
        kind = "matched" if self.stream else "received"
        self._event(at, connection, kind, message, note)
        actions = self._steps(rule, connection, value, message, at)
        if rule.faults and connection.faults is not None:  # this rule's own network faults
            shaped: list[Action] = []
            for action in shape(rule.faults, actions, connection.faults):
                if isinstance(action, Dropped):
                    self._event(at, connection, "dropped", action.data, f"(by {action.why})")
                else:
                    shaped.append(action)  # type: ignore[arg-type]
            actions = shaped
        return actions

    def _dispatch(self, connection: Connection, message: bytes, at: float) -> list[Action]:
        connection.received.append(message)
        self.received.append(message)
        script = connection.script
        head = script.head()
        applies = self._applies
        # The hot path of every message: no list of candidates, the head first.
        for rules in ((head,) if head is not None else (), script.permanent, script.fallbacks):
            for rule in rules:
                if not applies(rule, connection):
                    continue
                outcome = rule.matcher.match(message, stream=False)  # type: ignore[union-attr]
                if outcome is not None and outcome is not NEED_MORE:
                    return self._matched(
                        rule,
                        connection,
                        message,
                        outcome.value,  # type: ignore[union-attr]
                        at,
                    )
        self._event(at, connection, "unexpected", message)
        return self._fail(self._unexpected(connection, message), connection, at)

    def _match_fresh(self, connection: Connection, data: bytes, at: float) -> list[Action]:
        """Stream matching when nothing was buffered before ``data``: the rules see ``data``
        itself, and what a rule consumes is not copied (the common case of a bulk transfer:
        ``always(ANY)`` takes each segment as it is). The same outcome as buffering ``data``
        and calling :meth:`_match_stream`."""
        waiting: list[Matcher] = []
        for rule in self._candidates(connection):
            matcher = rule.matcher
            assert matcher is not None
            outcome = matcher.match(data, stream=True)
            if isinstance(outcome, Matched) and outcome.consumed > 0:
                consumed = outcome.consumed
                message = data if consumed == len(data) else data[:consumed]
                connection.received.append(message)
                self.received.append(message)
                actions = self._matched(rule, connection, message, outcome.value, at)
                if consumed < len(data):
                    connection.buffer += data[consumed:]
                    actions.extend(self._match_stream(connection, at))
                return actions
            if outcome is NEED_MORE:
                waiting.append(matcher)
        if not waiting:
            return self._fail(self._unexpected(connection, data), connection, at)
        connection.buffer += data
        scanned = connection.scanned
        if scanned is None:
            scanned = connection.scanned = {}
        for matcher in waiting:  # they waited on all of data: they go on from there
            if matcher.incremental:
                scanned[matcher] = len(data)
        if len(data) > self.limit:
            scanned.clear()
            return self._over_limit(connection, at)
        return []

    def _match_stream(self, connection: Connection, at: float) -> list[Action]:
        buffer = connection.buffer
        actions: list[Action] = []
        # An incremental matcher goes on from where it last said NEED_MORE on this buffer (the
        # bytes before are the same: they are forgotten only when the buffer is consumed), and
        # sees the buffer itself; the others see a copy, made only if one of them is asked.
        scanned = connection.scanned
        if scanned is None:
            scanned = connection.scanned = {}
        while buffer and connection.answering:
            data: bytes | None = None
            waiting = False
            for rule in self._candidates(connection):
                matcher = rule.matcher
                assert matcher is not None
                if matcher.incremental:
                    outcome = matcher.match_from(buffer, scanned.get(matcher, 0))
                else:
                    if data is None:
                        data = bytes(buffer)
                    outcome = matcher.match(data, stream=True)
                if isinstance(outcome, Matched) and outcome.consumed > 0:
                    consumed = outcome.consumed
                    message = bytes(buffer[:consumed]) if data is None else data[:consumed]
                    del buffer[:consumed]
                    scanned.clear()
                    connection.received.append(message)
                    self.received.append(message)
                    actions.extend(self._matched(rule, connection, message, outcome.value, at))
                    break
                if outcome is NEED_MORE:
                    waiting = True
                    if matcher.incremental:
                        scanned[matcher] = len(buffer)
            else:
                if waiting:
                    if len(buffer) > self.limit:
                        scanned.clear()
                        actions.extend(self._over_limit(connection, at))
                    return actions
                data = bytes(buffer)
                buffer.clear()
                scanned.clear()
                actions.extend(self._fail(self._unexpected(connection, data), connection, at))
                return actions
        return actions

    def _finish_buffer(self, connection: Connection, at: float, how: str = "ended") -> list[Action]:
        buffer = connection.buffer
        if not buffer:
            return []
        actions: list[Action] = []
        if not self.stream:
            try:
                messages = self.decoder(connection).take(buffer, True)
            except FramingError as problem:
                return self._framing_failed(problem, connection, at)
            for message in messages:
                if not connection.answering:
                    return actions
                actions.extend(self._dispatch(connection, message, at))
        if buffer:
            actions.extend(self._incomplete(connection, how, at))
        return actions

    def incomplete(self, connection: Connection, at: float) -> None:
        """A handler's client closed with bytes that form no whole message."""
        self._incomplete(connection, "ended", at)

    def _incomplete(self, connection: Connection, how: str, at: float) -> list[Action]:
        """Fail ``connection`` for the bytes left in its buffer: they form no whole message."""
        buffer = connection.buffer
        leftover = bytes(buffer)
        buffer.clear()
        if not (self.stream or connection.handled):  # else recorded as they arrived
            self._event(at, connection, "received", leftover, "(incomplete)")
        head = connection.script.head()
        expected = f"\n  expected:  {head.describe()}" if head else ""
        return self._fail(
            IncompleteMessage(
                f"connection #{connection.id} {how} in the middle of a message "
                f"({self.framing!r})\n  leftover:  {show(leftover)}{expected}",
                connection=connection.id,
                leftover=leftover,
            ),
            connection,
            at,
        )

    def _why_not(self, rule: Rule, connection: Connection, data: bytes) -> str:
        assert rule.matcher is not None
        outcome = rule.matcher.match(data, stream=self.stream)
        matches = outcome is not None and outcome is not NEED_MORE
        if not matches:
            return rule.matcher.explain(data)
        if rule.exhausted:
            return f"matches, but it was already met {rule.count} time(s)"
        if rule.state is not None and rule.state != connection.state:
            return (
                f"matches, but needs connection state {rule.state!r} "
                f"(connection #{connection.id} is in {connection.state!r})"
            )
        if rule.peer_state is not None and rule.peer_state != self.peer_state:
            return (
                f"matches, but needs peer state {rule.peer_state!r} "
                f"(the peer is in {self.peer_state!r})"
            )
        head = connection.script.head()
        if rule.kind == "expect" and head is not None and head is not rule:
            return f"matches, but the script waits for {head.kind} #{head.number} first"
        return "matches"  # pragma: no cover - a matching, applicable rule would have matched

    def _unexpected(self, connection: Connection, data: bytes) -> UnexpectedData:
        script = connection.script
        head = script.head()
        lines = [f"connection #{connection.id} received data that no rule expected"]
        lines.append(f"  received:  {show(data)}")
        if head is not None:
            lines.append(f"  expected:  {head.describe()}")
            lines.append(f"             the data {self._why_not(head, connection, data)}")
        else:
            met = len(script.expectations)
            lines.append(
                "  expected:  nothing more"
                + (f" (all {met} expectation(s) were already met)" if met else "")
            )
        scored = [(_closeness(rule, data, self.stream), rule) for rule in script.rules()]
        similar = [
            (score, rule)
            for score, rule in scored
            if rule is not head and (score >= 1.0 or (score >= SIMILARITY and not rule.exhausted))
        ]
        if similar:
            similar.sort(key=lambda pair: -pair[0])
            lines.append("  similar rules:")
            lines.extend(
                f"    {rule.describe()}: {self._why_not(rule, connection, data)}"
                for _, rule in similar[:SIMILAR]
            )
            if len(similar) > SIMILAR:
                lines.append(f"    ... and {len(similar) - SIMILAR} more")
        return UnexpectedData(
            "\n".join(lines),
            connection=connection.id,
            received=data,
            expected=head.describe() if head else None,
        )

    def _fail(self, problem: Error, connection: Connection, at: float) -> list[Action]:
        self.problems.append(problem)
        connection.failed = True
        if self.stream or not isinstance(problem, UnexpectedData):  # framed, the data's
            # "unexpected" event says it already; a stream's data was "received" before
            self._event(at, connection, "error", note=problem.diagnosis.splitlines()[0])
        return [Close()]

    def _steps(
        self, rule: Rule, connection: Connection, value: object, message: bytes, at: float
    ) -> list[Action]:
        actions: list[Action] = []
        step: Step
        for step in rule.steps:
            if isinstance(step, Reply | Send | Echo):
                if isinstance(step, Send):
                    data: object = step.data
                elif isinstance(step, Echo):
                    data = message
                elif step.function is None:
                    data = step.data
                else:
                    name = getattr(step.function, "__qualname__", repr(step.function))
                    error: Exception | None = None
                    try:
                        if step.wants_connection:
                            data = step.function(value, connection)
                        else:
                            data = step.function(value)
                    except Exception as exc:
                        data, error = None, exc
                    if error is None and inspect.isawaitable(data):
                        actions.append(Await(data, rule, name))
                        continue
                    data = self._check_reply(rule, name, connection, data, error)
                    if isinstance(data, Error):
                        actions.extend(self._fail(data, connection, at))
                        return actions
                if data is None:
                    continue
                assert isinstance(data, bytes)
                written = self._write(rule, connection, data, at)
                actions.extend(written)
                if connection.failed:
                    return actions
            elif isinstance(step, After):
                actions.append(Wait(step.seconds))
            elif isinstance(step, Hang):
                actions.append(Hold())
                connection.finishing = True
            elif isinstance(step, Goto):
                self._goto(step, connection, at)
            else:
                actions.append(step)
                if isinstance(step, HalfClose):
                    connection.write_closed = True
                else:
                    connection.finishing = True
        return actions

    def _goto(self, step: Goto, connection: Connection, at: float) -> None:
        changes = []
        if step.connection is not None:
            changes.append(f"connection {connection.state!r} -> {step.connection!r}")
            connection.state = step.connection
        if step.peer is not None:
            changes.append(f"peer {self.peer_state!r} -> {step.peer!r}")
            self.peer_state = step.peer
        self._event(at, connection, "state", note=", ".join(changes))

    def _write(self, rule: Rule, connection: Connection, data: bytes, at: float) -> list[Action]:
        if connection.write_closed:
            problem = ScriptError(
                f"{rule.describe()} writes on connection #{connection.id}, but an "
                "earlier rule half-closed it with .half_close(): the peer can no "
                f"longer write there (it would have sent {show(data)})"
            )
            return self._fail(problem, connection, at)
        try:
            return [Write(self.framing.encode(data))]
        except ScriptError as error:  # e.g. a reply of the wrong size for Fixed(n)
            problem = ScriptError(f"{rule.describe()}: {error.diagnosis}")
            problem.__cause__ = error
            return self._fail(problem, connection, at)

    def _check_reply(
        self,
        rule: Rule,
        name: str,
        connection: Connection,
        result: object,
        error: BaseException | None,
    ) -> bytes | Error | None:
        """The bytes a reply callable gave, or the problem it is."""
        if error is not None:
            problem = ReplyFailed(
                f"the reply callable {name} of {rule.describe()} raised "
                f"{type(error).__name__}: {error}",
                connection=connection.id,
            )
            problem.__cause__ = error
            return problem
        if result is None or isinstance(result, bytes):
            return result
        if isinstance(result, str):
            return result.encode()
        return ReplyFailed(
            f"the reply callable {name} of {rule.describe()} returned "
            f"{type(result).__name__} {result!r}; it must return bytes, str or None",
            connection=connection.id,
        )


def waits_for(framing: Framing, buffer: bytearray) -> str:
    """What ``framing`` needs before the bytes ``buffer`` holds (no whole message) make one,
    in words: for a built-in framing, what is missing; for another, that it cut nothing."""
    kind = type(framing)
    count = len(buffer)
    if kind is Lines or kind is Delimited:
        return f"{framing!r} waits for {framing.delimiter!r}"  # type: ignore[attr-defined]
    if kind is LengthPrefixed:
        size: int = framing.size  # type: ignore[attr-defined]
        if count < size:
            return (
                f"{framing!r} waits for the rest of its {size}-byte length prefix "
                f"({count} of {size} bytes here)"
            )
        declared = int.from_bytes(buffer[:size], framing.byteorder)  # type: ignore[attr-defined]
        framed = declared + (0 if framing.includes_prefix else size)  # type: ignore[attr-defined]
        return (
            f"the length prefix {show(bytes(buffer[:size]))} of {framing!r} declares "
            f"{declared} bytes ({framed} with the prefix): {count} here, {framed - count} "
            "more to come"
        )
    if kind is Fixed:
        n: int = framing.n  # type: ignore[attr-defined]
        return f"{framing!r} waits for {n - count} more of its {n} bytes"
    if kind is StxEtx:
        return f"{framing!r} waits for ETX (0x03) to end the frame"
    return f"{framing!r} cut no whole message from them"


def _closeness(rule: Rule, data: bytes, stream: bool) -> float:
    """How close ``data`` is to what ``rule`` wants, in [0, 1]; 1 when it matches."""
    matcher = rule.matcher
    assert matcher is not None
    if rule.kind == "otherwise":
        return 0.0  # a fallback matches anything: naming it as "similar" says nothing
    outcome = matcher.match(data, stream=stream)
    if outcome is not None and outcome is not NEED_MORE:
        return 1.0
    closeness = getattr(_matchers, "closeness", None)
    if closeness is not None:
        return float(closeness(matcher, data))
    target = matcher.describe().encode(errors="replace")
    return difflib.SequenceMatcher(None, data, target).ratio()


def _why_not_answering(connection: Connection) -> str:
    """The one word for why the peer no longer answers ``connection``."""
    if connection.failed:
        return "failed"
    if connection.held:
        return "hanging"
    if connection.ended:
        return "closed"
    return "ending"
