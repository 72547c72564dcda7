"""fakepeer's exceptions, split by whose fault it is.

::

    Error                              anything fakepeer raises on purpose
    ├── ScriptError (ValueError)       the test's script is wrong; raised where it is written
    └── ConversationError              the client under test misbehaved (an AssertionError,
        │   (AssertionError)           so pytest reports it as a test failure)
        ├── UnexpectedData             bytes arrived that no rule expected
        ├── FramingError               the bytes break the framing (too long, bad prefix)
        ├── IncompleteMessage          the connection ended in the middle of a message
        ├── UnmetExpectations          the conversation ended before every ``expect`` was met
        ├── ReplyFailed                a reply callable of the script raised
        ├── HandlerFailed              a connection handler raised
        ├── ClientNotReading           pushes to a client that does not read went over the
        │                              send buffer limit
        ├── HubBlocked                 code of the test's script blocked the hub thread, so
        │                              the peer could not stop in time
        ├── UpstreamError              a proxy could not reach its upstream server, or lost it
        └── WaitTimeout                a wait for the client (connections, script done) ran out
    LoopBlocked (AssertionError)       the loop watchdog: code of the test blocked an event
                                       loop (its own, one on another thread, or the hub's)
    TaskDied (AssertionError)          a task or loop callback raised and nobody saw it

Every :class:`ConversationError` carries the transcript of the conversation as it stood when
the error was raised, rendered after the diagnosis in ``str(error)``.

Errors are never changed once raised: what the test sees is a copy made for the report
(:meth:`Error.reported`), so a peer's record of its problems stays as it was found, however
often it is reported.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = [
    "ClientNotReading",
    "ConversationError",
    "Error",
    "FramingError",
    "HandlerFailed",
    "HubBlocked",
    "IncompleteMessage",
    "LoopBlocked",
    "ReplyFailed",
    "ScriptError",
    "TaskDied",
    "UnexpectedData",
    "UnmetExpectations",
    "UpstreamError",
    "WaitTimeout",
]


_E = TypeVar("_E", bound="Error")


class Error(Exception):
    """Base class of every exception fakepeer raises on purpose.

    ``diagnosis`` says what went wrong; ``transcript`` is the rendered conversation when the
    error comes from a serving peer (else empty); ``outlook``, when the peer still served,
    what else it would report if it stopped then (bytes that are no whole message yet,
    expectations not met yet; else empty); ``str(error)`` is the diagnosis, a list of
    further problems if the peer saw several, the outlook, then the transcript.
    """

    def __init__(self, diagnosis: str) -> None:
        super().__init__(diagnosis)
        self.diagnosis = diagnosis
        self.transcript = ""
        self.outlook = ""
        self.others: tuple[str, ...] = ()

    def copy(self: _E, diagnosis: str | None = None, **changes: Any) -> _E:
        """A copy of this error (same class, attributes, ``__cause__``), with ``diagnosis``
        and the attributes named in ``changes`` replaced."""
        new = _blank(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        if diagnosis is not None:
            new.diagnosis = diagnosis
        new.args = (new.diagnosis,)
        new.__cause__ = self.__cause__
        new.__suppress_context__ = self.__suppress_context__
        return new

    def reported(
        self: _E, transcript: str, *, outlook: str = "", others: tuple[str, ...] = ()
    ) -> _E:
        """A copy to raise, with the rendered ``transcript``, the ``outlook`` and the first
        lines of the ``others`` problems the peer saw."""
        return self.copy(transcript=transcript, outlook=outlook, others=tuple(others))

    def with_transcript(self: _E, transcript: str) -> _E:
        """A copy with the rendered transcript attached."""
        return self.copy(transcript=transcript)

    def __str__(self) -> str:
        text = self.diagnosis
        if self.others:
            text += f"\n\nand {len(self.others)} more problem(s):"
            text += "".join(f"\n  - {line}" for line in self.others)
        if self.outlook:
            text += f"\n\n{self.outlook}"
        if self.transcript:
            text += f"\n\n{self.transcript}"
        return text


def _blank(cls: type[_E]) -> _E:
    """An instance of ``cls`` made without its ``__init__``: by the ``__new__`` of the
    builtin exception it is laid out as (``OSError``'s for a ``TimeoutError``; Python
    refuses the others)."""
    for base in cls.__mro__:
        if base.__module__ == "builtins":
            try:
                return base.__new__(cls)  # type: ignore[call-overload, no-any-return]
            except TypeError:
                continue
    raise TypeError(f"cannot copy {cls.__name__}")  # pragma: no cover - every error is one


class ScriptError(Error, ValueError):
    """The script is invalid: the test's fault, raised at the line that wrote it.

    Example: ``peer.expect(b"PING").times(0)`` raises ``ScriptError`` at once. A mistake
    that only shows while serving (two rules that are each valid, but the second writes on a
    connection the first half-closed) is raised like a conversation problem, with the
    transcript.
    """


class ConversationError(Error, AssertionError):
    """The client under test did not follow the script.

    ``connection`` is the id of the connection concerned, or ``None``.
    """

    def __init__(self, diagnosis: str, *, connection: int | None = None) -> None:
        super().__init__(diagnosis)
        self.connection = connection


class UnexpectedData(ConversationError):
    """Bytes arrived that matched no rule of the script.

    ``received`` is the message (or, for :class:`~fakepeer.Raw` framing, the buffered
    bytes) that matched nothing; ``expected`` describes what the script was waiting for.
    """

    def __init__(
        self,
        diagnosis: str,
        *,
        connection: int | None,
        received: bytes,
        expected: str | None,
    ) -> None:
        super().__init__(diagnosis, connection=connection)
        self.received = received
        self.expected = expected


class FramingError(ConversationError):
    """The client's bytes break the framing: a message over the framing's size limit, or a
    length prefix that cannot be right. Framings raise it from ``decode``; the peer adds the
    connection and the transcript.
    """


class IncompleteMessage(ConversationError):
    """A connection ended with bytes that never formed a whole message."""

    def __init__(self, diagnosis: str, *, connection: int | None, leftover: bytes) -> None:
        super().__init__(diagnosis, connection=connection)
        self.leftover = leftover


class UnmetExpectations(ConversationError):
    """The conversation ended while ``expect`` rules were still waiting.

    ``unmet`` lists a description of each rule that was not (fully) met.
    """

    def __init__(self, diagnosis: str, *, unmet: list[str]) -> None:
        super().__init__(diagnosis)
        self.unmet = unmet


class ReplyFailed(ConversationError):
    """A reply callable raised, or returned something that is not bytes, str or None.

    The original exception, if any, is the ``__cause__``.
    """


class HandlerFailed(ConversationError):
    """A connection handler (``@peer.handler``) raised; the exception is the ``__cause__``."""


class ClientNotReading(ConversationError):
    """The peer could not push more to a client that does not read what it was sent.

    Raised by ``connection.send()`` and ``peer.broadcast()`` (and recorded, so the test fails
    even if a handler swallowed it) when ``waiting`` bytes, already queued for the client,
    plus the new ones would go over ``FakePeer(max_send_buffer=...)``; the connection is
    then reset, freeing what waited. Replies of the script never raise it: while a client
    does not read them, the peer stops reading its requests instead (backpressure).
    """

    def __init__(self, diagnosis: str, *, connection: int | None, waiting: int) -> None:
        super().__init__(diagnosis, connection=connection)
        self.waiting = waiting


class HubBlocked(ConversationError):
    """The hub thread, which serves every ``with peer.serve()`` peer, did not answer in time.

    Code of the test's script ran on it and did not return (a sync reply callable that
    sleeps, a handler that never awaits), so the peer could not stop cleanly. ``where``
    names the blocked code (``file:line in function``). Leaving ``serve()`` raises it within
    about a second: the peer has stopped listening, its transcript ends where it was, and
    later peers are served by a new hub thread.
    """

    def __init__(self, diagnosis: str, *, where: str) -> None:
        super().__init__(diagnosis)
        self.where = where


class UpstreamError(ConversationError):
    """The proxy could not reach its upstream server, or lost it mid-connection."""


class WaitTimeout(ConversationError, TimeoutError):
    """A wait for the client ran out of time (it did not connect, or did not finish)."""


class LoopBlocked(Error, AssertionError):
    """An event loop did not get back to its I/O wait within the loop watchdog's limit: the
    test's own asyncio loop, one it runs on another thread, a trio run, or the fakepeer hub's
    loop (blocked by a callable of the test's script).

    ``diagnosis`` names the loop, the task, the line and the call; the phase of the test
    (setup, call, teardown) during which the loop blocked fails with this error.
    """


class TaskDied(Error, AssertionError):
    """A task raised and nobody retrieved its exception, or a loop callback raised, during
    a phase of a test: asyncio only logs those. The phase fails with this error, naming the
    task, the exception and its traceback."""


# Show the public name in tracebacks ("fakepeer.UnexpectedData", not "fakepeer._errors...").
for _name in __all__:
    globals()[_name].__module__ = "fakepeer"
