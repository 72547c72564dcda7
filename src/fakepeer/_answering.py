"""Answering: an event's work on a connection, from bytes in to the actions out.

The :class:`~fakepeer._conversation.Conversation` turns each event that brings bytes (or
their end) into the work here, and drives it: every function that returns :data:`Steps` is a
generator that yields a :class:`~fakepeer._actions.Call` when it needs a reply callable's
outcome (see :meth:`Conversation.replied <fakepeer._conversation.Conversation.replied>`).

=========================  ==========================================================
function                   what it does
=========================  ==========================================================
``greet``                  the ``connect`` rules of a new connection
``received``               bytes arrived: framed into messages, or matched as a stream
``eof`` / ``lost``         the end: what is buffered is matched, the rest is incomplete
``take``                   a handler reads a message, or a number of raw bytes
``check_reply``, ``write`` what a reply callable gave, and writing it
``fail``, ``incomplete``   a connection fails (and is closed)
=========================  ==========================================================

A matched rule's steps (reply, send, wait, goto, close...) become actions here, its count and
the peer's state move on in the conversation's :class:`~fakepeer._rulebook.RuleBook`. Every
message goes through here once: the functions take the conversation's state as it is and
add no layer per message. No I/O, no clock, no lock.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import _explain
from ._actions import Action, Await, Call, Close, HalfClose, Hold, Wait, Write
from ._errors import (
    Error,
    FramingError,
    IncompleteMessage,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
)
from ._faults import on_connect
from ._matchers import NEED_MORE, Matched, Matcher
from ._script import After, Echo, Goto, Hang, Reply, Rule, Send
from ._state import ConnectionRecord, Phase, Transition
from ._transcript import show

if TYPE_CHECKING:
    from ._conversation import Conversation, Steps

__all__ = ["check_reply", "eof", "fail", "greet", "incomplete", "lost", "received", "take", "write"]


def greet(convo: Conversation, record: ConnectionRecord, at: float) -> Steps:
    """A client connected on ``record``: its ``connect`` rules, shaped by the faults."""
    actions: list[Action] = []
    for rule in record.script.connect_rules:
        if convo.rules.applies(rule, record):
            convo.rules.matched(rule)
            actions += yield from _steps(convo, rule, record, None, b"", at=at)
    if convo.faults:
        actions = convo.shaped(record, actions, at)
        actions.extend(on_connect(convo.faults, record.faults))  # type: ignore[arg-type]
    return actions


def received(convo: Conversation, record: ConnectionRecord, data: bytes, at: float) -> Steps:
    """``data`` arrived on ``record``: the messages it completes, answered."""
    buffer = record.buffer
    before = len(buffer)
    if not before:  # so far as is known before a reply callable runs (it may not return)
        record.since = at
    actions = yield from _receive(convo, record, data, at)
    return _received_end(convo, record, data=data, before=before, actions=actions, at=at)


def _received_end(
    convo: Conversation,
    record: ConnectionRecord,
    *,
    data: bytes,
    before: int,
    actions: list[Action],
    at: float,
) -> list[Action]:
    # Bytes left over: they came with data if the buffer was empty or a message was
    # cut off it (the bytes before the end of that message were all taken).
    buffer = record.buffer
    if buffer and (not before or len(buffer) < before + len(data)):
        record.since = at
    return convo.faulty(record, actions, at)


def received_framed(
    convo: Conversation, record: ConnectionRecord, data: bytes, at: float
) -> list[Action] | Steps:
    """:func:`received` for a framed connection the script answers, without a generator
    while no reply callable comes up (the hot path of every message): the actions, or,
    from the first rule with a reply callable on, the work that goes on (to drive)."""
    buffer = record.buffer
    before = len(buffer)
    if not before:
        record.since = at
    try:
        messages = convo.decoder(record).feed(buffer, data)
    except FramingError as problem:
        failed = _framing_failed(convo, problem, record, at)
        return _received_end(convo, record, data=data, before=before, actions=failed, at=at)
    actions: list[Action] = []
    for index, message in enumerate(messages):
        if not record.answering:
            _unanswered(convo, record, message, at)
            continue
        found = _find(convo, record, message, at)
        if isinstance(found, list):  # no rule: the failure's actions
            actions += found
            continue
        rule, value = found
        done, step = _plain_steps(convo, rule, record, value=value, message=message, at=at, start=0)
        if step >= 0:  # a reply callable: the rest is work to drive
            rest = messages[index + 1 :]
            return _go_on(
                convo,
                record,
                data=data,
                before=before,
                actions=actions,
                match=(rule, value, message),
                done=done,
                step=step,
                rest=rest,
                at=at,
            )
        actions += _rule_faults(convo, rule, record, done, at) if rule.faults else done
    if len(buffer) > convo.limit and not record.failed:
        actions += _over_limit(convo, record, at)
    return _received_end(convo, record, data=data, before=before, actions=actions, at=at)


def _go_on(
    convo: Conversation,
    record: ConnectionRecord,
    *,
    data: bytes,
    before: int,
    actions: list[Action],
    match: tuple[Rule, object, bytes],
    done: list[Action],
    step: int,
    rest: list[bytes],
    at: float,
) -> Steps:
    """:func:`received_framed` from the rule whose ``step`` is a reply callable on."""
    rule, value, message = match
    done = yield from _steps(convo, rule, record, value, message, at=at, start=step, done=done)
    actions += _rule_faults(convo, rule, record, done, at)
    actions += yield from _dispatch_all(convo, record, rest, at)
    if len(record.buffer) > convo.limit and not record.failed:
        actions += _over_limit(convo, record, at)
    return _received_end(convo, record, data=data, before=before, actions=actions, at=at)


def _receive(convo: Conversation, record: ConnectionRecord, data: bytes, at: float) -> Steps:
    if not record.answering:
        _unanswered(convo, record, data, at)
        return []
    buffer = record.buffer
    if convo.stream and not record.handled and not buffer:
        convo.event(at, record, "received", data)
        return (yield from _match_fresh(convo, record, data, at))
    if convo.stream or record.handled:
        buffer += data
        convo.event(at, record, "received", data)
        if record.handled:  # the handler reads it with receive() or receive_exactly()
            if len(buffer) > convo.limit:  # max_length holds as bytes arrive, in every mode
                return _check_handled(convo, record, at)
            return []
        return (yield from _match_stream(convo, record, at))
    try:
        messages = convo.decoder(record).feed(buffer, data)
    except FramingError as problem:
        return _framing_failed(convo, problem, record, at)
    actions = yield from _dispatch_all(convo, record, messages, at)
    if len(buffer) > convo.limit and not record.failed:
        actions += _over_limit(convo, record, at)
    return actions


def _dispatch_all(
    convo: Conversation, record: ConnectionRecord, messages: Iterable[bytes], at: float
) -> Steps:
    actions: list[Action] = []
    for message in messages:
        if not record.answering:
            _unanswered(convo, record, message, at)
            continue
        actions += yield from _dispatch(convo, record, message, at)
    return actions


def eof(convo: Conversation, record: ConnectionRecord, at: float) -> Steps:
    """The client shut down its side of ``record``: finish its buffer, then close."""
    convo.event(at, record, "eof")
    if record.handled:
        return []  # the handler sees EOF in receive(), and ends the connection itself
    actions: list[Action] = []
    if record.answering:
        actions = yield from _finish_buffer(convo, record, at)
        if record.failed:  # _fail already closes
            return convo.faulty(record, actions, at)
    actions.append(Close())
    return convo.faulty(record, actions, at)


def lost(convo: Conversation, record: ConnectionRecord, at: float, reason: str | None) -> Steps:
    """``record`` is gone: what its buffer holds is still matched, then it ends."""
    if record.answering and not record.handled:
        how = "ended" if reason is None else f"was lost ({reason})"
        yield from _finish_buffer(convo, record, at, how)
    record.move(Transition.END)
    convo.event(at, record, "lost", note=reason or "closed by the client")
    return []


def take(
    convo: Conversation, record: ConnectionRecord, count: int | None, eof: bool, at: float
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
            framed.extend(convo.decoder(record).take(buffer, eof))
        except FramingError as problem:
            _framing_failed(convo, problem, record, at)
            return convo.problem_of(record)
    message: bytes | None = None
    if count is None and framed:
        message = framed.pop(0)
    elif count is not None and framed:
        raise ScriptError(
            "receive_exactly() after receive() left framed messages unread; receive() them first"
        )
    elif count is not None and len(buffer) >= count:
        message = bytes(buffer[:count])
        del buffer[:count]
        convo.decoder(record).reset()  # bytes went from the front behind its back
    elif eof:
        if buffer:  # a message cut short: the client's fault
            incomplete(convo, record, "ended", at)
            return convo.problem_of(record)
        return EOFError("the client closed the connection")
    if message is None:
        return None
    record.received.append(message)
    convo.received.append(message)
    convo.event(at, record, "handled", message, "(by the handler)")
    return message


def _unanswered(convo: Conversation, record: ConnectionRecord, data: bytes, at: float) -> None:
    why = record.why_not_answering()
    convo.event(at, record, "received", data, f"(not answered: connection {why})")
    record.received.append(data)
    convo.received.append(data)


def _matched(
    convo: Conversation,
    rule: Rule,
    record: ConnectionRecord,
    message: bytes,
    value: object,
    *,
    at: float,
) -> Steps:
    """The steps of ``rule``, which matched ``message`` (recorded already), as actions."""
    actions = yield from _steps(convo, rule, record, value, message, at=at)
    return _rule_faults(convo, rule, record, actions, at)


def _record_match(
    convo: Conversation, rule: Rule, record: ConnectionRecord, message: bytes, at: float
) -> None:
    counts = convo.rules.counts
    counts[rule] = counts.get(rule, 0) + 1
    note = f"-> {rule.describe()}"
    if rule.kind == "otherwise":
        convo.unmatched.append((record.id, message))
        note += " (unmatched)"
    convo.event(at, record, "matched" if convo.stream else "received", message, note)


def _rule_faults(
    convo: Conversation, rule: Rule, record: ConnectionRecord, actions: list[Action], at: float
) -> list[Action]:
    if rule.faults and record.faults is not None:  # this rule's own network faults
        return convo.shaped(record, actions, at, rule.faults)
    return actions


def _dispatch(convo: Conversation, record: ConnectionRecord, message: bytes, at: float) -> Steps:
    found = _find(convo, record, message, at)
    if isinstance(found, list):  # no rule: the failure's actions
        return found
    rule, value = found
    return (yield from _matched(convo, rule, record, message, value, at=at))


def _find(
    convo: Conversation, record: ConnectionRecord, message: bytes, at: float
) -> tuple[Rule, object] | list[Action]:
    """The rule that takes ``message`` (framed) and its match, recorded as matched; if none
    does, the failure (its actions). The message is recorded as received either way."""
    record.received.append(message)
    convo.received.append(message)
    script = record.script
    book = convo.rules
    head = book.head(script)
    applies = book.applies
    # The hot path of every message: no list of candidates, the head first.
    for rules in ((head,) if head is not None else (), script.permanent, script.fallbacks):
        for rule in rules:
            if not applies(rule, record):
                continue
            outcome = rule.matcher.match(message, stream=False)  # type: ignore[union-attr]
            if outcome is not None and outcome is not NEED_MORE:
                _record_match(convo, rule, record, message, at)
                return rule, outcome.value  # type: ignore[union-attr]
    convo.event(at, record, "unexpected", message)
    return fail(convo, _unexpected(convo, record, message), record, at)


def _match_fresh(convo: Conversation, record: ConnectionRecord, data: bytes, at: float) -> Steps:
    """Stream matching when nothing was buffered before ``data``: the rules see ``data``
    itself, and what a rule consumes is not copied (the common case of a bulk transfer:
    ``always(ANY)`` takes each segment as it is). The same outcome as buffering ``data``
    and calling :meth:`_match_stream`."""
    waiting: list[Matcher] = []
    for rule in convo.rules.candidates(record):
        matcher = rule.matcher
        assert matcher is not None
        outcome = matcher.match(data, stream=True)
        if isinstance(outcome, Matched) and outcome.consumed > 0:
            consumed = outcome.consumed
            message = data if consumed == len(data) else data[:consumed]
            record.received.append(message)
            convo.received.append(message)
            _record_match(convo, rule, record, message, at)
            actions = yield from _matched(convo, rule, record, message, outcome.value, at=at)
            if consumed < len(data):
                record.buffer += data[consumed:]
                actions += yield from _match_stream(convo, record, at)
            return actions
        if outcome is NEED_MORE:
            waiting.append(matcher)
    if not waiting:
        return fail(convo, _unexpected(convo, record, data), record, at)
    record.buffer += data
    scanned = record.scanned
    if scanned is None:
        scanned = record.scanned = {}
    for matcher in waiting:  # they waited on all of data: they go on from there
        if matcher.incremental:
            scanned[matcher] = len(data)
    if len(data) > convo.limit:
        scanned.clear()
        return _over_limit(convo, record, at)
    return []


def _match_stream(convo: Conversation, record: ConnectionRecord, at: float) -> Steps:
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
        for rule in convo.rules.candidates(record):
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
                convo.received.append(message)
                _record_match(convo, rule, record, message, at)
                actions += yield from _matched(convo, rule, record, message, outcome.value, at=at)
                break
            if outcome is NEED_MORE:
                waiting = True
                if matcher.incremental:
                    scanned[matcher] = len(buffer)
        else:
            if waiting:
                if len(buffer) > convo.limit:
                    scanned.clear()
                    actions.extend(_over_limit(convo, record, at))
                return actions
            data = bytes(buffer)
            buffer.clear()
            scanned.clear()
            actions.extend(fail(convo, _unexpected(convo, record, data), record, at))
            return actions
    return actions


def _finish_buffer(
    convo: Conversation, record: ConnectionRecord, at: float, how: str = "ended"
) -> Steps:
    buffer = record.buffer
    if not buffer:
        return []
    actions: list[Action] = []
    if not convo.stream:
        try:
            messages = convo.decoder(record).take(buffer, True)
        except FramingError as problem:
            return _framing_failed(convo, problem, record, at)
        for message in messages:
            if not record.answering:
                return actions
            actions += yield from _dispatch(convo, record, message, at)
    if buffer:
        actions.extend(incomplete(convo, record, how, at))
    return actions


def incomplete(convo: Conversation, record: ConnectionRecord, how: str, at: float) -> list[Action]:
    """Fail ``record`` for the bytes left in its buffer: they form no whole message."""
    buffer = record.buffer
    leftover = bytes(buffer)
    buffer.clear()
    if not (convo.stream or record.handled):  # else recorded as they arrived
        convo.event(at, record, "received", leftover, "(incomplete)")
    head = convo.rules.head(record.script)
    expected = f"\n  expected:  {head.describe()}" if head else ""
    problem = IncompleteMessage(
        f"connection #{record.id} {how} in the middle of a message "
        f"({convo.framing!r})\n  leftover:  {show(leftover)}{expected}",
        connection=record.id,
        leftover=leftover,
    )
    return fail(convo, problem, record, at)


def _over_limit(convo: Conversation, record: ConnectionRecord, at: float) -> list[Action]:
    buffer = record.buffer
    problem = FramingError(
        f"connection #{record.id}: the client sent {len(buffer)} bytes without "
        f"completing a message, over the limit of {convo.limit} bytes of {convo.framing!r}"
        f"\n  buffered:  {show(bytes(buffer[:64]))}",
        connection=record.id,
    )
    buffer.clear()
    return fail(convo, problem, record, at)


def _check_handled(convo: Conversation, record: ConnectionRecord, at: float) -> list[Action]:
    """A handler's buffer went over the limit: a FramingError if the message it holds is
    too long (the framing says), else nothing (the handler is behind: the runtime stops
    reading until it catches up)."""
    try:
        convo.framing.decode(bytes(record.buffer), False)
    except FramingError as problem:
        return _framing_failed(convo, problem, record, at)
    if convo.stream:  # Raw: no message ever ends, the limit is on what waits unread
        return _over_limit(convo, record, at)
    return []


def _framing_failed(
    convo: Conversation, problem: FramingError, record: ConnectionRecord, at: float
) -> list[Action]:
    """The framing refused ``record``'s bytes: the problem, said for this connection (a
    copy: the framing's own error stays as it was raised)."""
    said = problem.copy(f"connection #{record.id}: {problem.diagnosis}", connection=record.id)
    record.buffer.clear()
    return fail(convo, said, record, at)


