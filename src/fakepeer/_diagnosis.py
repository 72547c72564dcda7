"""The loop watchdog's diagnosis: stack samples of a blocked loop in, a report out.

Pure: no threads, no frames, no clock. :mod:`fakepeer._stacks` takes the samples (from live
frames), :mod:`fakepeer._watchdog` decides when; this module only says what they show. It
is tested with tables of hand-made samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Place", "Sample", "describe", "hint"]


@dataclass(frozen=True)
class Place:
    """One frame: where, the source line, and the exact expression being evaluated.

    ``columns`` are the expression's start and end in ``line`` (Python 3.11+ positions), or
    None; ``opname`` is the instruction being executed: a ``CALL...`` while a call blocks.
    """

    filename: str
    lineno: int
    function: str
    line: str
    expression: str = ""
    columns: tuple[int, int] | None = None
    opname: str = ""

    def describe(self) -> str:
        return f"{os.path.basename(self.filename)}:{self.lineno} in {self.function}"


@dataclass(frozen=True)
class Sample:
    """One look at a blocked loop's thread: the innermost frame of the test's own code
    (``user``, None when only library code runs), the running task, and the stack inside
    the loop's machinery (outermost first)."""

    user: Place | None
    task: str
    stack: Sequence[Place] = field(default_factory=tuple)


#: Well-known blocking calls (text found in the blocking expression) and what to use instead,
#: in asyncio and in trio.
HINTS: Final = (
    (
        ("accept(",),
        "socket.accept() blocks the whole event loop; use loop.sock_accept() or "
        "asyncio.start_server(), or, for a server in a test, fakepeer's fake_peer fixture",
        "socket.accept() blocks the whole trio run; use trio.serve_tcp() or trio.socket, or, "
        "for a server in a test, fakepeer's fake_peer fixture",
    ),
    (
        ("recv(", "recv_into(", "recvfrom(", "sendall(", "makefile(", "readline("),
        "a blocking socket read or write stops the event loop; use asyncio.open_connection() "
        "streams, or loop.sock_recv() / loop.sock_sendall(); to test a blocking client, "
        "call it with await asyncio.to_thread(...) or from a plain def test",
        "a blocking socket read or write stops the trio run; use trio.open_tcp_stream() "
        "streams, or trio.socket",
    ),
    (
        ("connect(", "create_connection("),
        "a blocking connect() stops the event loop; use asyncio.open_connection() or "
        "loop.sock_connect()",
        "a blocking connect() stops the trio run; use trio.open_tcp_stream()",
    ),
    (
        ("time.sleep(", "sleep("),
        "time.sleep() blocks the event loop; use await asyncio.sleep()",
        "time.sleep() blocks the trio run; use await trio.sleep()",
    ),
    (
        ("subprocess.", ".communicate(", ".wait("),
        "a blocking subprocess call stops the event loop; use asyncio.create_subprocess_exec()",
        "a blocking subprocess call stops the trio run; use trio.run_process()",
    ),
    (
        ("requests.", "urlopen("),
        "a blocking HTTP call stops the event loop; use an async client or "
        "await asyncio.to_thread(...)",
        "a blocking HTTP call stops the trio run; use an async client or "
        "await trio.to_thread.run_sync(...)",
    ),
    (("input(",), "input() blocks the event loop", "input() blocks the trio run"),
)

#: What to do about code that never awaits.
CPU_BOUND_HINT: Final = (
    "a loop that never awaits keeps the event loop from everything else; await "
    "asyncio.sleep(0) now and then, or move the work to asyncio.to_thread()"
)
#: ... in trio.
CPU_BOUND_HINT_TRIO: Final = (
    "a loop that never awaits keeps the trio run from everything else; await "
    "trio.lowlevel.checkpoint() now and then, or move the work to trio.to_thread.run_sync()"
)

