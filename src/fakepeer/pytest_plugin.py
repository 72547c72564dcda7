"""The pytest plugin: fixtures, an option, a marker, a report header and report sections.

Fixtures
    ``fake_peer``: a :class:`~fakepeer.FakePeer` already serving on the hub thread, so it works
    in sync tests and in asyncio, anyio and trio tests alike. Script it, point the client at
    ``fake_peer.address``. When the test body returns, the peer is verified: unexpected data,
    a failing reply callable, or an unmet ``expect`` fails the test with the transcript.
    ``fake_peer_factory``: call it for more peers, with keyword options.

Options (ini < environment < command line < marker)
    ``fakepeer_timeout`` / ``--fakepeer-timeout``: default bound of the ``wait_*`` sync points.
    ``loop_watchdog`` / ``FAKEPEER_LOOP_WATCHDOG`` / ``--loop-watchdog`` /
    ``@pytest.mark.loop_watchdog(seconds)``: how long an asyncio loop of a test may go without
    getting back to its I/O wait before the test fails with :class:`~fakepeer.LoopBlocked`
    (default 0.5 s; 0 turns the watchdog off). Off under a debugger or tracer.
    ``task_died`` / ``--task-died=on|off`` / ``@pytest.mark.task_died(False)`` (ini < command
    line < marker): whether a task that died unseen fails the test with
    :class:`~fakepeer.TaskDied` (default: on).
    ``fakepeer_diagrams`` / ``--fakepeer-diagrams=DIR`` (ini < command line): write the
    sequence diagram of each peer of each failing test to ``DIR`` as a self-contained HTML
    page (:meth:`~fakepeer.Transcript.to_html`), and name it in the failure's report
    (default: off).

Markers
    ``@pytest.mark.fakepeer(framing=..., name=..., host=..., timeout=...)`` configures the
    ``fake_peer`` fixture of that test; ``@pytest.mark.loop_watchdog(seconds)`` its watchdog;
    ``@pytest.mark.task_died(False)`` turns ``TaskDied`` off for it.

Everything here only wires pytest to the library; the library works without pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import math
import os
import random
import re
import sys
from collections.abc import Generator, Iterator
from typing import Any, Final, Protocol, TypeVar

import pytest

from ._errors import LoopBlocked, ScriptError, TaskDied
from ._framing import Framing
from ._host import Host, _reading
from ._peer import FakePeer
from ._proxy import Proxy
from ._runtime import MAX_SEND_BUFFER
from ._serving import Serving
from ._transcript import DEFAULT_BUDGET
from ._unseen import TaskWatch, UnseenErrors, WatchedBody
from ._version import __version__
from ._wait import current_async_library
from ._watchdog import (
    DEFAULT_SIGNAL,
    Heartbeat,
    Interrupt,
    Watchdog,
    free_signal,
    parse_signal,
    signal_name,
    taken_outside_python,
)

__all__ = ["PeerFactory", "PeerOptions", "ProxyFactory"]

_TIMEOUT_HELP: Final = "default timeout in seconds of fakepeer's wait_* sync points (default: 5)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PeerOptions:
    """Options of a peer made by the fixtures; marker keywords replace fields by name."""

    framing: Framing | None = None
    name: str = "fake peer"
    host: str = "127.0.0.1"
    port: int = 0
    timeout: float = 5.0
    seed: int | None = None
    external: bool = False
    max_send_buffer: int = MAX_SEND_BUFFER
    transcript_budget: int | None = DEFAULT_BUDGET
    serve_in: str = "hub"


class PeerFactory(Protocol):
    """The type of the ``fake_peer_factory`` fixture."""

    def __call__(
        self,
        *,
        framing: Framing | None = ...,
        name: str = ...,
        host: str = ...,
        port: int = ...,
        timeout: float = ...,
        seed: int | None = ...,
        external: bool = ...,
        max_send_buffer: int = ...,
        transcript_budget: int | None = ...,
        serve_in: str = ...,
    ) -> FakePeer: ...


@dataclasses.dataclass
class _ItemState:
    peers: list[tuple[Host, Serving[Host]]] = dataclasses.field(default_factory=list)
    # listening since setup, to be served in the test's own loop when it starts
    deferred: list[Serving[Host]] = dataclasses.field(default_factory=list)
    reported: bool = False  # a failure was already reported for this test
    verdict_shown: bool = False  # the failure is the peer's verdict, transcript included
    # by id() of each peer: what the failure's report showed of its verdict to come
    foreseen: dict[int, set[tuple[object, ...]]] = dataclasses.field(default_factory=dict)
    teardown_verdict: bool = False  # the teardown's failure is a peer's verdict


_WATCHDOG_HELP: Final = (
    "seconds an event loop of a test (asyncio on any thread, uvloop, trio, or the hub serving "
    "its fake peers) may go without getting back to its I/O wait before the loop watchdog "
    "fails that test (default: 0.5; 0 turns it off; also FAKEPEER_LOOP_WATCHDOG and "
    "@pytest.mark.loop_watchdog(seconds), which win in the order ini < environment < "
    "command line < marker)"
)
_SIGNAL_HELP: Final = (
    "the signal with which the loop watchdog interrupts the test's thread (default: "
    "SIGUSR2); signals it did not send go on to the handler that was there before"
)
_EXIT_HELP: Final = (
    "seconds after which the loop watchdog ends the whole run when a test's code swallows "
    "its interruption (default: never; the test is interrupted again every limit, and "
    "pytest-timeout, if used, has the last word)"
)
_SEED_HELP: Final = (
    "seed of the network faults' randomness, to replay a run (default: a new one each "
    "session, shown in the report header)"
)
_SERVE_IN_HELP: Final = (
    "where the fake_peer fixture serves: 'hub' (a background thread, for any test and any "
    "client; the default) or 'loop' (an asyncio test's own event loop, for suites whose "
    "clients are all async: cheaper, but a blocking client would block its own peer)"
)
_SERVE_IN: Final = ("hub", "loop")
_TASK_DIED_HELP: Final = (
    "on or off: whether an exception in a task that nobody retrieves within the loop "
    "watchdog's limit (or in a loop callback) fails the test with TaskDied (default: on)"
)
_DIAGRAMS_HELP: Final = (
    "write the sequence diagram of each fake peer (and proxy) of each failing test to DIR, "
    "as a self-contained HTML page named after the test and the peer, and name the file in "
    "the failure's report (default: off; relative to the current directory)"
)
_ON: Final = ("on", "true", "yes", "1")
_OFF: Final = ("off", "false", "no", "0")
_WATCHDOG_DEFAULT: Final = 0.5
_WATCHDOG_ENV: Final = "FAKEPEER_LOOP_WATCHDOG"


@dataclasses.dataclass
class _WatchdogState:
    limit: float
    source: str
    off_because: str | None = None
    watchdog: Watchdog | None = None
    signal_name: str = DEFAULT_SIGNAL
    installed: bool = False
    reports: list[str] | None = None  # diagnoses of the phase being watched

    def report(self, diagnosis: str) -> None:
        reports = self.reports
        if reports is not None:
            reports.append(diagnosis)

    def install(self, config: pytest.Config) -> Watchdog | None:
        """The watchdog, installed on first use: nothing (no selector, no signal handler)
        is installed in a session whose tests never turn it on."""
        watchdog = self.watchdog
        if watchdog is not None and not self.installed:
            watchdog.install()
            self.installed = True
            config.add_cleanup(watchdog.uninstall)
        return watchdog


_OPTIONS: Final = pytest.StashKey[PeerOptions]()
_WATCHDOG: Final = pytest.StashKey[_WatchdogState]()
_ITEM: Final = pytest.StashKey[_ItemState]()
_DIAGRAMS: Final = pytest.StashKey[str | None]()
#: The diagram files this session wrote (lowercased: some file systems ignore case).
_DIAGRAM_NAMES: Final = pytest.StashKey[set[str]]()


@dataclasses.dataclass
class _TaskDiedState:
    on: bool
    watch: TaskWatch


_TASK_DIED: Final = pytest.StashKey[_TaskDiedState]()


def _switch(value: object, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # task_died(0), as the docs allow
        return bool(value)
    word = str(value).strip().lower() if isinstance(value, str) else None
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise pytest.UsageError(f"{source}: expected on or off (true or false), got {value!r}")


def _serve_in(value: object, source: str) -> str:
    if value not in _SERVE_IN:
        raise pytest.UsageError(f"{source}: expected 'hub' or 'loop', got {value!r}")
    return str(value)


def _parse_timeout(value: object, source: str, *, zero: bool = False) -> float:
    try:
        timeout = float(value)  # type: ignore[arg-type]  # validated right here
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{source}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(timeout) or timeout < 0 or (timeout == 0 and not zero):
        kind = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise pytest.UsageError(f"{source}: expected {kind}, got {value!r}")
    return timeout


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakepeer", "fake TCP peers for testing clients")
    group.addoption(
        "--fakepeer-timeout",
        dest="fakepeer_timeout",
        default=None,
        metavar="SECONDS",
        help=_TIMEOUT_HELP,
    )
    parser.addini("fakepeer_timeout", help=_TIMEOUT_HELP, default=None)
    group.addoption(
        "--loop-watchdog",
        dest="loop_watchdog",
        default=None,
        metavar="SECONDS",
        help=_WATCHDOG_HELP,
    )
    parser.addini("loop_watchdog", help=_WATCHDOG_HELP, default=None)
    group.addoption(
        "--loop-watchdog-signal",
        dest="loop_watchdog_signal",
        default=None,
        metavar="SIGNAL",
        help=_SIGNAL_HELP,
    )
    parser.addini("loop_watchdog_signal", help=_SIGNAL_HELP, default=None)
    group.addoption(
        "--loop-watchdog-exit",
        dest="loop_watchdog_exit",
        default=None,
        metavar="SECONDS",
        help=_EXIT_HELP,
    )
    parser.addini("loop_watchdog_exit", help=_EXIT_HELP, default=None)
    group.addoption(
        "--fakepeer-serve-in",
        dest="fakepeer_serve_in",
        default=None,
        choices=_SERVE_IN,
        help=_SERVE_IN_HELP,
    )
    parser.addini("fakepeer_serve_in", help=_SERVE_IN_HELP, default=None)
    group.addoption(
        "--task-died", dest="task_died", default=None, metavar="on|off", help=_TASK_DIED_HELP
    )
    parser.addini("task_died", help=_TASK_DIED_HELP, default=None)
    group.addoption(
        "--fakepeer-diagrams",
        dest="fakepeer_diagrams",
        default=None,
        metavar="DIR",
        help=_DIAGRAMS_HELP,
    )
    parser.addini("fakepeer_diagrams", help=_DIAGRAMS_HELP, default=None)
    group.addoption(
        "--fakepeer-seed",
        dest="fakepeer_seed",
        default=None,
        metavar="N",
        help=_SEED_HELP,
    )


def _debugging(config: pytest.Config) -> str | None:
    """Why the watchdog must stay off (a debugger or tracer would look like a blocked loop)."""
    if config.getoption("usepdb", False) or config.getoption("trace", False):
        return "--pdb/--trace"
    if sys.gettrace() is not None:
        return "a debugger or tracer is active"
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None and monitoring.get_tool(monitoring.DEBUGGER_ID) is not None:
        return "a debugger is active"
    if not Watchdog.available():
        return "no signal to interrupt the main thread on this platform"
    return None


def _configure_watchdog(config: pytest.Config) -> None:
    limit, source = _WATCHDOG_DEFAULT, "default"
    ini = config.getini("loop_watchdog")
    if ini not in (None, ""):
        limit, source = _parse_timeout(ini, "ini loop_watchdog", zero=True), "ini"
    env = os.environ.get(_WATCHDOG_ENV)
    if env not in (None, ""):
        limit, source = _parse_timeout(env, _WATCHDOG_ENV, zero=True), _WATCHDOG_ENV
    cli = config.getoption("loop_watchdog")
    if cli is not None:
        limit, source = _parse_timeout(cli, "--loop-watchdog", zero=True), "--loop-watchdog"
    name, where = config.getoption("loop_watchdog_signal"), "--loop-watchdog-signal"
    if name is None:
        name, where = config.getini("loop_watchdog_signal") or None, "ini"
    try:
        signum: int = parse_signal(str(name or DEFAULT_SIGNAL))
    except ValueError as exc:
        raise pytest.UsageError(f"{where} loop_watchdog_signal: {exc}") from None
    via = signal_name(signum)
    if taken_outside_python(signum):  # faulthandler.register(), a C library: not ours to take
        chosen = None if name else free_signal(signum)
        if chosen is None:
            via = (
                f"{via}, which has a handler outside Python (faulthandler.register?), so "
                "blocked tests are reported but not interrupted: set loop_watchdog_signal"
            )
        else:
            signum, via = chosen, f"{signal_name(chosen)} ({via} has a handler outside Python)"
    exit_after: float | None = None
    value, where = config.getoption("loop_watchdog_exit"), "--loop-watchdog-exit"
    if value is None:
        value, where = config.getini("loop_watchdog_exit"), "ini loop_watchdog_exit"
    if value not in (None, ""):
        exit_after = _parse_timeout(value, where) or None
    state = _WatchdogState(limit, source, off_because=_debugging(config), signal_name=via)
    if state.off_because is None:
        state.watchdog = Watchdog(state.report, signum=int(signum), exit_after=exit_after)
    config.stash[_WATCHDOG] = state


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fakepeer(framing=None, name='fake peer', host='127.0.0.1', port=0, timeout=5.0, "
        "external=False, max_send_buffer=4194304, transcript_budget=65536, serve_in='hub'): "
        "options of the fake_peer fixture for this test",
    )
    config.addinivalue_line(
        "markers",
        "loop_watchdog(seconds): the loop watchdog's limit for this test (0 turns it off)",
    )
    config.addinivalue_line(
        "markers",
        "task_died(on): False turns TaskDied off for this test, True on (whatever the "
        "task_died option says)",
    )
    _configure_watchdog(config)
    _configure_task_died(config)
    diagrams = config.getoption("fakepeer_diagrams") or config.getini("fakepeer_diagrams")
    config.stash[_DIAGRAMS] = os.path.abspath(diagrams) if diagrams else None
    config.stash[_DIAGRAM_NAMES] = set()
    options = PeerOptions()
    ini = config.getini("fakepeer_timeout")
    if ini not in (None, ""):
        options = dataclasses.replace(options, timeout=_parse_timeout(ini, "ini fakepeer_timeout"))
    cli = config.getoption("fakepeer_timeout")
    if cli is not None:
        options = dataclasses.replace(options, timeout=_parse_timeout(cli, "--fakepeer-timeout"))
    serve_in = config.getini("fakepeer_serve_in")
    if serve_in not in (None, ""):
        options = dataclasses.replace(
            options, serve_in=_serve_in(serve_in, "ini fakepeer_serve_in")
        )
    cli = config.getoption("fakepeer_serve_in")
    if cli is not None:
        options = dataclasses.replace(options, serve_in=cli)
    seed = config.getoption("fakepeer_seed")
    workerinput = getattr(config, "workerinput", None)  # a pytest-xdist worker
    if seed is None and workerinput is not None and "fakepeer_seed" in workerinput:
        seed = workerinput["fakepeer_seed"]  # the controller's: one seed for the session
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    else:
        try:
            seed = int(seed)
        except ValueError:
            raise pytest.UsageError(
                f"--fakepeer-seed: expected a whole number, got {seed!r}"
            ) from None
    options = dataclasses.replace(options, seed=seed)
    config.stash[_OPTIONS] = options


def _configure_task_died(config: pytest.Config) -> None:
    on = True
    ini = config.getini("task_died")
    if ini not in (None, ""):
        on = _switch(ini, "ini task_died")
    cli = config.getoption("task_died")
    if cli is not None:
        on = _switch(cli, "--task-died")
    watch = TaskWatch()
    config.add_cleanup(watch.close)
    config.stash[_TASK_DIED] = _TaskDiedState(on, watch)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker uses the controller's fault seed, so the one in the header
    replays the run."""
    node.workerinput["fakepeer_seed"] = node.config.stash[_OPTIONS].seed


