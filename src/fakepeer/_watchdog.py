"""The loop watchdog: a blocked asyncio event loop fails the test responsible, naming the line.

How it works, in four parts:

**Seeing.** Every asyncio loop on a selector (the default on all platforms) asks its selector
to ``select()`` whenever it has nothing ready to run. While :func:`install` is in effect,
``selectors.DefaultSelector`` is a subclass whose ``select`` notes, for the main thread, when
the loop went back to work (``select`` returned) and clears the note when it waits again. No
task, no timer, nothing in ``asyncio.all_tasks()``; a fake-clock loop is not disturbed.

**Noticing.** A daemon thread (``fakepeer-watchdog``) looks a few times per threshold. The loop
is blocked when the note is older than the threshold *and* the main thread's stack holds the
loop's ``_run_once`` (so a loop that pytest-asyncio stopped between phases, with its note left
behind, is not mistaken for a blocked one), seen twice in a row.

**Diagnosing.** It samples the main thread's stack a few times, finds the running task, the
innermost frame of user code, the exact call expression (3.11+ positions), and whether the
samples agree (one blocking call) or not (a CPU-bound loop), and adds a hint for well-known
blocking calls.

**Interrupting.** It sends the main thread a signal whose handler raises :class:`Interrupt` (a
``BaseException``, so ``except Exception`` in the stuck code does not swallow it): a blocking
system call returns with ``EINTR`` and the exception propagates from the stuck line. The pytest
plugin then fails the phase that stalled with :class:`~fakepeer.LoopBlocked`. If the loop is
still stuck long after (code that swallows ``BaseException``), the watchdog prints the
diagnosis to the real stderr and ends the process, as a last resort.
"""

from __future__ import annotations

import bisect
import dis
import functools
import linecache
import logging
import os
import selectors
import signal
import sys
import sysconfig
import threading
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ._errors import Error

__all__ = [
    "Interrupt",
    "LoopBlocked",
    "TaskDied",
    "UnseenErrors",
    "Watchdog",
    "diagnose",
]

clock: Final = time.monotonic
_SIGNAL: Final = getattr(signal, "SIGUSR2", None)
_MAIN: Final = threading.main_thread().ident

#: Busy-since marks of loops on the main thread: set when select() returns, cleared before it
#: is called again. A one-element list so the selector's hot path is a single store.
_busy: list[float | None] = [None]


class LoopBlocked(Error, AssertionError):
    """The event loop of a test did not get back to its I/O wait within the limit.

    ``diagnosis`` names the task, the line and the call; the test (or the phase: setup, call,
    teardown) that ran it fails with this error.
    """


LoopBlocked.__module__ = "fakepeer"


class TaskDied(Error, AssertionError):
    """A task raised and nobody awaited it ("Task exception was never retrieved"), or a loop
    callback raised, while the test ran: asyncio only logs those; the test fails with it."""


TaskDied.__module__ = "fakepeer"


class UnseenErrors(logging.Handler):
    """Collects what asyncio logs about exceptions nobody retrieved, during one phase."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Interrupt):
            return  # the watchdog's own interruption: already reported as LoopBlocked
        text = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        self.found.append(text)

    def __enter__(self) -> UnseenErrors:
        logging.getLogger("asyncio").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("asyncio").removeHandler(self)

    def verdict(self, where: str) -> TaskDied | None:
        if not self.found:
            return None
        more = f"\n\n(and {len(self.found) - 1} more)" if len(self.found) > 1 else ""
        return TaskDied(
            f"an exception in the event loop went unseen {where}: asyncio only logged it\n"
            f"{self.found[0]}{more}"
        )


class Interrupt(BaseException):
    """Raised in the blocked code by the watchdog's signal handler to get it moving again.

    A ``BaseException``, so that ``except Exception`` in the stuck code does not swallow it.
    The pytest plugin turns it into :class:`LoopBlocked` for the report.
    """


def _watched_selector(base: type[selectors.BaseSelector]) -> type[selectors.BaseSelector]:
    """A subclass of ``base`` whose ``select`` keeps the main thread's busy mark.

    Loops made on other threads get a plain ``base`` (the watchdog only interrupts the main
    thread), so the hot path has no thread check; its helpers are bound as default
    arguments, so it does no global lookups.
    """
    base_select = base.select

    class WatchedSelector(base):  # type: ignore[valid-type,misc]  # a class from a variable
        """The default selector, noting for the watchdog when the main loop waits."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != _MAIN:
                return base(*args, **kwargs)
            return super().__new__(cls)

        def select(
            self,
            timeout: float | None = None,
            _select: Any = base_select,
            _busy: list[float | None] = _busy,
            _clock: Callable[[], float] = clock,
        ) -> list[Any]:
            _busy[0] = None
            try:
                return _select(self, timeout)  # type: ignore[no-any-return]
            finally:
                _busy[0] = _clock()

    WatchedSelector.__qualname__ = WatchedSelector.__name__ = f"Watched{base.__name__}"
    return WatchedSelector


