"""Cases 1 and 2: a whole test's server lifecycle, and round trips on an open connection.

**Lifecycle** (one sample = one test's worth of server): start the server, connect, one
``PING``/``PONG``, close the client, stop the server, everything it started finished.
**Round trip**: one ``PING``/``PONG`` on a connection already open, each trip timed alone, so
the table has p50 and p99.

Contenders, each with the client a test of that kind would use:

- ``asyncio streams`` (the baseline), ``asyncio Protocol`` (the lower bound in Python) and
  ``fakepeer (in-loop)`` (``async with peer.serve()``): in the test's own event loop, with an
  asyncio streams client;
- ``asyncio streams (thread)`` (the same bare server on a background loop thread),
  ``fakepeer (hub)`` (``with peer.serve()``) and ``mountebank`` (its own process, driven over
  its REST API): a blocking ``socket`` client in the main thread.

Samples of every contender alternate, cycling through every order, in one process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from _common import LoopThread, interleaved
from _results import Measurement, Plan, Table, Target
from _servers import (
    ProtocolServer,
    StreamsServer,
    async_close,
    async_trip,
    blocking_connect,
    blocking_trip,
    pingpong_peer,
)

now = time.perf_counter_ns

IN_LOOP = ("asyncio streams", "asyncio Protocol", "fakepeer (in-loop)")
THREADED = ("asyncio streams (thread)", "fakepeer (hub)", "mountebank")
#: The issue's targets.
AT_MOST = 1.3
MOUNTEBANK_FACTOR = 5.0


@dataclass
class Contender:
    """How to take one sample: ``lifecycle()`` returns seconds; ``trips(n)`` returns the
    seconds of each of ``n`` round trips. Either may return an awaitable (in-loop ones)."""

    name: str
    lifecycle: Callable[[], float | Awaitable[float]]
    trips: Callable[[int], list[float] | Awaitable[list[float]]]


# -- in the test's loop ---------------------------------------------------------------------------


async def _timed_async_trips(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
) -> list[float]:
    for _ in range(3):  # warm the connection
        await async_trip(reader, writer)
    times = []
    for _ in range(n):
        start = now()
        await async_trip(reader, writer)
        times.append((now() - start) / 1e9)
    return times


async def streams_lifecycle() -> float:
    start = now()
    server = StreamsServer()
    reader, writer = await asyncio.open_connection(*await server.start())
    await async_trip(reader, writer)
    await async_close(writer)
    await server.stop()
    return (now() - start) / 1e9


async def streams_trips(n: int) -> list[float]:
    server = StreamsServer()
    reader, writer = await asyncio.open_connection(*await server.start())
    times = await _timed_async_trips(reader, writer, n)
    await async_close(writer)
    await server.stop()
    return times


async def protocol_lifecycle() -> float:
    start = now()
    server = ProtocolServer()
    reader, writer = await asyncio.open_connection(*await server.start())
    await async_trip(reader, writer)
    await async_close(writer)
    await server.stop()
    return (now() - start) / 1e9


async def protocol_trips(n: int) -> list[float]:
    server = ProtocolServer()
    reader, writer = await asyncio.open_connection(*await server.start())
    times = await _timed_async_trips(reader, writer, n)
    await async_close(writer)
    await server.stop()
    return times


async def fakepeer_loop_lifecycle() -> float:
    start = now()
    peer = pingpong_peer(always=False)
    async with peer.serve():
        reader, writer = await asyncio.open_connection(*peer.address)
        await async_trip(reader, writer)
        await async_close(writer)
    return (now() - start) / 1e9


async def fakepeer_loop_trips(n: int) -> list[float]:
    async with pingpong_peer(always=True).serve() as peer:
        reader, writer = await asyncio.open_connection(*peer.address)
        times = await _timed_async_trips(reader, writer, n)
        await async_close(writer)
    return times


# -- a background loop thread, a blocking client ------------------------------------------------


def _timed_blocking_trips(address: tuple[str, int], n: int) -> list[float]:
    with blocking_connect(address) as sock:
        for _ in range(3):
            blocking_trip(sock)
        times = []
        for _ in range(n):
            start = now()
            blocking_trip(sock)
            times.append((now() - start) / 1e9)
    return times


def thread_contender(loop_thread: LoopThread) -> Contender:
    def lifecycle() -> float:
        start = now()
        server = StreamsServer()
        with blocking_connect(loop_thread.run(server.start())) as sock:
            blocking_trip(sock)
        loop_thread.run(server.stop())
        return (now() - start) / 1e9

    def trips(n: int) -> list[float]:
        server = StreamsServer()
        times = _timed_blocking_trips(loop_thread.run(server.start()), n)
        loop_thread.run(server.stop())
        return times

    return Contender("asyncio streams (thread)", lifecycle, trips)


def fakepeer_hub_lifecycle() -> float:
    start = now()
    peer = pingpong_peer(always=False)
    with peer.serve(), blocking_connect(peer.address) as sock:
        blocking_trip(sock)
    return (now() - start) / 1e9


def fakepeer_hub_trips(n: int) -> list[float]:
    with pingpong_peer(always=True).serve() as peer:
        return _timed_blocking_trips(peer.address, n)


# -- mountebank -----------------------------------------------------------------------------------


@contextmanager
def mountebank_contender(plan: Plan) -> Iterator[Contender | str]:
    """A contender driving a running mountebank, or the reason it is skipped."""
    try:
        import _mountebank  # noqa: PLC0415 - optional, and slow to start: only when asked
    except ImportError as error:  # pragma: no cover - the module ships with the runner
        yield f"cannot import _mountebank: {error}"
        return
    reason = _mountebank.unavailable()
    if reason is not None:
        yield reason
        return
    with _mountebank.Mountebank() as mb:
        # mountebank runs on node: its first ~1,500 trips are 3-5x slower than the rest (the
        # JIT warming up). The bare servers need no such warm-up; give mountebank its own.
        _mountebank.roundtrip_samples(mb, 10, 1, warmup=plan.pick(2000, 50))

        def lifecycle() -> float:
            return _mountebank.lifecycle_sample(mb)

        def trips(n: int) -> list[float]:
            return _mountebank.roundtrip_each(mb, n)

        yield Contender("mountebank", lifecycle, trips)


# -- measuring ------------------------------------------------------------------------------------


def _contenders(stack: ExitStack, plan: Plan, skipped: dict[str, str]) -> list[Contender]:
    loop_thread = LoopThread(10.0)
    stack.callback(loop_thread.close)
    contenders = [
        Contender("asyncio streams", streams_lifecycle, streams_trips),
        Contender("asyncio Protocol", protocol_lifecycle, protocol_trips),
        Contender("fakepeer (in-loop)", fakepeer_loop_lifecycle, fakepeer_loop_trips),
        thread_contender(loop_thread),
        Contender("fakepeer (hub)", fakepeer_hub_lifecycle, fakepeer_hub_trips),
    ]
    try:
        mb = stack.enter_context(mountebank_contender(plan))
    except Exception as error:  # a contender that should run and cannot even start
        skipped["mountebank"] = f"ERROR: could not start: {error!r}"
    else:
        if isinstance(mb, str):
            skipped["mountebank"] = mb
        else:
            contenders.append(mb)
    return contenders


def _measurement(
    name: str, values: list[float], skipped: dict[str, str], errors: dict[str, str]
) -> Measurement:
    reason = skipped.get(name)
    if reason is not None and reason.startswith("ERROR: "):
        return Measurement(name, error=reason.removeprefix("ERROR: "))
    if reason is not None:
        return Measurement(name, skipped=reason)
    if name in errors:
        return Measurement(name, error=errors[name])
    return Measurement(name, values=values)


def _run_case(
    runner: asyncio.Runner,
    contenders: list[Contender],
    rounds: int,
    warmup: int,
    take: Callable[[Contender], object],
) -> tuple[dict[str, list[float]], dict[str, str]]:
    return interleaved(runner, contenders, lambda c: c.name, take, rounds=rounds, warmup=warmup)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def run(plan: Plan, *, lifecycle: bool = True, roundtrip: bool = True) -> list[Table]:
    """Measure the cases asked for, for every contender; see the module docstring."""
    skipped: dict[str, str] = {}
    life: dict[str, list[float]] = {}
    trips: dict[str, list[float]] = {}
    life_errors: dict[str, str] = {}
    trip_errors: dict[str, str] = {}
    trips_per_sample = plan.pick(100, 10)
    with ExitStack() as stack, asyncio.Runner() as runner:
        contenders = _contenders(stack, plan, skipped)
        if lifecycle:
            life, life_errors = _run_case(
                runner,
                contenders,
                rounds=plan.pick(600, 10),
                warmup=plan.pick(30, 2),
                take=lambda c: c.lifecycle(),
            )
        if roundtrip:
            trips, trip_errors = _run_case(
                runner,
                contenders,
                rounds=plan.pick(40, 2),
                warmup=1,
                take=lambda c: c.trips(trips_per_sample),
            )
    names = [*IN_LOOP, *THREADED]
    life_table = Table(
        case="lifecycle",
        title="Per-test lifecycle: start, connect, one exchange, stop",
        unit="µs",
        baseline="asyncio streams",
        measurements=[
            _scaled(_measurement(n, life.get(n, []), skipped, life_errors)) for n in names
        ],
        notes=[
            "The first three share the test's event loop and an asyncio streams client; the "
            "last three use a blocking socket client in the main thread (a background loop "
            "thread, or mountebank's own process).",
            "Stopping a bare server includes waiting until its handler has closed its side "
            "(what Python 3.12's `Server.wait_closed()` waits for), as `serve()` does.",
        ],
    )
    trip_table = Table(
        case="roundtrip",
        title="Round trip on an open connection (p50; p99 in its column)",
        unit="µs",
        baseline="asyncio streams",
        measurements=[
            _with_p99(_scaled(_measurement(n, trips.get(n, []), skipped, trip_errors)))
            for n in names
        ],
        extra_columns=("p99",),
        notes=[f"Each sample is {trips_per_sample} trips on one connection, each timed alone."],
    )
    for table in (life_table, trip_table):
        table.targets = [
            Target(
                f"fakepeer (in-loop) at most {AT_MOST}x asyncio streams",
                table.ratio("fakepeer (in-loop)", "asyncio streams"),
                AT_MOST,
            ),
            Target(
                f"fakepeer (hub) at most {AT_MOST}x asyncio streams (thread)",
                table.ratio("fakepeer (hub)", "asyncio streams (thread)"),
                AT_MOST,
            ),
            Target(
                f"mountebank at least {MOUNTEBANK_FACTOR:g}x slower than fakepeer (hub)",
                table.ratio("mountebank", "fakepeer (hub)"),
                MOUNTEBANK_FACTOR,
                at_most=False,
            ),
            Target(
                f"mountebank at least {MOUNTEBANK_FACTOR:g}x slower than fakepeer (in-loop)",
                table.ratio("mountebank", "fakepeer (in-loop)"),
                MOUNTEBANK_FACTOR,
                at_most=False,
            ),
        ]
    return [t for t, wanted in ((life_table, lifecycle), (trip_table, roundtrip)) if wanted]


def _scaled(measurement: Measurement) -> Measurement:
    measurement.values = [v * 1e6 for v in measurement.values]
    return measurement


def _with_p99(measurement: Measurement) -> Measurement:
    if measurement.measured:
        measurement.extra["p99"] = _p99(measurement.values)
        # Keep the JSON small: the distribution, not every trip.
        measurement.values = _deciles(measurement.values)
    return measurement


def _deciles(values: list[float]) -> list[float]:
    ordered = sorted(values)
    picks = [0, *(len(ordered) * k // 100 for k in range(1, 100)), len(ordered) - 1]
    return [ordered[i] for i in picks]


if __name__ == "__main__":  # the same as: python -m benchmarks --only lifecycle --only roundtrip
    from run import main

    sys.exit(main(["--only", "lifecycle", "--only", "roundtrip", *sys.argv[1:]]))
