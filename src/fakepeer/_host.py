"""The host: what a :class:`~fakepeer.FakePeer` and a :class:`~fakepeer.Proxy` share.

A :class:`Host` listens, serves (``serve()``, on the hub or in the caller's loop), keeps the
record (connections, transcript, report), gives the verdict (``check()``, ``verify()``),
waits for connections, applies ``faults`` and refuses or stops. It writes no script: a
:class:`~fakepeer.FakePeer` adds the script's methods, a :class:`~fakepeer.Proxy` a relay
(its own runtime server class, :meth:`Host._make_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

from . import _assertions, _hosting
from ._connection import Connection
from ._conversation import Conversation
from ._errors import (
    ConversationError,
    Error,
    HubBlocked,
    IncompleteMessage,
    ScriptError,
    UnexpectedData,
    UnmetExpectations,
    WaitTimeout,
)
from ._faultclasses import Refuse
from ._faultset import Faults
from ._framing import Framing, check_framing
from ._hub import hub
from ._matchers import as_matcher
from ._runtime import MAX_SEND_BUFFER, PeerServer, clock
from ._serving import Serving
from ._transcript import DEFAULT_BUDGET, Transcript
from ._wait import Waiters, current_async_library

__all__ = ["STOP_TIMEOUT", "Host"]

_Self = TypeVar("_Self", bound="Host")

#: How long leaving ``serve()`` may wait for clients to take what the peer wrote.
STOP_TIMEOUT: Final = 1.0


async def _refused(server: PeerServer) -> None:
    server.refuse()


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


class Host:
    """A server on loopback, served, recorded and judged; see the module docstring.

    ``title`` heads the transcript; the other keywords are :class:`~fakepeer.FakePeer`'s.
    """

    #: True for a Proxy: it relays client bytes upstream, which faults can shape too.
    _relays = False

    def __init__(
        self,
        *,
        title: str,
        framing: Framing | None = None,
        name: str = "fake peer",
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 5.0,
        seed: int | None = None,
        external: bool = False,
        max_send_buffer: int = MAX_SEND_BUFFER,
        transcript_budget: int | None = DEFAULT_BUDGET,
    ) -> None:
        self.framing: Framing = check_framing(framing)
        self.name = name
        owner = type(self).__name__
        self._host = _hosting.check_host(host, external=external, owner=owner)
        self.external = external
        self._port = port
        if (
            isinstance(max_send_buffer, bool)
            or not isinstance(max_send_buffer, int)
            or max_send_buffer < 1
        ):
            raise ScriptError(
                f"{owner}(max_send_buffer=...) takes a whole number of bytes >= 1, "
                f"got {max_send_buffer!r}"
            )
        self.max_send_buffer = max_send_buffer
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ScriptError(
                f"{type(self).__name__}(timeout=...) takes a positive number of seconds, "
                f"got {timeout!r}"
            )
        self.timeout = timeout
        self._lock = threading.RLock()
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ScriptError(f"{owner}(seed=...) takes a whole number, got {seed!r}")
        self._conversation = Conversation(
            self.framing,
            title,
            transcript_budget=transcript_budget,
            seed=random.getrandbits(32) if seed is None else seed,
        )
        self._handles: list[Connection] = []  # the user's handles, kept after the stop
        #: Network faults on what the peer sends; see :class:`Faults`.
        self.faults = Faults(self)
        self._waiters = Waiters(self._lock)
        self._server: PeerServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new -> (listening ->) serving -> stopped
        self._background: set[asyncio.Task[None]] = set()  # re-listening after refuse()

    @property
    def seed(self) -> int:
        """The seed of the faults' randomness (give it back as ``FakePeer(seed=...)`` to
        replay a run)."""
        return self._conversation.seed

    # -- serving -----------------------------------------------------------------------------

    def serve(self: _Self) -> Serving[_Self]:
        """Serve the script: ``with`` on the hub thread, ``async with`` in this loop."""
        return Serving(self)

    def _claim(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"{self!r} already served; a FakePeer serves once, make a new one")
        self._state = "starting"

    def _make_server(self, server: type[PeerServer] = PeerServer, **extra: Any) -> PeerServer:
        """The runtime server of this peer (a Proxy passes its own class and upstream)."""

        def changed() -> None:
            if self._waiters:
                self._waiters.notify()

        return server(
            self._conversation,
            self._lock,
            changed,
            self._host,
            self._port,
            timeout=self.timeout,
            max_send_buffer=self.max_send_buffer,
            handles=self._handles,
            **extra,
        )

    def _listen(self) -> PeerServer:
        """Bind and listen now, serving nothing yet (the kernel queues the clients)."""
        if self._state == "listening" and self._server is not None:
            return self._server
        self._claim()
        server = self._make_server()
        try:
            server.listen()
        except BaseException:
            self._state = "stopped"
            raise
        self._server = server
        self._host, self._port = server.address
        self._state = "listening"
        return server

    def _started(self, server: PeerServer) -> None:
        assert server.loop is not None
        self._server, self._loop = server, server.loop
        host = f"[{self._host}]" if ":" in self._host else self._host
        address = f"{host}:{self._port}"
        if self.external:
            address += " (external=True: reachable beyond loopback)"
        self._conversation.started(address, clock())
        self._state = "serving"
        if any(isinstance(fault, Refuse) for fault in self._conversation.faults):
            self._refuse(True)

    def _start_on_hub(self) -> None:
        server = self._listen()
        _hosting.attach_to_hub(server)
        self._started(server)

    def _stop_on_hub(self, *, wait: bool = True) -> None:
        server, self._server = self._server, None
        self._state = "stopped"
        if server is not None:
            try:
                _hosting.stop(server, STOP_TIMEOUT, wait=wait)
            except HubBlocked as blocked:  # the verdict raises it, first, with the rest
                # (no lock: the blocked hub holds it; its record is frozen now)
                self._conversation.hub_blocked(blocked)

    async def _start_in_loop(self) -> None:
        server = self._listen()
        _hosting.attach_here(server)
        self._started(server)

    async def _stop_in_loop(self) -> None:
        server, self._server = self._server, None
        self._state = "stopped"
        if server is not None:
            await _hosting.stop_in_loop(server, STOP_TIMEOUT)

    def _settle(self) -> None:
        """Let the hub read what clients already sent before judging (hub-hosted peers)."""
        server = self._server
        loop = self._loop
        if (
            server is not None
            and loop is not None
            and not hub.in_hub_thread()
            and (loop is hub.loop() or hub.given_up(loop))
        ):
            _hosting.settle(server)

    def _refuse(self, refusing: bool) -> None:
        """Stop or resume listening, on the loop that serves. Listening resumes at once (the
        socket listens before this returns); accepting follows on the loop."""
        server, loop = self._server, self._loop
        if server is None or loop is None:
            return  # not serving yet: _started() applies it
        on_hub = not hub.in_hub_thread() and (loop is hub.loop() or hub.given_up(loop))
        if refusing:
            if on_hub:
                _hosting.call(server, _refused(server), "stop listening (a refuse fault)")
            else:
                server.refuse()
            return
        sock = server.listen_again()
        if sock is None:
            return
        if on_hub:
            _hosting.call(server, server.accept_again(sock), "listen again")
        else:  # in the serving loop itself: accepting starts on its next turn
            task = loop.create_task(server.accept_again(sock))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _conclude(self, exc: BaseException | None) -> None:
        """After stopping: raise the verdict, or note it on the exception already raised."""
        __tracebackhide__ = True
        problem = self._verdict(final=True)
        if problem is None or problem is exc:  # a wait or check() already raised it
            return
        if exc is None:
            raise problem
        if isinstance(exc, Exception):
            exc.add_note(f"\nfakepeer: the peer also saw a problem:\n{problem}")

    # -- where --------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the peer listens on; for ``socket.create_connection(peer.address)``."""
        self._require_serving("address")
        return (self._host, self._port)

    @property
    def host(self) -> str:
        """The host the peer listens on (``127.0.0.1`` unless set)."""
        self._require_serving("host")
        return self._host

    @property
    def port(self) -> int:
        """The port the peer listens on (chosen by the OS)."""
        self._require_serving("port")
        return self._port

    def _require_serving(self, what: str) -> None:
        if self._state not in ("listening", "serving", "stopped"):
            raise RuntimeError(f"peer.{what} is known once the peer serves: use peer.serve()")

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

    # -- sync points --------------------------------------------------------------------------

    def _connected(self, count: int) -> Callable[[], bool]:
        conversation = self._conversation
        return lambda: bool(conversation.problems) or len(conversation.connections) >= count

    def _after_wait(self, ok: bool, what: str, timeout: float) -> None:
        __tracebackhide__ = True
        self.check()
        if not ok:
            with _reading(self._lock, self._conversation):
                unmet = self._conversation.unmet()
                transcript = self._now().render()
            waiting = "".join(f"\n  still expected: {rule.describe()}" for rule in unmet)
            error = WaitTimeout(f"timed out after {timeout} s waiting for {what}{waiting}")
            raise error.with_transcript(transcript)

    def _blocking_ok(self, method: str) -> None:
        if self._state != "serving":
            raise RuntimeError(f"peer.{method}() needs a serving peer: use peer.serve()")
        if hub.in_hub_thread():
            raise RuntimeError(f"peer.{method}() called from the hub thread would deadlock")
        if (
            self._loop is not None
            and current_async_library() == "asyncio"
            and asyncio.get_running_loop() is self._loop
        ):
            raise RuntimeError(
                f"peer.{method}() would block the event loop that serves this peer; "
                f"use 'await peer.{method}_async()'"
            )

    def wait_for_connections(self, count: int = 1, *, timeout: float | None = None) -> None:
        """Block until ``count`` connections have arrived in all (or a problem was seen).

        Raises :class:`~fakepeer.WaitTimeout` after ``timeout`` (default: the peer's timeout).
        """
        self._blocking_ok("wait_for_connections")
        limit = self.timeout if timeout is None else timeout
        ok = self._waiters.wait(self._connected(count), limit)
        self._after_wait(ok, f"{count} connection(s)", limit)

    async def wait_for_connections_async(
        self, count: int = 1, *, timeout: float | None = None
    ) -> None:
        """:meth:`wait_for_connections` for asyncio and trio code."""
        limit = self.timeout if timeout is None else timeout
        ok = await self._waiters.wait_async(self._connected(count), limit)
        self._after_wait(ok, f"{count} connection(s)", limit)

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

    # -- assertions ----------------------------------------------------------------------------

    def _assertion(self, diagnosis: str | None) -> None:
        __tracebackhide__ = True
        if diagnosis is not None:
            raise ConversationError(diagnosis).with_transcript(self.render_transcript())

    def assert_received(self, matcher: object, *, times: int | None = None) -> None:
        """Fail unless the client sent a message matching ``matcher`` (exactly ``times``
        times, if given), on any connection."""
        __tracebackhide__ = True
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise ScriptError(f"assert_received(times=...) takes a whole number, got {times!r}")
        built = as_matcher(matcher)
        self._assertion(_assertions.received(built, self.received, times))

    def assert_received_in_order(self, *matchers: object) -> None:
        """Fail unless messages matching ``matchers`` arrived in this order (other messages
        may come between them)."""
        __tracebackhide__ = True
        if not matchers:
            raise ScriptError("assert_received_in_order() needs at least one matcher")
        built = [as_matcher(matcher) for matcher in matchers]
        self._assertion(_assertions.received_in_order(built, self.received))

    def assert_no_unmatched(self) -> None:
        """Fail if any message matched no rule but ``otherwise()`` (or none at all)."""
        __tracebackhide__ = True
        with _reading(self._lock, self._conversation):
            unanswered = list(self._conversation.unmatched)
            unexpected = sum(
                1 for problem in self._conversation.problems if isinstance(problem, UnexpectedData)
            )
        self._assertion(_assertions.unmatched(unanswered, unexpected))

    def _finished(self) -> Callable[[], bool]:
        conversation = self._conversation
        return lambda: bool(conversation.problems) or conversation.done

    def wait_until_done(self, *, timeout: float | None = None) -> None:
        """Block until every ``expect`` was met (or a problem was seen).

        Raises :class:`~fakepeer.WaitTimeout` naming the unmet expectations after ``timeout``.
        """
        self._blocking_ok("wait_until_done")
        limit = self.timeout if timeout is None else timeout
        ok = self._waiters.wait(self._finished(), limit)
        self._after_wait(ok, "the script to be done", limit)

    async def wait_until_done_async(self, *, timeout: float | None = None) -> None:
        """:meth:`wait_until_done` for asyncio and trio code."""
        limit = self.timeout if timeout is None else timeout
        ok = await self._waiters.wait_async(self._finished(), limit)
        self._after_wait(ok, "the script to be done", limit)

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
