"""Case 5, a pytest suite: the wall time of a whole ``pytest`` run of N one-exchange tests.

The issue: "A pytest suite: 500 generated tests each using ``fake_peer`` for one exchange,
versus the same 500 tests with a hand-written ``asyncio.start_server`` fixture; wall time of the
whole pytest run; then both under ``pytest-xdist -n 2`` (the speed-up, and no port
collisions)." Target: the fakepeer suite at most 1.2x the hand-written fixture's wall time.

Four suites of N tests (500, or 50 with ``--quick``) are generated in a temporary directory.
Every test is an ``@pytest.mark.asyncio`` test (pytest-asyncio, strict mode) that does one
``PING\\n`` -> ``PONG\\n`` exchange with the same asyncio streams client (:data:`CLIENT`); only
the server differs:

``fakepeer``
    the ``fake_peer`` fixture, ``@pytest.mark.fakepeer(framing=Lines())``, scripted in the
    test with ``fake_peer.expect(b"PING").reply(b"PONG")``.
``fakepeer, async with serve()``
    the same script on a ``FakePeer`` made in the test and served in the test's own loop
    with ``async with peer.serve()`` (no thread hop; what an asyncio-only test can use).
``hand-written fixture`` (the baseline)
    a conftest fixture around ``asyncio.start_server`` with a readline/write handler, the kind
    a careful user writes (it closes the server and waits for its handlers at teardown); run
    with ``-p no:fakepeer``, so fakepeer's plugin is not even loaded.
``pytest-tcpclient``
    its ``tcpserver`` fixture, as its README writes a test, in its own virtual environment
    (see ``_tcpclient.py``); skipped, with the reason, when that is not installed.

A sample is the wall time of one whole ``python -m pytest -q`` process, startup and
collection included: what the user waits for (its CPU time is kept too, as ``cpu``). Each
suite runs once untimed first (which also fills a bytecode cache of the run's own), then the
rounds interleave the contenders (:func:`_common.orders`). Every run must exit 0 and report N
passed; if not, that contender gets an ``error`` with the tail of pytest's output, and is not
run again. A 1-test suite of each kind is timed next to each N-test run, for the marginal cost
of one test. Then the same suites run under ``pytest -n 2`` (pytest-xdist), where all N must
pass again: no port collisions.

Every suite's conftest also has hooks (:data:`_TIMING_CONFTEST`) that record each test's own
wall time (pytest's durations of its setup, call and teardown) and, where fakepeer's plugin is
loaded, the hub's hand-overs during it (``fakepeer._hub.hub.handovers`` before and after), and
write them to a JSON file at the end of a serial run. The issue asks for "paired per-test
ratios in one run": each test's time over the same test's time in the hand-written suite's run
of the same round; the median of those ratios, with its spread, is a table of its own (target:
the ``fake_peer`` fixture at most 1.3x per test), next to the whole-suite figures.

Each environment loads the plugins its suite needs and no others: in fakepeer's (this
interpreter's), the pytest plugins installed for fakepeer's own tests (hypothesis, anyio,
pytest-timeout...) are blocked with ``-p no:NAME`` for all contenders, so that they neither
slow down every run alike (which would flatter the ratio) nor make this environment's startup
heavier than pytest-tcpclient's.

``python benchmarks/case_suite.py [--quick]`` runs the case alone and prints the medians.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import _tcpclient
from _common import orders
from _results import Measurement, Plan, Table, Target

CASE: Final = "suite"
FAKEPEER: Final = "fakepeer"
FAKEPEER_LOOP: Final = "fakepeer, async with serve()"
BASELINE: Final = "hand-written fixture"
TCPCLIENT: Final = "pytest-tcpclient"
#: The issue's target: the fakepeer suite at most this many times the baseline's wall time.
TARGET: Final = 1.2
#: The issue's target for the fixture, per test: paired with the same hand-written test.
PER_TEST_TARGET: Final = 1.3
#: Tests per generated file.
TESTS_PER_FILE: Final = 50
#: Workers of the pytest-xdist runs.
WORKERS: Final = 2
#: Lines of pytest's output kept in an error.
TAIL_LINES: Final = 40
#: The pytest plugins (distributions) the suites need in fakepeer's environment; the others
#: installed there (hypothesis, anyio, pytest-timeout... for fakepeer's own tests) are blocked
#: with ``-p no:NAME``, so that every environment loads what its suite needs and no more.
NEEDED: Final = frozenset({"pytest-asyncio", "pytest-xdist", "fakepeer"})

#: The client of every test, the same for every contender: ``host`` and ``port`` are set just
#: before it.
CLIENT: Final = """\
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"PING\\n")
    assert await reader.readline() == b"PONG\\n"
    writer.close()
    await writer.wait_closed()
