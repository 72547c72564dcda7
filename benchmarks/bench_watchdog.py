"""Benchmark the loop watchdog's overhead on loopback work, plain loop vs watched loop: asyncio
selector loops, trio runs and uvloop.

Run it with ``python benchmarks/bench_watchdog.py`` (a few minutes), ``--quick`` (a few
seconds, for the smoke test) and ``--json PATH`` to keep the results. See
``benchmarks/README.md``.

What the watchdog costs a running loop depends on how it sees that loop (see the module
docstring of ``fakepeer._watchdog``):

- an asyncio selector loop: while the watchdog is installed, ``selectors.DefaultSelector`` is
  a subclass whose ``select`` notes the thread and a timestamp on every loop iteration;
- a trio run: ``trio.run`` adds an instrument whose ``before_task_step`` and
  ``after_task_step`` run around every task step;
- uvloop (no selector to watch): a ``Heartbeat``, a ``call_later`` timer every limit / 4 that
  the pytest plugin starts in the test's loop.

Each sample runs a workload in a fresh loop (``asyncio.run``, ``trio.run``, or an
``asyncio.Runner`` on ``uvloop.new_event_loop``), either plain (no watchdog installed) or
while a ``Watchdog`` is installed and watching (its thread running, as during a test; for
uvloop, with a heartbeat running in the loop). The workloads:

echo          round trips between an asyncio streams client and a bare ``asyncio.Protocol``
              echo server, on a connection already open (time per round trip).
writes        many small writes, each followed by ``await asyncio.sleep(0)``, so that every
              write costs one loop iteration and one ``select``: the worst case for the
              selector (time per write).
loop          a whole short-lived loop: ``asyncio.run`` of start a server, connect, one round
              trip, close (the per-test cost; the watchdog's install itself is once per
              session).
trio echo     round trips between a trio ``SocketStream`` client and a ``trio.serve_tcp``
              echo handler (time per round trip).
trio steps    ``await trio.sleep(0)`` in a loop: one task step each, the worst case for the
              instrument (time per step).
uvloop echo   the echo workload on uvloop.
uvloop writes the writes workload on uvloop.

The trio rows need trio, the uvloop rows uvloop; without it they are skipped, with a note.

Plain and watched samples are interleaved with a third variant, a second plain one (the A/A
control: how far apart two identical variants land on this machine), cycling through every
order; installing and uninstalling the watchdog happens outside the timed region. The table
shows medians in microseconds and the ratio of the medians, watched / plain. Every sample
checks, untimed, that its loop is watched (or not) as its variant says.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import platform
import selectors
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Final, TypeVar, cast

from _common import Samples, orders

from fakepeer import __version__, _watch_sources
from fakepeer._watchdog import Heartbeat, Watchdog

try:
    import trio
except ImportError:  # the trio rows are skipped
    HAVE_TRIO = False
else:
    HAVE_TRIO = True

try:
    import uvloop
except ImportError:  # the uvloop rows are skipped
    HAVE_UVLOOP = False
else:
    HAVE_UVLOOP = True

T = TypeVar("T")

HOST: Final = "127.0.0.1"
#: One echo request: a 64-byte line.
MESSAGE: Final = b"x" * 63 + b"\n"
#: One small write of the ``writes`` workload.
CHUNK: Final = b"0123456789abcdef"
#: The target: a watched loop at most this many times as slow as a plain one.
TARGET: Final = 1.05
#: The watchdog's limit while a sample runs: the plugin's default.
LIMIT: Final = 0.5
#: The heartbeat's interval in a loop without a watched selector, as the plugin starts it.
BEAT: Final = LIMIT / 4
#: Pause before every sample (after installing the watchdog, for a watched one).
SETTLE: Final = 0.002

now = time.perf_counter_ns


@dataclass(frozen=True)
class Plan:
    """How many interleaved rounds to take, and the size of one sample of each workload."""

    warmup: int
    rounds: int
    trips: int  # echo: round trips per sample
    writes: int  # writes: writes per sample
    loops: int  # loop: asyncio.run calls per sample
    steps: int  # trio steps: task steps per sample


FULL: Final = Plan(warmup=12, rounds=300, trips=200, writes=400, loops=3, steps=1000)
QUICK: Final = Plan(warmup=6, rounds=12, trips=50, writes=100, loops=1, steps=200)


# -- statistics and the report ------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a workload, watched beside plain (and plain beside plain)."""

    label: str
    description: str
    plain: Samples
    watched: Samples
    control: Samples

    @property
    def ratio(self) -> float:
        return self.watched.median / self.plain.median

    @property
    def paired_ratio(self) -> float:
        """Median of sample-by-sample ratios (samples taken next to each other)."""
        pairs = zip(self.watched.values, self.plain.values, strict=True)
        return statistics.median(w / p for w, p in pairs if p > 0)

    @property
    def control_ratio(self) -> float:
        """The A/A ratio, median(second plain) / median(plain): the noise floor of this run."""
        return self.control.median / self.plain.median

    @property
    def verdict(self) -> str:
        return "PASS" if self.ratio <= TARGET else "MISS"

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "description": self.description,
            "plain": self.plain.summary(),
            "watched": self.watched.summary(),
            "control": self.control.summary(),
            "ratio": self.ratio,
            "paired_ratio": self.paired_ratio,
            "control_ratio": self.control_ratio,
            "target": TARGET,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Skipped:
    """A row that was not measured, and why (trio or uvloop not installed)."""

    label: str
    description: str
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"label": self.label, "description": self.description, "skipped": self.reason}


