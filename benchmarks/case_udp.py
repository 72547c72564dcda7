"""Case 8: a UDP round trip, ``FakePeer(transport="udp")`` against a bare asyncio
``DatagramProtocol`` echo, in the same run, interleaved.

One sample is ``n`` ``PING``/``PONG`` datagrams on one client socket, each trip timed
alone. Contenders, each with the client a test of that kind would use:

- ``asyncio DatagramProtocol`` (the baseline: an echo answering in ``datagram_received``)
  and ``fakepeer udp (in-loop)`` (``async with peer.serve()``): in the test's loop, with an
  asyncio ``DatagramProtocol`` client;
- ``asyncio DatagramProtocol (thread)`` (the same echo on a background loop thread) and
  ``fakepeer udp (hub)`` (``with peer.serve()``): a blocking connected ``socket`` client.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _common import LoopThread, interleaved
from _results import Measurement, Plan, Table, Target

from fakepeer import FakePeer

now = time.perf_counter_ns

#: The issue's target: fakepeer's UDP round trip at most this many times the bare echo's.
AT_MOST = 1.3
BASELINE = "asyncio DatagramProtocol"
THREAD_BASELINE = "asyncio DatagramProtocol (thread)"
NAMES = (BASELINE, "fakepeer udp (in-loop)", THREAD_BASELINE, "fakepeer udp (hub)")


@dataclass
class Contender:
    name: str
    trips: Callable[[int], list[float] | Awaitable[list[float]]]


class Echo(asyncio.DatagramProtocol):
    """The bare server: ``PONG`` for each datagram, from ``datagram_received``."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(b"PONG", addr)


async def echo_server() -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")


def peer() -> FakePeer:
    made = FakePeer(transport="udp")
    made.always(b"PING").reply(b"PONG")
    return made


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(data)


async def async_trips(address: tuple[str, int], n: int) -> list[float]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=address)
    times = []
    try:
        for index in range(n + 3):  # three to warm up
            start = now()
            client.reply = loop.create_future()
            transport.sendto(b"PING")
            async with asyncio.timeout(5):
                assert await client.reply == b"PONG"
            if index >= 3:
                times.append((now() - start) / 1e9)
    finally:
        transport.close()
    return times


def blocking_trips(address: tuple[str, int], n: int) -> list[float]:
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(address)
        for index in range(n + 3):
            start = now()
            sock.send(b"PING")
            assert sock.recv(16) == b"PONG"
            if index >= 3:
                times.append((now() - start) / 1e9)
    return times


async def bare_in_loop(n: int) -> list[float]:
    transport, address = await echo_server()
    try:
        return await async_trips(address, n)
    finally:
        transport.close()


async def fakepeer_in_loop(n: int) -> list[float]:
    async with peer().serve() as served:
        return await async_trips(served.address, n)


async def close(transport: asyncio.DatagramTransport) -> None:
    transport.close()


def thread_contender(loop_thread: LoopThread) -> Contender:
    def trips(n: int) -> list[float]:
        transport, address = loop_thread.run(echo_server())
        try:
            return blocking_trips(address, n)
        finally:
            loop_thread.run(close(transport))

    return Contender(THREAD_BASELINE, trips)


def fakepeer_hub(n: int) -> list[float]:
    with peer().serve() as served:
        return blocking_trips(served.address, n)


def run(plan: Plan) -> list[Table]:
    """Measure every contender's UDP round trips, interleaved; one table."""
    n = plan.pick(100, 10)
    loop_thread = LoopThread(10.0)
    try:
        contenders = [
            Contender(BASELINE, bare_in_loop),
            Contender("fakepeer udp (in-loop)", fakepeer_in_loop),
            thread_contender(loop_thread),
            Contender("fakepeer udp (hub)", fakepeer_hub),
        ]
        with asyncio.Runner() as runner:
            values, errors = interleaved(
                runner,
                contenders,
                lambda c: c.name,
                lambda c: c.trips(n),
                rounds=plan.pick(40, 2),
                warmup=1,
            )
    finally:
        loop_thread.close()
    measurements = []
    for name in NAMES:
        if name in errors:
            measurements.append(Measurement(name, error=errors[name]))
        else:
            measurements.append(Measurement(name, values=[v * 1e6 for v in values[name]]))
    table = Table(
        case="udp",
        title="UDP round trip: one datagram each way (p50)",
        unit="µs",
        baseline=BASELINE,
        measurements=measurements,
        notes=[
            f"Each sample is {n} PING/PONG datagrams on one client socket, each timed alone. "
            "The first two share the test's loop and an asyncio DatagramProtocol client; the "
            "last two use a blocking connected socket in the main thread.",
        ],
    )
    table.targets = [
        Target(
            f"fakepeer udp (in-loop) at most {AT_MOST}x {BASELINE}",
            table.ratio("fakepeer udp (in-loop)", BASELINE),
            AT_MOST,
        ),
        Target(
            f"fakepeer udp (hub) at most {AT_MOST}x {THREAD_BASELINE}",
            table.ratio("fakepeer udp (hub)", THREAD_BASELINE),
            AT_MOST,
        ),
    ]
    return [table]


if __name__ == "__main__":  # the same as: python -m benchmarks --only udp
    from run import main

    sys.exit(main(["--only", "udp", *sys.argv[1:]]))