def pytest_report_header(config: pytest.Config) -> str:
    options = config.stash[_OPTIONS]
    state = config.stash[_WATCHDOG]
    if state.off_because is not None:
        watchdog = f"off ({state.off_because})"
    elif state.limit == 0:
        watchdog = f"off (0 from {state.source})"
    else:
        watchdog = f"{state.limit:g}s via {state.signal_name}"
    return (
        f"fakepeer: {__version__}, timeout={options.timeout:g}s, host={options.host}, "
        f"serve_in={options.serve_in}, "
        f"loop watchdog={watchdog}, "
        f"{'' if config.stash[_TASK_DIED].on else 'task_died=off, '}fault seed={options.seed}"
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Undo the loop watchdog when the session ends, before any ``pytest_unconfigure``: the
    suite's own signal handler and the stdlib's selector are back by then."""
    state = session.config.stash.get(_WATCHDOG, None)
    if state is not None and state.watchdog is not None:
        state.watchdog.uninstall()


def _watchdog_limit(item: pytest.Item, state: _WatchdogState) -> float:
    marker = item.get_closest_marker("loop_watchdog")
    if marker is None:
        return state.limit
    if len(marker.args) != 1 or marker.kwargs or isinstance(marker.args[0], bool):
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.loop_watchdog takes one number of seconds, "
            f"e.g. loop_watchdog(2)"
        )
    return _parse_timeout(marker.args[0], f"{item.nodeid}: loop_watchdog marker", zero=True)


def _task_watch(item: pytest.Item) -> TaskWatch | None:
    """The session's :class:`TaskWatch` when ``TaskDied`` is on for ``item``, else None."""
    state = item.config.stash[_TASK_DIED]
    marker = item.get_closest_marker("task_died")
    if marker is None:
        return state.watch if state.on else None
    if len(marker.args) != 1 or marker.kwargs:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.task_died takes one switch, e.g. task_died(False)"
        )
    on = _switch(marker.args[0], f"{item.nodeid}: @pytest.mark.task_died")
    return state.watch if on else None