def _unexpected(convo: Conversation, record: ConnectionRecord, data: bytes) -> Error:
    script = record.script
    met = len(script.expectations)
    return _explain.unexpected(
        record,
        data,
        stream=convo.stream,
        counts=convo.rules.count,
        peer_state=convo.rules.peer_state,
        head=convo.rules.head(script),
        met=met,
    )


def fail(convo: Conversation, problem: Error, record: ConnectionRecord, at: float) -> list[Action]:
    """``record`` fails for ``problem`` (see :meth:`Conversation.fail`): it closes."""
    # Framed, the data's "unexpected" event says it already; a stream's data was
    # "received" before: the error's first line says what went wrong.
    convo.fail(record, problem, at, note=convo.stream or not isinstance(problem, UnexpectedData))
    return [Close()]


def _steps(
    convo: Conversation,
    rule: Rule,
    record: ConnectionRecord,
    value: object,
    message: bytes,
    *,
    at: float,
    start: int = 0,
    done: list[Action] | None = None,
) -> Steps:
    """``rule``'s steps from ``start`` on (``done``: the actions of those before), once it
    matched ``message`` (its match: ``value``), as actions; a reply callable's outcome is
    asked for with a ``Call``."""
    actions: list[Action] = [] if done is None else done
    more, index = _plain_steps(
        convo, rule, record, value=value, message=message, at=at, start=start
    )
    actions += more
    while index >= 0:
        step = rule.steps[index]
        assert isinstance(step, Reply)
        assert step.function is not None
        name = getattr(step.function, "__qualname__", repr(step.function))
        data, error = yield Call(step.function, value, step.wants_connection)
        if error is None and inspect.isawaitable(data):
            actions.append(Await(data, rule, name))
        else:
            data = check_reply(rule, name, record, data, error)
            if isinstance(data, Error):
                actions.extend(fail(convo, data, record, at))
                return actions
            if data is not None:
                actions.extend(write(convo, rule, record, data, at))
                if record.failed:
                    return actions
        more, index = _plain_steps(
            convo, rule, record, value=value, message=message, at=at, start=index + 1
        )
        actions += more
    return actions