"""

_FAKEPEER_HEADER: Final = """\
import asyncio

import pytest
from fakepeer import Lines
"""

_FAKEPEER_TEST: Final = f"""\


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines())
async def test_{{number:03d}}(fake_peer):
    fake_peer.expect(b"PING").reply(b"PONG")
    host, port = fake_peer.address
{CLIENT}"""

_FAKEPEER_LOOP_HEADER: Final = """\
import asyncio

import pytest
from fakepeer import FakePeer, Lines
"""

_FAKEPEER_LOOP_TEST: Final = f"""\


@pytest.mark.asyncio
async def test_{{number:03d}}():
    peer = FakePeer(framing=Lines())
    peer.expect(b"PING").reply(b"PONG")
    async with peer.serve():
        host, port = peer.address
{textwrap.indent(CLIENT, "    ")}"""

_BASELINE_HEADER: Final = """\
import asyncio

import pytest
"""

_BASELINE_TEST: Final = f"""\


@pytest.mark.asyncio
async def test_{{number:03d}}(pong_server):
    host, port = pong_server
{CLIENT}"""

_BASELINE_CONFTEST: Final = '''\
import asyncio

import pytest_asyncio


@pytest_asyncio.fixture
async def pong_server():
    """A PING/PONG line server on a free loopback port; yields (host, port)."""
    handlers = set()

    async def handle(reader, writer):
        handlers.add(asyncio.current_task())
        try:
            while line := await reader.readline():
                writer.write(b"PONG\\n" if line == b"PING\\n" else b"ERR\\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2]
    server.close()
    await server.wait_closed()
    if handlers:  # Python 3.11's wait_closed() does not wait for the connections
        await asyncio.wait_for(asyncio.gather(*handlers), 5)
'''

#: Appended to every suite's conftest: each test's own wall time (setup + call + teardown,
#: pytest's durations of the three phases) and, when fakepeer's plugin is loaded, the hub's
#: hand-overs during it, written as JSON to ``$BENCH_PER_TEST`` at the end of a serial run.
#: It imports nothing that the suite did not import already.
_TIMING_CONFTEST: Final = """

# -- per-test figures for the benchmark (case_suite.py) --
import json as _json
import os as _os
import sys as _sys

_BENCH_TIMES = {}
_BENCH_HANDOVERS = {}
_BENCH_BEFORE = {}


def _bench_handovers():
    module = _sys.modules.get("fakepeer._hub")
    return None if module is None else module.hub.handovers


def pytest_runtest_logstart(nodeid, location):
    _BENCH_BEFORE[nodeid] = _bench_handovers()


def pytest_runtest_logreport(report):
    _BENCH_TIMES[report.nodeid] = _BENCH_TIMES.get(report.nodeid, 0.0) + report.duration


def pytest_runtest_logfinish(nodeid, location):
    before, after = _BENCH_BEFORE.pop(nodeid, None), _bench_handovers()
    if before is not None and after is not None:
        _BENCH_HANDOVERS[nodeid] = after - before