def _watched(item: pytest.Item, when: str) -> Generator[None, None, None]:
    """Run one phase of ``item`` under the loop watchdog; fail it if a loop blocked, or (with
    ``TaskDied`` on) if an exception in the event loop went unseen: a task that died and that
    nobody retrieved within the watchdog's limit, or what asyncio logged."""
    __tracebackhide__ = True
    watch = _task_watch(item)
    if watch is None:
        return (yield from _watchdogged(item, when))
    grace = _watchdog_limit(item, item.config.stash[_WATCHDOG]) or _WATCHDOG_DEFAULT
    unseen = UnseenErrors(watch, item.nodeid, when, grace)
    try:
        with unseen:
            yield from _watchdogged(item, when)
    except TaskDied as exc:  # from the test body's wrapper: the frames between are pytest's
        raise exc.with_traceback(None)  # noqa: B904  # its context is the test's own error
    except BaseException as exc:
        unseen.annotate(exc)
        raise
    died = unseen.verdict()
    if died is not None:
        raise died


def _watchdogged(item: pytest.Item, when: str) -> Generator[None, None, None]:
    """Run one phase of ``item`` under the loop watchdog; fail it if a loop blocked."""
    __tracebackhide__ = True
    state = item.config.stash[_WATCHDOG]
    limit = _watchdog_limit(item, state)
    if state.watchdog is None or limit == 0:
        return (yield)
    watchdog = state.install(item.config)
    assert watchdog is not None
    where = f"during {when} of {item.nodeid}"
    reports: list[str] = []
    state.reports = reports
    watchdog.watch(limit, where, test=item.nodeid)
    try:
        result = yield
    except BaseException as exc:
        watchdog.unwatch()
        if reports:
            cause = None if _only_interrupts(exc) else exc
            raise LoopBlocked(reports[0]) from cause
        raise
    finally:
        watchdog.unwatch()
        state.reports = None
    if reports:
        raise LoopBlocked(reports[0])
    return result