# -- diagnosis --------------------------------------------------------------------------------

_STDLIB: Final = tuple(
    os.path.normcase(os.path.realpath(path)) + os.sep
    for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
_PACKAGE: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_library(filename: str) -> bool:
    if filename.startswith("<"):
        return True
    path = os.path.normcase(os.path.realpath(filename))
    return path.startswith((*_STDLIB, _PACKAGE)) or f"{os.sep}site-packages{os.sep}" in path


@dataclass(frozen=True)
class Place:
    """One frame: where, the source line, and the exact expression being evaluated."""

    filename: str
    lineno: int
    function: str
    line: str
    expression: str
    columns: tuple[int, int] | None
    opname: str = ""  # the instruction being executed: a CALL... while a call blocks

    def describe(self) -> str:
        return f"{os.path.basename(self.filename)}:{self.lineno} in {self.function}"


@functools.lru_cache(maxsize=1024)
def _instructions(code: types.CodeType) -> tuple[list[int], list[str]]:
    instructions = list(dis.get_instructions(code))
    return [i.offset for i in instructions], [i.opname for i in instructions]


def _opname(code: types.CodeType, lasti: int) -> str:
    """The instruction at ``lasti`` (which may point into its inline cache, on 3.11+)."""
    offsets, names = _instructions(code)
    index = bisect.bisect_right(offsets, lasti) - 1
    return names[index] if index >= 0 else ""


def _place(frame: types.FrameType) -> Place:
    code = frame.f_code
    lineno = frame.f_lineno or 0
    line = linecache.getline(code.co_filename, lineno, frame.f_globals).rstrip("\n")
    expression = ""
    columns = None
    positions = list(code.co_positions())
    index = frame.f_lasti // 2
    if 0 <= index < len(positions):
        start_line, end_line, start, end = positions[index]
        if start_line == end_line == lineno and start is not None and end is not None:
            encoded = line.encode()
            expression = encoded[start:end].decode(errors="replace")
            prefix = len(encoded[:start].decode(errors="replace"))
            columns = (prefix, prefix + len(expression))
    return Place(
        code.co_filename,
        lineno,
        code.co_name,
        line,
        expression,
        columns,
        _opname(code, frame.f_lasti),
    )


@dataclass
class Sample:
    """One look at the main thread: its user frame, innermost frame and running task."""

    user: Place | None
    innermost: Place | None
    task: str
    stack: list[Place] = field(default_factory=list)


def _running_task(frame: types.FrameType | None) -> str:
    while frame is not None:
        if frame.f_code.co_name == "_run_once" and "self" in frame.f_locals:
            loop = frame.f_locals["self"]
            tasks: Any = sys.modules.get("asyncio.tasks")
            current = getattr(tasks, "_current_tasks", {}).get(loop)
            if current is None:
                return "no task (a loop callback)"
            coro = current.get_coro()
            name = getattr(coro, "__qualname__", None) or repr(coro)
            return f"{current.get_name()} running {name}()"
        frame = frame.f_back
    return "unknown"


def _sample(thread: int) -> Sample | None:
    frame = sys._current_frames().get(thread)
    if frame is None:
        return None
    stack: list[Place] = []
    user: Place | None = None
    walker: types.FrameType | None = frame
    innermost = _place(frame)
    while walker is not None:
        if walker.f_code.co_name == "_run_once":
            break  # everything outside is the loop machinery and pytest
        place = _place(walker)
        stack.append(place)
        if user is None and not _is_library(walker.f_code.co_filename):
            user = place
        walker = walker.f_back
    stack.reverse()
    return Sample(user, innermost, _running_task(frame), stack)


def _debugger_on_stack(thread: int) -> bool:
    """True when pdb (or any bdb debugger) is stopped in the main thread: not a blocked loop."""
    frame = sys._current_frames().get(thread)
    while frame is not None:
        if frame.f_code.co_filename.endswith(("bdb.py", "pdb.py")):
            return True
        frame = frame.f_back
    return False


def _in_run_once(thread: int) -> bool:
    frame = sys._current_frames().get(thread)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_run_once" and code.co_filename.endswith("base_events.py"):
            return True
        frame = frame.f_back
    return False


_HINTS: Final = (
    (
        ("accept(",),
        "socket.accept() blocks the whole event loop; use loop.sock_accept() or "
        "asyncio.start_server(), or, for a server in a test, fakepeer's fake_peer fixture",
    ),
    (
        ("recv(", "recv_into(", "recvfrom(", "sendall(", "makefile(", "readline("),
        "a blocking socket read or write stops the event loop; use asyncio.open_connection() "
        "streams, or loop.sock_recv() / loop.sock_sendall()",
    ),
    (
        ("connect(", "create_connection("),
        "a blocking connect() stops the event loop; use asyncio.open_connection() or "
        "loop.sock_connect()",
    ),
    (("time.sleep(", "sleep("), "time.sleep() blocks the event loop; use await asyncio.sleep()"),
    (
        ("subprocess.", ".communicate(", ".wait("),
        "a blocking subprocess call stops the event loop; use asyncio.create_subprocess_exec()",
    ),
    (
        ("requests.", "urlopen("),
        "a blocking HTTP call stops the event loop; use an async client or "
        "await asyncio.to_thread(...)",
    ),
    (("input(",), "input() blocks the event loop"),
)


#: Instruction names of a frame that waits for a call to return (3.11: PRECALL/CALL, 3.12+:
#: CALL, CALL_KW, CALL_FUNCTION_EX).
_CALLS: Final = ("CALL", "PRECALL")


def _hint(expression: str, line: str) -> str | None:
    text = expression or line
    for needles, hint in _HINTS:
        if any(needle in text for needle in needles):
            return hint
    return None


def diagnose(thread: int, blocked_for: float, limit: float, where: str, samples: int = 3) -> str:
    """Describe what ``thread``'s loop is stuck on, from a few stack samples."""
    taken = []
    for index in range(samples):
        sample = _sample(thread)
        if sample is not None:
            taken.append(sample)
        if index < samples - 1:
            time.sleep(0.02)
    lines = [
        f"the event loop was blocked for {blocked_for:.2f} s (the loop watchdog allows "
        f"{limit:g} s) {where}"
    ]
    if not taken:  # pragma: no cover - the main thread always has a frame while it runs
        return lines[0]
    last = taken[-1]
    lines.append(f"  task:        {last.task}")
    user = last.user
    if user is not None:
        lines.append(f"  blocked at:  {user.filename}:{user.lineno} in {user.function}")
        lines.append(f"      {user.line.strip()}")
        if user.columns is not None and user.expression:
            indent = len(user.line) - len(user.line.lstrip())
            start, end = user.columns
            lines.append("      " + " " * (start - indent) + "^" * max(1, end - start))
        if user.expression:
            lines.append(f"  call:        {user.expression}")
    places = {(s.user.filename, s.user.lineno) if s.user else None for s in taken}
    calling = all(s.user is not None and s.user.opname.startswith(_CALLS) for s in taken)
    if len(places) == 1 and calling:
        lines.append(
            f"  samples:     {len(taken)} of {len(taken)} in the same call: "
            "one call that does not return"
        )
        hint = _hint(user.expression, user.line) if user is not None else None
    else:
        where = "the same line" if len(places) == 1 else f"{len(places)} different lines"
        lines.append(
            f"  samples:     {len(taken)} at {where}, running Python code: code that runs "
            "without ever awaiting (CPU-bound)"
        )
        hint = (
            "a loop that never awaits keeps the event loop from everything else; await "
            "asyncio.sleep(0) now and then, or move the work to asyncio.to_thread()"
        )
    if hint:
        lines.append(f"  hint:        {hint}")
    lines.append("  stack (innermost last):")
    lines.extend(f"    {place.describe()}: {place.line.strip()}" for place in last.stack[-8:])
    return "\n".join(lines)


# -- the watchdog ------------------------------------------------------------------------------


class Watchdog:
    """Watches the main thread's asyncio loops while :meth:`watch` says a phase is running.

    ``report`` receives each diagnosis (from the watchdog thread) before the stuck code is
    interrupted; ``last_resort`` is how long a loop may stay stuck after the first
    interruption before the process is ended.
    """

    def __init__(self, report: Callable[[str], None], *, last_resort: float = 10.0) -> None:
        self._report = report
        self._last_resort = last_resort
        self._limit = 0.0
        self._where = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_selector: type[selectors.BaseSelector] | None = None
        self._previous_handler: Any = None
        self._pending: tuple[str, float] | None = None  # (diagnosis, busy mark)
        self._first_alarm: float | None = None
        self._interrupts = 0

    @staticmethod
    def available() -> bool:
        """True where the watchdog can interrupt the main thread (a POSIX signal)."""
        return _SIGNAL is not None and threading.current_thread() is threading.main_thread()

    def install(self) -> None:
        """Patch the default selector, install the signal handler, start the thread."""
        if self._thread is not None:
            return
        self._previous_selector = selectors.DefaultSelector
        selectors.DefaultSelector = _watched_selector(  # type: ignore[misc,assignment]
            selectors.DefaultSelector
        )
        assert _SIGNAL is not None
        self._previous_handler = signal.signal(_SIGNAL, self._on_signal)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fakepeer-watchdog", daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        """Undo :meth:`install`: loops made afterwards are plain again."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(5)
        if self._previous_selector is not None:
            selectors.DefaultSelector = self._previous_selector  # type: ignore[misc,assignment]
        if _SIGNAL is not None and self._previous_handler is not None:
            signal.signal(_SIGNAL, self._previous_handler)

    def watch(self, limit: float, where: str) -> None:
        """Watch from now on, with ``limit`` seconds (0 = not at all); ``where`` names it."""
        self._pending = None
        self._first_alarm = None
        self._interrupts = 0
        _busy[0] = None
        self._where = where
        self._limit = limit

    def unwatch(self) -> None:
        """Stop watching (between phases)."""
        self._limit = 0.0
        self._pending = None

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        pending, self._pending = self._pending, None
        # Only if the loop is still stuck where it was diagnosed: had it moved on meanwhile,
        # raising here would hit whatever code runs now.
        if pending is not None and _busy[0] == pending[1]:
            raise Interrupt(pending[0])

    def _run(self) -> None:
        seen: float | None = None  # the busy mark seen with _run_once on the stack last time
        while not self._stop.is_set():
            limit = self._limit
            interval = min(max(limit / 10, 0.005), 0.05) if limit else 0.05
            self._stop.wait(interval)
            if not limit or self._stop.is_set():
                seen = None
                continue
            since = _busy[0]
            if since is None or clock() - since < limit or not _in_run_once(_MAIN):  # type: ignore[arg-type]
                seen = None
                continue
            if seen != since:
                seen = since  # confirm on the next look: the loop may just have restarted
                continue
            self._alarm(since, limit)
            seen = None

    def _alarm(self, since: float, limit: float) -> None:
        assert _MAIN is not None
        now = clock()
        blocked_for = now - since
        if _debugger_on_stack(_MAIN):
            return
        if self._first_alarm is None:
            self._first_alarm = now
        elif now - self._first_alarm > self._last_resort:
            self._give_up(blocked_for)
            return
        diagnosis = diagnose(_MAIN, blocked_for, limit, self._where)
        if self._limit == 0:  # the phase ended while we looked
            return
        self._interrupts += 1
        self._report(diagnosis)
        self._pending = (diagnosis, since)
        assert _SIGNAL is not None
        signal.pthread_kill(_MAIN, _SIGNAL)

    def _give_up(self, blocked_for: float) -> None:
        assert _MAIN is not None
        diagnosis = diagnose(_MAIN, blocked_for, self._limit, self._where)
        stream = sys.__stderr__
        if stream is not None:
            stream.write(
                "\nfakepeer loop watchdog: the event loop is still blocked "
                f"{self._last_resort:g} s after it was interrupted ({self._interrupts} time(s));"
                " the code swallows the interruption. Ending the process.\n\n"
                f"{diagnosis}\n"
            )
            stream.flush()
        os._exit(3)
