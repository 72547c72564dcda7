"""Scale: hold N concurrent connections on one server; accept rate and memory per connection.

The issue: "hold 10,000 concurrent connections on one peer (raise the fd limit in the
benchmark process); accept rate, and resident memory per connection", with the target
"10,000 concurrent connections held with under 10 KiB resident memory each" for fakepeer.

Each round starts one contender's server in a fresh subprocess (``_scale_server.py``, same
interpreter), so its resident memory is its own and each process needs only about N file
descriptors. The parent reads the server's ``VmRSS``, then opens N connections with a lean
client (non-blocking sockets on one selector, see :class:`Clients`), at most
:data:`CONCURRENCY` in flight at a time (below the listen backlog, so no SYN is dropped and
retried); each one sends ``PING`` and waits for ``PONG`` (proof that the server serves it),
then stays open. The accept rate is N over the time from the first connect to the last
``PONG``; the memory per connection is the growth of the server's ``VmRSS`` over that time,
divided by N. Then the clients close (with a reset: see :meth:`Clients.close`), the server is
told to quit, and it must exit (status 0) within :data:`EXIT_TIMEOUT`, or the round fails.
Linux only (``VmRSS``); elsewhere every contender is skipped.

Run alone: ``python benchmarks/case_scale.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from _common import orders
from _results import Measurement, Plan, Table, Target
from _scale_server import BACKLOG, CONTENDERS, HOST, REQUEST, RESPONSE, raise_fd_limit

from fakepeer._runtime import BACKLOG as FAKEPEER_BACKLOG

CASE: Final = "scale"
BASELINE: Final = "asyncio streams"
SERVER: Final = Path(__file__).resolve().with_name("_scale_server.py")
#: Connections in flight at once (connecting, or waiting for their ``PONG``): below
#: :data:`_scale_server.BACKLOG`, so the accept queue can never overflow.
CONCURRENCY: Final = 100
#: File descriptors the parent (and each server) needs beyond the N connections.
FD_MARGIN: Final = 100
#: Ephemeral ports kept free beyond the N the clients take.
PORT_MARGIN: Final = 1000
#: The target of the issue, in KiB per held connection.
TARGET_KIB: Final = 10.0
#: ``SO_LINGER`` on, 0 s: ``close()`` sends a reset and leaves no ``TIME_WAIT`` socket.
LINGER_RESET: Final = struct.pack("ii", 1, 0)
#: Bounds of every wait, in seconds.
START_TIMEOUT: Final = 30.0  # the server process prints its port
REPLY_TIMEOUT: Final = 30.0  # it answers "rss"
CONNECT_TIMEOUT: Final = 10.0  # one connection: connect, PING, PONG
OPEN_TIMEOUT: Final = 120.0  # all N connections
EXIT_TIMEOUT: Final = 20.0  # the server exits after "quit"
KILL_TIMEOUT: Final = 5.0  # ... or after being killed
#: How much of a failed server's stderr an error quotes.
STDERR_TAIL: Final = 2000


class RoundFailed(Exception):
    """A round could not be measured: the server crashed, hung or misbehaved."""


@dataclass(frozen=True)
class Round:
    """What one round of one contender measured."""

    connections: int
    seconds: float  # first connect to last PONG
    rss_before: int  # bytes
    rss_after: int  # bytes

    @property
    def rate(self) -> float:
        """Connections accepted and answered per second."""
        return self.connections / self.seconds

    @property
    def kib_per_connection(self) -> float:
        """Resident memory the server grew by, per held connection, in KiB."""
        return (self.rss_after - self.rss_before) / self.connections / 1024


# -- the client -----------------------------------------------------------------------------------


class Clients:
    """The N client connections of a round: non-blocking sockets on one selector (``epoll``).

    Not asyncio on purpose: an asyncio client spends about 250 µs of CPU per connection
    (``create_connection``, its futures and transport), which on two cores made the accept rate
    a measure of the client, whatever the server. This one spends about 30 µs.
    """

    def __init__(self) -> None:
        self.held: list[socket.socket] = []

    def open(self, port: int, count: int) -> float:
        """Open ``count`` connections, :data:`CONCURRENCY` in flight at most, each sending
        ``PING`` and reading ``PONG``; return the seconds from the first connect to the last
        ``PONG``. Every socket made is in :attr:`held`, even on failure."""
        address = (HOST, port)
        pending: dict[int, tuple[socket.socket, float]] = {}  # in order of start
        answers: dict[int, bytes] = {}
        answered = 0
        with selectors.DefaultSelector() as selector:
            start = time.perf_counter()
            deadline = start + OPEN_TIMEOUT
            while answered < count:
                now = time.perf_counter()
                while len(pending) < CONCURRENCY and len(self.held) < count:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self.held.append(sock)
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
                    status = sock.connect_ex(address)
                    if status not in (0, errno.EINPROGRESS):
                        raise RoundFailed(f"connect {len(self.held)}: {os.strerror(status)}")
                    selector.register(sock, selectors.EVENT_WRITE)
                    pending[sock.fileno()] = (sock, now)
                oldest = next(iter(pending.values()))[1]
                if now - oldest > CONNECT_TIMEOUT:
                    raise RoundFailed(f"a connection had no PONG within {CONNECT_TIMEOUT} s")
                if now > deadline:
                    raise RoundFailed(f"{answered} of {count} connections in {OPEN_TIMEOUT} s")
                for key, events in selector.select(1.0):
                    sock = key.fileobj  # type: ignore[assignment]
                    if events & selectors.EVENT_WRITE:
                        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            raise RoundFailed(f"connect: {os.strerror(error)}")
                        sock.send(REQUEST)  # 5 bytes into an empty buffer: never partial
                        selector.modify(sock, selectors.EVENT_READ)
                        continue
                    data = answers.pop(sock.fileno(), b"") + sock.recv(len(RESPONSE))
                    if not data or not RESPONSE.startswith(data):
                        raise RoundFailed(f"the server answered {data!r}, not {RESPONSE!r}")
                    if data != RESPONSE:
                        answers[sock.fileno()] = data  # the rest is on its way
                        continue
                    selector.unregister(sock)
                    del pending[sock.fileno()]
                    answered += 1
            return time.perf_counter() - start

    def check_open(self) -> None:
        """Fail if the server closed, or wrote more on, any held connection."""
        with selectors.DefaultSelector() as selector:
            for sock in self.held:
                selector.register(sock, selectors.EVENT_READ)
            readable = len(selector.select(0))
        if readable:
            raise RoundFailed(
                f"the server closed (or wrote on) {readable} of {len(self.held)} held connections"
            )

    def close(self) -> None:
        """Close every connection with a reset (idempotent).

        A reset (``SO_LINGER`` 0) leaves no ``TIME_WAIT`` socket behind: closed gracefully,
        each round left N of them for a minute, and as they piled up (tens of thousands) every
        later round's accept rate fell, by up to half, whatever the contender.
        """
        for sock in self.held:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            sock.close()
        self.held.clear()


# -- the server process ---------------------------------------------------------------------------


class Server:
    """One contender's server process (``_scale_server.py``) and its stdin/stdout protocol."""

    def __init__(self, contender: str) -> None:
        self.contender = contender
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (see close)
        self.process: subprocess.Popen[bytes] | None = None
        self.output = b""  # read from its stdout, not yet a whole line

    def start(self) -> int:
        """Start the process; return the port it listens on."""
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), self.contender],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        return self._number(START_TIMEOUT, "its port")

    def rss(self) -> int:
        """The server's resident memory, in bytes."""
        self._send("rss")
        return self._number(REPLY_TIMEOUT, "its resident memory")

    def quit(self) -> None:
        """Tell it to stop; it must exit 0 within :data:`EXIT_TIMEOUT`."""
        assert self.process is not None
        self._send("quit")
        try:
            status = self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RoundFailed(f"it did not exit within {EXIT_TIMEOUT} s of 'quit'") from None
        if status != 0:
            raise RoundFailed(f"it exited with status {status}")

    def close(self) -> None:
        """:meth:`kill`, and forget its stderr (idempotent, never raises)."""
        self.kill()
        self.stderr.close()

    def kill(self) -> None:
        """Kill it if it still runs, reap it, close the pipes (idempotent, never raises)."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(KILL_TIMEOUT)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    def stderr_tail(self) -> str:
        """The end of what the server wrote on stderr."""
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - STDERR_TAIL))
        return self.stderr.read().decode("utf-8", "replace").strip()

    def _send(self, command: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(f"{command}\n".encode())
            self.process.stdin.flush()
        except OSError as exc:  # BrokenPipeError: it is gone
            raise RoundFailed(f"could not send {command!r}: {exc}") from None

    def _number(self, timeout: float, what: str) -> int:
        """The next line of its stdout, a number, within ``timeout``."""
        line = self._line(timeout, what)
        try:
            return int(line)
        except ValueError:
            raise RoundFailed(f"it answered {line!r} instead of {what}") from None

    def _line(self, timeout: float, what: str) -> bytes:
        assert self.process is not None
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()  # read with os.read only: no buffered reader
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.output:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise RoundFailed(f"it did not tell {what} within {timeout} s")
                chunk = os.read(fd, 4096)
                if not chunk:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(1.0)  # it is likely exiting: tell its status
                    status = self.process.returncode
                    how = "closed its stdout" if status is None else f"exited ({status})"
                    raise RoundFailed(f"it {how} before telling {what}")
                self.output += chunk
        line, self.output = self.output.split(b"\n", 1)
        return line


def measure(contender: str, count: int) -> Round:
    """One round: a fresh server process, ``count`` held connections."""
    server = Server(contender)
    clients = Clients()
    try:
        port = server.start()
        before = server.rss()
        seconds = clients.open(port, count)
        after = server.rss()
        clients.check_open()
        clients.close()
        server.quit()
    except (RoundFailed, OSError) as exc:
        clients.close()
        server.kill()  # first, so that its stderr is complete
        what = str(exc) if isinstance(exc, RoundFailed) else f"{type(exc).__name__}: {exc}"
        tail = server.stderr_tail()
        raise RoundFailed(what + (f"; stderr: ...{tail}" if tail else "")) from None
    finally:
        clients.close()
        server.close()
    return Round(count, seconds, before, after)


# -- the case -------------------------------------------------------------------------------------


def ephemeral_ports() -> int | None:
    """How many local ports the kernel hands out to clients, if it says."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return None
    return int(high) - int(low) + 1


