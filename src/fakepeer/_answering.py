"""Answering: an event's work on a connection, from bytes in to the actions out.

The :class:`~fakepeer._conversation.Conversation` turns each event that brings bytes (or
their end) into the work here, and drives it: every function that returns :data:`Steps` is a
generator that yields a :class:`~fakepeer._actions.Call` when it needs a reply callable's
outcome (see :meth:`Conversation.replied <fakepeer._conversation.Conversation.replied>`).

=========================  ==========================================================
function                   what it does
=========================  ==========================================================
``greet``                  the ``connect`` rules of a new connection
``received_framed``        bytes arrived on a framed connection: the hot path, plain
                           until a reply callable comes up
``received``               bytes arrived: framed into messages, or matched as a stream
``eof`` / ``lost``         the end: what is buffered is matched, the rest is incomplete
``take``                   a handler reads a message, or a number of raw bytes
=========================  ==========================================================

A matched rule's count moves on in the conversation's :class:`~fakepeer._rulebook.RuleBook`;
its steps become actions in :mod:`fakepeer._replying`; a connection fails in
:mod:`fakepeer._failing`. Every message goes through here once: the functions take the
conversation's state as it is and add no layer per message. No I/O, no clock, no lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import _failing, _replying
from ._actions import Action, Close
from ._errors import (
    FramingError,
    ScriptError,
)
from ._faults import on_connect
from ._faultschedule import faults_of
from ._matchers import NEED_MORE, Matched, Matcher
from ._script import Rule
from ._state import ConnectionRecord, Phase, Transition

if TYPE_CHECKING:
    from ._conversation import Conversation, Steps

_ANSWERING = Phase.ANSWERING
_HALF_CLOSED = Phase.HALF_CLOSED

__all__ = ["eof", "greet", "lost", "received", "received_framed", "take"]


def greet(convo: Conversation, record: ConnectionRecord, at: float) -> Steps:
    """A client connected on ``record``: its ``connect`` rules, shaped by the faults."""
    actions: list[Action] = []
    for rule in record.script.greeting:
        if convo.rules.applies(rule, record):
            convo.rules.matched(rule)
            actions += yield from _replying.steps(convo, rule, record, None, b"", at=at)
    faults = faults_of(convo, record)
    if faults:
        actions = convo.shaped(record, actions, at)
        actions.extend(on_connect(faults, record.faults))  # type: ignore[arg-type]
    return actions


def received(convo: Conversation, record: ConnectionRecord, data: bytes, at: float) -> Steps:
    """``data`` arrived on ``record``, a stream (:class:`~fakepeer.Raw`), a handler's
    connection or one no longer answered: matched, buffered or recorded. A framed connection
    the script answers takes :func:`received_framed`."""
    buffer = record.buffer
    before = len(buffer)
    if not before:  # so far as is known before a reply callable runs (it may not return)
        record.since = at
    actions = yield from _receive(convo, record, data, at)
    return _received_end(convo, record, data, before, actions, at)


def _received_end(  # noqa: PLR0917 - positional: the hot path of every segment
    convo: Conversation,
    record: ConnectionRecord,
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
    if convo.datagrams:  # one datagram, one message (UDP): no decoder, nothing buffered
        messages = [data]
    else:
        try:
            messages = convo.decoder(record).feed(buffer, data)
        except FramingError as problem:
            failed = _failing.framing_failed(convo, problem, record, at)
            return _received_end(convo, record, data, before, failed, at)
    actions: list[Action] = []
    for index, message in enumerate(messages):
        phase = record.phase  # answering? (by identity: the hot path)
        if phase is not _ANSWERING and phase is not _HALF_CLOSED:
            _failing.unanswered(convo, record, message, at)
            continue
        found = _find(convo, record, message, at)
        if isinstance(found, list):  # no rule: the failure's actions
            actions += found
            continue
        rule, value = found
        done, step = _replying.plain_steps(convo, rule, record, value, message, at, 0)
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
    left = len(buffer)
    if left:
        if left > convo.limit and not record.failed:
            actions += _failing.over_limit(convo, record, at)
        if buffer and (not before or len(buffer) < before + len(data)):
            record.since = at  # (as _received_end says)
    return convo.faulty(record, actions, at) if actions else actions


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
    done = yield from _replying.steps(
        convo, rule, record, value, message, at=at, start=step, done=done
    )
    actions += _rule_faults(convo, rule, record, done, at)
    actions += yield from _dispatch_all(convo, record, rest, at)
    if len(record.buffer) > convo.limit and not record.failed:
        actions += _failing.over_limit(convo, record, at)
    return _received_end(convo, record, data, before, actions, at)


def _receive(convo: Conversation, record: ConnectionRecord, data: bytes, at: float) -> Steps:
    if not record.answering:
        _failing.unanswered(convo, record, data, at)
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
                return _failing.check_handled(convo, record, at)
            return []
        return (yield from _match_stream(convo, record, at))
    # A framed connection the script answers takes received_framed, never this way.
    raise AssertionError(f"connection #{record.id}: framed bytes on the stream path")


def _dispatch_all(
    convo: Conversation, record: ConnectionRecord, messages: Iterable[bytes], at: float
) -> Steps:
    actions: list[Action] = []
    for message in messages:
        if not record.answering:
            _failing.unanswered(convo, record, message, at)
            continue
        actions += yield from _dispatch(convo, record, message, at)
    return actions


def eof(convo: Conversation, record: ConnectionRecord, at: float) -> Steps:
    """The client shut down its side of ``record``: finish its buffer, then close. Nothing
    once the peer ended it (a TLS transport reads the client's close_notify or FIN after the
    peer's own close)."""
    if record.ended:
        return []
    record.end("client", "EOF")
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
    record.end("client", reason or "closed")
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
            _failing.framing_failed(convo, problem, record, at)
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
            _failing.incomplete(convo, record, "ended", at)
            return convo.problem_of(record)
        return EOFError("the client closed the connection")
    if message is None:
        return None
    record.received.append(message)
    convo.received.append(message)
    if convo.keeping is not None:
        convo.keeping.add(record, message)
    convo.event(at, record, "handled", message, "(by the handler)")
    return message


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
    actions = yield from _replying.steps(convo, rule, record, value, message, at=at)
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
    if convo.keeping is not None:
        convo.keeping.add(record, message)
    script = record.script
    book = convo.rules
    head = book.head(script)
    applies = book.applies
    # The hot path of every message: no list of candidates, the head first.
    for rules in (
        (head,) if head is not None else (),
        script.tried_permanent,
        script.tried_fallbacks,
    ):
        for rule in rules:
            if not applies(rule, record):
                continue
            outcome = rule.matcher.match(message, stream=False)  # type: ignore[union-attr]
            if outcome is not None and outcome is not NEED_MORE:
                counts = book.counts
                counts[rule] = counts.get(rule, 0) + 1
                if rule.kind == "otherwise":
                    convo.unmatched.append((record.id, message))
                    note = f"-> {rule.describe()} (unmatched)"
                else:
                    note = f"-> {rule.describe()}"
                convo.event(at, record, "received", message, note)
                return rule, outcome.value  # type: ignore[union-attr]
    convo.event(at, record, "unexpected", message)
    return _failing.fail(convo, _failing.unexpected(convo, record, message), record, at)


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
            if convo.keeping is not None:
                convo.keeping.add(record, message)
            _record_match(convo, rule, record, message, at)
            actions = yield from _matched(convo, rule, record, message, outcome.value, at=at)
            if consumed < len(data):
                record.buffer += data[consumed:]
                actions += yield from _match_stream(convo, record, at)
            return actions
        if outcome is NEED_MORE:
            waiting.append(matcher)
    if not waiting:
        return _failing.fail(convo, _failing.unexpected(convo, record, data), record, at)
    record.buffer += data
    scanned = record.scanned
    if scanned is None:
        scanned = record.scanned = {}
    for matcher in waiting:  # they waited on all of data: they go on from there
        if matcher.incremental:
            scanned[matcher] = len(data)
    if len(data) > convo.limit:
        scanned.clear()
        return _failing.over_limit(convo, record, at)
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
                if convo.keeping is not None:
                    convo.keeping.add(record, message)
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
                    actions.extend(_failing.over_limit(convo, record, at))
                return actions
            data = bytes(buffer)
            buffer.clear()
            scanned.clear()
            actions.extend(
                _failing.fail(convo, _failing.unexpected(convo, record, data), record, at)
            )
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
            return _failing.framing_failed(convo, problem, record, at)
        for message in messages:
            if not record.answering:
                return actions
            actions += yield from _dispatch(convo, record, message, at)
    if buffer:
        actions.extend(_failing.incomplete(convo, record, how, at))
    return actions