def pytest_sessionfinish(session):
    path = _os.environ.get("BENCH_PER_TEST")
    if path and not hasattr(session.config, "workerinput"):
        with open(path, "w", encoding="utf-8") as out:
            _json.dump({"times": _BENCH_TIMES, "handovers": _BENCH_HANDOVERS}, out)
"""

_TCPCLIENT_HEADER: Final = _BASELINE_HEADER

_TCPCLIENT_TEST: Final = f"""\


@pytest.mark.asyncio
async def test_{{number:03d}}(tcpserver):
    tcpserver.expect_connect()
    tcpserver.expect_bytes(b"PING\\n")
    tcpserver.send_bytes(b"PONG\\n")
    tcpserver.expect_disconnect()
    host, port = "127.0.0.1", tcpserver.service_port
{CLIENT}    await tcpserver.join()
"""

#: pytest.ini of fakepeer's environment (pytest-asyncio 0.24 or later wants the loop scope).
_INI: Final = """\
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
addopts = -p no:cacheprovider
"""
#: pytest.ini of pytest-tcpclient's environment: its pytest-asyncio (0.23) has no loop scope
#: option, and the function scope is what it does anyway.
_INI_OLD_ASYNCIO: Final = """\
[pytest]
asyncio_mode = strict
addopts = -p no:cacheprovider
"""


@dataclass(frozen=True)
class Contender:
    """One way of serving the tests: the code of the suite and how to run it."""

    name: str
    python: str
    header: str
    test: str
    ini: str
    conftest: str = ""
    args: tuple[str, ...] = ()
    #: Why it cannot run -n 2, or None.
    no_xdist: str | None = None

    def write(self, directory: Path, count: int) -> None:
        """Write a suite of ``count`` tests into ``directory``, ``TESTS_PER_FILE`` per file."""
        directory.mkdir(parents=True)
        (directory / "pytest.ini").write_text(self.ini, encoding="utf-8")
        conftest = self.conftest + _TIMING_CONFTEST
        (directory / "conftest.py").write_text(conftest, encoding="utf-8")
        for first in range(0, count, TESTS_PER_FILE):
            numbers = range(first, min(first + TESTS_PER_FILE, count))
            text = self.header + "".join(self.test.format(number=n) for n in numbers)
            (directory / f"test_{first // TESTS_PER_FILE:02d}.py").write_text(text, "utf-8")

    def command(self, workers: int) -> list[str]:
        """``python -m pytest -q``, with ``-n workers`` unless 0."""
        xdist = ["-n", str(workers)] if workers else []
        return [self.python, "-m", "pytest", "-q", *self.args, *xdist]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _describe(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _unneeded_plugins() -> list[str]:
    """``-p no:NAME`` for each pytest plugin of this environment not in :data:`NEEDED`."""
    blocked = []
    for entry in importlib.metadata.entry_points(group="pytest11"):
        distribution = entry.dist.name if entry.dist is not None else ""
        if re.sub(r"[-_.]+", "-", distribution.lower()) not in NEEDED:
            blocked += ["-p", f"no:{entry.name}"]
    return blocked


def _contenders() -> tuple[list[Contender], dict[str, str], list[str]]:
    """The contenders that can run here, why the others cannot (by name), and a note per
    environment on the versions of Python and the plugins."""
    skipped: dict[str, str] = {}
    contenders: list[Contender] = []
    here = {"Python": platform.python_version()} | {
        name: _version(name) for name in ("pytest", "pytest-asyncio", "pytest-xdist", "fakepeer")
    }
    blocked = _unneeded_plugins()
    notes = [
        f"{FAKEPEER} and {BASELINE}: {_describe(here)} ({sys.executable}); plugins not needed "
        f"blocked: `{' '.join(blocked) or 'none'}`"
    ]
    missing = [m for m in ("pytest", "pytest_asyncio", "fakepeer") if not _has(m)]
    no_xdist = None if _has("xdist") else "pytest-xdist is not installed"
    if missing:
        reason = f"not installed in {sys.executable}: {', '.join(missing)}"
        skipped = {FAKEPEER: reason, FAKEPEER_LOOP: reason, BASELINE: reason}
    else:
        contenders.append(
            Contender(
                FAKEPEER,
                sys.executable,
                _FAKEPEER_HEADER,
                _FAKEPEER_TEST,
                _INI,
                args=tuple(blocked),
                no_xdist=no_xdist,
            )
        )
        contenders.append(
            Contender(
                FAKEPEER_LOOP,
                sys.executable,
                _FAKEPEER_LOOP_HEADER,
                _FAKEPEER_LOOP_TEST,
                _INI,
                args=tuple(blocked),
                no_xdist=no_xdist,
            )
        )
        contenders.append(
            Contender(
                BASELINE,
                sys.executable,
                _BASELINE_HEADER,
                _BASELINE_TEST,
                _INI,
                conftest=_BASELINE_CONFTEST,
                args=("-p", "no:fakepeer", *blocked),
                no_xdist=no_xdist,
            )
        )
    why_not = _tcpclient.unavailable()
    if why_not is not None:
        skipped[TCPCLIENT] = why_not
    else:
        there = _tcpclient.versions()
        notes.append(f"{TCPCLIENT}: {_describe(there)} (its own venv, {_tcpclient.VENV})")
        contenders.append(
            Contender(
                TCPCLIENT,
                str(_tcpclient.python()),
                _TCPCLIENT_HEADER,
                _TCPCLIENT_TEST,
                _INI_OLD_ASYNCIO,
                no_xdist=None if "pytest-xdist" in there else "pytest-xdist is not installed",
            )
        )
    return contenders, skipped, notes


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _environment(pycache: Path) -> dict[str, str]:
    """This process's environment, without what would change how pytest or fakepeer behave
    (``PYTEST_*``, ``FAKEPEER_*``, ``PYTHONPATH``...), and with a bytecode cache of its own,
    which the warm-up runs fill as a user's first run would."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("PYTEST_", "FAKEPEER_", "COV_CORE_"))
    }
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _timeout(count: int) -> float:
    """The bound on one pytest run of ``count`` tests (a run takes a few seconds)."""
    return 120.0 + 0.5 * count


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])