#: What to do about a script's code that blocks the fakepeer hub (``library="hub"``).
HUB_HINT: Final = (
    "a fake peer's reply callable runs in the fakepeer hub's event loop, which serves every "
    "peer: it must return at once; to answer late, script it (.after(seconds)), or use an "
    "async handler that awaits"
)

#: Instruction names of a frame that waits for a call to return (3.11: PRECALL/CALL, 3.12+:
#: CALL, CALL_KW, CALL_FUNCTION_EX).
CALLS: Final = ("CALL", "PRECALL")


def hint(expression: str, line: str, library: str = "asyncio") -> str | None:
    """The advice for a blocking call, from its expression (or, without one, its line), for
    a loop of ``library``: "asyncio", "trio", or "hub" (the fakepeer hub: a script's code)."""
    if library == "hub":
        return HUB_HINT
    text = expression or line
    for needles, asyncio_advice, trio_advice in HINTS:
        if any(needle in text for needle in needles):
            return trio_advice if library == "trio" else asyncio_advice
    return None


def describe(
    samples: Sequence[Sample],
    *,
    blocked_for: float,
    limit: float,
    where: str,
    loop: str = "the event loop",
    library: str = "asyncio",
) -> str:
    """The report on a loop blocked for ``blocked_for`` seconds (``limit`` allowed), from
    ``samples`` taken a few milliseconds apart (the last is the freshest). ``where`` says
    during what ("during call of test_x.py::test_y"); ``loop`` names the loop; ``library``
    ("asyncio", "trio", or "hub") chooses the advice.

    When every sample stands in the same call, one call does not return (and a hint may
    name the usual fix); else the loop runs Python code without ever awaiting.
    """
    lines = [
        f"{loop} was blocked for {blocked_for:.2f} s (the loop watchdog allows {limit:g} s) {where}"
    ]
    if not samples:
        return lines[0]
    last = samples[-1]
    lines.append(f"  task:        {last.task}")
    user = last.user
    if user is not None:
        lines.append(f"  blocked at:  {user.filename}:{user.lineno} in {user.function}")
        lines.append(f"      {user.line.strip()}")
        if user.columns is not None and user.expression:
            indent = len(user.line) - len(user.line.lstrip())
            start, end = user.columns
            lines.append("      " + " " * max(0, start - indent) + "^" * max(1, end - start))
        if user.expression:
            lines.append(f"  call:        {user.expression}")
    else:
        lines.append("  blocked at:  no code of the test's own on the stack: see the stack")
    focus = [_focus(s) for s in samples]
    places = {(f.filename, f.lineno) if f else None for f in focus}
    # In a call: the freshest sample says so (on a loaded machine an early one may catch the
    # thread on its way into the call, at the same line: that is not CPU-bound code).
    calls = sum(1 for f in focus if f is not None and f.opname.startswith(CALLS))
    calling = focus[-1] is not None and focus[-1].opname.startswith(CALLS)
    advice: str | None
    if len(places) == 1 and calling:
        lines.append(
            f"  samples:     {calls} of {len(samples)} in the same call: "
            "one call that does not return"
        )
        advice = hint(user.expression, user.line, library) if user is not None else None
    else:
        at = "the same line" if len(places) == 1 else f"{len(places)} different lines"
        lines.append(
            f"  samples:     {len(samples)} at {at}, running Python code: code that runs "
            "without ever awaiting (CPU-bound)"
        )
        advice = {"trio": CPU_BOUND_HINT_TRIO, "hub": HUB_HINT}.get(library, CPU_BOUND_HINT)
    if advice:
        lines.append(f"  hint:        {advice}")
    lines.append("  stack (innermost last):")
    lines.extend(f"    {place.describe()}: {place.line.strip()}" for place in last.stack[-8:])
    return "\n".join(lines)


def _focus(sample: Sample) -> Place | None:
    """The frame a sample is judged by: the test's own innermost, else the innermost."""
    if sample.user is not None:
        return sample.user
    return sample.stack[-1] if sample.stack else None
