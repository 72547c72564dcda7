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
==============  =======================================================================

The runtime reports what it did (:meth:`~Conversation.sent`, :meth:`~Conversation.closed`,
:meth:`~Conversation.held`) so the transcript shows when it really happened.

It keeps the books the verdict needs: which expectation comes next, which bytes nobody
expected (``problems``), and which expectations were never met (:meth:`unmet`). It does no I/O,
reads no clock and takes no lock; the runtime serialises calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

from ._errors import (
    ConversationError,
    Error,
    FramingError,
    IncompleteMessage,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
    UnmetExpectations,
)
from ._framing import Framing
from ._matchers import NEED_MORE, Matched, Matcher
from ._script import After, Close, HalfClose, Hang, Reply, Reset, Rule, Send, Step
from ._transcript import Event, Transcript, show

__all__ = [
    "Action",
    "Close",
    "Connection",
    "Conversation",
    "HalfClose",
    "Hold",
    "Reset",
    "Wait",
    "Write",
]

#: A client that sends more than this without completing a message fails the test, unless the
#: framing sets its own ``max_length``.
MAX_BUFFER: Final = 1 << 20


class Write(NamedTuple):
    """Write these (already framed) bytes."""

    data: bytes


class Wait(NamedTuple):
    """Wait before the next action of the connection."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Hold:
    """The connection hangs from now on: answer nothing more."""


Action: TypeAlias = Write | Wait | Close | HalfClose | Reset | Hold


class Connection:
    """One accepted connection, as the script sees it.

    ``id`` counts connections from 1 in order of arrival; ``client`` is the client's
    ``host:port``; ``received`` the messages it sent (for :class:`~fakepeer.Raw`, the byte runs
    that rules matched); ``open`` is false once either side closed it.
    """

    __slots__ = (
        "_transcript",
        "buffer",
        "client",
        "ended",
        "failed",
        "finishing",
        "held",
        "id",
        "received",
        "write_closed",
    )

    def __init__(self, id: int, client: str, transcript: Transcript) -> None:
        self.id = id
        self.client = client
        self.received: list[bytes] = []
        self.buffer = bytearray()
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

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return f"<Connection #{self.id} from {self.client} {state}, {len(self.received)} received>"


class Conversation:
    """The peer's state machine; see the module docstring for the event/action contract."""

    def __init__(self, framing: Framing, title: str = "fake peer") -> None:
        self.framing = framing
        self.stream = framing.streaming
        limit = getattr(framing, "max_length", None)
        self.limit: int = limit if isinstance(limit, int) and limit > 0 else MAX_BUFFER
        self.connect_rules: list[Rule] = []
        self.expectations: list[Rule] = []
        self.permanent: list[Rule] = []
        self.next = 0
        self.connections: list[Connection] = []
        self.received: list[bytes] = []
        self.problems: list[Error] = []
        self.transcript = Transcript(title)

    # -- the script --------------------------------------------------------------------------

    def add_rule(self, kind: str, matcher: Matcher | None, where: str) -> Rule:
        """Append a rule of ``kind`` (``connect``, ``expect``, ``always``) and return it."""
        rules = {
            "connect": self.connect_rules,
            "expect": self.expectations,
            "always": self.permanent,
        }[kind]
        rule = Rule(kind, matcher, len(rules) + 1, where)
        rules.append(rule)
        return rule

    def head(self) -> Rule | None:
        """The expectation the script waits for now, or None when all are met."""
        expectations = self.expectations
        while self.next < len(expectations) and expectations[self.next].exhausted:
            self.next += 1
        return expectations[self.next] if self.next < len(expectations) else None

    @property
    def done(self) -> bool:
        """True when every expectation was met."""
        return self.head() is None

    def unmet(self) -> list[Rule]:
        """Expectations not (fully) met yet, in script order."""
        return [rule for rule in self.expectations[self.next :] if not rule.exhausted]

    # -- events in ---------------------------------------------------------------------------

    def connect(self, client: str, at: float) -> tuple[Connection, list[Action]]:
        """A client connected: record it and return the greeting actions."""
        connection = Connection(len(self.connections) + 1, client, self.transcript)
        self.connections.append(connection)
        self._event(at, connection, "connected", note=f"from {client}")
        actions: list[Action] = []
        for rule in self.connect_rules:
            rule.count += 1
            actions.extend(self._steps(rule, connection, None, at))
        return connection, actions

    def receive(self, connection: Connection, data: bytes, at: float) -> list[Action]:
        """Bytes arrived on ``connection``; return what to do about them."""
        if not connection.answering:
            self._unanswered(connection, data, at)
            return []
        buffer = connection.buffer
        if self.stream:
            buffer += data
            self._event(at, connection, "received", data)
            return self._match_stream(connection, at)
        try:
            if buffer:
                buffer += data
                messages, consumed = self.framing.decode(bytes(buffer), False)
                if consumed:
                    del buffer[:consumed]
            else:  # the common case: nothing left over from before, decode what arrived
                messages, consumed = self.framing.decode(data, False)
                if consumed < len(data):
                    buffer += data[consumed:]
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
        self._event(at, connection, "eof")
        if connection.answering:
            actions = self._finish_buffer(connection, at)
            if connection.failed:  # _fail already closes
                return actions
        else:
            actions = []
        actions.append(Close())
        return actions

    def lost(self, connection: Connection, at: float, reason: str | None) -> None:
        """The connection is gone; ``reason`` is the error text, or None for a clean close."""
        if connection.ended:
            return
        if connection.answering:
            self._finish_buffer(connection, at)
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

    def held(self, connection: Connection, at: float) -> None:
        """The connection hangs from now on."""
        connection.held = True
        self._event(at, connection, "hanging", note="(answering nothing more)")

    # -- the verdict -------------------------------------------------------------------------

    def verdict(self) -> Error | None:
        """The first problem, or unmet expectations once the conversation is over, or None."""
        if self.problems:
            return self.problems[0]
        unmet = self.unmet()
        if not unmet:
            return None
        lines = []
        for rule in unmet:
            if rule.count:
                lines.append(f"{rule.describe()}: met {rule.count} of {rule.limit} times")
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

    # -- internals ---------------------------------------------------------------------------

    def _event(
        self, at: float, connection: Connection | None, kind: str, data: bytes = b"", note: str = ""
    ) -> None:
        self.transcript.add(Event(at, connection.id if connection else 0, kind, data, note))

    def _unanswered(self, connection: Connection, data: bytes, at: float) -> None:
        if connection.failed:
            why = "failed"
        elif connection.held:
            why = "hanging"
        elif connection.ended:
            why = "closed"
        else:
            why = "ending"
        self._event(at, connection, "received", data, f"(not answered: connection {why})")
        connection.received.append(data)
        self.received.append(data)

    def _candidates(self) -> list[Rule]:
        head = self.head()
        rules = [] if head is None else [head]
        rules.extend(rule for rule in self.permanent if not rule.exhausted)
        return rules

    def _dispatch(self, connection: Connection, message: bytes, at: float) -> list[Action]:
        connection.received.append(message)
        self.received.append(message)
        head = self.head()
        for rule in self.permanent if head is None else (head, *self.permanent):
            if rule.exhausted:
                continue
            assert rule.matcher is not None
            outcome = rule.matcher.match(message, stream=False)
            if outcome is not None and outcome is not NEED_MORE:
                assert isinstance(outcome, Matched)
                self._event(at, connection, "received", message, f"-> {rule.describe()}")
                rule.count += 1
                return self._steps(rule, connection, outcome.value, at)
        self._event(at, connection, "unexpected", message)
        return self._fail(self._unexpected(connection, message), connection, at)

    def _match_stream(self, connection: Connection, at: float) -> list[Action]:
        buffer = connection.buffer
        actions: list[Action] = []
        while buffer and connection.answering:
            data = bytes(buffer)
            waiting = False
            for rule in self._candidates():
                assert rule.matcher is not None
                outcome = rule.matcher.match(data, stream=True)
                if isinstance(outcome, Matched) and outcome.consumed > 0:
                    message = data[: outcome.consumed]
                    del buffer[: outcome.consumed]
                    connection.received.append(message)
                    self.received.append(message)
                    self._event(at, connection, "matched", message, f"-> {rule.describe()}")
                    rule.count += 1
                    actions.extend(self._steps(rule, connection, outcome.value, at))
                    break
                if outcome is NEED_MORE:
                    waiting = True
            else:
                if waiting:
                    if len(buffer) > self.limit:
                        actions.extend(self._over_limit(connection, at))
                    return actions
                buffer.clear()
                actions.extend(self._fail(self._unexpected(connection, data), connection, at))
                return actions
        return actions

    def _finish_buffer(self, connection: Connection, at: float) -> list[Action]:
        buffer = connection.buffer
        if not buffer:
            return []
        actions: list[Action] = []
        if not self.stream:
            try:
                messages, consumed = self.framing.decode(bytes(buffer), True)
            except FramingError as problem:
                return self._framing_failed(problem, connection, at)
            del buffer[:consumed]
            for message in messages:
                if not connection.answering:
                    return actions
                actions.extend(self._dispatch(connection, message, at))
        if buffer:
            leftover = bytes(buffer)
            buffer.clear()
            head = self.head()
            expected = f"\n  expected:  {head.describe()}" if head else ""
            actions.extend(
                self._fail(
                    IncompleteMessage(
                        f"connection #{connection.id} ended in the middle of a message "
                        f"({self.framing!r})\n  leftover:  {show(leftover)}{expected}",
                        connection=connection.id,
                        leftover=leftover,
                    ),
                    connection,
                    at,
                )
            )
        return actions

    def _unexpected(self, connection: Connection, data: bytes) -> UnexpectedData:
        head = self.head()
        lines = [f"connection #{connection.id} received data that no rule expected"]
        lines.append(f"  received:  {show(data)}")
        if head is not None:
            assert head.matcher is not None
            lines.append(f"  expected:  {head.describe()}")
            lines.append(f"             the data {head.matcher.explain(data)}")
        else:
            met = len(self.expectations)
            lines.append(
                "  expected:  nothing more"
                + (f" (all {met} expectation(s) were already met)" if met else "")
            )
        others = [rule for rule in self.permanent if not rule.exhausted]
        if others:
            lines.append("  also tried:")
            lines.extend(f"    {rule.describe()}" for rule in others)
        return UnexpectedData(
            "\n".join(lines),
            connection=connection.id,
            received=data,
            expected=head.describe() if head else None,
        )

    def _fail(self, problem: Error, connection: Connection, at: float) -> list[Action]:
        self.problems.append(problem)
        connection.failed = True
        if not isinstance(problem, UnexpectedData):  # its "unexpected" event says it already
            self._event(at, connection, "error", note=problem.diagnosis.splitlines()[0])
        return [Close()]

    def _steps(self, rule: Rule, connection: Connection, value: object, at: float) -> list[Action]:
        actions: list[Action] = []
        encode = self.framing.encode
        step: Step
        for step in rule.steps:
            if isinstance(step, Reply | Send):
                if isinstance(step, Send):
                    data: bytes | None = step.data
                elif step.function is None:
                    data = step.data
                else:
                    reply = self._call(step, rule, connection, value, at)
                    if isinstance(reply, ConversationError):
                        actions.extend(self._fail(reply, connection, at))
                        return actions
                    data = reply
                if data is None:
                    continue
                if connection.write_closed:
                    problem = ScriptError(
                        f"{rule.describe()} writes on connection #{connection.id}, but an "
                        "earlier rule half-closed it with .half_close(): the peer can no "
                        f"longer write there (it would have sent {show(data)})"
                    )
                    actions.extend(self._fail(problem, connection, at))
                    return actions
                actions.append(Write(encode(data)))
            elif isinstance(step, After):
                actions.append(Wait(step.seconds))
            elif isinstance(step, Hang):
                actions.append(Hold())
                connection.finishing = True
            else:
                actions.append(step)
                if isinstance(step, HalfClose):
                    connection.write_closed = True
                else:
                    connection.finishing = True
        return actions

    def _call(
        self, step: Reply, rule: Rule, connection: Connection, value: object, at: float
    ) -> bytes | ConversationError | None:
        assert step.function is not None
        name = getattr(step.function, "__qualname__", repr(step.function))
        try:
            if step.wants_connection:
                result = step.function(value, connection)
            else:
                result = step.function(value)
        except Exception as exc:
            problem = ReplyFailed(
                f"the reply callable {name} of {rule.describe()} raised "
                f"{type(exc).__name__}: {exc}",
                connection=connection.id,
            )
            problem.__cause__ = exc
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