def _only_interrupts(exc: BaseException) -> bool:
    """True for the watchdog's interruption, alone or in exception groups (trio's)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(inner) for inner in exc.exceptions)
    return isinstance(exc, Interrupt)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    return (yield from _watched(item, "setup"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    return (yield from _watched(item, "teardown"))


def _item_state(item: pytest.Item) -> _ItemState:
    state = item.stash.get(_ITEM, None)
    if state is None:
        state = item.stash[_ITEM] = _ItemState()
    return state


#: A peer or a proxy, served for a test.
_Served_T = TypeVar("_Served_T", bound=Host)


class _Served:
    """The peers (and proxies) one test made: seeded, served on the hub, then stopped and
    verified at its teardown."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.nodeid = request.node.nodeid
        self.state = _item_state(request.node)
        self.own: list[tuple[Host, Serving[Host]]] = []

    def seed(self, session_seed: int | None, given: int | None) -> int:
        """The seed of the next peer: ``given``, or one that follows from the session's, the
        test's id and the peer's number, so ``--fakepeer-seed`` replays it wherever it runs."""
        if given is not None:
            return given
        digest = hashlib.sha256(f"{session_seed}/{self.nodeid}/{len(self.own)}".encode())
        return int.from_bytes(digest.digest()[:4], "big")

    def serve(self, peer: _Served_T, *, in_loop: bool = False) -> _Served_T:
        serving = peer.serve()
        if in_loop and current_async_library() is None:  # setup: the test's loop is not on
            serving.listen()
            self.state.deferred.append(serving)
        else:
            serving.start()
        self.own.append((peer, serving))
        self.state.peers.append((peer, serving))
        return peer

    def finish(self) -> None:
        __tracebackhide__ = True
        first: BaseException | None = None
        state = self.state
        for peer, serving in reversed(self.own):
            try:
                serving.stop(wait=False)  # no hand-over when only clients' closes are left
                if not state.reported:
                    peer.verify()
                    continue
                # The test failed and its report showed the peer as it stood then, with
                # what stopping it would find: show the verdict only if it is news (bytes
                # that came since, a problem of the stop itself), once.
                foreseen = state.foreseen.get(id(peer))
                problem = None if foreseen is None else peer._unforeseen(foreseen)
                if problem is not None:
                    state.teardown_verdict = True
                    raise problem
            except BaseException as exc:  # stop them all, then report the first
                first = first or exc
        if first is not None:
            state.reported = True
            raise first


