"""The pytest plugin: fixtures, an option, a marker, a report header and report sections.

Fixtures
    ``fake_peer``: a :class:`~fakepeer.FakePeer` already serving on the hub thread, so it works
    in sync tests and in asyncio, anyio and trio tests alike. Script it, point the client at
    ``fake_peer.address``. When the test body returns, the peer is verified: unexpected data,
    a failing reply callable, or an unmet ``expect`` fails the test with the transcript.
    ``fake_peer_factory``: call it for more peers, with keyword options.

Option (ini < command line < marker)
    ``fakepeer_timeout`` / ``--fakepeer-timeout``: default bound of the ``wait_*`` sync points.

Marker
    ``@pytest.mark.fakepeer(framing=..., name=..., host=..., timeout=...)`` configures the
    ``fake_peer`` fixture of that test.

Everything here only wires pytest to the library; the library works without pytest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator, Iterator
from typing import Final, Protocol

import pytest

from ._framing import Framing
from ._peer import FakePeer, Serving
from ._version import __version__

__all__ = ["PeerFactory", "PeerOptions"]

_TIMEOUT_HELP: Final = "default timeout in seconds of fakepeer's wait_* sync points (default: 5)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PeerOptions:
    """Options of a peer made by the fixtures; marker keywords replace fields by name."""

    framing: Framing | None = None
    name: str = "fake peer"
    host: str = "127.0.0.1"
    port: int = 0
    timeout: float = 5.0


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
    ) -> FakePeer: ...


@dataclasses.dataclass
class _ItemState:
    peers: list[tuple[FakePeer, Serving]] = dataclasses.field(default_factory=list)
    reported: bool = False  # a failure was already reported for this test
    verdict_shown: bool = False  # the failure is the peer's verdict, transcript included


_OPTIONS: Final = pytest.StashKey[PeerOptions]()
_ITEM: Final = pytest.StashKey[_ItemState]()


def _parse_timeout(value: object, source: str) -> float:
    try:
        timeout = float(value)  # type: ignore[arg-type]  # validated right here
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{source}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(timeout) or timeout <= 0:
        raise pytest.UsageError(f"{source}: expected a positive number of seconds, got {value!r}")
    return timeout


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakepeer", "fake TCP peers for testing clients")
    group.addoption("--fakepeer-timeout", dest="fakepeer_timeout", default=None, help=_TIMEOUT_HELP)
    parser.addini("fakepeer_timeout", help=_TIMEOUT_HELP, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fakepeer(framing=None, name='fake peer', host='127.0.0.1', port=0, timeout=5.0): "
        "options of the fake_peer fixture for this test",
    )
    options = PeerOptions()
    ini = config.getini("fakepeer_timeout")
    if ini not in (None, ""):
        options = dataclasses.replace(options, timeout=_parse_timeout(ini, "ini fakepeer_timeout"))
    cli = config.getoption("fakepeer_timeout")
    if cli is not None:
        options = dataclasses.replace(options, timeout=_parse_timeout(cli, "--fakepeer-timeout"))
    config.stash[_OPTIONS] = options


def pytest_report_header(config: pytest.Config) -> str:
    options = config.stash[_OPTIONS]
    return f"fakepeer: {__version__}, timeout={options.timeout:g}s, host={options.host}"


def _item_state(item: pytest.Item) -> _ItemState:
    state = item.stash.get(_ITEM, None)
    if state is None:
        state = item.stash[_ITEM] = _ItemState()
    return state


@pytest.fixture
def fake_peer_factory(request: pytest.FixtureRequest) -> Iterator[PeerFactory]:
    """Make more serving peers: ``fake_peer_factory(framing=Lines(), name="db")``.

    Each is served on the hub until the test's teardown and verified like ``fake_peer``.
    """
    base = request.config.stash[_OPTIONS]
    state = _item_state(request.node)
    own: list[tuple[FakePeer, Serving]] = []

    def factory(**kwargs: object) -> FakePeer:
        __tracebackhide__ = True
        fields = [field.name for field in dataclasses.fields(PeerOptions)]
        unknown = sorted(set(kwargs) - set(fields))
        if unknown:
            raise TypeError(
                f"unknown fakepeer option(s): {', '.join(unknown)}; "
                f"the options are: {', '.join(fields)}"
            )
        options = dataclasses.replace(base, **kwargs)  # type: ignore[arg-type]
        peer = FakePeer(
            framing=options.framing,
            name=options.name,
            host=options.host,
            port=options.port,
            timeout=options.timeout,
        )
        serving = peer.serve()
        serving.__enter__()
        own.append((peer, serving))
        state.peers.append((peer, serving))
        return peer

    yield factory

    __tracebackhide__ = True
    first: BaseException | None = None
    for peer, _serving in reversed(own):
        try:
            peer._stop_on_hub()
            if not state.reported:
                peer.verify()
        except BaseException as exc:  # stop them all, then report the first
            first = first or exc
    if first is not None:
        state.reported = True
        raise first


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    state = item.stash.get(_ITEM, None)
    try:
        result = yield
    except BaseException:
        if state is not None:
            state.reported = True
        raise
    if state is not None:
        for peer, _serving in state.peers:
            peer._settle()
            try:
                peer.verify()
            except BaseException:
                state.reported = state.verdict_shown = True
                raise
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    state = item.stash.get(_ITEM, None)
    if state is not None and report.failed and not (call.when == "call" and state.verdict_shown):
        for peer, _serving in state.peers:
            report.sections.append((f"fakepeer {peer.name!r}", peer._report()))
    return report