LABEL: Final = 13
WHAT: Final = 44


def render(rows: Sequence[Row | Skipped]) -> str:
    head = (
        f"{'row':<{LABEL}} {'what':<{WHAT}} {'plain µs':>9} {'watched µs':>11} "
        f"{'ratio':>6} {'paired':>7} {'A/A':>6}  vs {TARGET}x"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        if isinstance(row, Skipped):
            lines.append(f"{row.label:<{LABEL}} {row.description:<{WHAT}} skipped: {row.reason}")
            continue
        lines.append(
            f"{row.label:<{LABEL}} {row.description:<{WHAT}} {row.plain.median * 1e6:>9.2f} "
            f"{row.watched.median * 1e6:>11.2f} {row.ratio:>6.3f} {row.paired_ratio:>7.3f} "
            f"{row.control_ratio:>6.3f}  {row.verdict}"
        )
    lines.append(
        "ratio = median(watched) / median(plain); paired = median of per-sample ratios; "
        "A/A = median(plain again) / median(plain), the noise. "
        "Per round trip, per write, per loop, per step."
    )
    return "\n".join(lines)


# -- what each sample's loop was: proof of what was measured ------------------------------------

#: Selector classes the asyncio samples' loops actually used, per variant.
seen: dict[str, set[str]] = {"plain": set(), "watched": set()}
#: The watchdog's sources (the loops it sees) on the sample's thread, per family and variant:
#: none in a plain sample, one that has marked the loop in a watched one.
sources: dict[str, dict[str, set[str]]] = {}


def _note_selector(variant: str) -> None:
    selector = getattr(asyncio.get_running_loop(), "_selector", None)
    if selector is not None:  # None on uvloop
        seen[variant].add(type(selector).__name__)


def _note_sources(family: str, variant: str) -> None:
    """Check, from inside the sample's loop, that the watchdog sees it or not, as ``variant``
    says: in a watched sample a source on this thread has a mark (a watched selector after a
    ``select``, the trio instrument in the current task step, a heartbeat), in a plain one
    the watchdog has no source on this thread."""
    me = threading.get_ident()
    mine = [source for source in _watch_sources._snapshot() if source.thread == me]
    names = {type(source).__name__ for source in mine}
    if variant == "watched" and not any(source.busy is not None for source in mine):
        raise AssertionError(f"a watched {family} sample, but no source marks its loop: {names}")
    if variant == "plain" and mine:
        raise AssertionError(f"a plain {family} sample, but the watchdog sees its loop: {names}")
    sources.setdefault(family, {"plain": set(), "watched": set()})[variant].update(names)


# -- the asyncio workloads (on the default loop, and on uvloop) ---------------------------------


class Echo(asyncio.Protocol):
    """The server: writes back whatever it receives, no streams, no tasks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: only duck-typed.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class Connection:
    """An echo server and a streams client connected to it, in the running loop."""

    server: asyncio.Server
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def __aenter__(self) -> Connection:
        self.server = await asyncio.get_running_loop().create_server(Echo, HOST, 0)
        address = self.server.sockets[0].getsockname()
        self.reader, self.writer = await asyncio.open_connection(address[0], address[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.writer.close()
        await self.writer.wait_closed()
        self.server.close()
        await self.server.wait_closed()


async def echo(variant: str, trips: int) -> float:
    _note_selector(variant)
    async with Connection() as conn:
        start = now()
        for _ in range(trips):
            conn.writer.write(MESSAGE)
            if await conn.reader.readline() != MESSAGE:
                raise AssertionError("the echo server did not echo")
        elapsed = now() - start
    return elapsed / 1e9 / trips


async def small_writes(variant: str, writes: int) -> float:
    _note_selector(variant)
    async with Connection() as conn:
        start = now()
        for _ in range(writes):
            conn.writer.write(CHUNK)
            await asyncio.sleep(0)  # one loop iteration, one select(), per write
        echoed = await conn.reader.readexactly(len(CHUNK) * writes)
        elapsed = now() - start
    if echoed != CHUNK * writes:
        raise AssertionError("the echo server did not echo")
    return elapsed / 1e9 / writes


async def whole_loop(variant: str) -> None:
    _note_selector(variant)
    async with Connection() as conn:
        conn.writer.write(MESSAGE)
        if await conn.reader.readline() != MESSAGE:
            raise AssertionError("the echo server did not echo")


# -- the trio workloads -------------------------------------------------------------------------


async def trio_echo_handler(stream: trio.SocketStream) -> None:
    """The trio server: writes back whatever it receives."""
    async for data in stream:
        await stream.send_all(data)


async def trio_round_trip(stream: trio.SocketStream) -> None:
    await stream.send_all(MESSAGE)
    received = b""
    while len(received) < len(MESSAGE):
        data = await stream.receive_some()
        if not data:
            break
        received += data
    if received != MESSAGE:
        raise AssertionError("the trio echo server did not echo")


async def trio_connection(
    trips: int, work: Callable[[trio.SocketStream], Awaitable[None]]
) -> float:
    """Start a ``serve_tcp`` echo server, connect to it, time ``trips`` calls of ``work``
    (per call), close both."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host=HOST), trio_echo_handler, 0
        )
        port = listeners[0].socket.getsockname()[1]
        async with await trio.open_tcp_stream(HOST, port) as stream:
            start = now()
            for _ in range(trips):
                await work(stream)
            elapsed = now() - start
        nursery.cancel_scope.cancel()
    return elapsed / 1e9 / max(trips, 1)