def _options(base: PeerOptions, kwargs: dict[str, object], allowed: list[str]) -> PeerOptions:
    __tracebackhide__ = True
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown fakepeer option(s): {', '.join(unknown)}; "
            f"the options are: {', '.join(allowed)}"
        )
    return dataclasses.replace(base, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def fake_peer_factory(request: pytest.FixtureRequest) -> Iterator[PeerFactory]:
    """Make more serving peers: ``fake_peer_factory(framing=Lines(), name="db")``.

    Each is served on the hub until the test's teardown and verified like ``fake_peer``.
    """
    base = request.config.stash[_OPTIONS]
    served = _Served(request)
    fields = [field.name for field in dataclasses.fields(PeerOptions)]

    def factory(**kwargs: object) -> FakePeer:
        __tracebackhide__ = True
        options = _options(base, kwargs, fields)
        if "serve_in" in kwargs:
            _serve_in(options.serve_in, f"{request.node.nodeid}: fakepeer serve_in")
            if options.serve_in == "loop" and current_async_library() is not None:
                raise ScriptError(
                    "fake_peer_factory(serve_in='loop') serves a peer in the test's loop "
                    "when it is made before that loop runs (in a sync fixture); where a loop "
                    "runs already (the test body, an async fixture), serve in it with "
                    "'async with FakePeer(...).serve()'"
                )
        peer = FakePeer(
            seed=served.seed(base.seed, options.seed if "seed" in kwargs else None),
            framing=options.framing,
            name=options.name,
            host=options.host,
            port=options.port,
            timeout=options.timeout,
            external=options.external,
            max_send_buffer=options.max_send_buffer,
            transcript_budget=options.transcript_budget,
        )
        return served.serve(peer, in_loop=options.serve_in == "loop")

    yield factory
    served.finish()


class ProxyFactory(Protocol):
    """The type of the ``fake_proxy_factory`` fixture."""

    def __call__(
        self,
        upstream: tuple[str, int],
        *,
        name: str = ...,
        host: str = ...,
        port: int = ...,
        timeout: float = ...,
        seed: int | None = ...,
        external: bool = ...,
        max_send_buffer: int = ...,
        transcript_budget: int | None = ...,
    ) -> Proxy: ...


@pytest.fixture
def fake_proxy_factory(request: pytest.FixtureRequest) -> Iterator[ProxyFactory]:
    """Make fault-injecting proxies in front of real servers:
    ``proxy = fake_proxy_factory((host, port))``; served on the hub until the test's
    teardown, where an unreachable upstream fails the test."""
    base = dataclasses.replace(request.config.stash[_OPTIONS], name="proxy")
    served = _Served(request)

    def factory(upstream: tuple[str, int], **kwargs: object) -> Proxy:
        __tracebackhide__ = True
        allowed = [
            *("name", "host", "port", "timeout", "seed"),
            *("external", "max_send_buffer", "transcript_budget"),
        ]
        options = _options(base, kwargs, allowed)
        proxy = Proxy(
            upstream,
            seed=served.seed(base.seed, options.seed if "seed" in kwargs else None),
            name=options.name,
            host=options.host,
            port=options.port,
            timeout=options.timeout,
            external=options.external,
            max_send_buffer=options.max_send_buffer,
            transcript_budget=options.transcript_budget,
        )
        served.serve(proxy)
        return proxy

    yield factory
    served.finish()


@pytest.fixture
def fake_peer(request: pytest.FixtureRequest, fake_peer_factory: PeerFactory) -> FakePeer:
    """A :class:`~fakepeer.FakePeer` already serving on ``127.0.0.1``, verified after the test.

    Configure it with ``@pytest.mark.fakepeer(framing=Lines(), ...)``.
    """
    __tracebackhide__ = True
    marker = request.node.get_closest_marker("fakepeer")
    kwargs = {} if marker is None else dict(marker.kwargs)
    if marker is not None and marker.args:
        raise TypeError("@pytest.mark.fakepeer takes keyword arguments only")
    return fake_peer_factory(**kwargs)


_IN_LOOP_HINT: Final = (
    "\n  fakepeer:    this test's fake_peer is served in the test's own event loop "
    "(serve_in='loop'), so it cannot answer while that loop is blocked: a blocking client "
    "needs the peer on the hub (@pytest.mark.fakepeer(serve_in='hub')) or an async client "
    "instead, and the script's reply callables and handlers must not block either"
)


def _in_the_tests_loop(
    item: pytest.Item, deferred: list[Serving[Host]], beat: float, watch: TaskWatch | None
) -> Any:
    """Wrap the test function (an ``async def``) so that, in the test's own loop, it starts
    the peers listening since setup first and stops them last, and, where the loop has no
    watched selector (uvloop), keeps a :class:`Heartbeat` in it every ``beat`` seconds (0:
    none); with ``watch``, a task that dies unseen stops the test (``TaskDied``). Returns the
    original function to restore, or None when the test is not a coroutine function (its
    peers are served on the hub then)."""
    function = getattr(item, "obj", None)
    if not inspect.iscoroutinefunction(function) or hasattr(function, "hypothesis"):
        for serving in deferred:
            serving.start()
        return None

    @functools.wraps(function)
    async def in_the_tests_loop(*args: Any, **kwargs: Any) -> Any:
        heartbeat = Heartbeat.start(beat) if beat else None
        try:
            for serving in deferred:
                await serving.start_async()
            try:
                with _body_watched(watch):
                    return await function(*args, **kwargs)
            finally:
                for serving in reversed(deferred):
                    await serving.stop_async()
        finally:
            if heartbeat is not None:
                heartbeat.close()

    item.obj = in_the_tests_loop  # type: ignore[attr-defined]  # a Function's
    return function


def _body_watched(watch: TaskWatch | None) -> contextlib.AbstractContextManager[object]:
    if watch is None or current_async_library() != "asyncio":
        return contextlib.nullcontext()  # trio: nurseries raise what their tasks raised
    return WatchedBody(watch)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Follow the tasks of a test's loop from its creation, so that those of async fixtures
    count too: pytest-asyncio's runner fixtures give an ``asyncio.Runner``, its older versions
    an ``event_loop``."""
    __tracebackhide__ = True
    value = yield
    state = request.config.stash[_TASK_DIED]
    loop = None
    if isinstance(value, asyncio.Runner):
        with contextlib.suppress(RuntimeError):  # closed already
            loop = value.get_loop()
    elif fixturedef.argname == "event_loop" and isinstance(value, asyncio.AbstractEventLoop):
        loop = value
    if loop is not None and (state.on or state.watch.phase is not None):
        state.watch.install(loop)
    return value


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    state = item.stash.get(_ITEM, None)
    deferred = state.deferred if state is not None else []
    watchdog = item.config.stash[_WATCHDOG]
    limit = _watchdog_limit(item, watchdog) if watchdog.watchdog is not None else 0.0
    watch_tasks = _task_watch(item)
    original = None
    if deferred or limit or watch_tasks is not None:
        original = _in_the_tests_loop(item, deferred, limit / 4, watch_tasks)
    try:
        yield from _watched(item, "call")
    except BaseException as exc:
        if state is not None:
            state.reported = True
            if isinstance(exc, LoopBlocked) and any(s.in_loop for s in state.deferred):
                exc.diagnosis += _IN_LOOP_HINT
                exc.args = (exc.diagnosis,)
        raise
    finally:
        if original is not None:
            item.obj = original  # type: ignore[attr-defined]  # a Function's, restored
    if state is not None:
        for peer, serving in state.peers:
            serving.settle()
            try:
                peer.verify()
            except BaseException:
                state.reported = state.verdict_shown = True
                for shown, _ in state.peers:
                    state.foreseen[id(shown)] = shown._foreseen()
                raise
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    state = item.stash.get(_ITEM, None)
    if state is None or not report.failed:
        return report
    # the failure is the peer's verdict, and shows the transcript
    shown = state.verdict_shown if call.when == "call" else state.teardown_verdict
    folder = item.config.stash[_DIAGRAMS]
    for number, (peer, _serving) in enumerate(state.peers):
        lines = [] if shown else [peer.report()]  # settles the peer first: every byte read
        if call.when == "call" and id(peer) not in state.foreseen:
            state.foreseen[id(peer)] = peer._foreseen()
        if folder is not None:
            written = _write_diagram(
                folder, item, report=report, peer=peer, number=number, peers=state.peers
            )
            lines.append(f"sequence diagram: {written}")
        if lines:
            report.sections.append((f"fakepeer {peer.name!r}", "\n\n".join(lines)))
    return report


def _write_diagram(
    folder: str,
    item: pytest.Item,
    *,
    report: pytest.TestReport,
    peer: Host,
    number: int,
    peers: list[tuple[Host, Serving[Host]]],
) -> str:
    """Write ``peer``'s sequence diagram for the failing ``item`` into ``folder``: the path
    written, relative to the current directory if under it, or why it could not be."""
    path = os.path.join(folder, _diagram_name(item, report.when, peer, number, len(peers)))
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", "") or ""
    failure = f"{item.nodeid} failed ({report.when}): "
    diagnosis = (failure + message).strip()
    problem = peer._verdict(final=peer._state == "stopped", deliver=False)
    if problem is not None:  # its text, less the transcript: the diagram shows that
        text = str(problem)
        if problem.transcript:
            text = text[: -len(problem.transcript)]
        first = problem.diagnosis.split("\n", 1)[0]
        if first and first in message:  # the failure is this problem: say it once
            diagnosis = failure + message[: message.index(first)] + text.rstrip()
        else:
            diagnosis += f"\n\n{text.rstrip()}"
    elif peer._state != "stopped":
        with _reading(peer._lock, peer._conversation):
            outlook = peer._conversation.outlook()
        if outlook:
            diagnosis += f"\n\n{outlook}"
    try:
        with _reading(peer._lock, peer._conversation):  # the hub may still be adding
            page = peer._now().to_html(diagnosis=diagnosis)
        os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            file.write(page)
    except Exception as exc:  # a diagram that cannot be written does not hide the failure
        return f"not written to {path}: {type(exc).__name__}: {exc}"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _diagram_name(item: pytest.Item, when: str, peer: Host, number: int, peers: int) -> str:
    """The file name of a diagram: the test's node id made safe (shortened) and a hash of
    the whole of it, the phase unless ``call``, the peer's number and name if the test had
    several; unique in the session (a failure of the same test, peer and phase in an
    earlier run gets the same name)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_.")[:100] or "test"
    digest = hashlib.sha256(item.nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    name += f"-{digest}"
    if when != "call":
        name += f"-{when}"
    if peers > 1:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", peer.name).strip("_.")[:40] or "peer"
        name += f"-peer{number + 1}-{label}"
    used = item.config.stash[_DIAGRAM_NAMES]
    unique, again = name, 1
    while unique.lower() in used:  # the same test reported twice (a rerun plugin)
        again += 1
        unique = f"{name}-{again}"
    used.add(unique.lower())
    return f"{unique}.html"
