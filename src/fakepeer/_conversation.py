"""The conversation: the sans-IO core, from connection events to actions.

The runtime feeds it what the network did, with a timestamp, and executes the actions it
gets back (see :mod:`fakepeer._actions` for the table of actions). Everything that changes
the core's state is one of these event methods:

=====================================  ====================================================
event                                  what happened
=====================================  ====================================================
``connect(client, at)``                a client connected: its record and the greeting
``receive(record, data, at)``          bytes arrived
``eof(record, at)``                    the client shut down its sending side
``lost(record, at, reason)``           the connection is gone
``stop(record, at, ...)``              the peer stops while the connection is open
``take(record, count, eof, at)``       a handler wants a message (or ``count`` raw bytes)
``replied(record, result, error, at)`` the reply callable of a ``Call`` returned or raised
``awaited(record, action, ...)``       the awaitable of an ``Await`` finished
``sent`` / ``closed`` / ``held`` /     the runtime did what an action asked
``note`` / ``dropped`` / ``relayed``
``fail(record, problem, at)``          the runtime found a problem (a handler raised...)
``add_fault`` / ``remove_fault``       a network fault switched on or off
``started`` / ``hub_blocked`` /        the peer's own life
``finish``
=====================================  ====================================================

A reply callable is not called here: the event stops at a :class:`~fakepeer._actions.Call`
(returned alone), the runtime calls it with the user's connection handle at once and reports
the outcome with ``replied``, which goes on where the event stopped. So user code never runs
in the core, and a callable that pushes bytes finds the core between two events.

Each connection's record (:class:`~fakepeer._state.ConnectionRecord`) moves through the phases
of :mod:`fakepeer._state`; rule counts (which expectation comes next) live in the
conversation's :class:`~fakepeer._rulebook.RuleBook`, not on the rules the test wrote. The
work of the events that bring bytes is in :mod:`fakepeer._answering` (framing, matching),
:mod:`fakepeer._replying` (a rule's steps) and :mod:`fakepeer._failing`; the words of a
failure come from :mod:`fakepeer._explain`. It does no I/O, reads no clock and takes no
lock; the runtime serialises calls.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Final, TypeAlias

from . import _answering, _explain, _failing, _keeping, _replying
from ._actions import Action, Await, Call, Dropped, Write
from ._errors import Error
from ._faults import Fault, FaultState, shape
from ._faultschedule import Counter, Schedule, added, deal, faults_of, removed, spend
from ._framing import Decoder, Framing
from ._matchers import Matcher
from ._rulebook import RuleBook
from ._script import START, Rule, Script
from ._state import ConnectionRecord, Phase, Transition
from ._tlsinfo import TLSInfo
from ._transcript import DEFAULT_BUDGET, Event, Transcript

__all__ = ["Conversation", "Steps"]

#: A client that sends more than this without completing a message fails the test, unless the
#: framing sets its own ``max_length``.
MAX_BUFFER: Final = 1 << 20

#: Makes a named tuple from all its fields, without its ``__new__`` (see :meth:`event`).
_tuple: Final = tuple.__new__

#: Bytes of a connection's pending (unframed) bytes a report keeps: the first and the last.
PENDING_LIMIT: Final = 4096

#: An event's work: yields a ``Call`` when it needs a reply callable's outcome (sent back in
#: as ``(result, error)``), and returns the actions.
Steps: TypeAlias = Generator[Call, tuple[object, BaseException | None], list[Action]]


class Conversation:
    """The peer's state machine; see the module docstring for the event/action contract."""

    def __init__(
        self,
        framing: Framing,
        title: str = "fake peer",
        *,
        transcript_budget: int | None = DEFAULT_BUDGET,
        seed: int = 0,
        reply_framing: Framing | None = None,
    ) -> None:
        self.framing = framing
        #: What frames the peer's writes (replies, greetings, pushes): ``framing`` by default.
        self.reply_framing = framing if reply_framing is None else reply_framing
        self.stream = framing.streaming
        #: Each ``receive`` is one whole message (a datagram: the framing says ``datagrams``).
        self.datagrams = getattr(framing, "datagrams", False) is True
        limit = getattr(framing, "max_length", None)
        self.limit: int = limit if isinstance(limit, int) and limit > 0 else MAX_BUFFER
        #: The run state of the scripts: counts, each one's next expectation, the peer state.
        self.rules = RuleBook()
        self.script = self.rules.script  # the peer's script
        self.scripts = self.rules.scripts  # per-connection scripts, by connection number
        self.counts = self.rules.counts  # how often each rule matched
        self.unmatched: list[tuple[int, bytes]] = []  # (connection, message) via otherwise
        self.connections: list[ConnectionRecord] = []
        self.faults: list[Fault] = []  # network faults on every connection, in the order added
        self.counters: dict[int, Counter] = {}  # id(fault) -> its count (first=N)
        self.seed = seed  # the seed of the faults' randomness
        self.received: list[bytes] = []
        self.keeping: _keeping.Keeping | None = None  # None: keep every message received
        self.problems: list[Error] = []  # in the order found; never changed once recorded
        self.delivered: set[Error] = set()  # problems raised to the test already
        self.transcript = Transcript(title, budget=transcript_budget)
        self.transcript.framing = None if self.stream or self.datagrams else framing
        self.transcript.datagrams = self.datagrams
        #: Set once the peer stopped: nothing more is recorded (events are ignored).
        self.closed_for_good = False

    # -- the script --------------------------------------------------------------------------

    def script_for(self, connection: int | None) -> Script:
        """The peer's script, or the own script of the ``connection``-th connection."""
        return self.rules.script_for(connection)

    def add_rule(
        self, kind: str, matcher: Matcher | None, where: str, connection: int | None = None
    ) -> Rule:
        """Append a rule of ``kind`` (``connect``, ``expect``, ``always``, ``otherwise``)
        to the peer's script, or to the script of the ``connection``-th connection."""
        return self.rules.script_for(connection).add(kind, matcher, where)

    @property
    def expectations(self) -> list[Rule]:
        """The expectations of the peer's script."""
        return self.script.expectations

    def count(self, rule: Rule) -> int:
        """How often ``rule`` matched so far."""
        return self.rules.counts.get(rule, 0)

    def exhausted(self, rule: Rule) -> bool:
        """True once ``rule`` matched as often as it may."""
        return self.rules.exhausted(rule)

    def head(self, script: Script | None = None) -> Rule | None:
        """The expectation ``script`` (default: the peer's) waits for now, or None."""
        return self.rules.head(script)

    @property
    def peer_state(self) -> str:
        """The peer's state (``goto(peer=...)``), kept by its rule book."""
        return self.rules.peer_state

    @property
    def done(self) -> bool:
        """True when every expectation, of every script, was met."""
        return not self.rules.unmet()

    def unmet(self) -> list[Rule]:
        """Expectations not (fully) met yet, in script order, the peer's first."""
        return self.rules.unmet()

    # -- events in ---------------------------------------------------------------------------

    def connect(self, client: str, at: float) -> tuple[ConnectionRecord, list[Action]]:
        """A client connected: its record, and the greeting actions."""
        number = len(self.connections) + 1
        script = self.scripts.get(number, self.script)
        record = ConnectionRecord(number, client, self.transcript, script, START)
        record.faults = state = FaultState.seeded(self.seed, number)
        self.connections.append(record)
        if record.handled:  # a handler reads the bytes as they come
            self.transcript.unframed.add(number)
        self.event(at, record, "connected", note=f"from {client}")
        if self.counters:
            deal(self, state, at, accept=False)
        if not (script.greeting or self.faults or state.kept):  # nothing to drive
            return record, []
        return record, self._drive(record, _answering.greet(self, record, at))

    def receive(self, record: ConnectionRecord, data: bytes, at: float) -> list[Action]:
        """Bytes arrived on ``record``; return what to do about them."""
        if not (self.stream or record.handled) and record.answering:
            work = _answering.received_framed(self, record, data, at)
            if type(work) is list:  # the hot path: no reply callable came up
                return work
            return self._drive(record, work)  # type: ignore[arg-type]
        return self._drive(record, _answering.received(self, record, data, at))

    def eof(self, record: ConnectionRecord, at: float) -> list[Action]:
        """The client shut down its sending side (or closed): finish, then close ours."""
        return self._drive(record, _answering.eof(self, record, at))

    def stop(
        self, record: ConnectionRecord, at: float, *, receiving: bool = False, eof: bool = False
    ) -> None:
        """The peer stops while ``record`` is open (every byte the client sent was read;
        ``eof`` if the client had closed its side).

        Bytes left that form no whole message fail it with :class:`IncompleteMessage`, as
        at EOF: for a handler, when it was waiting in ``receive()`` (``receiving``).
        """
        if record.ended or not record.buffer or record.suspended is not None:
            return
        how = "ended" if eof else "was cut off by the peer's stop"
        if record.handled:
            if receiving and not record.failed:
                _failing.incomplete(self, record, how, at)
        elif record.answering:
            _failing.incomplete(self, record, how, at)

    def lost(self, record: ConnectionRecord, at: float, reason: str | None) -> list[Action]:
        """The connection is gone; ``reason`` is the error text, or None for a clean close.
        The messages left in its buffer are still matched (their replies go nowhere): the
        actions returned matter only for a ``Call`` in them."""
        if record.ended:
            return []
        return self._drive(record, _answering.lost(self, record, at, reason))

    def take(
        self, record: ConnectionRecord, count: int | None, eof: bool, at: float
    ) -> bytes | BaseException | None:
        """A handler wants the next message (``count`` None) or ``count`` raw bytes; ``eof``
        if the client closed its side. Returns the bytes (recorded as handled), what the
        handler must raise (the connection's problem; ``EOFError`` at the end), or None:
        nothing yet, wait for more. A :class:`~fakepeer.ScriptError` for mixing the two."""
        return _answering.take(self, record, count, eof, at)

    def problem_of(self, record: ConnectionRecord) -> BaseException:
        """What a handler's ``receive()`` raises once ``record`` failed: a copy of its
        problem (the recorded one is never raised, so it stays as it was)."""
        if record.problem is not None:
            return record.problem.copy()
        return EOFError(f"connection #{record.id} failed")

    def replied(
        self, record: ConnectionRecord, result: object, error: BaseException | None, at: float
    ) -> list[Action]:
        """The reply callable of the ``Call`` that ``record``'s last event returned gave
        ``result`` (or raised ``error``): go on where that event stopped."""
        steps = record.suspended
        if steps is None:
            raise RuntimeError(f"connection #{record.id} waits for no reply callable")
        record.suspended = None
        return self._drive(record, steps, (result, error))

    def awaited(
        self,
        record: ConnectionRecord,
        action: Await,
        result: object,
        error: BaseException | None,
        at: float,
    ) -> list[Action]:
        """What an :class:`Await` produced: the actions to run before the rest."""
        data = _replying.check_reply(action.rule, action.name, record, result, error)
        if isinstance(data, Error):
            actions = _failing.fail(self, data, record, at)
        elif data is None:
            actions = []
        elif record.problem is not None:  # the peer writes nothing more to a failed connection
            note = "(not sent: the connection failed before the reply was ready)"
            self.event(at, record, "dropped", data, note)
            actions = []
        else:
            writable = action.writable
            actions = _replying.write(self, action.rule, record, data, at, writable=writable)
        return self.faulty(record, actions, at)

    def fail(
        self,
        record: ConnectionRecord,
        problem: Error,
        at: float,
        *,
        delivered: bool = False,
        note: bool = False,
    ) -> None:
        """The runtime found ``problem`` on ``record`` (a handler raised, the client does not
        read its pushes...); ``delivered`` if it is raised to the test right away; ``note``
        to record its first line in the transcript."""
        self.problems.append(problem)
        record.problem = problem
        record.move(Transition.FAIL)
        if note:
            self.event(at, record, "error", note=problem.diagnosis.splitlines()[0])
        if delivered:
            self.delivered.add(problem)

    # -- what the runtime did ----------------------------------------------------------------

    def sent(self, record: ConnectionRecord, data: bytes, at: float) -> None:
        """The runtime wrote ``data`` on ``record``."""
        self.event(at, record, "sent", data)

    def closed(self, record: ConnectionRecord, at: float, how: str, note: str = "") -> None:
        """The peer ended the connection: ``how`` is ``closed``, ``reset`` or ``half-closed``."""
        if how != "half-closed":
            if record.ended:
                return
            record.end("peer", f"{how} {note}" if note else how)
            record.move(Transition.END)
        self.event(at, record, how, note=note)

    def upgrading(self, record: ConnectionRecord, at: float) -> bool:
        """The runtime is about to start ``record``'s TLS handshake (``.start_tls()``): True
        if it may. Bytes the client sent in plain text since the message that asked for it
        (left in the buffer) fail it; a failed or ended connection has no handshake."""
        if record.phase is not Phase.UPGRADING:
            return False
        if record.buffer:
            leftover = bytes(record.buffer)
            record.buffer.clear()
            _failing.before_handshake(self, record, leftover, at)
            return False
        return True

    def secured(self, record: ConnectionRecord, info: TLSInfo, at: float) -> None:
        """``record``'s TLS handshake is over (from the start, or an upgrade): ``info`` is
        what it agreed; an upgraded connection is answered again (inside TLS)."""
        record.tls = info
        note = f"upgraded: {info.describe()}" if info.starttls else info.describe()
        self.event(at, record, "tls", note=note)
        record.move(Transition.UPGRADED)

    def upgrade_failed(self, record: ConnectionRecord, at: float, why: str | None) -> None:
        """``record``'s TLS upgrade failed (``why``; None: the peer's stop cut it off): the
        peer aborts the connection, so it closed it."""
        if why is None:
            record.end("peer", "closed (the peer stopped)")
            return
        record.end("peer", f"reset (its TLS upgrade failed: {why})")
        self.event(at, record, "tls", note=f"upgrade failed: {why}")

    def held(self, record: ConnectionRecord, at: float) -> None:
        """The connection hangs from now on."""
        record.move(Transition.HOLD)
        self.event(at, record, "hanging", note="(answering nothing more)")

    def relayed(self, record: ConnectionRecord, data: bytes, at: float) -> None:
        """A proxy passed ``data`` from the client to its upstream server: recorded in the
        transcript (within its budget), not kept in ``received`` (a relay frames no
        messages, and must not keep every byte it passes)."""
        self.event(at, record, "received", data, "-> upstream")

    def note(self, record: ConnectionRecord, at: float, kind: str, note: str) -> None:
        """Record something the runtime did to ``record`` (a fault's doing)."""
        self.event(at, record, kind, note=note)

    def note_peer(self, at: float, kind: str, note: str) -> None:
        """Record something that happened to the peer itself."""
        self.event(at, None, kind, note=note)

    def dropped(self, record: ConnectionRecord, action: Dropped, at: float, way: str = "") -> None:
        """Record bytes a fault kept from being sent (``way``: ``", upstream"`` for a proxy)."""
        self.event(at, record, "dropped", action.data, f"(by {action.why}{way})")

    # -- the peer's own life -----------------------------------------------------------------

    def started(self, address: str, at: float, wall: float | None = None) -> None:
        """The peer serves at ``address`` (as the transcript shows it) since ``at`` (``wall``:
        the Unix time then)."""
        self.transcript.address = address
        self.transcript.started = at
        self.transcript.wall = wall

    def add_fault(self, fault: Fault, at: float, schedule: Schedule | None = None) -> None:
        """``fault`` applies from now on (to the first connections or requests only, if
        ``schedule`` counts them: see ``_faultschedule``)."""
        added(self, fault, at, schedule)

    def remove_fault(self, fault: Fault, at: float, why: str = "") -> bool:
        """``fault`` applies no more (``why``: the note of its line); False if it was not
        active. Connections it was dealt to keep it."""
        return removed(self, fault, at, why)

    def hub_blocked(self, problem: Error) -> None:
        """The hub thread blocked: ``problem`` comes first in the verdict."""
        self.problems.insert(0, problem)

    def finish(self) -> None:
        """The peer stopped: its record is final, later events are ignored."""
        self.closed_for_good = True

    # -- the verdict -------------------------------------------------------------------------

    def verdict(self, *, final: bool = True, deliver: bool = False) -> Error | None:
        """The first problem not raised to the test yet (if ``final``: the end), else, at the
        end, the expectations not met; None if the test caught every problem there was.
        ``deliver`` marks the problem returned as raised."""
        skip = self.delivered if deliver and final else ()
        if final and skip and self.problems and all(p in skip for p in self.problems):
            return None  # the test caught what went wrong; unmet rules follow from it
        problem = next((p for p in self.problems if p not in skip), None)
        if problem is None and final:
            unmet = self.unmet()
            if unmet:
                problem = _explain.unmet_verdict(
                    unmet,
                    self.count,
                    connections=len(self.connections),
                    received=len(self.received) + (self.keeping.dropped if self.keeping else 0),
                    datagrams=self.datagrams,
                    file=bool(self.script.file),
                    hint=_explain.no_line_end_hint(self.connections, stream=self.stream),
                )
        if problem is not None and deliver:
            self.delivered.add(problem)
        return problem

    def others(self, problem: Error, *, final: bool) -> list[str]:
        """The first line of every problem but ``problem`` (and, at the end, those raised)."""
        skip = self.delivered if final else ()
        return [
            p.diagnosis.splitlines()[0] for p in self.problems if p is not problem and p not in skip
        ]

    def pending(self, limit: int = PENDING_LIMIT) -> list[Event]:
        """The bytes each connection received that are no message yet, one ``pending``
        event per connection that holds any, in connection order (its time: when the oldest
        of them arrived). ``data`` keeps at most ``limit`` bytes of them, the first and the
        last (``size`` then says how many there are, as for an event cut by the
        transcript's budget); the note says why they are no message yet, and what the peer
        does with them. Recorded nowhere: a snapshot, for reports and diagrams."""
        events = []
        for record in self.connections:
            buffer = record.buffer
            if not buffer:
                continue
            count = len(buffer)
            if count > limit:
                front = (limit + 1) // 2
                data = bytes(buffer[:front]) + bytes(buffer[count - (limit - front) :])
                size = count
            else:
                data, size = bytes(buffer), -1
            waits = _explain.waits(record, self.framing, head=self.head(record.script))
            note = f"({count:,} {'byte' if count == 1 else 'bytes'}, {waits})"
            events.append(Event(record.since, record.id, "pending", data, note, size))
        return events

    def outlook(self, *, problem: bool | None = None, unmet: bool = True) -> str:
        """What the peer would report if it stopped now, while it still serves (see
        :func:`fakepeer._explain.outlook`): ``problem``, whether the report shows one
        (default: whether there is one); ``unmet`` false if it lists unmet rules already."""
        if problem is None:
            problem = bool(self.problems)
        return _explain.outlook(
            self.connections,
            self.framing,
            head=lambda record: self.head(record.script),
            unmet=[] if problem or not unmet else self.unmet(),
            counts=self.count,
            problem=problem,
        )

    def pending_key(self, record: ConnectionRecord) -> tuple[object, ...] | None:
        """What the stop would find incomplete on ``record`` now, as a key (for a report to
        say it showed it already), or None."""
        if record.buffer and record.answering and not record.handled:
            return ("incomplete", record.id, hash(bytes(record.buffer)))
        return None

    # -- faults ------------------------------------------------------------------------------

    def faulty(self, record: ConnectionRecord, actions: list[Action], at: float) -> list[Action]:
        """``actions`` as the active network faults let them happen on ``record``; without
        any, still count what is sent (a ``limit_data`` fault may come)."""
        if not actions:
            return actions
        state = record.faults
        if self.faults or (state is not None and (state.half_closed or state.kept)):
            return self.shaped(record, actions, at)
        if state is not None:  # (a loop, not sum() over a generator: the hot path)
            sent = 0
            for action in actions:
                if isinstance(action, Write):
                    sent += len(action.data)
            state.sent += sent
        return actions

    def shaped(
        self,
        record: ConnectionRecord,
        actions: list[Action],
        at: float,
        faults: list[Fault] | None = None,
    ) -> list[Action]:
        """``actions`` shaped by ``faults`` (default: the active ones); dropped bytes noted."""
        state = record.faults
        faults = faults_of(self, record) if faults is None else faults
        if state is None or not (faults or state.half_closed):
            return actions
        shaped: list[Action] = []
        for action in shape(faults, actions, state):
            if isinstance(action, Dropped):
                self.dropped(record, action, at)
            else:
                shaped.append(action)  # type: ignore[arg-type]
        if self.counters:
            spend(self, faults, actions, at)  # type: ignore[arg-type]
        return shaped

    # -- internals ---------------------------------------------------------------------------

    def _drive(
        self,
        record: ConnectionRecord,
        steps: Steps,
        outcome: tuple[object, BaseException | None] | None = None,
    ) -> list[Action]:
        """Run an event's work until it is done (its actions) or needs a reply callable's
        outcome (then ``[Call]``, and ``record`` waits for :meth:`replied`)."""
        if outcome is None and record.suspended is not None:  # the callable never returned
            record.suspended.close()  # (it raised a BaseException through the runtime)
            record.suspended = None
        try:
            call = steps.send(outcome)  # type: ignore[arg-type]  # None starts it
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        record.suspended = steps
        return [call]

    def event(
        self,
        at: float,
        record: ConnectionRecord | None,
        kind: str,
        data: bytes = b"",
        note: str = "",
    ) -> None:
        """Record an event in the transcript (``record`` None: the peer's own)."""
        if self.closed_for_good:  # the peer stopped: its record is final
            return
        # Event(...) without its __new__, a Python function: this runs for every message
        fields = (at, 0 if record is None else record.id, kind, data, note, -1)
        self.transcript.add(_tuple(Event, fields))

    def decoder(self, record: ConnectionRecord) -> Decoder:
        """``record``'s decoder of the framing, made on first use."""
        decoder = record.decoder
        if decoder is None:
            decoder = record.decoder = Decoder(self.framing)
        return decoder