async def trio_echo(trips: int) -> float:
    return await trio_connection(trips, trio_round_trip)


async def trio_steps(steps: int) -> float:
    sleep = trio.sleep
    start = now()
    for _ in range(steps):
        await sleep(0)  # one checkpoint: the task is rescheduled, one task step each
    return (now() - start) / 1e9 / steps


async def trio_whole_loop() -> None:
    await trio_connection(1, trio_round_trip)


# -- families of loops: how a sample's loop is made, warmed up and watched ----------------------

Make = Callable[[str], Awaitable[T]]  # the workload, given the variant


class Family:
    """How to run a workload in a fresh loop of one kind."""

    name = "asyncio"

    def run(self, make: Make[T], variant: str) -> T:
        return asyncio.run(self.checked(make, variant))

    async def checked(self, make: Make[T], variant: str) -> T:
        _note_sources(self.name, variant)
        return await make(variant)

    def warm_up(self, variant: str) -> None:
        """Before every sample, untimed, in both variants: a pause, then one whole short loop.

        Installing the watchdog starts a thread and makes a new selector class (or patches
        ``trio.run``), and the loop's call sites last saw the other variant: first-use costs
        that a test session pays once, at install, not in every test. This keeps them out of
        the sample.
        """
        time.sleep(SETTLE)
        self.run(whole_loop, variant)


