"""Benchmark fakepeer against bare-asyncio baselines, in one run.

Run it with ``python benchmarks/bench_peer.py`` (about a minute), ``--quick`` (a few seconds,
for the smoke test) and ``--json PATH`` to keep the results. See ``benchmarks/README.md``.

Two costs are measured, each on both hosts (the test's own asyncio loop, and a background
event-loop thread driven by a blocking client):

A. per test: start a server, connect, one ``PING``/``PONG``, close the client, stop the server.
B. round trip: one ``PING``/``PONG`` on a connection that is already open.

Baseline and fakepeer samples are interleaved (A B, then B A, ...) so that whatever else the
machine does hits both alike; the table shows medians in microseconds and the ratio of the
medians, fakepeer / baseline. Work a case leaves behind (server-side handlers finishing) is
drained outside the timed region so it never lands in the next sample.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from _common import LoopThread, Samples, orders

from fakepeer import FakePeer, Lines, __version__

T = TypeVar("T")

HOST: Final = "127.0.0.1"
REQUEST: Final = b"PING\n"
RESPONSE: Final = b"PONG\n"
#: The issue's target: fakepeer at most this many times the bare baseline.
TARGET: Final = 1.3
#: Bound on every blocking client call, so a broken server fails instead of hanging.
SOCKET_TIMEOUT: Final = 5.0

now = time.perf_counter_ns


@dataclass(frozen=True)
class Plan:
    """How many samples to take. A sample of B times ``trips`` round trips."""

    warmup: int
    a_loop: int
    a_hub: int
    b_loop: int
    b_hub: int
    trips: int


FULL: Final = Plan(warmup=100, a_loop=5000, a_hub=4000, b_loop=150, b_hub=150, trips=300)
QUICK: Final = Plan(warmup=10, a_loop=200, a_hub=200, b_loop=16, b_hub=16, trips=50)


# -- statistics and the report ------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a case on a host, fakepeer beside its baseline."""

    label: str
    description: str
    baseline: Samples
    fakepeer: Samples
    #: A: the baseline plus the teardown of its server-side connection, which the baseline
    #: leaves pending (Python 3.11's ``wait_closed`` does not wait for it; fakepeer's does).
    teardown: Samples | None = None

    @property
    def ratio(self) -> float:
        return self.fakepeer.median / self.baseline.median

    @property
    def paired_ratio(self) -> float:
        """Median of sample-by-sample ratios (samples taken next to each other)."""
        pairs = zip(self.fakepeer.values, self.baseline.values, strict=False)
        return statistics.median(f / b for f, b in pairs if b > 0)

    @property
    def verdict(self) -> str:
        return "PASS" if self.ratio <= TARGET else "MISS"

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "description": self.description,
            "baseline": self.baseline.summary(),
            "fakepeer": self.fakepeer.summary(),
            "ratio": self.ratio,
            "paired_ratio": self.paired_ratio,
            "target": TARGET,
            "verdict": self.verdict,
            "baseline_with_teardown": None if self.teardown is None else self.teardown.summary(),
            "ratio_vs_baseline_with_teardown": None
            if self.teardown is None
            else self.fakepeer.median / self.teardown.median,
        }


def render(rows: Sequence[Row], floor: Samples | None) -> str:
    head = (
        f"{'row':<10} {'what':<38} {'baseline µs':>12} {'fakepeer µs':>12} "
        f"{'ratio':>6} {'paired':>7}  vs {TARGET}x"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row.label:<10} {row.description:<38} {row.baseline.median * 1e6:>12.1f} "
            f"{row.fakepeer.median * 1e6:>12.1f} {row.ratio:>6.2f} {row.paired_ratio:>7.2f}"
            f"  {row.verdict}"
        )
    for row in rows:
        if row.teardown is not None:
            lines.append(
                f"{'(info)':<10} {row.label + ' baseline + its conn. teardown':<38} "
                f"{row.teardown.median * 1e6:>12.1f} {'':>12} "
                f"{row.fakepeer.median / row.teardown.median:>6.2f} {'':>7}  info only"
            )
    if floor is not None:
        lines.append(
            f"{'(floor)':<10} {'B in-loop, bare asyncio.Protocol echo':<38} "
            f"{floor.median * 1e6:>12.1f} {'':>12} {'':>6} {'':>7}  info only"
        )
    lines.append(
        "ratio = median(fakepeer) / median(baseline); paired = median of per-sample ratios. "
        "A = one whole test, B = one round trip."
    )
    return "\n".join(lines)