def _plain_steps(
    convo: Conversation,
    rule: Rule,
    record: ConnectionRecord,
    *,
    value: object,
    message: bytes,
    at: float,
    start: int,
) -> tuple[list[Action], int]:
    """``rule``'s steps from ``start`` on, as actions, up to the first reply callable: the
    actions, and the index of that step (-1: none, or the connection failed)."""
    actions: list[Action] = []
    steps = rule.steps
    for index in range(start, len(steps)):
        step = steps[index]
        if isinstance(step, Reply | Send | Echo):
            data: bytes | None
            if isinstance(step, Send):
                data = step.data
            elif isinstance(step, Echo):
                data = message
            elif step.function is None:
                data = step.data
            else:
                return actions, index
            if data is None:
                continue
            actions.extend(write(convo, rule, record, data, at))
            if record.failed:
                return actions, -1
        elif isinstance(step, After):
            actions.append(Wait(step.seconds))
        elif isinstance(step, Hang):
            actions.append(Hold())
            record.move(Transition.FINISH)
        elif isinstance(step, Goto):
            _goto(convo, step, record, at)
        else:
            actions.append(step)
            record.move(Transition.HALF_CLOSE if isinstance(step, HalfClose) else Transition.FINISH)
    return actions, -1


def _goto(convo: Conversation, step: Goto, record: ConnectionRecord, at: float) -> None:
    changes = []
    if step.connection is not None:
        changes.append(f"connection {record.state!r} -> {step.connection!r}")
        record.state = step.connection
    if step.peer is not None:
        changes.append(f"peer {convo.rules.peer_state!r} -> {step.peer!r}")
        convo.rules.peer_state = step.peer
    convo.event(at, record, "state", note=", ".join(changes))


def write(
    convo: Conversation, rule: Rule, record: ConnectionRecord, data: bytes, at: float
) -> list[Action]:
    """``rule`` writes ``data`` on ``record``: the framed bytes, or the problem it is."""
    if record.phase is Phase.HALF_CLOSED:
        problem = ScriptError(
            f"{rule.describe()} writes on connection #{record.id}, but an "
            "earlier rule half-closed it with .half_close(): the peer can no "
            f"longer write there (it would have sent {show(data)})"
        )
        return fail(convo, problem, record, at)
    try:
        return [Write(convo.framing.encode(data))]
    except ScriptError as error:  # e.g. a reply of the wrong size for Fixed(n)
        problem = ScriptError(f"{rule.describe()}: {error.diagnosis}")
        problem.__cause__ = error
        return fail(convo, problem, record, at)


def check_reply(
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
