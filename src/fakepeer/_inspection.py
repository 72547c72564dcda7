"""What a host shows of its record: inspection, the verdict, assertions and reports.

The reading side of :class:`~fakepeer._host.Host` (its base class): the connections, the
messages received and the transcript; the verdict (:meth:`Inspection.check`,
:meth:`~Inspection.verify`) and what a failure report shows; the assertions on what
arrived; pushes to the clients. Everything here reads the conversation under the host's
lock, and gives up the lock rather than wait on a hub stuck in the script's code.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from . import _hosting
from ._connection import Connection
from ._conversation import Conversation
from ._errors import (
    Error,
    HubBlocked,
    IncompleteMessage,
    UnmetExpectations,
)
from ._transcript import Transcript

__all__ = ["Inspection"]


@contextlib.contextmanager
def _reading(lock: threading.RLock, conversation: Conversation) -> Iterator[None]:
    """The lock, to read the peer's record; without it if the hub holds it too long (stuck
    in the script's code), or at all once the record is final (see ``_hosting``)."""
    acquired = lock.acquire(timeout=0 if conversation.closed_for_good else _hosting.STALL)
    try:
        yield
    finally:
        if acquired:
            lock.release()


class Inspection:
    """The reading side of a host; see the module docstring. The host sets the
    attributes below and settles the peer before a report (:meth:`_settle`)."""

    _lock: threading.RLock
    _conversation: Conversation
    _handles: list[Connection]
    _state: str

    def _settle(self, *, closes: bool = False) -> None:
        """Let the serving loop read what clients already sent, ``closes`` too (the
        host's)."""
        raise NotImplementedError

    # -- inspection --------------------------------------------------------------------------

    @property
    def connections(self) -> list[Connection]:
        """Every connection accepted so far, in order of arrival (a copy of the list)."""
        with _reading(self._lock, self._conversation):
            return list(self._handles)

    @property
    def received(self) -> list[bytes]:
        """Every message received so far, over all connections, in order of arrival."""
        with _reading(self._lock, self._conversation):
            return list(self._conversation.received)

    @property
    def transcript(self) -> Transcript:
        """The transcript of every connection; ``str()`` renders it."""
        return self._conversation.transcript

    def render_transcript(self) -> str:
        """The transcript rendered as text (taken under the lock), each connection's bytes
        that are no message yet last (a ``pending`` line: see :meth:`report`)."""
        with _reading(self._lock, self._conversation):
            return self._now().render()

    def _now(self) -> Transcript:
        """The transcript with the pending bytes of each connection (lock held)."""
        conversation = self._conversation
        return conversation.transcript.with_pending(conversation.pending())

    def report(self) -> str:
        """What a failing test's report shows: the peer's first problem, if any; while it
        still serves, what it would report if it stopped now (a connection's bytes that
        are no whole message yet, expectations not met yet); then the transcript, which
        ends with each connection's bytes that are no message yet (a ``pending`` line)
        and so shows every byte received. A peer served on the hub first reads what
        clients already sent (see :meth:`Serving.settle`); one served in an event loop
        shows what that loop has read. Marks nothing as raised, and raises nothing: if the
        hub is blocked (by the script's code), the report says so first and shows what the hub
        had read (the stop raises :class:`HubBlocked`)."""
        blocked = ""
        try:
            self._settle()
        except HubBlocked as exc:  # a report is made for a failure: it must not fail itself
            first = str(exc).split("\n", 1)[0]
            blocked = f"(what the hub had read before it blocked: {first}: {exc.where})\n\n"
        final = self._state == "stopped"
        problem = self._verdict(final=final, deliver=False)
        if problem is not None:
            return blocked + str(problem)
        with _reading(self._lock, self._conversation):
            outlook = "" if final else self._conversation.outlook()
            transcript = self._now().render()
        return blocked + (f"{outlook}\n\n{transcript}" if outlook else transcript)

    def _foreseen(self) -> set[tuple[object, ...]]:
        """What a report made now shows of the verdict to come: the problems seen (by
        ``id``), and each incomplete message the stop would find (connection, bytes)."""
        with _reading(self._lock, self._conversation):
            conversation = self._conversation
            seen: set[tuple[object, ...]] = {("problem", p) for p in conversation.problems}
            for record in conversation.connections:
                key = conversation.pending_key(record)
                if key is not None:
                    seen.add(key)
            return seen

    def _unforeseen(self, foreseen: set[tuple[object, ...]]) -> Error | None:
        """The final verdict, if it is a problem a report that ``foreseen`` did not show
        (unmet expectations after a failed test body follow from it: not new)."""
        with _reading(self._lock, self._conversation):
            problem = self._conversation.verdict(final=True, deliver=False)
        if problem is None or isinstance(problem, UnmetExpectations):
            return None
        if ("problem", problem) in foreseen:
            return None
        if isinstance(problem, IncompleteMessage):
            key = ("incomplete", problem.connection, hash(problem.leftover))
            if key in foreseen:
                return None
        return problem

    def _verdict(self, *, final: bool, deliver: bool = True) -> Error | None:
        """The first problem; if ``final`` (the end: leaving ``serve()``, the fixture's
        check), the first one not raised to the test yet, else unmet expectations.

        ``deliver`` marks the problem as raised: one the test caught from :meth:`check` or a
        wait is handled there, and does not fail the test a second time at the end (nor do
        the expectations left unmet after it)."""
        with _reading(self._lock, self._conversation):
            conversation = self._conversation
            problem = conversation.verdict(final=final, deliver=deliver)
            if problem is None:
                return None
            serving = self._state != "stopped"
            outlook = (
                conversation.outlook(unmet=not isinstance(problem, UnmetExpectations))
                if serving
                else ""
            )
            return problem.reported(
                self._now().render(),
                outlook=outlook,
                others=tuple(conversation.others(problem, final=deliver and final)),
            )

    def check(self) -> None:
        """Raise the first problem seen so far (unexpected data, a failing reply), if any.

        Unmet expectations are not a problem yet: the client may still be talking.
        Leaving ``serve()`` checks those too.
        """
        __tracebackhide__ = True
        problem = self._verdict(final=False)
        if problem is not None:
            raise problem

    def verify(self) -> None:
        """Like :meth:`check`, and also fail if any ``expect`` is still unmet."""
        __tracebackhide__ = True
        problem = self._verdict(final=True)
        if problem is not None:
            raise problem

    # -- pushes --------------------------------------------------------------------------------

    def broadcast(self, data: bytes | str) -> int:
        """Send ``data`` (framed) to every open connection, from any thread; returns how many
        connections it was sent to. Each gets it soon after, in the order of calls."""
        connections = [c for c in self.connections if c.open]
        for connection in connections:
            connection.send(data)
        return len(connections)

    @property
    def done(self) -> bool:
        """True once every ``expect`` was met (a proxy has none: always)."""
        with _reading(self._lock, self._conversation):
            return self._conversation.done

    # -- for failure reports (the pytest plugin's, or a test runner's of your own) -------------

    def problem(self) -> Error | None:
        """The verdict as it stands, for a report: the first problem seen (whether or not
        the test caught it already from :meth:`check` or a wait), or, once the peer has
        stopped and saw none, the expectations not met; with its transcript. None when there
        is none (yet). Marks nothing as raised and raises nothing: :meth:`verify` still
        raises a problem the test did not catch."""
        return self._verdict(final=self._state == "stopped", deliver=False)

    def outlook(self) -> str:
        """While the peer serves: what it would report if it stopped now (each connection's
        bytes that are no whole message yet, the expectations not met yet), as text; empty
        when there is nothing to say, and always once it has stopped."""
        if self._state == "stopped":
            return ""
        with _reading(self._lock, self._conversation):
            return self._conversation.outlook()

    def to_html(self, *, diagnosis: str | None = None) -> str:
        """The sequence diagram of the conversation so far as a self-contained HTML page
        (:meth:`Transcript.to_html`), each connection's bytes that are no message yet
        included, headed by ``diagnosis`` (any text) if given."""
        with _reading(self._lock, self._conversation):  # the hub may still be adding
            return self._now().to_html(diagnosis=diagnosis)

    def to_pcapng(self) -> bytes:
        """The conversation so far as a pcapng capture file (:meth:`Transcript.to_pcapng`),
        each connection's bytes that are no message yet included: write it to a
        ``.pcapng`` file and open it in Wireshark."""
        with _reading(self._lock, self._conversation):  # the hub may still be adding
            return self._now().to_pcapng()

    def known_problems(self) -> frozenset[tuple[object, ...]]:
        """An opaque record of what a report made now shows of the verdict to come (the
        problems seen, and each incomplete message a stop would find), for
        :meth:`new_problem`: take it when a failure's report shows the peer."""
        return frozenset(self._foreseen())

    def new_problem(self, known: frozenset[tuple[object, ...]]) -> Error | None:
        """The final verdict (take it after stopping), if it is news to a report that showed
        ``known`` (from :meth:`known_problems`): a problem that came since, or one of the
        stop itself; None otherwise. Unmet expectations are never news (after a failed test
        they follow from its failure). Marks nothing as raised."""
        return self._unforeseen(set(known))