_SUMMARY: Final = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)\b")
#: pytest's last line: ``500 passed in 4.21s``, ``1 failed, 499 passed in 5.02s``...
_FINAL: Final = re.compile(
    r"\d+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b.* in "
)


def _verdict(returncode: int, output: str, count: int) -> str | None:
    """None if the run passed all ``count`` tests and nothing else, else what went wrong."""
    summary = next(
        (line for line in reversed(output.splitlines()) if _FINAL.search(line)), "no summary"
    )
    counts = {kind.rstrip("s"): int(n) for n, kind in _SUMMARY.findall(summary)}
    if returncode == 0 and counts == {"passed": count}:
        return None
    return (
        f"pytest exited {returncode} and reported {summary.strip()!r}, "
        f"not {count} passed:\n{_tail(output)}"
    )


@dataclass(frozen=True)
class _Sample:
    """One pytest run: its wall time, and the CPU time (user + system) of pytest and of the
    processes it waited for (pytest-xdist's workers), in seconds."""

    wall: float
    cpu: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` and everything in its session (pytest-xdist's workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _run_pytest(
    contender: Contender, directory: Path, count: int, workers: int, env: dict[str, str]
) -> tuple[_Sample, str | None]:
    """Run one suite: (its times, None) or (its times, what went wrong).

    The wall time is taken with ``perf_counter`` around the whole subprocess, as around
    ``subprocess.run``; the process gets its own session so that a timeout kills
    pytest-xdist's workers too.
    """
    timeout = _timeout(count)
    cpu = _children_cpu()
    start = time.perf_counter()
    with subprocess.Popen(
        contender.command(workers),
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            wall = time.perf_counter() - start
            _kill(process)
            try:
                output, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                output = ""
            sample = _Sample(wall, _children_cpu() - cpu)
            return sample, f"timed out after {timeout:g} s:\n{_tail(output or '')}"
        except BaseException:  # interrupted: leave no pytest behind
            _kill(process)
            raise
    sample = _Sample(time.perf_counter() - start, _children_cpu() - cpu)
    return sample, _verdict(process.returncode, output, count)


@dataclass
class _Suites:
    """Where each contender's suites were written, and how to run them."""

    root: Path
    env: dict[str, str]

    def path(self, contender: Contender, count: int) -> Path:
        slug = re.sub(r"[^a-z0-9]+", "-", contender.name.lower())
        return self.root / f"{slug}-{count}"

    def run(
        self,
        contender: Contender,
        count: int,
        workers: int,
        into: Measurement,
        per_test: dict[str, _PerTest] | None = None,
    ) -> _Sample | None:
        """Run one suite; its times, or None after recording the problem in ``into``. With
        ``per_test``, the figures each test recorded (see :data:`_TIMING_CONFTEST`) go there,
        by node id."""
        env = self.env
        report = self.root / "per-test.json"
        if per_test is not None:
            report.unlink(missing_ok=True)
            env = env | {"BENCH_PER_TEST": str(report)}
        sample, problem = _run_pytest(contender, self.path(contender, count), count, workers, env)
        if problem is None and per_test is not None:
            try:
                per_test.update(_read_per_test(report))
            except (OSError, ValueError) as error:
                problem = f"no per-test figures in {report}: {error}"
        if problem is not None:
            where = f"{count} tests" + (f", -n {workers}" if workers else "")
            into.error = into.error or f"{where}: {problem}"
            return None
        return sample


@dataclass(frozen=True)
class _PerTest:
    """One test's figures from its own run: seconds in setup + call + teardown, and the hub's
    hand-overs during it (None where fakepeer's plugin was not loaded)."""

    seconds: float
    handovers: int | None


def _read_per_test(report: Path) -> dict[str, _PerTest]:
    data = json.loads(report.read_text(encoding="utf-8"))
    times: dict[str, float] = data["times"]
    handovers: dict[str, int] = data["handovers"]
    return {node: _PerTest(float(t), handovers.get(node)) for node, t in times.items()}


@contextlib.contextmanager
def _written(contenders: Sequence[Contender], counts: Sequence[int]) -> Iterator[_Suites]:
    """Every contender's suite of each size, in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fakepeer-suite-") as name:
        root = Path(name)
        suites = _Suites(root, _environment(root / "pycache"))
        for contender in contenders:
            for count in counts:
                contender.write(suites.path(contender, count), count)
        yield suites


def _serial(
    suites: _Suites,
    contenders: Sequence[Contender],
    count: int,
    rounds: int,
    per_round: list[dict[str, dict[str, _PerTest]]],
) -> dict[str, Measurement]:
    """Warm-up, then ``rounds`` interleaved rounds of the N-test suites, each followed by the
    same contender's 1-test suite; the CPU time and the marginal cost of a test go in
    ``extra``. Each round's per-test figures, by contender, are appended to ``per_round``."""
    measured = {c.name: Measurement(c.name) for c in contenders}
    single: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
    for contender in contenders:  # untimed: fills the bytecode cache, and checks the suites
        if suites.run(contender, count, 0, measured[contender.name]) is not None:
            suites.run(contender, 1, 0, measured[contender.name])
    for order in orders(contenders, rounds):
        this_round: dict[str, dict[str, _PerTest]] = {}
        for contender in order:
            measurement = measured[contender.name]
            if measurement.error:
                continue
            tests: dict[str, _PerTest] = {}
            sample = suites.run(contender, count, 0, measurement, per_test=tests)
            one = suites.run(contender, 1, 0, measurement)
            if sample is not None and one is not None:
                measurement.values.append(sample.wall)
                cpu[contender.name].append(sample.cpu)
                single[contender.name].append(one.wall)
                this_round[contender.name] = tests
        per_round.append(this_round)
    for name, measurement in measured.items():
        if measurement.measured:
            measurement.extra["cpu"] = statistics.median(cpu[name])
        if measurement.measured and count > 1:
            base = statistics.median(single[name])
            measurement.extra["1-test suite"] = base
            measurement.extra["ms per test"] = (measurement.median - base) / (count - 1) * 1e3
    return measured


def _parallel(
    suites: _Suites,
    contenders: Sequence[Contender],
    count: int,
    rounds: int,
    serial: dict[str, Measurement],
) -> dict[str, Measurement]:
    """``rounds`` interleaved rounds of the N-test suites under ``-n WORKERS``; the CPU time
    and the speed-up over the serial median go in ``extra``."""
    measured = {
        c.name: Measurement(
            c.name,
            skipped=c.no_xdist or ("not run: it failed serially" if serial[c.name].error else None),
        )
        for c in contenders
    }
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
    runnable = [c for c in contenders if measured[c.name].skipped is None]
    for order in orders(runnable, rounds):
        for contender in order:
            measurement = measured[contender.name]
            if measurement.error:
                continue
            sample = suites.run(contender, count, WORKERS, measurement)
            if sample is not None:
                measurement.values.append(sample.wall)
                cpu[contender.name].append(sample.cpu)
    for name, measurement in measured.items():
        alone = serial[name]
        if measurement.measured:
            measurement.extra["cpu"] = statistics.median(cpu[name])
        if measurement.measured and alone.measured:
            measurement.extra["speedup"] = alone.median / measurement.median
    return measured


def _in_order(
    measured: dict[str, Measurement], skipped: dict[str, str], *, table: str
) -> list[Measurement]:
    """The table's rows, fakepeer's two, baseline, pytest-tcpclient, skipped ones included."""
    rows = []
    for name in (FAKEPEER, FAKEPEER_LOOP, BASELINE, TCPCLIENT):
        if name in measured:
            rows.append(measured[name])
        elif name in skipped:
            rows.append(Measurement(name, skipped=skipped[name]))
        else:  # pragma: no cover - every contender is either measured or skipped
            rows.append(Measurement(name, error=f"not run in the {table} table"))
    return rows


def run(plan: Plan) -> list[Table]:
    """Measure the suites, serially (whole runs, and each test paired with the same test of
    the baseline's run) and under ``-n 2``; three tables."""
    count = plan.pick(500, 50)
    rounds = plan.pick(5, 1)
    contenders, skipped, versions = _contenders()
    per_round: list[dict[str, dict[str, _PerTest]]] = []
    with _written(contenders, (count, 1)) as suites:
        serial = _serial(suites, contenders, count, rounds, per_round)
        parallel = _parallel(suites, contenders, count, rounds, serial)
    paired = _paired_table(per_round, serial, skipped, count)

    first = Table(
        case=CASE,
        title=f"A pytest suite: {count} tests, one exchange each (wall time)",
        unit="s",
        baseline=BASELINE,
        measurements=_in_order(serial, skipped, table="serial"),
        extra_columns=("cpu", "1-test suite", "ms per test"),
    )
    first.targets = [
        Target(
            f"{FAKEPEER} (the fake_peer fixture) suite at most {TARGET}x the {BASELINE}",
            first.ratio(FAKEPEER),
            TARGET,
        ),
        Target(
            f"{FAKEPEER_LOOP} suite at most {TARGET}x the {BASELINE}",
            first.ratio(FAKEPEER_LOOP),
            TARGET,
        ),
    ]
    first.notes = [
        f"A sample is the wall time of one whole `python -m pytest -q` process (startup, "
        f"collection, {count} tests in files of {TESTS_PER_FILE}, exit), perf_counter around "
        f"the subprocess; {rounds} round(s) after one untimed warm-up run of each suite, the "
        f"contenders interleaved in a new order each round. Every run exited 0 with "
        f"{count} passed, or the contender shows an error.",
        "Each test: one `PING\\n` -> `PONG\\n` exchange by the same asyncio streams client "
        "(open_connection, write, readline, assert, close, wait_closed) in an "
        "`@pytest.mark.asyncio` test; pytest-asyncio strict mode, a loop per test, "
        "`-p no:cacheprovider`.",
        f"{FAKEPEER}: the `fake_peer` fixture with `@pytest.mark.fakepeer(framing=Lines())` "
        f'and `fake_peer.expect(b"PING").reply(b"PONG")`, loop watchdog on (the default); '
        f"the fixture serves from fakepeer's background loop thread (the hub), so blocking "
        f"clients work in any test. {FAKEPEER_LOOP}: the same script on a `FakePeer` made in "
        f"the test and served in the test's own loop (`async with peer.serve()`). "
        f"{BASELINE}: a conftest pytest-asyncio fixture around `asyncio.start_server` (a "
        f"readline/write handler; at teardown it closes the server and waits for its "
        f"handlers), run with `-p no:fakepeer`. {TCPCLIENT}: its `tcpserver` fixture as its "
        f"README writes a test (expect_connect, expect_bytes, send_bytes, expect_disconnect, "
        f"join).",
        "cpu: the median CPU time (user + system) of the pytest process and the processes it "
        "waited for, in s; less sensitive than the wall time to other load on the machine. "
        f"1-test suite: the median wall time of the same kind of suite with one test (startup, "
        f"plugins, one test). ms per test: (median of {count} tests - that) / {count - 1}, the "
        f"marginal cost of one test.",
        "The runs have their own bytecode cache (PYTHONPYCACHEPREFIX in the temporary "
        "directory), which the warm-up fills, as a user's first run would; PYTEST_* and "
        "FAKEPEER_* variables are cleared.",
        *versions,
    ]

    second = Table(
        case=CASE,
        title=f"The same {count} tests under pytest-xdist -n {WORKERS} (wall time)",
        unit="s",
        baseline=BASELINE,
        measurements=_in_order(parallel, skipped, table="-n 2"),
        extra_columns=("cpu", "speedup"),
    )
    speedups = [
        f"{m.contender} {m.extra['speedup']:.2f}x" for m in second.measurements if m.measured
    ]
    second.notes = [
        f"`python -m pytest -q -n {WORKERS}`, {rounds} interleaved round(s) after the serial "
        f"ones, on {os.cpu_count()} CPUs. All {count} tests passed in every run, or the "
        f"contender shows an error: no port collisions ({FAKEPEER} and the {BASELINE} bind "
        f"port 0; {TCPCLIENT} asks pytest-asyncio's unused_tcp_port_factory for a port).",
        "speedup: the serial median / the -n 2 median: "
        + (", ".join(speedups) if speedups else "nothing measured both ways")
        + ".",
    ]
    paired_fakepeer = paired.get(FAKEPEER)
    if paired_fakepeer is not None and paired_fakepeer.measured:
        first.notes.insert(
            0,
            f"Per test, paired with the same test in the {BASELINE}'s run of the same round: "
            f"{FAKEPEER} {paired_fakepeer.extra['paired']:.2f}x (p10 "
            f"{paired_fakepeer.extra['p10']:.2f}, p90 {paired_fakepeer.extra['p90']:.2f}); "
            "see the next table.",
        )
    return [first, paired, second]


def _quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p10, median, p90) of ``values``."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], statistics.median(values), deciles[-1]


def _paired_table(
    per_round: Sequence[dict[str, dict[str, _PerTest]]],
    serial: dict[str, Measurement],
    skipped: dict[str, str],
    count: int,
) -> Table:
    """Each test's own time, and its ratio to the same test (same node id) in the baseline's
    run of the same round; the hub's hand-overs per test."""
    measured: dict[str, Measurement] = {}
    ratios: dict[str, list[float]] = {}
    round_medians: dict[str, list[float]] = {}
    handovers: dict[str, list[int]] = {}
    for name, whole in serial.items():
        if whole.error:
            measured[name] = Measurement(
                name, skipped="no per-test figures: its suite failed (see the table above)"
            )
            continue
        measured[name] = Measurement(name)
        ratios[name], round_medians[name], handovers[name] = [], [], []
    for this_round in per_round:
        base = this_round.get(BASELINE, {})
        for name, tests in this_round.items():
            if name not in ratios:
                continue
            measured[name].values.extend(t.seconds * 1e3 for t in tests.values())
            handovers[name].extend(t.handovers for t in tests.values() if t.handovers is not None)
            pairs = [
                t.seconds / base[n].seconds
                for n, t in tests.items()
                if n in base and base[n].seconds > 0
            ]
            ratios[name].extend(pairs)
            if pairs:
                round_medians[name].append(statistics.median(pairs))
    for name, measurement in measured.items():
        if name not in ratios or not ratios[name]:
            continue
        p10, median, p90 = _quantiles(ratios[name])
        measurement.extra |= {"paired": median, "p10": p10, "p90": p90}
        if handovers[name]:
            measurement.extra["hand-overs"] = statistics.median(handovers[name])
    table = Table(
        case=CASE,
        title=f"The same {count} tests, each timed alone and paired with the {BASELINE}'s",
        unit="ms",
        baseline=BASELINE,
        measurements=_in_order(measured, skipped, table="per-test"),
        extra_columns=("paired", "p10", "p90", "hand-overs"),
    )
    fixture = table.get(FAKEPEER)
    in_loop = table.get(FAKEPEER_LOOP)
    table.targets = [
        Target(
            f"{FAKEPEER} (the fake_peer fixture, on the hub) per test at most {PER_TEST_TARGET}x "
            f"the {BASELINE} (median of paired per-test ratios)",
            fixture.extra.get("paired") if fixture is not None else None,
            PER_TEST_TARGET,
        ),
        Target(
            f"{FAKEPEER_LOOP} per test at most {PER_TEST_TARGET}x the {BASELINE} (median of "
            "paired per-test ratios)",
            in_loop.extra.get("paired") if in_loop is not None else None,
            PER_TEST_TARGET,
        ),
    ]
    spreads = [
        f"{name}: " + ", ".join(f"{r:.2f}" for r in medians)
        for name, medians in round_medians.items()
        if medians and name != BASELINE
    ]
    counts = [
        f"{name}: "
        + ", ".join(
            f"{k} in {n} tests" for k, n in sorted(collections.Counter(handovers[name]).items())
        )
        for name in handovers
        if handovers[name]
    ]
    table.notes = [
        "Each test's own wall time, from the serial runs of the table above (the same runs): "
        "pytest's durations of its setup, call and teardown, summed by a "
        "`pytest_runtest_logreport` hook in the suite's conftest (the same hooks in every "
        "suite) and written to a JSON file at the end of the run. median, min and max are "
        "over every test of every round; the ratio column is the ratio of those medians.",
        f"paired: the median, over every test of every round, of (this test's time / the same "
        f"test's time in the {BASELINE}'s run of the same round); p10 and p90 of those ratios "
        "are its spread. The median ratio per round: " + ("; ".join(spreads) or "none") + ".",
        "hand-overs: the median per test of `fakepeer._hub.hub.handovers`, read by the "
        "conftest before and after each test: the times the test's thread handed work to the "
        "hub thread and blocked until it was done. There are two kinds, each skipped when the "
        "hub provably has nothing left to do that could change the verdict: the settle before "
        "the verdict and the stop (skipped when the hub waits in select() with nothing to do "
        "and no socket has unread bytes but, at most, a client's close). Starting a peer is "
        "not one: it listens in the test's thread and hands the socket over without waiting. "
        "Blank where fakepeer's plugin is not loaded. Counts: "
        + ("; ".join(counts) or "none")
        + ".",
    ]
    return table


if __name__ == "__main__":  # the same as: python -m benchmarks --only suite [--quick]
    from run import main

    sys.exit(main(["--only", "suite", *sys.argv[1:]]))
