"""Benchmark the loop watchdog's overhead on asyncio loopback work, plain loop vs watched loop.

Run it with ``python benchmarks/bench_watchdog.py`` (about a minute), ``--quick`` (a few
seconds, for the smoke test) and ``--json PATH`` to keep the results. See
``benchmarks/README.md``.

The watchdog's only cost in a running loop is its selector: while it is installed,
``selectors.DefaultSelector`` is a subclass whose ``select`` checks the thread and notes two
timestamps on every loop iteration. Each sample runs a workload in a fresh event loop
(``asyncio.run``), made either with the plain default selector or while a ``Watchdog`` is
installed and watching (its thread running, as during a test). Three workloads:

echo    round trips between an asyncio streams client and a bare ``asyncio.Protocol`` echo
        server, on a connection already open (time per round trip).
writes  many small writes, each followed by ``await asyncio.sleep(0)``, so that every write
        costs one loop iteration and one ``select``: the watchdog's worst case (time per write).
loop    a whole short-lived loop: ``asyncio.run`` of start a server, connect, one round trip,
        close (the per-test cost; the watchdog's install itself is once per session).

Plain and watched samples are interleaved with a third variant, a second plain one (the A/A
control: how far apart two identical variants land on this machine), cycling through every
order; installing and uninstalling the watchdog happens outside the timed region. The table
shows medians in microseconds and the ratio of the medians, watched / plain.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import selectors
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from _common import Samples, orders

from fakepeer import __version__
from fakepeer._watchdog import Watchdog

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


FULL: Final = Plan(warmup=12, rounds=300, trips=200, writes=400, loops=3)
QUICK: Final = Plan(warmup=6, rounds=12, trips=50, writes=100, loops=1)


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


def render(rows: Sequence[Row]) -> str:
    head = (
        f"{'row':<7} {'what':<44} {'plain µs':>9} {'watched µs':>11} "
        f"{'ratio':>6} {'paired':>7} {'A/A':>6}  vs {TARGET}x"
    )
    lines = [head, "-" * len(head)]
    lines.extend(
        f"{row.label:<7} {row.description:<44} {row.plain.median * 1e6:>9.2f} "
        f"{row.watched.median * 1e6:>11.2f} {row.ratio:>6.3f} {row.paired_ratio:>7.3f} "
        f"{row.control_ratio:>6.3f}  {row.verdict}"
        for row in rows
    )
    lines.append(
        "ratio = median(watched) / median(plain); paired = median of per-sample ratios; "
        "A/A = median(plain again) / median(plain), the noise. "
        "Per round trip, per write, per loop."
    )
    return "\n".join(lines)


# -- the workloads ------------------------------------------------------------------------------

#: Selector classes the samples' loops actually used, per variant: proof of what was measured.
seen: dict[str, set[str]] = {"plain": set(), "watched": set()}


def _note_selector(variant: str) -> None:
    selector = getattr(asyncio.get_running_loop(), "_selector", None)
    seen[variant].add(type(selector).__name__)


class Echo(asyncio.Protocol):
    """The server: writes back whatever it receives, no streams, no tasks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

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


# -- plain and watched --------------------------------------------------------------------------

#: Diagnoses the watchdog reported during the run: none expected (no sample blocks its loop).
alarms: list[str] = []


def warm_up(variant: str) -> None:
    """Before every sample, untimed, in both variants: a pause, then one whole short loop.

    Installing the watchdog starts a thread and makes a new selector class, and the loop's
    call sites last saw the other variant: first-use costs that a test session pays once, at
    install, not in every test. This keeps them out of the sample.
    """
    time.sleep(SETTLE)
    asyncio.run(whole_loop(variant))


def plain(run: Callable[[], T]) -> T:
    warm_up("plain")
    return run()


def watched(run: Callable[[], T]) -> T:
    watchdog = Watchdog(report=alarms.append)
    watchdog.install()
    watchdog.watch(LIMIT, "bench")
    try:
        warm_up("watched")
        return run()
    finally:
        watchdog.unwatch()
        watchdog.uninstall()


def in_fresh_loop(
    make: Callable[[str], Coroutine[Any, Any, float]],
) -> dict[str, Callable[[], float]]:
    """Plain and watched samples of a workload timed inside ``asyncio.run``."""
    return {
        "plain": lambda: plain(lambda: asyncio.run(make("plain"))),
        "watched": lambda: watched(lambda: asyncio.run(make("watched"))),
    }


def whole(count: int) -> dict[str, Callable[[], float]]:
    """Plain and watched samples timing ``count`` whole ``asyncio.run`` calls, per call."""

    def timed(variant: str) -> float:
        start = now()
        for _ in range(count):
            asyncio.run(whole_loop(variant))
        return (now() - start) / 1e9 / count

    return {
        "plain": lambda: plain(lambda: timed("plain")),
        "watched": lambda: watched(lambda: timed("watched")),
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

    print(
        f"fakepeer {__version__} on Python {platform.python_version()} "
        f"({platform.system()} {platform.machine()}), {'quick' if args.quick else 'full'} run; "
        f"default selector {selectors.DefaultSelector.__name__}, watchdog limit {LIMIT:g} s"
    )
    begun = time.perf_counter()
    rows = [
        measure(
            "echo",
            "round trip, streams client, Protocol echo",
            in_fresh_loop(lambda variant: echo(variant, plan.trips)),
            plan,
        ),
        measure(
            "writes",
            "16-byte write + sleep(0): one select each",
            in_fresh_loop(lambda variant: small_writes(variant, plan.writes)),
            plan,
        ),
        measure(
            "loop",
            "asyncio.run: server, connect, 1 trip, close",
            whole(plan.loops),
            plan,
        ),
    ]
    took = time.perf_counter() - begun

    print(render(rows))
    misses = [row.label for row in rows if row.verdict == "MISS"]
    selectors_used = {variant: sorted(names) for variant, names in seen.items()}
    print(
        f"selectors used: plain {', '.join(selectors_used['plain'])}; "
        f"watched {', '.join(selectors_used['watched'])}; watchdog alarms: {len(alarms)}"
    )
    print(
        f"{len(rows) - len(misses)}/{len(rows)} within {TARGET}x"
        + (f" (missed: {', '.join(misses)})" if misses else "")
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
            "selectors": selectors_used,
            "alarms": len(alarms),
            "rows": [row.to_json() for row in rows],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
