"""Case 7, hostile input: memory under floods, and input cut into small segments.

**Floods** (peak resident memory, MiB). Each sample is one flood in a fresh interpreter
(``python -c``), so its peak resident memory, ``VmHWM`` from ``/proc/self/status``, is its own
(not ``ru_maxrss``: that survives ``exec`` and can be the parent's). A client thread of that
interpreter floods a peer of the same interpreter from one reused buffer, so the client holds
next to nothing and the figure is the peer's (and the interpreter's):

``interpreter`` (the baseline)
    ``python`` with ``fakepeer`` imported, nothing else: what every row starts from.
``(a)``
    200 MB to a handler (``@peer.handler`` that awaits ``receive()``) on ``Lines()``, without
    a newline: the handler's ``max_length`` holds as bytes arrive, the peer resets the client
    and leaving ``serve()`` raises ``FramingError``.
``(b)``
    300 pushes of 1 MiB (``connection.send``) to a client that never reads: past
    ``FakePeer(max_send_buffer=4 MiB)`` the push raises ``ClientNotReading``.
``(c)``
    100 MB through a ``Proxy`` to a sink server (an ``asyncio.Protocol`` that drops what it
    reads, on a thread of the same interpreter): the proxy keeps no copy of what it relays.
``(d)``
    200 MB of lines to a handler that takes one line and never receives again: the peer stops
    reading (backpressure), so the client's send blocks until its 1 s send timeout.

Each flood must end as described (else the row is an error, not a figure). ``growth`` is the
peak minus ``VmHWM`` just before the flood (the peer serving, the client thread started):
what the flood itself cost. Targets from the issue: every flood's peak under 64 MiB, and the
proxy's growth under 32 MiB.

**Segments** (ms from the first byte to the reply). The peer's core
(``fakepeer._conversation.Conversation``, which every host feeds) is driven without sockets,
as ``tests/test_conversation.py`` drives it: a ``FakePeer`` is scripted with
``peer.expect(message).reply(b"ok")``, a connection is opened with ``connect()``, and the
bytes are handed to ``receive(connection, data, at)`` either in one call (one segment) or in
one call per small segment, as a peer would see a client that sends them with ``TCP_NODELAY``
and a reader that keeps up. The time is from the first ``receive`` call to the return of the
one that answers (a ``Write`` of the reply). Over loopback, the kernel would merge segments
whenever the peer falls behind, hiding the cost per segment that this measures. Three rows:
``Raw()`` and a 1 MiB ``expect`` in 128-byte segments; ``Lines()`` and a 60,000-byte line in
128-byte segments; ``LengthPrefixed()`` and an 8 MiB message in 4 KiB segments. Target from
the issue: segmented input costs "about what it costs in one segment", read as at most 3x.
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from _common import orders
from _results import Measurement, Plan, Table, Target

from fakepeer import FakePeer, Framing, LengthPrefixed, Lines, Raw
from fakepeer._actions import Write

CASE: Final = "hostile"
MIB: Final = 1 << 20
MB: Final = 1_000_000
#: The issue's bounds: every flood's peak, and the proxy's growth, in MiB.
PEAK_LIMIT: Final = 64.0
PROXY_GROWTH_LIMIT: Final = 32.0
#: The issue's bound on segmented input: at most this many times the one-segment time.
SEGMENT_LIMIT: Final = 3.0
#: Bound on one flood's interpreter.
FLOOD_TIMEOUT: Final = 120.0
INTERPRETER: Final = "interpreter (python + fakepeer)"

# -- floods ---------------------------------------------------------------------------------------

PRELUDE: Final = '''
import socket, threading, time
import asyncio
import json as jsonlib
from fakepeer import (
    ANY, ClientNotReading, FakePeer, FramingError, Lines, Proxy, Raw,
)

def peak():
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it can be the parent's
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

def flood(address, total, chunk=b"x" * 65536, timeout=5.0, before=None):
    """Send ``total`` bytes from one reused chunk; (bytes sent, error's name or None)."""
    sent = 0
    with socket.create_connection(address, timeout=timeout) as sock:
        if before is not None:
            before.append(peak())
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError as exc:
            return sent, type(exc).__name__
    return sent, None

def done(**figures):
    figures["peak"] = peak()
    print(jsonlib.dumps(figures))
'''

BASELINE_SCRIPT: Final = """
before = peak()
done(before=before, sent=0, outcome="imported")
"""

FRAMING_SCRIPT: Final = """
peer = FakePeer(framing=Lines())

@peer.handler
async def handle(connection):
    await connection.receive()

before, outcome = [], None
try:
    with peer.serve():
        sent, failed = flood(peer.address, {total}, before=before)
except FramingError:
    outcome = "FramingError"
done(before=before[0], sent=sent, failed=failed, outcome=outcome)
"""

PUSH_SCRIPT: Final = """
peer = FakePeer(framing=Raw())
pushed, outcome, before = 0, None, None
try:
    with peer.serve(), socket.create_connection(peer.address) as sock:
        peer.wait_for_connections(1)
        (connection,) = peer.connections
        chunk = b"x" * 2**20
        before = peak()
        for _ in range({count}):
            connection.send(chunk)
            pushed += 1
except ClientNotReading:
    outcome = "ClientNotReading"
done(before=before, sent=pushed * 2**20, outcome=outcome)
"""

PROXY_SCRIPT: Final = """
class Sink(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        pass

async def upstream(ready, stop):
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", 0)
    ready.append(server.sockets[0].getsockname()[:2])
    while not stop:
        await asyncio.sleep(0.01)
    server.close()

ready, stop, before = [], [], []
thread = threading.Thread(target=asyncio.run, args=(upstream(ready, stop),))
thread.start()
while not ready:
    time.sleep(0.01)
proxy = Proxy(tuple(ready[0]))
with proxy.serve():
    sent, failed = flood(proxy.address, {total}, before=before)
    proxy.wait_for_connections(1)
stop.append(True)
thread.join()
omitted = proxy.transcript.omitted_bytes
ok = failed is None and omitted > 0.9 * sent
done(before=before[0], sent=sent, failed=failed, omitted=omitted,
     outcome="relayed" if ok else None)
"""

BACKPRESSURE_SCRIPT: Final = """
peer = FakePeer(framing=Lines())

@peer.handler
async def handle(connection):
    await connection.receive()  # one line, then it never reads again
    await asyncio.sleep(60)

before = []
with peer.serve():
    sent, failed = flood(
        peer.address, {total}, chunk=b"line\\n" * 13000, timeout=1.0, before=before
    )
received = len(peer.received)
ok = failed == "TimeoutError" and received == 1
done(before=before[0], sent=sent, failed=failed, received=received,
     outcome="send timed out" if ok else None)
"""


@dataclass(frozen=True)
class Flood:
    name: str
    script: str
    #: What the flood must end with (``outcome`` in the script's figures).
    outcome: str


@dataclass
class FloodResult:
    peaks: list[float] = field(default_factory=list)
    growths: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None


def _floods(plan: Plan) -> list[Flood]:
    handler_bytes = 200 * MB
    proxy_bytes = plan.pick(100, 16) * MB
    return [
        Flood(INTERPRETER, BASELINE_SCRIPT, "imported"),
        Flood(
            f"(a) {handler_bytes // MB} MB to a handler, Lines(), no newline",
            FRAMING_SCRIPT.format(total=handler_bytes),
            "FramingError",
        ),
        Flood(
            "(b) 300 x 1 MiB pushes, the client never reads",
            PUSH_SCRIPT.format(count=300),
            "ClientNotReading",
        ),
        Flood(
            f"(c) {proxy_bytes // MB} MB through a Proxy to a sink",
            PROXY_SCRIPT.format(total=proxy_bytes),
            "relayed",
        ),
        Flood(
            f"(d) {handler_bytes // MB} MB of lines, the handler stops receiving",
            BACKPRESSURE_SCRIPT.format(total=handler_bytes),
            "send timed out",
        ),
    ]


def _run_flood(flood: Flood) -> dict[str, object]:
    """Run one flood in a fresh interpreter: the figures it printed; RuntimeError if it did
    not end as it must."""
    script = PRELUDE + textwrap.dedent(flood.script)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=FLOOD_TIMEOUT,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"the flood's interpreter exited {done.returncode}:\n{tail}")
    figures: dict[str, object] = json.loads(lines[-1])
    if figures.get("outcome") != flood.outcome:
        raise RuntimeError(f"the flood did not end with {flood.outcome}: {figures}")
    return figures


def _mib(figures: dict[str, object], key: str) -> float:
    value = figures[key]
    assert isinstance(value, int | float), (key, value)
    return float(value) / MIB


def flood_table(plan: Plan) -> Table:
    """Every flood, ``rounds`` times, interleaved; one table of peak resident memory."""
    rounds = plan.pick(3, 1)
    floods = _floods(plan)
    results = {f.name: FloodResult() for f in floods}
    if not Path("/proc/self/status").exists():
        for result in results.values():
            result.skipped = "needs /proc/self/status (Linux) for VmHWM"
        rounds = 0
    for order in orders(floods, rounds):
        for flood in order:
            result = results[flood.name]
            if result.error is not None:
                continue
            try:
                figures = _run_flood(flood)
            except Exception as error:
                result.error = f"{type(error).__name__}: {error}"
                continue
            result.peaks.append(_mib(figures, "peak"))
            result.growths.append(_mib(figures, "peak") - _mib(figures, "before"))
            result.sent.append(_mib(figures, "sent"))
    measurements = []
    for flood in floods:
        result = results[flood.name]
        if result.error is not None or result.skipped is not None:
            measurements.append(Measurement(flood.name, error=result.error, skipped=result.skipped))
            continue
        extra = {"growth": statistics.median(result.growths)}
        if flood.name != INTERPRETER:
            extra["MiB sent"] = statistics.median(result.sent)
        measurements.append(Measurement(flood.name, values=result.peaks, extra=extra))
    table = Table(
        case=CASE,
        title="Hostile floods: peak resident memory (VmHWM) of the whole interpreter",
        unit="MiB",
        baseline=INTERPRETER,
        measurements=measurements,
        extra_columns=("growth", "MiB sent"),
    )
    for m in measurements[1:]:
        table.targets.append(
            Target(
                f"{m.contender}: peak under {PEAK_LIMIT:g} MiB",
                m.median if m.measured else None,
                PEAK_LIMIT,
            )
        )
    proxy = measurements[3]
    table.targets.append(
        Target(
            f"{proxy.contender}: growth under {PROXY_GROWTH_LIMIT:g} MiB",
            proxy.extra["growth"] if proxy.measured else None,
            PROXY_GROWTH_LIMIT,
        )
    )
    table.notes = [
        f"Each sample is one flood in a fresh interpreter ({sys.executable} -c); {rounds} "
        "round(s), the floods interleaved in a new order each round. Peak = VmHWM from "
        "/proc/self/status at the end (ru_maxrss would be the parent's after exec); growth = "
        "peak - VmHWM just before the flood (peer serving, client connected); MiB sent = what "
        "the client got out before the flood ended. MiB = 2^20 bytes, MB = 10^6.",
        "The client is a thread of the same interpreter sending from one reused 64 KiB buffer, "
        "so the figure is the peer's plus the interpreter's (the baseline row).",
        "Every flood ended as it must, or its row is an error: (a) FramingError when leaving "
        "serve(), the client reset; (b) ClientNotReading from connection.send past "
        "max_send_buffer (4 MiB); (c) all relayed, the proxy's transcript keeping under 10% "
        "of it; (d) the client's send timed out (1 s) with one line received: backpressure.",
    ]
    return table


# -- segments -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segmented:
    """One row: a message, its framing, and the segment size it arrives in."""

    label: str
    framing: Framing
    message: bytes
    #: The bytes on the wire (the message, framed).
    wire: bytes
    segment: int


def _segmented(plan: Plan) -> list[Segmented]:
    raw = b"x" * plan.pick(MIB, 64 * 1024)
    line = b"y" * (plan.pick(60_000, 6_000) - 1)
    prefixed = b"z" * plan.pick(8 * MIB, 256 * 1024)
    return [
        Segmented(f"Raw(), a {len(raw):,}-byte expect", Raw(), raw, raw, 128),
        Segmented(f"Lines(), a {len(line) + 1:,}-byte line", Lines(), line, line + b"\n", 128),
        Segmented(
            f"LengthPrefixed(), a {len(prefixed):,}-byte message",
            LengthPrefixed(),
            prefixed,
            len(prefixed).to_bytes(4, "big") + prefixed,
            4096,
        ),
    ]


def time_to_reply(row: Segmented, segments: list[bytes]) -> float:
    """Seconds from handing the peer's core the first segment to the reply."""
    peer = FakePeer(framing=row.framing)
    peer.expect(row.message).reply(b"ok")
    conversation = peer._conversation
    connection, _ = conversation.connect("127.0.0.1:50000", 0.0)
    gc.collect()
    actions = []
    start = time.perf_counter()
    for at, segment in enumerate(segments):
        actions = conversation.receive(connection, segment, float(at))
        if actions:
            break
    elapsed = time.perf_counter() - start
    if Write(row.framing.encode(b"ok")) not in actions:
        raise AssertionError(f"{row.label}: the peer answered {actions!r}, not the reply")
    return elapsed


def segment_tables(plan: Plan) -> list[Table]:
    """Each row's message in one segment and in small ones, interleaved; a table per row."""
    rounds, warmup = plan.pick(5, 1), 1
    tables = []
    for row in _segmented(plan):
        small = f"{row.segment}-byte segments"
        cut = [row.wire[i : i + row.segment] for i in range(0, len(row.wire), row.segment)]
        variants = {"one segment": [row.wire], small: cut}
        values: dict[str, list[float]] = {name: [] for name in variants}
        errors: dict[str, str] = {}
        paired: list[float] = []
        for index, order in enumerate(orders(list(variants), warmup + rounds)):
            taken: dict[str, float] = {}
            for name in order:
                if name in errors:
                    continue
                try:
                    taken[name] = time_to_reply(row, variants[name]) * 1e3
                except Exception as error:
                    errors[name] = f"{type(error).__name__}: {error}"
            if index >= warmup:
                for name, value in taken.items():
                    values[name].append(value)
                if len(taken) == 2:
                    paired.append(taken[small] / taken["one segment"])
        measurements = [
            Measurement(name, error=errors[name])
            if name in errors
            else Measurement(name, values=values[name])
            for name in variants
        ]
        if paired:
            measurements[1].extra["paired"] = statistics.median(paired)
        table = Table(
            case=CASE,
            title=f"Segmented input: {row.label}, {small} vs one (first byte to reply)",
            unit="ms",
            baseline="one segment",
            measurements=measurements,
            extra_columns=("paired",),
        )
        table.targets = [
            Target(
                f"{small} at most {SEGMENT_LIMIT:g}x one segment",
                table.ratio(small),
                SEGMENT_LIMIT,
            )
        ]
        table.notes = [
            f"The peer's core driven without sockets: FakePeer(framing={row.framing!r}), "
            f'expect(<the message>).reply(b"ok"); Conversation.receive() called once per '
            f"segment ({len(row.wire):,} bytes on the wire: {len(cut):,} segments of "
            f"{row.segment} bytes, or 1); the time is from the first call to "
            f"the return of the one that answers. {rounds} round(s) after {warmup} warm-up, the "
            f"two interleaved; paired = the median of the per-round ratios.",
        ]
        tables.append(table)
    return tables


def run(plan: Plan) -> list[Table]:
    """The floods' table, then the segments' tables; see the module docstring."""
    return [flood_table(plan), *segment_tables(plan)]


if __name__ == "__main__":  # the same as: python -m benchmarks --only hostile [--quick]
    from run import main

    sys.exit(main(["--only", "hostile", *sys.argv[1:]]))