# -- interleaving -------------------------------------------------------------------------------


def interleave(cases: Sequence[tuple[Samples, Callable[[], float]]], count: int) -> None:
    for order in orders(cases, count):
        for samples, run in order:
            samples.values.append(run())


async def interleave_async(
    cases: Sequence[tuple[Samples, Callable[[], Awaitable[float]]]], count: int
) -> None:
    for order in orders(cases, count):
        for samples, run in order:
            samples.values.append(await run())


# -- the bare baselines -------------------------------------------------------------------------


class LineServer:
    """The bare baseline: ``asyncio.start_server`` with a readline/write handler."""

    def __init__(self) -> None:
        self.handlers: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while line := await reader.readline():
                if line == REQUEST:
                    writer.write(RESPONSE)
        finally:
            writer.close()
            self.handlers.discard(task)

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        sockname = self.server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def drain(self) -> float:
        """After the timed region: let the handlers see EOF and finish, so nothing spills
        into the next sample (on 3.11 ``wait_closed`` does not wait for them). Returns how
        long the handlers took to end, for the "baseline + teardown" info line."""
        start = now()
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=SOCKET_TIMEOUT)
        await asyncio.sleep(0)  # their transports' connection_lost
        elapsed = now() - start
        await settle()
        return elapsed / 1e9