def connections_that_fit(wanted: int) -> tuple[int, list[str]]:
    """``wanted``, or fewer if the fd limit or the ephemeral ports do not allow it; with
    notes saying why."""
    notes: list[str] = []
    count = wanted
    fds = raise_fd_limit()
    if fds - FD_MARGIN < count:
        count = max(1, fds - FD_MARGIN)
        notes.append(
            f"N lowered from {wanted:,} to {count:,}: the fd limit (RLIMIT_NOFILE, raised to "
            f"its hard limit) is {fds:,}, and each process needs N + {FD_MARGIN}."
        )
    ports = ephemeral_ports()
    if ports is not None and ports - PORT_MARGIN < count:
        fewer = max(1, ports - PORT_MARGIN)
        notes.append(
            f"N lowered from {count:,} to {fewer:,}: the kernel has {ports:,} ephemeral "
            "ports (net.ipv4.ip_local_port_range)."
        )
        count = fewer
    return count, notes


def run(plan: Plan) -> list[Table]:
    """Measure every contender: :data:`CONTENDERS`, 3 interleaved rounds (1 when quick)."""
    count, fit_notes = connections_that_fit(plan.pick(10_000, 200))
    rounds = plan.pick(3, 1)
    if not Path("/proc/self/status").exists():
        return skipped(count, "needs Linux: the server's VmRSS is read from /proc/self/status")
    results: dict[str, list[Round]] = {name: [] for name in CONTENDERS}
    errors: dict[str, str] = {}
    for order in orders(CONTENDERS, rounds):
        for contender in order:
            if contender in errors:
                continue
            try:
                results[contender].append(measure(contender, count))
            except RoundFailed as exc:
                done = len(results[contender])
                errors[contender] = f"round {done + 1} of {rounds}: {exc}"

    rates: list[Measurement] = []
    memory: list[Measurement] = []
    for contender in CONTENDERS:
        error = errors.get(contender)
        measured = results[contender]
        rates.append(Measurement(contender, [r.rate for r in measured], error=error))
        before = sorted(r.rss_before for r in measured)
        after = sorted(r.rss_after for r in measured)
        note = (
            f"VmRSS {before[len(before) // 2] / 2**20:.1f} MiB before, "
            f"{after[len(after) // 2] / 2**20:.1f} MiB after (medians)"
            if measured
            else ""
        )
        memory.append(
            Measurement(contender, [r.kib_per_connection for r in measured], error=error, note=note)
        )

    how = (
        f"N = {count:,} connections to 127.0.0.1, {rounds} round(s) per contender, interleaved; "
        "each round starts the server alone in a fresh subprocess (same interpreter); the "
        "client (in the parent) is non-blocking sockets on one selector, at most "
        f"{CONCURRENCY} connections in flight, each sends PING, waits for PONG, stays open."
    )
    if BACKLOG != FAKEPEER_BACKLOG:
        raise AssertionError(
            f"the baselines' backlog {BACKLOG} is not fakepeer's, {FAKEPEER_BACKLOG}"
        )
    backlog = (
        f"Listen backlog {BACKLOG} for every contender: fakepeer's own (BACKLOG, "
        "src/fakepeer/_peerserver.py; the system caps it at net.core.somaxconn), which it "
        "does not expose; the baselines are given the same."
    )
    targets = [
        Target(
            f"{contender} under {TARGET_KIB:g} KiB per connection",
            table_median(memory, contender),
            TARGET_KIB,
        )
        for contender in ("fakepeer (hub)", "fakepeer (in-loop)")
    ]
    return [
        Table(
            case=CASE,
            title=f"Scale: accept rate, {count:,} connections",
            unit="conn/s",
            baseline=BASELINE,
            measurements=rates,
            lower_is_better=False,
            notes=[
                how,
                "Accept rate = N / (time from the first connect to the last PONG): accept, "
                "first read and first reply, with the client's own cost on the same 2 cores.",
                backlog,
                "The clients close with a reset (SO_LINGER 0): a graceful close left N "
                "TIME_WAIT sockets per round, and as they piled up every later round's accept "
                "rate fell, by up to half, whatever the contender.",
                *fit_notes,
            ],
        ),
        Table(
            case=CASE,
            title=f"Scale: resident memory per held connection, {count:,} connections",
            unit="KiB",
            baseline=BASELINE,
            measurements=memory,
            lower_is_better=True,
            targets=targets,
            notes=[
                how,
                "Memory per connection = (server VmRSS with all N held - VmRSS before the "
                "first connect) / N, VmRSS from /proc/self/status after gc.collect(), in the "
                "server process only. Kernel socket buffers are not in VmRSS. fakepeer's "
                "figure includes its transcript and per-connection state, which it keeps "
                "for the verdict.",
                *fit_notes,
            ],
        ),
    ]


def skipped(count: int, why: str) -> list[Table]:
    """Both tables, every contender skipped for ``why``."""
    return [
        Table(
            case=CASE,
            title=title,
            unit=unit,
            baseline=BASELINE,
            measurements=[Measurement(name, skipped=why) for name in CONTENDERS],
            lower_is_better=lower,
        )
        for title, unit, lower in (
            (f"Scale: accept rate, {count:,} connections", "conn/s", False),
            (f"Scale: resident memory per held connection, {count:,} connections", "KiB", True),
        )
    ]


def table_median(measurements: Sequence[Measurement], contender: str) -> float | None:
    """The median of ``contender`` among ``measurements``, or None if it was not measured."""
    for measurement in measurements:
        if measurement.contender == contender and measurement.measured:
            return measurement.median
    return None


if __name__ == "__main__":  # the same as: python -m benchmarks --only scale [--quick]
    from run import main

    sys.exit(main(["--only", "scale", *sys.argv[1:]]))
