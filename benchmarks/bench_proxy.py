"""Benchmark the bulk throughput of fakepeer's Proxy, next to a bare asyncio forwarder and socat.

Run it with ``python benchmarks/bench_proxy.py`` (a minute or two), ``--quick`` (a few seconds,
for the smoke test), ``--json PATH`` to keep the results and ``--profile`` to also print where
the proxy spends its time (cProfile). See ``benchmarks/README.md``.

A client pushes a payload in 64 KiB writes through a forwarder, with no faults, to an upstream
server written here (plain sockets on threads), in two workloads:

sink    the upstream reads and discards the payload, then answers with the byte count it got;
        the sample ends when the client reads that answer.
echo    the upstream writes every byte back; the client reads it all while it writes.

Four contenders carry the bytes:

direct      no forwarder: the client talks to the upstream (the ceiling, for scale);
bare        a bare ``asyncio.Protocol`` forwarder written here, pausing reading on backpressure;
fakepeer    ``fakepeer.Proxy(upstream=...)``, serving on the hub (``with``) or in the client's
            loop (``async with``);
socat       ``socat TCP-LISTEN:...,fork TCP:...`` in a subprocess, when the binary is installed
            (reported as skipped otherwise, never left out silently).

on both hosts fakepeer offers: ``hub`` (a blocking socket client; the bare forwarder on its own
loop thread) and ``in-loop`` (an asyncio streams client; the bare forwarder in the same loop).
Contenders are interleaved, cycling through every order, with a fresh forwarder per sample
(started and stopped outside the timed region). The table shows median throughputs in MB/s
(10^6 bytes per second, payload bytes in one direction) and their ratios; the issue's target is
fakepeer at least half socat's throughput. A last, untimed pass measures with tracemalloc what
the proxy's transcript keeps per MiB relayed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import io
import json
import platform
import pstats
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from _common import LoopThread, orders

from fakepeer import Proxy, __version__

T = TypeVar("T")
Address = tuple[str, int]

HOST: Final = "127.0.0.1"
MIB: Final = 1 << 20
#: One client write: 64 KiB.
CHUNK: Final = bytes(range(256)) * 256
#: The upstream's and the echo client's receive buffer.
RECV_SIZE: Final = 256 * 1024
#: The issue's target: fakepeer's throughput at least this fraction of socat's.
TARGET: Final = 0.5
#: Bound on every blocking socket call and every sample, so a stuck forwarder fails, not hangs.
SOCKET_TIMEOUT: Final = 30.0
#: The first byte of a connection tells the upstream what to do; a sink then gets a length.
SINK: Final = b"S"
ECHO: Final = b"E"
LENGTH: Final = struct.Struct("!Q")

CONTENDERS: Final = ("direct", "bare", "fakepeer", "socat")
WORKLOADS: Final = ("sink", "echo")

now = time.perf_counter_ns


@dataclass(frozen=True)
class Plan:
    """How many interleaved rounds to take, and how much each sample carries."""

    warmup: int
    rounds: int
    mib: int  # payload per sample, MiB
    memory_mib: int  # payload of the tracemalloc pass, MiB


FULL: Final = Plan(warmup=2, rounds=15, mib=64, memory_mib=32)
QUICK: Final = Plan(warmup=1, rounds=3, mib=4, memory_mib=4)


# -- statistics and the report ------------------------------------------------------------------


@dataclass
class Samples:
    """Wall times of one contender on one row, in seconds per sample of ``size`` bytes."""

    name: str
    size: int
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def rate(self) -> float:
        """Throughput at the median time, MB/s."""
        return self.size / self.median / 1e6

    def summary(self) -> dict[str, float | int | list[float]]:
        rates = sorted(self.size / value / 1e6 for value in self.values)
        deciles = statistics.quantiles(rates, n=10) if len(rates) >= 2 else [rates[0]] * 9
        return {
            "n": len(rates),
            "median_s": self.median,
            "mb_per_s": self.rate,
            "p10_mb_per_s": deciles[0],
            "p90_mb_per_s": deciles[-1],
            "max_mb_per_s": rates[-1],
            "values_mb_per_s": [self.size / value / 1e6 for value in self.values],
        }


def throughput_ratio(fast: Samples, slow: Samples) -> float:
    """``fast``'s throughput over ``slow``'s: the inverse ratio of their median times."""
    return slow.median / fast.median


def paired_ratio(fast: Samples, slow: Samples) -> float:
    """Median of the round-by-round throughput ratios (samples taken next to each other)."""
    pairs = zip(fast.values, slow.values, strict=True)
    return statistics.median(s / f for f, s in pairs if f > 0)


@dataclass
class Row:
    """One line of the table: a workload on a host, every contender."""

    label: str
    samples: dict[str, Samples]
    socat_skipped: str | None  # why, when socat was not measured

    @property
    def socat_ratio(self) -> float | None:
        if self.socat_skipped is not None:
            return None
        return throughput_ratio(self.samples["fakepeer"], self.samples["socat"])

    @property
    def socat_paired(self) -> float | None:
        if self.socat_skipped is not None:
            return None
        return paired_ratio(self.samples["fakepeer"], self.samples["socat"])

    @property
    def bare_ratio(self) -> float:
        return throughput_ratio(self.samples["fakepeer"], self.samples["bare"])

    @property
    def bare_paired(self) -> float:
        return paired_ratio(self.samples["fakepeer"], self.samples["bare"])

    @property
    def verdict(self) -> str:
        ratio = self.socat_ratio
        if ratio is None:
            return "SKIP"
        return "PASS" if ratio >= TARGET else "MISS"

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "mb_per_s": {name: samples.summary() for name, samples in self.samples.items()},
            "socat": self.socat_skipped or "measured",
            "fakepeer_over_socat": self.socat_ratio,
            "fakepeer_over_socat_paired": self.socat_paired,
            "fakepeer_over_bare": self.bare_ratio,
            "fakepeer_over_bare_paired": self.bare_paired,
            "bare_over_socat": None
            if self.socat_skipped
            else throughput_ratio(self.samples["bare"], self.samples["socat"]),
            "target": TARGET,
            "verdict": self.verdict,
        }


def render(rows: Sequence[Row]) -> str:
    head = (
        f"{'row':<13} {'direct':>8} {'bare':>8} {'fakepeer':>9} {'socat':>8} "
        f"{'fp/socat':>9} {'paired':>7} {'fp/bare':>8} {'paired':>7}  >= {TARGET}x socat"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        rates = {name: f"{samples.rate:.1f}" for name, samples in row.samples.items()}
        socat_ratio, socat_paired = row.socat_ratio, row.socat_paired
        lines.append(
            f"{row.label:<13} {rates['direct']:>8} {rates['bare']:>8} {rates['fakepeer']:>9} "
            f"{rates.get('socat', 'skipped'):>8} "
            f"{'-' if socat_ratio is None else f'{socat_ratio:.2f}':>9} "
            f"{'-' if socat_paired is None else f'{socat_paired:.2f}':>7} "
            f"{row.bare_ratio:>8.2f} {row.bare_paired:>7.2f}  {row.verdict}"
        )
    lines.append(
        "MB/s at the median wall time (payload, one direction); fp/socat, fp/bare = fakepeer's "
        "throughput over theirs (ratio of medians); paired = median of per-round ratios."
    )
    return "\n".join(lines)


# -- the upstream server ------------------------------------------------------------------------


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    """``count`` bytes from ``sock``; fewer only if the other end closed first."""
    data = bytearray()
    while len(data) < count:
        more = sock.recv(count - len(data))
        if not more:
            break
        data += more
    return bytes(data)


class Upstream:
    """The real server behind the forwarders: plain blocking sockets, a thread per connection.

    A connection starts with one byte: ``S`` (sink: an 8-byte length follows, then that many
    bytes, which are counted and dropped; the count is sent back) or ``E`` (echo everything
    until EOF). A connection closed before its first byte (socat's readiness probe) is fine.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.2)  # accept() wakes up to notice close()
        host, port = self.listener.getsockname()[:2]
        self.address: Address = (str(host), int(port))
        self.errors: list[BaseException] = []
        self.closed = False
        self.serving: set[threading.Thread] = set()  # a thread per open connection
        self.thread = threading.Thread(target=self._accept, name="upstream", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            serving = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.serving.add(serving)
            serving.start()

    def join(self, timeout: float = SOCKET_TIMEOUT) -> None:
        """Wait until every connection's thread saw its client go: each holds a receive
        buffer of RECV_SIZE until then, which the memory pass would count as kept."""
        deadline = time.monotonic() + timeout
        for serving in list(self.serving):
            serving.join(max(0.0, deadline - time.monotonic()))
            if not serving.is_alive():
                self.serving.discard(serving)

    async def join_async(self, timeout: float = SOCKET_TIMEOUT) -> None:
        """:meth:`join` from a loop, without blocking it (and without an executor, whose
        threads the memory pass would count)."""
        deadline = time.monotonic() + timeout
        while any(t.is_alive() for t in self.serving) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        self.serving = {t for t in self.serving if t.is_alive()}

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(SOCKET_TIMEOUT)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                mode = recv_exactly(conn, 1)
                if mode == SINK:
                    self._sink(conn)
                elif mode == ECHO:
                    self._echo(conn)
                elif mode:
                    raise ValueError(f"unknown mode {mode!r}")
            except (OSError, ValueError) as exc:
                self.errors.append(exc)

    @staticmethod
    def _sink(conn: socket.socket) -> None:
        head = recv_exactly(conn, LENGTH.size)
        (total,) = LENGTH.unpack(head)
        view = memoryview(bytearray(RECV_SIZE))
        got = 0
        while got < total:
            count = conn.recv_into(view, min(RECV_SIZE, total - got))
            if not count:
                raise ConnectionError(f"sink: EOF after {got} of {total} bytes")
            got += count
        conn.sendall(LENGTH.pack(got))
        while conn.recv_into(view):  # until the client closes
            pass

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        view = memoryview(bytearray(RECV_SIZE))
        while count := conn.recv_into(view):
            conn.sendall(view[:count])

    def close(self) -> None:
        self.closed = True
        self.thread.join(SOCKET_TIMEOUT)
        self.listener.close()


# -- the bare asyncio forwarder -----------------------------------------------------------------


class _Relay(asyncio.Protocol):
    """One side of a forwarded connection: writes what it reads to its partner's transport.

    Backpressure: when this side's write buffer passes asyncio's high-water mark, the partner
    stops reading until it drains (``pause_writing`` / ``resume_writing``).
    """

    def __init__(self, forwarder: BareForwarder) -> None:
        self.forwarder = forwarder
        self.transport: asyncio.Transport | None = None
        self.partner: _Relay | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.forwarder.relays.add(self)

    def data_received(self, data: bytes) -> None:
        assert self.partner is not None
        assert self.partner.transport is not None
        self.partner.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        partner = self.partner
        if partner is None or partner.transport is None:
            return False
        if partner.eof:  # both directions are done
            partner.transport.close()
            return False
        if partner.transport.can_write_eof():
            partner.transport.write_eof()  # after what is still buffered
        return True

    def pause_writing(self) -> None:
        if self.partner is not None and self.partner.transport is not None:
            self.partner.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.partner is not None and self.partner.transport is not None:
            self.partner.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.forwarder.relays.discard(self)
        if self.partner is not None and self.partner.transport is not None:
            self.partner.transport.close()


class _ClientRelay(_Relay):
    """The accepted side: reads nothing until its upstream connection is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._connect())
        self.forwarder.tasks.add(task)
        task.add_done_callback(self.forwarder.tasks.discard)

    async def _connect(self) -> None:
        assert self.transport is not None
        upstream = _Relay(self.forwarder)
        host, port = self.forwarder.upstream
        try:
            await asyncio.get_running_loop().create_connection(lambda: upstream, host, port)
        except OSError:
            self.transport.abort()
            return
        upstream.partner, self.partner = self, upstream
        if not self.transport.is_closing():
            self.transport.resume_reading()


class BareForwarder:
    """The baseline: a relay with nothing but ``asyncio.Protocol`` and backpressure."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.relays: set[_Relay] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> Address:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _ClientRelay(self), HOST, 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return (str(host), int(port))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for task in list(self.tasks):
            task.cancel()
        for relay in list(self.relays):
            if relay.transport is not None:
                relay.transport.close()
        for _ in range(3):  # the transports' connection_lost
            await asyncio.sleep(0)


class Socat:
    """``socat TCP-LISTEN:<port>,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:<upstream>``:
    one process for the whole run, forking a child per connection."""

    def __init__(self, upstream: Address) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.address: Address = (HOST, 0)
        self.skipped: str | None = None
        binary = shutil.which("socat")
        if binary is None:
            self.skipped = "skipped: socat not installed"
            return
        problem = ""
        for _ in range(3):  # the free port may be taken between probing it and binding it
            port = free_port()
            command = [
                binary,
                f"TCP-LISTEN:{port},bind={HOST},reuseaddr,fork",
                f"TCP:{upstream[0]}:{upstream[1]}",
            ]
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            if wait_listening((HOST, port), process):
                self.process, self.address = process, (HOST, port)
                return
            process.kill()
            _, stderr = process.communicate(timeout=SOCKET_TIMEOUT)
            lines = stderr.decode(errors="replace").strip().splitlines()
            problem = lines[-1] if lines else problem
        self.skipped = f"skipped: socat did not start ({problem or 'no message'})"

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(SOCKET_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(SOCKET_TIMEOUT)
            if self.process.stderr is not None:
                self.process.stderr.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_listening(address: Address, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(address, timeout=1.0):
                return True
        except OSError:
            time.sleep(0.01)
    return False


# -- clients ------------------------------------------------------------------------------------


def blocking_connect(address: Address) -> socket.socket:
    sock = socket.create_connection(address, timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
    return sock


def blocking_sink(address: Address, chunks: int) -> float:
    """Push ``chunks`` writes of 64 KiB to a sink; seconds until its count comes back."""
    total = chunks * len(CHUNK)
    start = now()
    with blocking_connect(address) as sock:
        sock.sendall(SINK + LENGTH.pack(total))
        for _ in range(chunks):
            sock.sendall(CHUNK)
        answer = recv_exactly(sock, LENGTH.size)
        elapsed = now() - start
    if answer != LENGTH.pack(total):
        raise AssertionError(f"the sink answered {answer!r}, not the count {total}")
    return elapsed / 1e9


def blocking_echo(address: Address, chunks: int) -> float:
    """Push ``chunks`` writes to an echo server while a thread reads them back; seconds."""
    total = chunks * len(CHUNK)
    got: list[int] = []

    def read(sock: socket.socket) -> None:
        view = memoryview(bytearray(RECV_SIZE))
        count = 0
        while count < total:
            more = sock.recv_into(view)
            if not more:
                break
            count += more
        got.append(count)

    start = now()
    with blocking_connect(address) as sock:
        reader = threading.Thread(target=read, args=(sock,), daemon=True)
        reader.start()
        sock.sendall(ECHO)
        for _ in range(chunks):
            sock.sendall(CHUNK)
        reader.join(SOCKET_TIMEOUT)
        elapsed = now() - start
    if got != [total]:
        raise AssertionError(f"the echo returned {got} bytes, not {total}")
    return elapsed / 1e9


async def async_sink(address: Address, chunks: int) -> float:
    total = chunks * len(CHUNK)
    async with asyncio.timeout(SOCKET_TIMEOUT):
        start = now()
        reader, writer = await asyncio.open_connection(*address)
        writer.write(SINK + LENGTH.pack(total))
        for _ in range(chunks):
            writer.write(CHUNK)
            await writer.drain()
        answer = await reader.readexactly(LENGTH.size)
        elapsed = now() - start
        writer.close()
        await writer.wait_closed()
    if answer != LENGTH.pack(total):
        raise AssertionError(f"the sink answered {answer!r}, not the count {total}")
    return elapsed / 1e9


async def async_echo(address: Address, chunks: int) -> float:
    total = chunks * len(CHUNK)

    async def read(reader: asyncio.StreamReader) -> int:
        count = 0
        while count < total:
            data = await reader.read(RECV_SIZE)
            if not data:
                break
            count += len(data)
        return count

    async with asyncio.timeout(SOCKET_TIMEOUT):
        start = now()
        reader, writer = await asyncio.open_connection(*address)
        reading = asyncio.create_task(read(reader))
        writer.write(ECHO)
        for _ in range(chunks):
            writer.write(CHUNK)
            await writer.drain()
        got = await reading
        elapsed = now() - start
        writer.close()
        await writer.wait_closed()
    if got != total:
        raise AssertionError(f"the echo returned {got} bytes, not {total}")
    return elapsed / 1e9


BlockingClient = Callable[[Address, int], float]
AsyncClient = Callable[[Address, int], Awaitable[float]]
BLOCKING_CLIENTS: Final[dict[str, BlockingClient]] = {"sink": blocking_sink, "echo": blocking_echo}
ASYNC_CLIENTS: Final[dict[str, AsyncClient]] = {"sink": async_sink, "echo": async_echo}


# -- the hosts ----------------------------------------------------------------------------------


@dataclass
class Setup:
    """What every sample of a run shares."""

    plan: Plan
    upstream: Upstream
    socat: Socat

    @property
    def chunks(self) -> int:
        return self.plan.mib * MIB // len(CHUNK)

    def contenders(self) -> tuple[str, ...]:
        if self.socat.skipped is not None:
            return tuple(name for name in CONTENDERS if name != "socat")
        return CONTENDERS

    def new_row(self, label: str) -> Row:
        size = self.chunks * len(CHUNK)
        samples = {name: Samples(name, size) for name in self.contenders()}
        return Row(label, samples, self.socat.skipped)


def run_hub(setup: Setup) -> list[Row]:
    loop_thread = LoopThread(SOCKET_TIMEOUT)
    try:
        return [_run_hub(setup, loop_thread, workload) for workload in WORKLOADS]
    finally:
        loop_thread.close()


def _run_hub(setup: Setup, loop_thread: LoopThread, workload: str) -> Row:
    client = BLOCKING_CLIENTS[workload]
    upstream, chunks = setup.upstream.address, setup.chunks

    def bare() -> float:
        forwarder = BareForwarder(upstream)
        address = loop_thread.run(forwarder.start())
        try:
            return client(address, chunks)
        finally:
            loop_thread.run(forwarder.stop())

    def fakepeer() -> float:
        proxy = Proxy(upstream=upstream)
        with proxy.serve():
            return client(proxy.address, chunks)

    runs: dict[str, Callable[[], float]] = {
        "direct": lambda: client(upstream, chunks),
        "bare": bare,
        "fakepeer": fakepeer,
        "socat": lambda: client(setup.socat.address, chunks),
    }
    row = setup.new_row(f"{workload} hub")
    names = setup.contenders()
    for index, order in enumerate(orders(names, setup.plan.warmup + setup.plan.rounds)):
        for name in order:
            gc.collect()  # the last sample's garbage (a proxy's transcript) is not this one's
            elapsed = runs[name]()
            if index >= setup.plan.warmup:
                row.samples[name].values.append(elapsed)
    return row


async def run_in_loop(setup: Setup) -> list[Row]:
    return [await _run_in_loop(setup, workload) for workload in WORKLOADS]


async def _run_in_loop(setup: Setup, workload: str) -> Row:
    client = ASYNC_CLIENTS[workload]
    upstream, chunks = setup.upstream.address, setup.chunks

    async def direct() -> float:
        return await client(upstream, chunks)

    async def bare() -> float:
        forwarder = BareForwarder(upstream)
        address = await forwarder.start()
        try:
            return await client(address, chunks)
        finally:
            await forwarder.stop()

    async def fakepeer() -> float:
        proxy = Proxy(upstream=upstream)
        async with proxy.serve():
            return await client(proxy.address, chunks)

    async def socat() -> float:
        return await client(setup.socat.address, chunks)

    runs: dict[str, Callable[[], Awaitable[float]]] = {
        "direct": direct,
        "bare": bare,
        "fakepeer": fakepeer,
        "socat": socat,
    }
    row = setup.new_row(f"{workload} in-loop")
    names = setup.contenders()
    for index, order in enumerate(orders(names, setup.plan.warmup + setup.plan.rounds)):
        for name in order:
            gc.collect()
            elapsed = await runs[name]()
            if index >= setup.plan.warmup:
                row.samples[name].values.append(elapsed)
    return row


# -- memory and profile (untimed) ---------------------------------------------------------------


@dataclass
class Memory:
    """What one transfer of ``mib`` MiB cost in traced memory."""

    workload: str
    host: str
    contender: str
    mib: int
    kept: int  # bytes still allocated after leaving serve() / stop(), the forwarder referenced
    peak: int  # bytes allocated at most during the transfer, above the start
    events: int  # transcript events (fakepeer only)

    def line(self) -> str:
        label = f"{self.workload} {self.host}"
        events = f", {self.events / self.mib:.1f} transcript events per MiB" if self.events else ""
        return (
            f"  {label:<13} {self.contender:<8} keeps {self.kept / self.mib / MIB:5.2f} MiB "
            f"per MiB relayed, peak {self.peak / self.mib / MIB:5.2f} MiB per MiB{events}"
        )


class Traced:
    """tracemalloc around one transfer: the start, then what is kept and the peak above it."""

    def __enter__(self) -> Traced:
        gc.collect()
        tracemalloc.start()
        self.start = tracemalloc.get_traced_memory()[0]
        self.kept = self.peak = 0
        return self

    def done(self) -> None:
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
        self.kept, self.peak = kept - self.start, peak - self.start

    def __exit__(self, *exc_info: object) -> None:
        tracemalloc.stop()


def measure_memory(setup: Setup) -> list[Memory]:
    """One transfer per workload, host and forwarder (fakepeer, bare), under tracemalloc."""
    upstream, mib = setup.upstream.address, setup.plan.memory_mib
    chunks = mib * MIB // len(CHUNK)
    results = []

    def hub(workload: str, loop_thread: LoopThread) -> None:
        client = BLOCKING_CLIENTS[workload]
        with Traced() as traced:
            proxy = Proxy(upstream=upstream)
            with proxy.serve():
                client(proxy.address, chunks)
            setup.upstream.join()
            traced.done()
        events = len(proxy.transcript)
        results.append(Memory(workload, "hub", "fakepeer", mib, traced.kept, traced.peak, events))
        del proxy
        with Traced() as traced:
            forwarder = BareForwarder(upstream)
            client(loop_thread.run(forwarder.start()), chunks)
            loop_thread.run(forwarder.stop())
            setup.upstream.join()
            traced.done()
        results.append(Memory(workload, "hub", "bare", mib, traced.kept, traced.peak, 0))

    async def in_loop(workload: str) -> None:
        client = ASYNC_CLIENTS[workload]
        with Traced() as traced:
            proxy = Proxy(upstream=upstream)
            async with proxy.serve():
                await client(proxy.address, chunks)
            await setup.upstream.join_async()
            traced.done()
        events = len(proxy.transcript)
        results.append(
            Memory(workload, "in-loop", "fakepeer", mib, traced.kept, traced.peak, events)
        )
        del proxy
        with Traced() as traced:
            forwarder = BareForwarder(upstream)
            await client(await forwarder.start(), chunks)
            await forwarder.stop()
            await setup.upstream.join_async()
            traced.done()
        results.append(Memory(workload, "in-loop", "bare", mib, traced.kept, traced.peak, 0))

    loop_thread = LoopThread(SOCKET_TIMEOUT)
    try:
        for workload in WORKLOADS:
            hub(workload, loop_thread)
            asyncio.run(in_loop(workload))
    finally:
        loop_thread.close()
    return results


def profile(setup: Setup, workload: str, top: int = 15) -> str:
    """cProfile of fakepeer's in-loop samples: the client, the loop and the proxy all run in
    this thread, so the profile shows the proxy's share next to what the client costs."""
    client = ASYNC_CLIENTS[workload]
    chunks = setup.chunks

    async def run() -> None:
        for _ in range(3):
            proxy = Proxy(upstream=setup.upstream.address)
            async with proxy.serve():
                await client(proxy.address, chunks)

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run())
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds, few samples")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of the proxy (in-loop)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL

    upstream = Upstream()
    socat = Socat(upstream.address)
    setup = Setup(plan, upstream, socat)
    try:
        print(
            f"fakepeer {__version__} on Python {platform.python_version()} "
            f"({platform.system()} {platform.machine()}), {'quick' if args.quick else 'full'} "
            f"run: {plan.mib} MiB per sample in {len(CHUNK) // 1024} KiB writes, "
            f"{plan.rounds} rounds; socat: {socat.skipped or 'measured'}"
        )
        begun = time.perf_counter()
        rows = run_hub(setup)
        rows += asyncio.run(run_in_loop(setup))
        rows = [rows[0], rows[2], rows[1], rows[3]]  # sink hub, sink in-loop, echo ...
        took = time.perf_counter() - begun
        memory = measure_memory(setup)
        profiled = [profile(setup, workload) for workload in WORKLOADS] if args.profile else []
    finally:
        socat.close()
        upstream.close()
    if upstream.errors:
        raise RuntimeError(f"the upstream server failed: {upstream.errors!r}")

    print(render(rows))
    if socat.skipped is not None:
        print(f"socat: {socat.skipped}; fp/socat not measured (apt-get install socat)")
    print(f"memory (tracemalloc, untimed, {plan.memory_mib} MiB per transfer):")
    for entry in memory:
        print(entry.line())
    judged = [row for row in rows if row.verdict != "SKIP"]
    misses = [row.label for row in judged if row.verdict == "MISS"]
    print(
        (
            f"{len(judged) - len(misses)}/{len(judged)} at or above {TARGET}x socat"
            + (f" (missed: {', '.join(misses)})" if misses else "")
            if judged
            else f"target {TARGET}x socat not judged: socat {socat.skipped}"
        )
        + f"; took {took:.1f} s. A measurement, not a test: the exit status is 0 either way."
    )
    for workload, text in zip(WORKLOADS, profiled, strict=False):
        print(f"\ncProfile, fakepeer {workload} in-loop (client, loop and proxy in one thread):")
        print(text.strip())
    if args.json is not None:
        report = {
            "fakepeer": __version__,
            "python": sys.version,
            "platform": platform.platform(),
            "mode": "quick" if args.quick else "full",
            "plan": dataclasses.asdict(plan),
            "chunk_bytes": len(CHUNK),
            "seconds": took,
            "target": TARGET,
            "socat": socat.skipped or "measured",
            "rows": [row.to_json() for row in rows],
            "memory": [dataclasses.asdict(entry) for entry in memory],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
