"""How a connection fails: the problem recorded, the connection closed, and the words.

Every way the core finds a client at fault (bytes no rule expected, a framing refused,
a message cut short, a buffer over its limit) ends here: the problem is recorded on the
conversation and the connection's record (its phase moves to ``FAILED``), and the actions
close it. The words come from :mod:`fakepeer._explain`. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _explain
from ._actions import Action, Close
from ._errors import Error, FramingError, IncompleteMessage, UnexpectedData
from ._show import show_value
from ._state import ConnectionRecord, Phase
from ._transcript import show

if TYPE_CHECKING:
    from ._conversation import Conversation

__all__ = [
    "before_handshake",
    "check_handled",
    "fail",
    "framing_failed",
    "incomplete",
    "over_limit",
    "unanswered",
    "unexpected",
]


def unanswered(convo: Conversation, record: ConnectionRecord, data: bytes, at: float) -> None:
    """``data`` came on ``record`` after it stopped answering: recorded, not answered (and
    a problem while it upgrades to TLS: the runtime closes it instead of the handshake)."""
    if record.phase is Phase.UPGRADING:
        before_handshake(convo, record, data, at)
        return
    why = record.why_not_answering()
    convo.event(at, record, "received", data, f"(not answered: connection {why})")
    record.received.append(data)
    convo.received.append(data)
    if convo.keeping is not None:
        convo.keeping.add(record, data)


def before_handshake(
    convo: Conversation, record: ConnectionRecord, data: bytes, at: float
) -> list[Action]:
    """``record`` fails for ``data``, sent in plain text after the message that started TLS
    and before the handshake (``.start_tls()``): the peer closes it, no handshake."""
    convo.event(at, record, "unexpected", data, "(plain text before the TLS handshake)")
    record.received.append(data)
    convo.received.append(data)
    if convo.keeping is not None:
        convo.keeping.add(record, data)
    problem = UnexpectedData(
        f"connection #{record.id}: the client sent {show(data)} in plain text after the "
        "message that started TLS (.start_tls()), before the TLS handshake; a client must "
        "wait for the reply and then start the handshake (bytes sent before it could be "
        "injected by anyone on the path: RFC 3207 section 6 says a server must discard them)",
        connection=record.id,
        received=data,
        expected="the TLS handshake",
    )
    convo.fail(record, problem, at, note=True)
    return [Close()]


def incomplete(convo: Conversation, record: ConnectionRecord, how: str, at: float) -> list[Action]:
    """Fail ``record`` for the bytes left in its buffer: they form no whole message."""
    buffer = record.buffer
    leftover = bytes(buffer)
    buffer.clear()
    if not (convo.stream or record.handled):  # else recorded as they arrived
        convo.event(at, record, "received", leftover, "(incomplete)")
    head = convo.rules.head(record.script)
    expected = f"\n  expected:  {head.describe()}" if head else ""
    if head is not None and convo.stream:  # with Raw framing it judged these very bytes
        book = convo.rules
        why = _explain.why_not(
            head,
            record,
            leftover,
            stream=True,
            count=book.count(head),
            peer_state=book.peer_state,
            head=head,
        )
        expected += f"\n             the data {why}"
    hints = _explain.tls_hint(leftover) or _explain.line_hint(
        leftover, record.script.rules(), stream=convo.stream
    )
    problem = IncompleteMessage(
        f"connection #{record.id} {how} in the middle of a message "
        f"({convo.framing!r})\n  leftover:  {show_value(leftover, _explain.VALUE_INDENT)}"
        f"{expected}{hints}",
        connection=record.id,
        leftover=leftover,
    )
    return fail(convo, problem, record, at)


def over_limit(convo: Conversation, record: ConnectionRecord, at: float) -> list[Action]:
    """``record`` holds more than the framing's limit without a whole message: it fails."""
    buffer = record.buffer
    problem = FramingError(
        f"connection #{record.id}: the client sent {len(buffer)} bytes without "
        f"completing a message, over the limit of {convo.limit} bytes of {convo.framing!r}"
        f"\n  buffered:  {show_value(bytes(buffer[:64]), _explain.VALUE_INDENT)}",
        connection=record.id,
    )
    buffer.clear()
    return fail(convo, problem, record, at)


def check_handled(convo: Conversation, record: ConnectionRecord, at: float) -> list[Action]:
    """A handler's buffer went over the limit: a FramingError if the message it holds is
    too long (the framing says), else nothing (the handler is behind: the runtime stops
    reading until it catches up)."""
    try:
        convo.framing.decode(bytes(record.buffer), False)
    except FramingError as problem:
        return framing_failed(convo, problem, record, at)
    if convo.stream:  # Raw: no message ever ends, the limit is on what waits unread
        return over_limit(convo, record, at)
    return []


def framing_failed(
    convo: Conversation, problem: FramingError, record: ConnectionRecord, at: float
) -> list[Action]:
    """The framing refused ``record``'s bytes: the problem, said for this connection (a
    copy: the framing's own error stays as it was raised)."""
    said = problem.copy(f"connection #{record.id}: {problem.diagnosis}", connection=record.id)
    record.buffer.clear()
    return fail(convo, said, record, at)


def unexpected(convo: Conversation, record: ConnectionRecord, data: bytes) -> Error:
    """The failure for ``data``, which no rule of ``record``'s script took (its words:
    :func:`fakepeer._explain.unexpected`)."""
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
        peer=convo.script,
        own=tuple(sorted(convo.scripts)),
    )


def fail(convo: Conversation, problem: Error, record: ConnectionRecord, at: float) -> list[Action]:
    """``record`` fails for ``problem`` (see :meth:`Conversation.fail`): it closes."""
    # Framed, the data's "unexpected" event says it already; a stream's data was
    # "received" before: the error's first line says what went wrong.
    convo.fail(record, problem, at, note=convo.stream or not isinstance(problem, UnexpectedData))
    return [Close()]