class TrioFamily(Family):
    name = "trio"

    def run(self, make: Make[T], variant: str) -> T:
        # trio.run looked up now: while the watchdog is installed, it adds the instrument.
        return trio.run(self.checked, make, variant)

    def warm_up(self, variant: str) -> None:
        time.sleep(SETTLE)
        self.run(lambda _: trio_whole_loop(), variant)


class UvloopFamily(Family):
    """uvloop has no selector to watch: a watched sample runs with a heartbeat in the loop,
    as the pytest plugin starts one in a test's uvloop loop."""

    name = "uvloop"

    def run(self, make: Make[T], variant: str) -> T:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(self.beating(make, variant))

    async def beating(self, make: Make[T], variant: str) -> T:
        beat = Heartbeat.start(BEAT) if variant == "watched" else None
        try:
            return await self.checked(make, variant)
        finally:
            if beat is not None:
                beat.close()


# -- plain and watched --------------------------------------------------------------------------

#: Diagnoses the watchdog reported during the run: none expected (no sample blocks its loop).
alarms: list[str] = []


def plain(family: Family, run: Callable[[], T]) -> T:
    family.warm_up("plain")
    return run()


def watched(family: Family, run: Callable[[], T]) -> T:
    watchdog = Watchdog(report=alarms.append)
    watchdog.install()
    watchdog.watch(LIMIT, "bench")
    try:
        family.warm_up("watched")
        return run()
    finally:
        watchdog.unwatch()
        watchdog.uninstall()


def in_fresh_loop(family: Family, make: Make[float]) -> dict[str, Callable[[], float]]:
    """Plain and watched samples of a workload timed inside a fresh loop of ``family``."""
    return {
        "plain": lambda: plain(family, lambda: family.run(make, "plain")),
        "watched": lambda: watched(family, lambda: family.run(make, "watched")),
    }


def whole(family: Family, count: int) -> dict[str, Callable[[], float]]:
    """Plain and watched samples timing ``count`` whole loop runs, per run."""

    def timed(variant: str) -> float:
        start = now()
        for _ in range(count):
            family.run(whole_loop, variant)
        return (now() - start) / 1e9 / count

    return {
        "plain": lambda: plain(family, lambda: timed("plain")),
        "watched": lambda: watched(family, lambda: timed("watched")),
    }


def measure(label: str, description: str, runs: dict[str, Callable[[], float]], plan: Plan) -> Row:
    row = Row(label, description, Samples("plain"), Samples("watched"), Samples("control"))
    cases = [
        (row.plain, runs["plain"]),
        (row.watched, runs["watched"]),
        (row.control, runs["plain"]),
    ]
    for order in orders(cases, plan.warmup):
        for _, run in order:
            run()
    for order in orders(cases, plan.rounds):
        for samples, run in order:
            samples.values.append(run())
    return row


