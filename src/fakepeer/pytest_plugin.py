"""The pytest plugin: fixtures, options, markers, a report header and report sections.

``fake_peer`` is a :class:`~fakepeer.FakePeer` already serving on the hub (any test, any
client), verified when the test body returns; ``fake_peer_factory`` and
``fake_proxy_factory`` make more peers and proxies. The options (:data:`fakepeer.settings.
OPTIONS`, ini < environment < command line < marker) and markers (``fakepeer``,
``loop_watchdog``, ``task_died``) are described in the docs (``api-pytest``,
``api-watchdog``). Each phase of each test runs under the session's
:class:`fakepeer.watchdog.Guard`; a failing test's report gets a ``fakepeer '<name>'``
section per peer, with ``--fakepeer-diagrams=DIR`` a sequence diagram file and with
``--fakepeer-pcapng=DIR`` a pcapng capture.

Everything here only wires pytest to the public library, which works without pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import os
from collections.abc import Generator, Iterator
from typing import Any, Final

import pytest

from fakepeer import FakePeer, Proxy, __version__
from fakepeer.fixtures import ReportFiles, Served, TestPeers
from fakepeer.settings import MARKERS, OPTIONS, PeerFactory, PeerOptions, ProxyFactory, serve_in
from fakepeer.watchdog import Guard, Marker, heartbeat

__all__ = ["PeerFactory", "PeerOptions", "ProxyFactory"]

_OPTIONS: Final = pytest.StashKey[PeerOptions]()
_GUARD: Final = pytest.StashKey[Guard]()
_ITEM: Final = pytest.StashKey[TestPeers]()
_FILES: Final = pytest.StashKey[ReportFiles]()
_PEER_SETTINGS: Final = ("fakepeer_timeout", "fakepeer_serve_in")


@contextlib.contextmanager
def _usage() -> Iterator[None]:
    """A wrong setting (the library's ``ValueError``) is a usage error."""
    __tracebackhide__ = True
    try:
        yield
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _marker(item: pytest.Item, name: str) -> Marker | None:
    marker = item.get_closest_marker(name)
    return None if marker is None else (marker.args, marker.kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakepeer", "fake TCP peers for testing clients")
    for option in OPTIONS:
        kind = {"choices": option.choices} if option.choices else {"metavar": option.metavar}
        group.addoption(option.flag, dest=option.name, default=None, help=option.help, **kind)
        if option.ini:
            parser.addini(option.name, help=option.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    pdb = config.getoption("usepdb", False) or config.getoption("trace", False)
    with _usage():
        guard = Guard.configure(
            ini={name: config.getini(name) for name in Guard.SETTINGS},
            command_line={name: config.getoption(name) for name in Guard.SETTINGS},
            off="--pdb/--trace" if pdb else None,
        )
    config.add_cleanup(guard.close)
    config.stash[_GUARD] = guard
    folders = [config.getoption(name) or config.getini(name) for name in ReportFiles.OPTIONS]
    config.stash[_FILES] = ReportFiles.configure(*folders)
    seed = config.getoption("fakepeer_seed")
    workerinput = getattr(config, "workerinput", None)  # a pytest-xdist worker
    if seed is None and workerinput is not None:  # the controller's: one seed for the session
        seed = workerinput.get("fakepeer_seed")
    with _usage():
        config.stash[_OPTIONS] = PeerOptions.configure(
            ini={name: config.getini(name) for name in _PEER_SETTINGS},
            command_line={name: config.getoption(name) for name in _PEER_SETTINGS},
            seed=seed,
        )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker uses the controller's fault seed, so the one in the header
    replays the run."""
    node.workerinput["fakepeer_seed"] = node.config.stash[_OPTIONS].seed


def pytest_report_header(config: pytest.Config) -> str:
    options = config.stash[_OPTIONS]
    return (
        f"fakepeer: {__version__}, timeout={options.timeout:g}s, host={options.host}, "
        f"serve_in={options.serve_in}, {config.stash[_GUARD].describe()}, "
        f"fault seed={options.seed}"
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Undo the loop watchdog when the session ends, before any ``pytest_unconfigure``: the
    suite's own signal handler and the stdlib's selector are back by then."""
    guard = session.config.stash.get(_GUARD, None)
    if guard is not None:
        guard.uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Follow the tasks of a test's loop from its creation, so that those of async fixtures
    count too: pytest-asyncio's runner fixtures give an ``asyncio.Runner``, its older versions
    an ``event_loop``."""
    __tracebackhide__ = True
    value = yield
    loop = None
    if isinstance(value, asyncio.Runner):
        with contextlib.suppress(RuntimeError):  # closed already
            loop = value.get_loop()
    elif fixturedef.argname == "event_loop" and isinstance(value, asyncio.AbstractEventLoop):
        loop = value
    if loop is not None:
        request.config.stash[_GUARD].follow(loop)
    return value


def _guarded(item: pytest.Item, when: str) -> Generator[None, None, None]:
    """Run one phase of ``item`` under the session's guard (see :meth:`Guard.phase`)."""
    __tracebackhide__ = True
    guard = item.config.stash[_GUARD]
    with _usage():
        task_died = guard.task_died_for(item.nodeid, _marker(item, "task_died"))
        limit = guard.limit_for(item.nodeid, _marker(item, "loop_watchdog"))
    with guard.phase(item.nodeid, when, limit=limit, task_died=task_died):
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    return (yield from _guarded(item, "setup"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    return (yield from _guarded(item, "teardown"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    state = item.stash.get(_ITEM, None)
    deferred = state.deferred if state is not None else []
    guard = item.config.stash[_GUARD]
    with _usage():
        limit = guard.limit_for(item.nodeid, _marker(item, "loop_watchdog"))
        task_died = guard.task_died_for(item.nodeid, _marker(item, "task_died"))
    beat = limit / 4 if guard.watching else 0.0
    original = None
    if deferred or beat or task_died:
        original = _in_the_tests_loop(item, deferred, beat, task_died)
    try:
        yield from _guarded(item, "call")
    except BaseException as exc:
        told = exc if state is None else state.failed(exc)
        if told is not exc:
            raise told from exc.__cause__
        raise
    finally:
        if original is not None:
            item.obj = original  # type: ignore[attr-defined]  # a Function's, restored
    if state is not None:
        state.verify()


def _in_the_tests_loop(item: pytest.Item, deferred: list[Any], beat: float, died: bool) -> Any:
    """Wrap the test function (an ``async def``) so that, in the test's own loop, it starts
    the peers listening since setup first and stops them last, under a heartbeat every
    ``beat`` seconds (0: none) and, with ``died``, :meth:`Guard.body`. Returns the original
    function to restore, or None when the test is not a coroutine function (its peers are
    served on the hub then)."""
    function = getattr(item, "obj", None)
    if not inspect.iscoroutinefunction(function) or hasattr(function, "hypothesis"):
        for serving in deferred:
            serving.start()
        return None
    guard = item.config.stash[_GUARD]

    @functools.wraps(function)
    async def in_the_tests_loop(*args: Any, **kwargs: Any) -> Any:
        with heartbeat(beat):
            for serving in deferred:
                await serving.start_async()
            try:
                with guard.body(died):
                    return await function(*args, **kwargs)
            finally:
                for serving in reversed(deferred):
                    await serving.stop_async()

    item.obj = in_the_tests_loop  # type: ignore[attr-defined]  # a Function's
    return function


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    state = item.stash.get(_ITEM, None)
    if state is None or not report.failed:
        return report
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", "") or ""
    report.sections += state.sections(report.when, message, item.config.stash[_FILES])
    return report


def _served(request: pytest.FixtureRequest, **options: Any) -> Served:
    """A fixture's share of the test's peers (:class:`TestPeers`, one per test)."""
    peers: TestPeers = request.node.stash.setdefault(_ITEM, TestPeers(request.node.nodeid))
    return peers.served(dataclasses.replace(request.config.stash[_OPTIONS], **options))


@pytest.fixture
def fake_peer_factory(request: pytest.FixtureRequest) -> Iterator[PeerFactory]:
    """Make more serving peers: ``fake_peer_factory(framing=Lines(), name="db")``.

    Each is served on the hub until the test's teardown and verified like ``fake_peer``.
    """
    served = _served(request)

    def factory(**kwargs: object) -> FakePeer:
        __tracebackhide__ = True
        options = served.options(kwargs)
        if "serve_in" in kwargs:
            with _usage():
                serve_in(options.serve_in, f"{request.node.nodeid}: fakepeer serve_in")
        in_loop, asked = options.serve_in == "loop", "serve_in" in kwargs
        return served.serve(options.peer(), in_loop=in_loop, asked=asked)

    yield factory
    served.finish()


@pytest.fixture
def fake_proxy_factory(request: pytest.FixtureRequest) -> Iterator[ProxyFactory]:
    """Make fault-injecting proxies in front of real servers:
    ``proxy = fake_proxy_factory((host, port))``; served on the hub until the test's
    teardown, where an unreachable upstream fails the test."""
    served = _served(request, name="proxy")
    allowed: tuple[str, ...] = ("name", "host", "port", "unix", "timeout", "seed", "external")
    allowed += ("max_send_buffer", "transcript_budget", "tls", "tls_hostnames")
    allowed += ("tls_min_version", "tls_max_version", "tls_alpn", "tls_client_cert")
    allowed += ("upstream_tls", "upstream_server_hostname")  # (taken out first: the Proxy's)

    def factory(upstream: tuple[str, int] | str | os.PathLike[str], **kwargs: Any) -> Proxy:
        __tracebackhide__ = True
        tls = {
            k: kwargs.pop(k) for k in ("upstream_tls", "upstream_server_hostname") if k in kwargs
        }
        proxy = served.options(kwargs, allowed).proxy(upstream, **tls)
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
