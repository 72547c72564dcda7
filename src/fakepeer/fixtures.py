"""The fake peers of one test, for a test runner's fixtures: made with the session's
:class:`~fakepeer.settings.PeerOptions`, served (on the hub, or in the test's own loop),
verified when the test body returns, shown in the failure's report, then stopped and
verified at the test's teardown. Nothing here needs pytest: fakepeer's pytest plugin keeps
one :class:`TestPeers` per test, and its ``fake_peer_factory`` and ``fake_proxy_factory``
fixtures each a :class:`Served`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, Final, TypeVar

from ._errors import LoopBlocked, ScriptError
from ._host import Host
from ._serving import Serving
from ._wait import current_async_library
from .reports import IN_LOOP_HINT, diagram_name, write_diagram, write_pcapng
from .settings import PeerOptions

__all__ = ["ReportFiles", "Served", "TestPeers"]

_LOOP_TOO_LATE: Final = (
    "fake_peer_factory(serve_in='loop') serves a peer in the test's loop when it is made "
    "before that loop runs (in a sync fixture); where a loop runs already (the test body, "
    "an async fixture), serve in it with 'async with FakePeer(...).serve()'"
)


_H = TypeVar("_H", bound=Host)


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """The files a failing test's report gets for each peer: its sequence diagram in the
    folder ``diagrams`` and its pcapng capture in ``pcapng`` (absolute paths; None: not
    written), and the names written so far to each (lowercased: some file systems ignore
    case; see :func:`~fakepeer.reports.diagram_name`)."""

    diagrams: str | None = None
    pcapng: str | None = None
    diagram_names: set[str] = dataclasses.field(default_factory=set)
    pcapng_names: set[str] = dataclasses.field(default_factory=set)

    #: The settings that name the two folders (:data:`fakepeer.settings.OPTIONS`).
    OPTIONS: ClassVar = ("fakepeer_diagrams", "fakepeer_pcapng")

    @classmethod
    def configure(cls, diagrams: str | None, pcapng: str | None) -> ReportFiles:
        """The folders as given (relative to the current directory), made absolute."""
        return cls(
            os.path.abspath(diagrams) if diagrams else None,
            os.path.abspath(pcapng) if pcapng else None,
        )


class TestPeers:
    """The peers (and proxies) of the test ``test`` (its id), in the order they were made:
    ``peers`` (each with its :class:`~fakepeer.Serving`), and ``deferred``, those
    listening since the setup, to be served in the test's own loop when its body starts."""

    __test__ = False  # not a test class, for pytest

    def __init__(self, test: str) -> None:
        self.test = test
        self.peers: list[tuple[Host, Serving[Any]]] = []
        self.deferred: list[Serving[Any]] = []
        #: True once a failure of the test was reported (the peers' verdicts are then only
        #: shown at the teardown if they are news).
        self.reported = False
        self._verdict_shown = False  # the body's failure is a peer's verdict
        self._teardown_verdict = False  # the teardown's failure is a peer's verdict
        self._known: dict[int, frozenset[tuple[object, ...]]] = {}  # by id() of each peer

    def served(self, options: PeerOptions) -> Served:
        """A new share of these peers (one fixture's), made with ``options``."""
        return Served(self, options)

    def failed(self, exc: BaseException) -> BaseException:
        """The test body failed with ``exc``: note it, and return what to raise: ``exc``,
        or for a :class:`~fakepeer.LoopBlocked` when a peer serves in the blocked loop, a
        copy of it that ends with a hint (an error is never changed once raised)."""
        self.reported = True
        if isinstance(exc, LoopBlocked) and any(serving.in_loop for serving in self.deferred):
            return exc.copy(exc.diagnosis + IN_LOOP_HINT).with_traceback(exc.__traceback__)
        return exc

    def verify(self) -> None:
        """The test body returned: let each peer read what clients sent, and raise the
        first verdict that is a problem (:meth:`~fakepeer.FakePeer.verify`)."""
        __tracebackhide__ = True
        for peer, serving in self.peers:
            serving.settle()
            try:
                peer.verify()
            except BaseException:
                self.reported = self._verdict_shown = True
                self._known.update((id(shown), shown.known_problems()) for shown, _ in self.peers)
                raise

    def sections(self, when: str, message: str, files: ReportFiles) -> list[tuple[str, str]]:
        """The report sections of a failure of phase ``when`` (``message``: the failure's
        own): ``("fakepeer '<name>'", text)`` per peer, its
        :meth:`~fakepeer.FakePeer.report` (unless the failure is a peer's verdict, which
        shows it already), and the files of ``files`` written for it: its sequence diagram,
        its pcapng capture."""
        shown = self._verdict_shown if when == "call" else self._teardown_verdict
        sections = []
        for number, (peer, _serving) in enumerate(self.peers):
            lines = [] if shown else [peer.report()]  # settles the peer first: every byte read
            if when == "call" and id(peer) not in self._known:
                self._known[id(peer)] = peer.known_problems()
            where = (self.test, when, peer.name, number, len(self.peers))
            if files.diagrams is not None:
                name = diagram_name(*where, used=files.diagram_names)
                failure = f"{self.test} failed ({when}): "
                written = write_diagram(files.diagrams, name, peer, failure, message)
                lines.append(f"sequence diagram: {written}")
            if files.pcapng is not None:
                name = diagram_name(*where, used=files.pcapng_names, suffix=".pcapng")
                lines.append(f"pcapng capture: {write_pcapng(files.pcapng, name, peer)}")
            if lines:
                sections.append((f"fakepeer {peer.name!r}", "\n\n".join(lines)))
        return sections

    def _news(self, peer: Host) -> BaseException | None:
        """After a reported failure: ``peer``'s final verdict if that report did not show it."""
        known = self._known.get(id(peer))
        problem = None if known is None else peer.new_problem(known)
        if problem is not None:
            self._teardown_verdict = True
        return problem