def measure_all(plan: Plan) -> list[Row | Skipped]:
    default = Family()
    rows: list[Row | Skipped] = [
        measure(
            "echo",
            "round trip, streams client, Protocol echo",
            in_fresh_loop(default, lambda variant: echo(variant, plan.trips)),
            plan,
        ),
        measure(
            "writes",
            "16-byte write + sleep(0): one select each",
            in_fresh_loop(default, lambda variant: small_writes(variant, plan.writes)),
            plan,
        ),
        measure(
            "loop",
            "asyncio.run: server, connect, 1 trip, close",
            whole(default, plan.loops),
            plan,
        ),
    ]
    trio_echo_row = ("trio echo", "round trip, trio SocketStream, serve_tcp")
    trio_steps_row = ("trio steps", "await trio.sleep(0): one task step each")
    if HAVE_TRIO:
        on_trio = TrioFamily()
        rows += [
            measure(*trio_echo_row, in_fresh_loop(on_trio, lambda _: trio_echo(plan.trips)), plan),
            measure(
                *trio_steps_row, in_fresh_loop(on_trio, lambda _: trio_steps(plan.steps)), plan
            ),
        ]
    else:
        rows += [Skipped(*row, "trio is not installed") for row in (trio_echo_row, trio_steps_row)]
    uv_echo_row = ("uvloop echo", "echo on uvloop; watched: + a Heartbeat")
    uv_writes_row = ("uvloop writes", "writes on uvloop; watched: + a Heartbeat")
    if HAVE_UVLOOP:
        on_uvloop = UvloopFamily()
        rows += [
            measure(
                *uv_echo_row,
                in_fresh_loop(on_uvloop, lambda variant: echo(variant, plan.trips)),
                plan,
            ),
            measure(
                *uv_writes_row,
                in_fresh_loop(on_uvloop, lambda variant: small_writes(variant, plan.writes)),
                plan,
            ),
        ]
    else:
        rows += [Skipped(*row, "uvloop is not installed") for row in (uv_echo_row, uv_writes_row)]
    return rows


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds, few samples")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if not Watchdog.available():
        print("the loop watchdog is not available here (no POSIX signal or not the main thread)")
        return 0

    versions = [f"trio {trio.__version__}" if HAVE_TRIO else "no trio"]
    versions.append(f"uvloop {version('uvloop')}" if HAVE_UVLOOP else "no uvloop")
    print(
        f"fakepeer {__version__} on Python {platform.python_version()} "
        f"({platform.system()} {platform.machine()}), {'quick' if args.quick else 'full'} run; "
        f"default selector {selectors.DefaultSelector.__name__}, {', '.join(versions)}; "
        f"watchdog limit {LIMIT:g} s"
    )
    begun = time.perf_counter()
    rows = measure_all(plan)
    took = time.perf_counter() - begun

    print(render(rows))
    measured = [row for row in rows if isinstance(row, Row)]
    misses = [row.label for row in measured if row.verdict == "MISS"]
    skipped = [row.label for row in rows if isinstance(row, Skipped)]
    selectors_used = {variant: sorted(names) for variant, names in seen.items()}
    sources_seen = {
        family: {variant: sorted(names) for variant, names in variants.items()}
        for family, variants in sources.items()
    }
    print(
        f"selectors used: plain {', '.join(selectors_used['plain'])}; "
        f"watched {', '.join(selectors_used['watched'])}; watchdog alarms: {len(alarms)}"
    )
    print(
        "the watchdog's sources in watched samples: "
        + "; ".join(
            f"{family} {', '.join(variants['watched'])}"
            for family, variants in sources_seen.items()
        )
        + " (none in plain samples)"
    )
    print(
        f"{len(measured) - len(misses)}/{len(measured)} within {TARGET}x"
        + (f" (missed: {', '.join(misses)})" if misses else "")
        + (f"; skipped: {', '.join(skipped)}" if skipped else "")
        + f"; took {took:.1f} s. A measurement, not a test: the exit status is 0 either way."
    )
    if args.json is not None:
        report = {
            "fakepeer": __version__,
            "python": sys.version,
            "platform": platform.platform(),
            "mode": "quick" if args.quick else "full",
            "plan": dataclasses.asdict(plan),
            "seconds": took,
            "target": TARGET,
            "watchdog_limit": LIMIT,
            "heartbeat_interval": BEAT,
            "trio": trio.__version__ if HAVE_TRIO else None,
            "uvloop": version("uvloop") if HAVE_UVLOOP else None,
            "selectors": selectors_used,
            "sources": sources_seen,
            "alarms": len(alarms),
            "rows": [row.to_json() for row in measured],
            "skipped": [row.to_json() for row in rows if isinstance(row, Skipped)],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
