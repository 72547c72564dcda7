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
inside the core, and a callable that pushes bytes (``connection.send()``) finds the core
between two events, not in the middle of one.

Each connection's record (:class:`~fakepeer._state.ConnectionRecord`) moves through the phases
of :mod:`fakepeer._state`; rule counts (which expectation comes next) live here, not on the
rules the test wrote. The words of a failure come from :mod:`fakepeer._explain`. It does no
I/O, reads no clock and takes no lock; the runtime serialises calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator, Iterable
from typing import Final, TypeAlias

from . import _explain
from ._actions import Action, Await, Call, Close, Dropped, HalfClose, Hold, Wait, Write
from ._errors import (
    Error,
    FramingError,
    IncompleteMessage,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
)
from ._faults import Fault, FaultState, on_connect, shape
from ._framing import Decoder, Framing
from ._matchers import NEED_MORE, Matched, Matcher
from ._script import START, After, Echo, Goto, Hang, Reply, Rule, Script, Send
from ._state import ConnectionRecord, Phase, Transition
from ._transcript import DEFAULT_BUDGET, Event, Transcript, show

__all__ = ["Conversation", "Steps"]

#: A client that sends more than this without completing a message fails the test, unless the
#: framing sets its own ``max_length``.
MAX_BUFFER: Final = 1 << 20

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
    ) -> None:
        self.framing = framing
        self.stream = framing.streaming
        limit = getattr(framing, "max_length", None)
        self.limit: int = limit if isinstance(limit, int) and limit > 0 else MAX_BUFFER
        self.script = Script()
        self.scripts: dict[int, Script] = {}  # per-connection scripts, by connection number
        self.counts: dict[Rule, int] = {}  # how often each rule matched
        self._next: dict[Script, int] = {}  # the index of each script's next expectation
        self.peer_state = START
        self.unmatched: list[tuple[int, bytes]] = []  # (connection, message) via otherwise
        self.connections: list[ConnectionRecord] = []
        self.faults: list[Fault] = []  # active network faults, in the order added
        self.seed = seed  # the seed of the faults' randomness
        self.received: list[bytes] = []
        self.problems: list[Error] = []  # in the order found; never changed once recorded
        self.delivered: set[Error] = set()  # problems raised to the test already
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
            script = self.scripts[connection] = Script(connection)
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

    def count(self, rule: Rule) -> int:
        """How often ``rule`` matched so far."""
        return self.counts.get(rule, 0)

    def exhausted(self, rule: Rule) -> bool:
        """True once ``rule`` matched as often as it may."""
        return rule.limit is not None and self.counts.get(rule, 0) >= rule.limit

    def head(self, script: Script | None = None) -> Rule | None:
        """The expectation ``script`` (default: the peer's) waits for now, or None."""
        script = self.script if script is None else script
        expectations = script.expectations
        index = self._next.get(script, 0)
        while index < len(expectations) and self.exhausted(expectations[index]):
            index += 1
        self._next[script] = index
        return expectations[index] if index < len(expectations) else None

    @property
    def done(self) -> bool:
        """True when every expectation, of every script, was met."""
        return not self.unmet()

    def unmet(self) -> list[Rule]:
        """Expectations not (fully) met yet, in script order, the peer's first."""
        unmet: list[Rule] = []
        for script in (self.script, *(self.scripts[n] for n in sorted(self.scripts))):
            self.head(script)
            start = self._next.get(script, 0)
            unmet.extend(r for r in script.expectations[start:] if not self.exhausted(r))
        return unmet

    # -- events in ---------------------------------------------------------------------------

    def connect(self, client: str, at: float) -> tuple[ConnectionRecord, list[Action]]:
        """A client connected: its record, and the greeting actions."""
        number = len(self.connections) + 1
        script = self.scripts.get(number, self.script)
        record = ConnectionRecord(number, client, self.transcript, script, START)
        record.faults = FaultState.seeded(self.seed, number)
        self.connections.append(record)
        self._event(at, record, "connected", note=f"from {client}")
        return record, self._drive(record, self._greet(record, at))

    def _greet(self, record: ConnectionRecord, at: float) -> Steps:
        actions: list[Action] = []
        for rule in record.script.connect_rules:
            if self._applies(rule, record):
                self.counts[rule] = self.counts.get(rule, 0) + 1
                actions += yield from self._steps(rule, record, None, b"", at)
        if self.faults:
            actions = self._shape(record, actions, at)
            actions.extend(on_connect(self.faults, record.faults))  # type: ignore[arg-type]
        return actions

    def receive(self, record: ConnectionRecord, data: bytes, at: float) -> list[Action]:
        """Bytes arrived on ``record``; return what to do about them."""
        return self._drive(record, self._received(record, data, at))

    def _received(self, record: ConnectionRecord, data: bytes, at: float) -> Steps:
        buffer = record.buffer
        before = len(buffer)
        if not before:  # so far as is known before a reply callable runs (it may not return)
            record.since = at
        actions = yield from self._receive(record, data, at)
        # Bytes left over: they came with data if the buffer was empty or a message was
        # cut off it (the bytes before the end of that message were all taken).
        if buffer and (not before or len(buffer) < before + len(data)):
            record.since = at
        return self.faulty(record, actions, at)

    def _receive(self, record: ConnectionRecord, data: bytes, at: float) -> Steps:
        if not record.answering:
            self._unanswered(record, data, at)
            return []
        buffer = record.buffer
        if self.stream and not record.handled and not buffer:
            self._event(at, record, "received", data)
            return (yield from self._match_fresh(record, data, at))
        if self.stream or record.handled:
            buffer += data
            self._event(at, record, "received", data)
            if record.handled:  # the handler reads it with receive() or receive_exactly()
                if len(buffer) > self.limit:  # max_length holds as bytes arrive, in every mode
                    return self._check_handled(record, at)
                return []
            return (yield from self._match_stream(record, at))
        try:
            messages = self._decoder(record).feed(buffer, data)
        except FramingError as problem:
            return self._framing_failed(problem, record, at)
        actions = yield from self._dispatch_all(record, messages, at)
        if len(buffer) > self.limit and not record.failed:
            actions += self._over_limit(record, at)
        return actions

    def _dispatch_all(
        self, record: ConnectionRecord, messages: Iterable[bytes], at: float
    ) -> Steps:
        actions: list[Action] = []
        for message in messages:
            if not record.answering:
                self._unanswered(record, message, at)
                continue
            actions += yield from self._dispatch(record, message, at)
        return actions

    def eof(self, record: ConnectionRecord, at: float) -> list[Action]:
        """The client shut down its sending side (or closed): finish, then close ours."""
        return self._drive(record, self._eof(record, at))

    def _eof(self, record: ConnectionRecord, at: float) -> Steps:
        self._event(at, record, "eof")
        if record.handled:
            return []  # the handler sees EOF in receive(), and ends the connection itself
        actions: list[Action] = []
        if record.answering:
            actions = yield from self._finish_buffer(record, at)
            if record.failed:  # _fail already closes
                return self.faulty(record, actions, at)
        actions.append(Close())
        return self.faulty(record, actions, at)

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
                self._incomplete(record, how, at)
        elif record.answering:
            self._incomplete(record, how, at)

    def lost(self, record: ConnectionRecord, at: float, reason: str | None) -> list[Action]:
        """The connection is gone; ``reason`` is the error text, or None for a clean close.
        The messages left in its buffer are still matched (their replies go nowhere): the
        actions returned matter only for a ``Call`` in them."""
        if record.ended:
            return []
        return self._drive(record, self._lost(record, at, reason))

    def _lost(self, record: ConnectionRecord, at: float, reason: str | None) -> Steps:
        if record.answering and not record.handled:
            how = "ended" if reason is None else f"was lost ({reason})"
            yield from self._finish_buffer(record, at, how)
        record.move(Transition.END)
        self._event(at, record, "lost", note=reason or "closed by the client")
        return []

    def take(
        self, record: ConnectionRecord, count: int | None, eof: bool, at: float
    ) -> bytes | BaseException | None:
        """A handler wants the next message (``count`` None) or ``count`` raw bytes; ``eof``
        if the client closed its side. Returns the bytes (recorded as handled), what the
        handler must raise (the connection's problem; ``EOFError`` at the end), or None:
        nothing yet, wait for more. A :class:`~fakepeer.ScriptError` for mixing the two."""
        if record.problem is not None:
            return record.problem.copy()
        buffer, framed = record.buffer, record.framed
        if count is None and not framed and buffer:
            try:  # incremental: bytes already scanned are not scanned again
                framed.extend(self._decoder(record).take(buffer, eof))
            except FramingError as problem:
                self._framing_failed(problem, record, at)
                return self.problem_of(record)
        message: bytes | None = None
        if count is None and framed:
            message = framed.pop(0)
        elif count is not None and framed:
            raise ScriptError(
                "receive_exactly() after receive() left framed messages unread; "
                "receive() them first"
            )
        elif count is not None and len(buffer) >= count:
            message = bytes(buffer[:count])
            del buffer[:count]
            self._decoder(record).reset()  # bytes went from the front behind its back
        elif eof:
            if buffer:  # a message cut short: the client's fault
                self._incomplete(record, "ended", at)
                return self.problem_of(record)
            return EOFError("the client closed the connection")
        if message is None:
            return None
        record.received.append(message)
        self.received.append(message)
        self._event(at, record, "handled", message, "(by the handler)")
        return message

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
        data = self._check_reply(action.rule, action.name, record, result, error)
        if isinstance(data, Error):
            actions = self._fail(data, record, at)
        elif data is None:
            actions = []
        else:
            actions = self._write(action.rule, record, data, at)
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
            self._event(at, record, "error", note=problem.diagnosis.splitlines()[0])
        if delivered:
            self.delivered.add(problem)

    # -- what the runtime did ----------------------------------------------------------------

    def sent(self, record: ConnectionRecord, data: bytes, at: float) -> None:
        """The runtime wrote ``data`` on ``record``."""
        self._event(at, record, "sent", data)

    def closed(self, record: ConnectionRecord, at: float, how: str, note: str = "") -> None:
        """The peer ended the connection: ``how`` is ``closed``, ``reset`` or ``half-closed``."""
        if how != "half-closed":
            if record.ended:
                return
            record.move(Transition.END)
        self._event(at, record, how, note=note)

    def held(self, record: ConnectionRecord, at: float) -> None:
        """The connection hangs from now on."""
        record.move(Transition.HOLD)
        self._event(at, record, "hanging", note="(answering nothing more)")

    def relayed(self, record: ConnectionRecord, data: bytes, at: float) -> None:
        """A proxy passed ``data`` from the client to its upstream server: recorded in the
        transcript (within its budget), not kept in ``received`` (a relay frames no
        messages, and must not keep every byte it passes)."""
        self._event(at, record, "received", data, "-> upstream")

    def note(self, record: ConnectionRecord, at: float, kind: str, note: str) -> None:
        """Record something the runtime did to ``record`` (a fault's doing)."""
        self._event(at, record, kind, note=note)

    def note_peer(self, at: float, kind: str, note: str) -> None:
        """Record something that happened to the peer itself."""
        self._event(at, None, kind, note=note)

    def dropped(self, record: ConnectionRecord, action: Dropped, at: float, way: str = "") -> None:
        """Record bytes a fault kept from being sent (``way``: ``", upstream"`` for a proxy)."""
        self._event(at, record, "dropped", action.data, f"(by {action.why}{way})")

    # -- the peer's own life -----------------------------------------------------------------

    def started(self, address: str, at: float) -> None:
        """The peer serves at ``address`` (as the transcript shows it) since ``at``."""
        self.transcript.address = address
        self.transcript.started = at

    def add_fault(self, fault: Fault, at: float) -> None:
        """``fault`` applies from now on."""
        self.faults.append(fault)
        self.note_peer(at, "fault", f"+ {fault}")
        self.transcript.seed = self.seed

    def remove_fault(self, fault: Fault, at: float) -> bool:
        """``fault`` applies no more; False if it was not active."""
        for index, active in enumerate(self.faults):
            if active is fault:
                del self.faults[index]
                self.note_peer(at, "fault", f"- {fault}")
                return True
        return False

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
                    received=len(self.received),
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
        if self.faults or (state is not None and state.half_closed):
            return self._shape(record, actions, at)
        if state is not None:
            state.sent += sum(len(action.data) for action in actions if isinstance(action, Write))
        return actions

    def _shape(
        self,
        record: ConnectionRecord,
        actions: list[Action],
        at: float,
        faults: list[Fault] | None = None,
    ) -> list[Action]:
        state = record.faults
        faults = self.faults if faults is None else faults
        if state is None or not (faults or state.half_closed):
            return actions
        shaped: list[Action] = []
        for action in shape(faults, actions, state):
            if isinstance(action, Dropped):
                self.dropped(record, action, at)
            else:
                shaped.append(action)  # type: ignore[arg-type]
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

    def _event(
        self,
        at: float,
        record: ConnectionRecord | None,
        kind: str,
        data: bytes = b"",
        note: str = "",
    ) -> None:
        if self.closed_for_good:  # the peer stopped: its record is final
            return
        self.transcript.add(Event(at, record.id if record else 0, kind, data, note))

    def _decoder(self, record: ConnectionRecord) -> Decoder:
        decoder = record.decoder
        if decoder is None:
            decoder = record.decoder = Decoder(self.framing)
        return decoder

    def _unanswered(self, record: ConnectionRecord, data: bytes, at: float) -> None:
        why = record.why_not_answering()
        self._event(at, record, "received", data, f"(not answered: connection {why})")
        record.received.append(data)
        self.received.append(data)

    def _applies(self, rule: Rule, record: ConnectionRecord) -> bool:
        limit = rule.limit
        return (
            (limit is None or self.counts.get(rule, 0) < limit)
            and (rule.state is None or rule.state == record.state)
            and (rule.peer_state is None or rule.peer_state == self.peer_state)
        )

    def _candidates(self, record: ConnectionRecord) -> list[Rule]:
        """The rules that may match the next message of ``record``, in order."""
        script = record.script
        head = self.head(script)
        applies = self._applies
        rules = [head] if head is not None and applies(head, record) else []
        rules.extend(rule for rule in script.permanent if applies(rule, record))
        rules.extend(rule for rule in script.fallbacks if applies(rule, record))
        return rules

    def _matched(
        self, rule: Rule, record: ConnectionRecord, message: bytes, value: object, at: float
    ) -> Steps:
        self.counts[rule] = self.counts.get(rule, 0) + 1
        note = f"-> {rule.describe()}"
        if rule.kind == "otherwise":
            self.unmatched.append((record.id, message))
            note += " (unmatched)"
        self._event(at, record, "matched" if self.stream else "received", message, note)
        actions = yield from self._steps(rule, record, value, message, at)
        if rule.faults and record.faults is not None:  # this rule's own network faults
            actions = self._shape(record, actions, at, rule.faults)
        return actions

    def _dispatch(self, record: ConnectionRecord, message: bytes, at: float) -> Steps:
        record.received.append(message)
        self.received.append(message)
        script = record.script
        head = self.head(script)
        applies = self._applies
        # The hot path of every message: no list of candidates, the head first.
        for rules in ((head,) if head is not None else (), script.permanent, script.fallbacks):
            for rule in rules:
                if not applies(rule, record):
                    continue
                outcome = rule.matcher.match(message, stream=False)  # type: ignore[union-attr]
                if outcome is not None and outcome is not NEED_MORE:
                    value = outcome.value  # type: ignore[union-attr]
                    return (yield from self._matched(rule, record, message, value, at))
        self._event(at, record, "unexpected", message)
        return self._fail(self._unexpected(record, message), record, at)

    def _match_fresh(self, record: ConnectionRecord, data: bytes, at: float) -> Steps:
        """Stream matching when nothing was buffered before ``data``: the rules see ``data``
        itself, and what a rule consumes is not copied (the common case of a bulk transfer:
        ``always(ANY)`` takes each segment as it is). The same outcome as buffering ``data``
        and calling :meth:`_match_stream`."""
        waiting: list[Matcher] = []
        for rule in self._candidates(record):
            matcher = rule.matcher
            assert matcher is not None
            outcome = matcher.match(data, stream=True)
            if isinstance(outcome, Matched) and outcome.consumed > 0:
                consumed = outcome.consumed
                message = data if consumed == len(data) else data[:consumed]
                record.received.append(message)
                self.received.append(message)
                actions = yield from self._matched(rule, record, message, outcome.value, at)
                if consumed < len(data):
                    record.buffer += data[consumed:]
                    actions += yield from self._match_stream(record, at)
                return actions
            if outcome is NEED_MORE:
                waiting.append(matcher)
        if not waiting:
            return self._fail(self._unexpected(record, data), record, at)
        record.buffer += data
        scanned = record.scanned
        if scanned is None:
            scanned = record.scanned = {}
        for matcher in waiting:  # they waited on all of data: they go on from there
            if matcher.incremental:
                scanned[matcher] = len(data)
        if len(data) > self.limit:
            scanned.clear()
            return self._over_limit(record, at)
        return []

    def _match_stream(self, record: ConnectionRecord, at: float) -> Steps:
        buffer = record.buffer
        actions: list[Action] = []
        # An incremental matcher goes on from where it last said NEED_MORE on this buffer (the
        # bytes before are the same: they are forgotten only when the buffer is consumed), and
        # sees the buffer itself; the others see a copy, made only if one of them is asked.
        scanned = record.scanned
        if scanned is None:
            scanned = record.scanned = {}
        while buffer and record.answering:
            data: bytes | None = None
            waiting = False
            for rule in self._candidates(record):
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
                    record.received.append(message)
                    self.received.append(message)
                    actions += yield from self._matched(rule, record, message, outcome.value, at)
                    break
                if outcome is NEED_MORE:
                    waiting = True
                    if matcher.incremental:
                        scanned[matcher] = len(buffer)
            else:
                if waiting:
                    if len(buffer) > self.limit:
                        scanned.clear()
                        actions.extend(self._over_limit(record, at))
                    return actions
                data = bytes(buffer)
                buffer.clear()
                scanned.clear()
                actions.extend(self._fail(self._unexpected(record, data), record, at))
                return actions
        return actions

    def _finish_buffer(self, record: ConnectionRecord, at: float, how: str = "ended") -> Steps:
        buffer = record.buffer
        if not buffer:
            return []
        actions: list[Action] = []
        if not self.stream:
            try:
                messages = self._decoder(record).take(buffer, True)
            except FramingError as problem:
                return self._framing_failed(problem, record, at)
            for message in messages:
                if not record.answering:
                    return actions
                actions += yield from self._dispatch(record, message, at)
        if buffer:
            actions.extend(self._incomplete(record, how, at))
        return actions

    def _incomplete(self, record: ConnectionRecord, how: str, at: float) -> list[Action]:
        """Fail ``record`` for the bytes left in its buffer: they form no whole message."""
        buffer = record.buffer
        leftover = bytes(buffer)
        buffer.clear()
        if not (self.stream or record.handled):  # else recorded as they arrived
            self._event(at, record, "received", leftover, "(incomplete)")
        head = self.head(record.script)
        expected = f"\n  expected:  {head.describe()}" if head else ""
        problem = IncompleteMessage(
            f"connection #{record.id} {how} in the middle of a message "
            f"({self.framing!r})\n  leftover:  {show(leftover)}{expected}",
            connection=record.id,
            leftover=leftover,
        )
        return self._fail(problem, record, at)

    def _over_limit(self, record: ConnectionRecord, at: float) -> list[Action]:
        buffer = record.buffer
        problem = FramingError(
            f"connection #{record.id}: the client sent {len(buffer)} bytes without "
            f"completing a message, over the limit of {self.limit} bytes of {self.framing!r}"
            f"\n  buffered:  {show(bytes(buffer[:64]))}",
            connection=record.id,
        )
        buffer.clear()
        return self._fail(problem, record, at)

    def _check_handled(self, record: ConnectionRecord, at: float) -> list[Action]:
        """A handler's buffer went over the limit: a FramingError if the message it holds is
        too long (the framing says), else nothing (the handler is behind: the runtime stops
        reading until it catches up)."""
        try:
            self.framing.decode(bytes(record.buffer), False)
        except FramingError as problem:
            return self._framing_failed(problem, record, at)
        if self.stream:  # Raw: no message ever ends, the limit is on what waits unread
            return self._over_limit(record, at)
        return []

    def _framing_failed(
        self, problem: FramingError, record: ConnectionRecord, at: float
    ) -> list[Action]:
        """The framing refused ``record``'s bytes: the problem, said for this connection (a
        copy: the framing's own error stays as it was raised)."""
        said = problem.copy(f"connection #{record.id}: {problem.diagnosis}", connection=record.id)
        record.buffer.clear()
        return self._fail(said, record, at)

    def _unexpected(self, record: ConnectionRecord, data: bytes) -> Error:
        script = record.script
        met = len(script.expectations)
        return _explain.unexpected(
            record,
            data,
            stream=self.stream,
            counts=self.count,
            peer_state=self.peer_state,
            head=self.head(script),
            met=met,
        )

    def _fail(self, problem: Error, record: ConnectionRecord, at: float) -> list[Action]:
        # Framed, the data's "unexpected" event says it already; a stream's data was
        # "received" before: the error's first line says what went wrong.
        self.fail(record, problem, at, note=self.stream or not isinstance(problem, UnexpectedData))
        return [Close()]

    def _steps(
        self, rule: Rule, record: ConnectionRecord, value: object, message: bytes, at: float
    ) -> Steps:
        actions: list[Action] = []
        for step in rule.steps:
            if isinstance(step, Reply | Send | Echo):
                data: object
                if isinstance(step, Send):
                    data = step.data
                elif isinstance(step, Echo):
                    data = message
                elif step.function is None:
                    data = step.data
                else:
                    name = getattr(step.function, "__qualname__", repr(step.function))
                    data, error = yield Call(step.function, value, step.wants_connection)
                    if error is None and inspect.isawaitable(data):
                        actions.append(Await(data, rule, name))
                        continue
                    data = self._check_reply(rule, name, record, data, error)
                    if isinstance(data, Error):
                        actions.extend(self._fail(data, record, at))
                        return actions
                if data is None:
                    continue
                assert isinstance(data, bytes)
                actions.extend(self._write(rule, record, data, at))
                if record.failed:
                    return actions
            elif isinstance(step, After):
                actions.append(Wait(step.seconds))
            elif isinstance(step, Hang):
                actions.append(Hold())
                record.move(Transition.FINISH)
            elif isinstance(step, Goto):
                self._goto(step, record, at)
            else:
                actions.append(step)
                record.move(
                    Transition.HALF_CLOSE if isinstance(step, HalfClose) else Transition.FINISH
                )
        return actions

    def _goto(self, step: Goto, record: ConnectionRecord, at: float) -> None:
        changes = []
        if step.connection is not None:
            changes.append(f"connection {record.state!r} -> {step.connection!r}")
            record.state = step.connection
        if step.peer is not None:
            changes.append(f"peer {self.peer_state!r} -> {step.peer!r}")
            self.peer_state = step.peer
        self._event(at, record, "state", note=", ".join(changes))

    def _write(self, rule: Rule, record: ConnectionRecord, data: bytes, at: float) -> list[Action]:
        if record.phase is Phase.HALF_CLOSED:
            problem = ScriptError(
                f"{rule.describe()} writes on connection #{record.id}, but an "
                "earlier rule half-closed it with .half_close(): the peer can no "
                f"longer write there (it would have sent {show(data)})"
            )
            return self._fail(problem, record, at)
        try:
            return [Write(self.framing.encode(data))]
        except ScriptError as error:  # e.g. a reply of the wrong size for Fixed(n)
            problem = ScriptError(f"{rule.describe()}: {error.diagnosis}")
            problem.__cause__ = error
            return self._fail(problem, record, at)

    def _check_reply(
        self,
        rule: Rule,
        name: str,
        record: ConnectionRecord,
        result: object,
        error: BaseException | None,
    ) -> bytes | Error | None:
        """The bytes a reply callable gave, or the problem it is."""
        if error is not None:
            problem = ReplyFailed(
                f"the reply callable {name} of {rule.describe()} raised "
                f"{type(error).__name__}: {error}",
                connection=record.id,
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
            connection=record.id,
        )