class Served:
    """One fixture's share of a test's peers (see :meth:`TestPeers.served`)."""

    def __init__(self, peers: TestPeers, options: PeerOptions) -> None:
        self.peers = peers
        self.base = options
        self.own: list[tuple[Host, Serving[Any]]] = []

    def options(self, given: dict[str, object], allowed: tuple[str, ...] = ()) -> PeerOptions:
        """The options of the next peer: ``base`` but ``given`` (see
        :meth:`~fakepeer.settings.PeerOptions.but`), and its seed, unless given, from the
        session's, the test and the peer's number
        (:meth:`~fakepeer.settings.PeerOptions.seed_for`)."""
        __tracebackhide__ = True
        options = self.base.but(given, allowed)
        if "seed" in given:
            return options
        return dataclasses.replace(options, seed=self.base.seed_for(self.peers.test, len(self.own)))

    def serve(self, peer: _H, *, in_loop: bool = False, asked: bool = False) -> _H:
        """Serve ``peer`` on the hub, or, with ``in_loop`` when no loop runs here yet (a
        sync fixture), listening now and served in the test's loop when its body starts
        (see ``TestPeers.deferred``). Where a loop runs already, ``in_loop`` serves on
        the hub too, unless ``asked`` (``serve_in='loop'`` was asked for this peer): a
        :class:`~fakepeer.ScriptError` then. Returns ``peer``."""
        __tracebackhide__ = True
        running = current_async_library() is not None
        if in_loop and asked and running:
            raise ScriptError(_LOOP_TOO_LATE)
        serving = peer.serve()
        if in_loop and not running:  # setup: the test's loop is not on
            serving.listen()
            self.peers.deferred.append(serving)
        else:
            serving.start()
        self.own.append((peer, serving))
        self.peers.peers.append((peer, serving))
        return peer

    def finish(self) -> None:
        """The test's teardown: stop each peer of this share, and raise the first verdict
        that is a problem; after a reported failure only one the report did not show."""
        __tracebackhide__ = True
        first: BaseException | None = None
        peers = self.peers
        for peer, serving in reversed(self.own):
            try:
                serving.stop(wait=False)  # no hand-over when only clients' closes are left
                if not peers.reported:
                    peer.verify()
                    continue
                # The test failed and its report showed the peer as it stood then, with
                # what stopping it would find: show the verdict only if it is news (bytes
                # that came since, a problem of the stop itself), once.
                problem = peers._news(peer)
                if problem is not None:
                    raise problem
            except BaseException as exc:  # stop them all, then report the first
                first = first or exc
        if first is not None:
            peers.reported = True
            raise first
