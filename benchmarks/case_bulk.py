"""Case 3: bulk throughput, echo and sink, 64 KiB writes, in MB/s.

A client sends ``size`` bytes in 64 KiB writes to a server that either writes every byte
back (**echo**: the client reads the echoes while it writes, and a sample ends when it has
read them all) or reads and drops them (**sink**: the client half-closes when done and a
sample ends when the server, having read everything, closes its side). Starting and stopping
the server is outside the timed region; connecting and the whole transfer are inside.

Contenders as in ``case_exchange``: in the test's loop with an asyncio streams client
(``asyncio streams``, the baseline; ``asyncio Protocol``; ``fakepeer (in-loop)``, a
``Raw()`` peer with ``always(ANY).echo()`` or ``always(ANY)``), and with a blocking client
(``asyncio streams (thread)``, ``fakepeer (hub)``). fakepeer runs as in a test: with the
default transcript budget (64 KiB per connection) in force, which each sample checks after its
timed region (the budget is set, and the bytes past it were left out of the transcript).

Target from the issue: fakepeer in the test's loop at least 0.8x bare asyncio streams, for
echo and for sink.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from _common import LoopThread, interleaved
from _results import Measurement, Plan, Table, Target
from _servers import (
    TIMEOUT,
    Address,
    ProtocolServer,
    StreamsServer,
    blocking_connect,
    bulk_peer,
)

from fakepeer import FakePeer
from fakepeer._transcript import DEFAULT_BUDGET

CHUNK = b"\x5a" * 65536
now = time.perf_counter_ns
#: The issue's target: fakepeer in the test's loop at least this fraction of bare streams.
IN_LOOP_TARGET = 0.8


@dataclass
class Contender:
    name: str
    #: (mode, bytes) -> seconds, or an awaitable of them.
    sample: Callable[[str, int], float | Awaitable[float]]


# -- clients ------------------------------------------------------------------------------------


async def async_transfer(address: Address, mode: str, size: int) -> float:
    start = now()
    reader, writer = await asyncio.open_connection(*address)
    chunks = size // len(CHUNK)

    async def read_all() -> int:
        total = 0
        while data := await reader.read(262144):
            total += len(data)
            if mode == "echo" and total >= size:
                break
        return total

    reading = asyncio.ensure_future(read_all())
    for _ in range(chunks):
        writer.write(CHUNK)
        await writer.drain()
    if mode == "sink":
        writer.write_eof()
    got = await asyncio.wait_for(reading, TIMEOUT)
    elapsed = (now() - start) / 1e9
    writer.close()
    await writer.wait_closed()
    expected = size if mode == "echo" else 0
    if got != expected:
        raise AssertionError(f"{mode}: read {got} bytes back, expected {expected}")
    return elapsed


def blocking_transfer(address: Address, mode: str, size: int) -> float:
    start = now()
    got = [0]

    def read_all(sock: socket.socket) -> None:
        while data := sock.recv(262144):
            got[0] += len(data)
            if mode == "echo" and got[0] >= size:
                break

    with blocking_connect(address) as sock:
        reader = threading.Thread(target=read_all, args=(sock,), daemon=True)
        reader.start()
        for _ in range(size // len(CHUNK)):
            sock.sendall(CHUNK)
        if mode == "sink":
            sock.shutdown(socket.SHUT_WR)
        reader.join(TIMEOUT)
        elapsed = (now() - start) / 1e9
        if reader.is_alive():
            raise AssertionError(f"{mode}: the transfer did not end within {TIMEOUT} s")
    expected = size if mode == "echo" else 0
    if got[0] != expected:
        raise AssertionError(f"{mode}: read {got[0]} bytes back, expected {expected}")
    return elapsed


# -- contenders -----------------------------------------------------------------------------------


async def streams(mode: str, size: int) -> float:
    server = StreamsServer(mode)
    elapsed = await async_transfer(await server.start(), mode, size)
    await server.stop()
    return elapsed


async def protocol(mode: str, size: int) -> float:
    server = ProtocolServer(mode)
    elapsed = await async_transfer(await server.start(), mode, size)
    await server.stop()
    return elapsed


def _budget_in_force(peer: FakePeer, size: int) -> None:
    """The peer ran with the default transcript budget, and left out what went past it."""
    transcript = peer.transcript
    if transcript.budget != DEFAULT_BUDGET:
        raise AssertionError(f"transcript budget {transcript.budget}, not {DEFAULT_BUDGET}")
    if size > 2 * DEFAULT_BUDGET and transcript.omitted_bytes < size - 2 * DEFAULT_BUDGET:
        raise AssertionError(
            f"the transcript left out {transcript.omitted_bytes} of {size} bytes: "
            "it kept more than its budget"
        )


async def fakepeer_loop(mode: str, size: int) -> float:
    async with bulk_peer(mode).serve() as peer:
        elapsed = await async_transfer(peer.address, mode, size)
    _budget_in_force(peer, size)
    return elapsed


def fakepeer_hub(mode: str, size: int) -> float:
    with bulk_peer(mode).serve() as peer:
        elapsed = blocking_transfer(peer.address, mode, size)
    _budget_in_force(peer, size)
    return elapsed


def thread(loop_thread: LoopThread) -> Contender:
    def sample(mode: str, size: int) -> float:
        server = StreamsServer(mode)
        elapsed = blocking_transfer(loop_thread.run(server.start()), mode, size)
        loop_thread.run(server.stop())
        return elapsed

    return Contender("asyncio streams (thread)", sample)


def _rate(sample: float | Awaitable[float], size: int) -> object:
    """The sample as MB/s (a coroutine of it, for an in-loop contender)."""
    if isinstance(sample, float):
        return size / sample / 1e6

    async def rate() -> float:
        return size / await sample / 1e6

    return rate()


def run(plan: Plan) -> list[Table]:
    """Both workloads for every contender; see the module docstring."""
    size = plan.pick(32, 1) * 1024 * 1024
    rounds, warmup = plan.pick(9, 1), 1
    loop_thread = LoopThread(TIMEOUT)
    contenders = [
        Contender("asyncio streams", streams),
        Contender("asyncio Protocol", protocol),
        Contender("fakepeer (in-loop)", fakepeer_loop),
        thread(loop_thread),
        Contender("fakepeer (hub)", fakepeer_hub),
    ]
    tables = []
    try:
        with asyncio.Runner() as runner:
            for mode in ("echo", "sink"):
                values, errors = interleaved(
                    runner,
                    contenders,
                    lambda c: c.name,
                    lambda c, mode=mode: _rate(c.sample(mode, size), size),  # type: ignore[misc]
                    rounds=rounds,
                    warmup=warmup,
                )
                measurements = [
                    Measurement(c.name, error=errors[c.name])
                    if c.name in errors
                    else Measurement(c.name, values=values[c.name])
                    for c in contenders
                ]
                measurements.append(
                    Measurement(
                        "mountebank",
                        skipped="does not apply: a tcp imposter answers requests; echo or "
                        "sink would need its JavaScript injection",
                    )
                )
                table = Table(
                    case="bulk",
                    title=f"Bulk throughput, {mode}, 64 KiB writes",
                    unit="MB/s",
                    baseline="asyncio streams",
                    lower_is_better=False,
                    measurements=measurements,
                    notes=[
                        f"{size // 2**20} MiB per sample; MB = 10^6 bytes, counted one way.",
                        f"fakepeer with the default transcript budget ({DEFAULT_BUDGET // 1024} "
                        "KiB per connection) in force, checked after every sample: the bytes "
                        "past it were left out of the transcript.",
                    ],
                )
                table.targets = [
                    Target(
                        f"fakepeer (in-loop) at least {IN_LOOP_TARGET}x asyncio streams",
                        table.ratio("fakepeer (in-loop)"),
                        IN_LOOP_TARGET,
                        at_most=False,
                    )
                ]
                tables.append(table)
    finally:
        loop_thread.close()
    return tables


if __name__ == "__main__":  # the same as: python -m benchmarks --only bulk [--quick]
    from run import main

    sys.exit(main(["--only", "bulk", *sys.argv[1:]]))