class PongProtocol(asyncio.Protocol):
    """The floor: a bare protocol answering every line with no streams or tasks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if lines := data.count(b"\n"):
            self.transport.write(RESPONSE * lines)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def ping_peer(*, always: bool) -> FakePeer:
    peer = FakePeer(framing=Lines())
    if always:
        peer.always(b"PING").reply(b"PONG")
    else:
        peer.expect(b"PING").reply(b"PONG")
    return peer


# -- clients ------------------------------------------------------------------------------------


async def async_trips(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    for _ in range(n):
        writer.write(REQUEST)
        if await reader.readline() != RESPONSE:
            raise AssertionError("the server did not answer PONG")


async def async_close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def blocking_connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
    return sock


def blocking_trips(sock: socket.socket, n: int) -> None:
    for _ in range(n):
        sock.sendall(REQUEST)
        data = sock.recv(64)
        while not data.endswith(b"\n"):
            more = sock.recv(64)
            if not more:
                break
            data += more
        if data != RESPONSE:
            raise AssertionError(f"the server answered {data!r}, not PONG")


# -- the in-loop host ---------------------------------------------------------------------------


def a_loop_baseline(teardown: Samples) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        server = LineServer()
        start = now()
        address = await server.start()
        reader, writer = await asyncio.open_connection(*address)
        await async_trips(reader, writer, 1)
        await async_close(writer)
        await server.stop()
        elapsed = (now() - start) / 1e9
        teardown.values.append(elapsed + await server.drain())
        return elapsed

    return run


async def a_loop_fakepeer() -> float:
    start = now()
    peer = ping_peer(always=False)
    async with peer.serve():
        reader, writer = await asyncio.open_connection(*peer.address)
        await async_trips(reader, writer, 1)
        await async_close(writer)
    elapsed = now() - start
    await settle()
    return elapsed / 1e9


def b_loop(trips: int) -> dict[str, Callable[[], Awaitable[float]]]:
    async def timed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
        start = now()
        await async_trips(reader, writer, trips)
        return (now() - start) / 1e9 / trips

    async def baseline() -> float:
        server = LineServer()
        reader, writer = await asyncio.open_connection(*await server.start())
        result = await timed(reader, writer)
        await async_close(writer)
        await server.stop()
        await server.drain()
        return result

    async def fakepeer() -> float:
        async with ping_peer(always=True).serve() as peer:
            reader, writer = await asyncio.open_connection(*peer.address)
            result = await timed(reader, writer)
            await async_close(writer)
        await settle()
        return result

    async def floor() -> float:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(PongProtocol, HOST, 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        result = await timed(reader, writer)
        await async_close(writer)
        server.close()
        await server.wait_closed()
        await settle()
        return result

    return {"baseline": baseline, "fakepeer": fakepeer, "floor": floor}


async def run_in_loop(plan: Plan) -> tuple[Row, Row, Samples]:
    a_base, a_fake, a_teardown = Samples("baseline"), Samples("fakepeer"), Samples("teardown")
    warm = [(Samples("warmup"), a_loop_baseline(Samples("warmup"))), (a_fake, a_loop_fakepeer)]
    await interleave_async([(Samples("warmup"), run) for _, run in warm], plan.warmup)
    await interleave_async(
        [(a_base, a_loop_baseline(a_teardown)), (a_fake, a_loop_fakepeer)], plan.a_loop
    )

    b = b_loop(plan.trips)
    b_base, b_fake, floor = Samples("baseline"), Samples("fakepeer"), Samples("floor")
    b_cases = [(b_base, b["baseline"]), (b_fake, b["fakepeer"]), (floor, b["floor"])]
    await interleave_async([(Samples("warmup"), run) for _, run in b_cases], 2)
    await interleave_async(b_cases, plan.b_loop)
    return (
        Row("A in-loop", "per test: start+connect+1 trip+stop", a_base, a_fake, a_teardown),
        Row("B in-loop", "round trip, asyncio streams client", b_base, b_fake),
        floor,
    )


# -- the hub host -------------------------------------------------------------------------------


def run_on_hub(plan: Plan) -> tuple[Row, Row]:
    loop_thread = LoopThread(SOCKET_TIMEOUT)
    try:
        return _run_on_hub(plan, loop_thread)
    finally:
        loop_thread.close()


def _run_on_hub(plan: Plan, loop_thread: LoopThread) -> tuple[Row, Row]:
    a_teardown = Samples("teardown")

    def a_baseline() -> float:
        server = LineServer()
        start = now()
        address = loop_thread.run(server.start())
        with blocking_connect(address) as sock:
            blocking_trips(sock, 1)
        loop_thread.run(server.stop())
        elapsed = (now() - start) / 1e9
        a_teardown.values.append(elapsed + loop_thread.run(server.drain()))
        return elapsed

    def a_fakepeer() -> float:
        start = now()
        peer = ping_peer(always=False)
        with peer.serve(), blocking_connect(peer.address) as sock:
            blocking_trips(sock, 1)
        return (now() - start) / 1e9

    trips = plan.trips

    def timed(sock: socket.socket) -> float:
        start = now()
        blocking_trips(sock, trips)
        return (now() - start) / 1e9 / trips

    def b_baseline() -> float:
        server = LineServer()
        with blocking_connect(loop_thread.run(server.start())) as sock:
            result = timed(sock)
        loop_thread.run(server.stop())
        loop_thread.run(server.drain())
        return result

    def b_fakepeer() -> float:
        with ping_peer(always=True).serve() as peer, blocking_connect(peer.address) as sock:
            return timed(sock)

    a_base, a_fake = Samples("baseline"), Samples("fakepeer")
    a_cases = [(a_base, a_baseline), (a_fake, a_fakepeer)]
    interleave([(Samples("warmup"), run) for _, run in a_cases], plan.warmup)
    a_teardown.values.clear()
    interleave(a_cases, plan.a_hub)

    b_base, b_fake = Samples("baseline"), Samples("fakepeer")
    b_cases = [(b_base, b_baseline), (b_fake, b_fakepeer)]
    interleave([(Samples("warmup"), run) for _, run in b_cases], 2)
    interleave(b_cases, plan.b_hub)
    return (
        Row("A hub", "per test, blocking socket client", a_base, a_fake, a_teardown),
        Row("B hub", "round trip, blocking socket client", b_base, b_fake),
    )


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds, few samples")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL

    print(
        f"fakepeer {__version__} on Python {platform.python_version()} "
        f"({platform.system()} {platform.machine()}), {'quick' if args.quick else 'full'} run"
    )
    begun = time.perf_counter()
    a_loop, b_loop_row, floor = asyncio.run(run_in_loop(plan))
    a_hub, b_hub = run_on_hub(plan)
    rows = [a_loop, a_hub, b_loop_row, b_hub]
    took = time.perf_counter() - begun

    print(render(rows, floor))
    misses = [row.label for row in rows if row.verdict == "MISS"]
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
            "rows": [row.to_json() for row in rows],
            "floor": floor.summary(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
