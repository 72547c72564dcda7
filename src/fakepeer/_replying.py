"""Replying: a matched rule's steps, turned into actions.

A reply, a send or an echo becomes a framed ``Write``; ``.after()`` a ``Wait``; ``.close()``,
``.half_close()``, ``.reset()``, ``.hang()`` and ``.start_tls()`` themselves (and a move of
the connection's phase); ``.goto()`` a change of state. A reply callable is user code, never
called here: the work stops at a :class:`~fakepeer._actions.Call` and goes on with its outcome
(:func:`steps` is a generator from there on; :func:`plain_steps` is the path of every
step before). Pure: no I/O, no clock.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from . import _failing
from ._actions import Action, Await, Call, HalfClose, Hold, StartTLS, Wait, Write
from ._errors import Error, ReplyFailed, ScriptError, UpstreamError
from ._script import After, Echo, Goto, Hang, Reply, Rule, Send
from ._state import ConnectionRecord, Phase, Transition
from ._transcript import show

if TYPE_CHECKING:
    from ._conversation import Conversation, Steps

__all__ = ["check_reply", "plain_steps", "steps", "write"]

_HALF_CLOSED = Phase.HALF_CLOSED
#: The steps that write (a tuple: ``isinstance`` with a ``|`` union builds the union each time).
_WRITING = (Reply, Send, Echo)
#: Makes a named tuple (an action) from its fields, a third of the time its ``__new__`` takes.
_tuple = tuple.__new__


def steps(
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
    more, index = plain_steps(convo, rule, record, value, message, at, start)
    actions += more
    while index >= 0:
        step = rule.steps[index]
        assert isinstance(step, Reply)
        assert step.function is not None
        name = getattr(step.function, "__qualname__", repr(step.function))
        data, error = yield Call(step.function, value, step.wants_connection)
        if error is None and inspect.isawaitable(data):
            actions.append(Await(data, rule, name, record.phase is not _HALF_CLOSED))
        else:
            data = check_reply(rule, name, record, data, error)
            if isinstance(data, Error):
                actions.extend(_failing.fail(convo, data, record, at))
                return actions
            if data is not None:
                actions.extend(write(convo, rule, record, data, at))
                if record.failed:
                    return actions
        more, index = plain_steps(convo, rule, record, value, message, at, index + 1)
        actions += more
    return actions


def plain_steps(  # noqa: PLR0917 - positional: the hot path of every message
    convo: Conversation,
    rule: Rule,
    record: ConnectionRecord,
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
        if isinstance(step, _WRITING):
            data: bytes | None
            if isinstance(step, Reply):  # the most common first
                if step.function is not None:
                    return actions, index
                data = step.data
            elif isinstance(step, Send):
                data = step.data
            else:  # Echo
                data = message
            if data is None:
                continue
            actions.extend(write(convo, rule, record, data, at))
            if record.problem is not None:  # failed (the hot path: no property)
                return actions, -1
        elif isinstance(step, After):
            actions.append(Wait(step.seconds))
        elif isinstance(step, Hang):
            actions.append(Hold())
            record.move(Transition.FINISH)
        elif isinstance(step, Goto):
            _goto(convo, step, record, at)
        elif isinstance(step, StartTLS):
            actions.append(step)
            record.move(Transition.UPGRADE)  # plain text from the client is an error now
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
    convo: Conversation,
    rule: Rule,
    record: ConnectionRecord,
    data: bytes,
    at: float,
    *,
    writable: bool = False,
) -> list[Action]:
    """``rule`` writes ``data`` on ``record``: the framed bytes, or the problem it is
    (``writable``: the write was due before a half-close, whatever the phase now)."""
    if record.phase is _HALF_CLOSED and not writable:
        problem = ScriptError(
            f"{rule.describe()} writes on connection #{record.id}, but an "
            "earlier rule half-closed it with .half_close(): the peer can no "
            f"longer write there (it would have sent {show(data)})"
        )
        return _failing.fail(convo, problem, record, at)
    try:
        return [
            _tuple(Write, (convo.reply_framing.encode(data),))
        ]  # Write(...), without its __new__
    except ScriptError as error:  # e.g. a reply of the wrong size for Fixed(n)
        problem = ScriptError(f"{rule.describe()}: {error.diagnosis}")
        problem.__cause__ = error
        return _failing.fail(convo, problem, record, at)


def check_reply(
    rule: Rule,
    name: str,
    record: ConnectionRecord,
    result: object,
    error: BaseException | None,
) -> bytes | Error | None:
    """The bytes a reply callable gave, or the problem it is."""
    if isinstance(error, UpstreamError):  # a server the callable asked failed: it says which
        return error
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
