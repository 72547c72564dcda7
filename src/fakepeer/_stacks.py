"""Stack samples of a running thread, for the loop watchdog's diagnosis.

Reads ``sys._current_frames()`` (CPython's, also on PyPy): each :class:`Sample` holds the
innermost frame of the test's own code (not the standard library, site-packages or
fakepeer), the running task, and the stack inside the loop's machinery.
"""

from __future__ import annotations

import bisect
import dis
import functools
import inspect
import linecache
import os
import sys
import sysconfig
import types
from typing import Any, Final

from ._diagnosis import Place, Sample

__all__ = [
    "debugger_on_stack",
    "is_library",
    "place",
    "running_task",
    "sample",
    "steps_loop_of",
    "task_of",
    "trio_step",
]

_STDLIB: Final = tuple(
    os.path.normcase(os.path.realpath(path)) + os.sep
    for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
_PACKAGE: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Functions that run one step of a loop: asyncio's ``_run_once`` and trio's
#: ``unrolled_run``, or a whole loop that has no step in Python (uvloop's), in the loop
#: watchdog's ``run_forever`` wrapper. Frames outside them are the loop's machinery and the
#: test runner.
LOOP_STEPS: Final = frozenset({"_run_once", "unrolled_run", "run_forever_watched"})


@functools.lru_cache(maxsize=4096)
def is_library(filename: str) -> bool:
    """True for code that is not the test's own: the standard library, site-packages,
    fakepeer itself, and code with no file (``<string>``, ``<frozen ...>``)."""
    if filename.startswith("<"):
        return True
    path = os.path.normcase(os.path.realpath(filename))
    return path.startswith((*_STDLIB, _PACKAGE)) or f"{os.sep}site-packages{os.sep}" in path


@functools.lru_cache(maxsize=1024)
def _instructions(code: types.CodeType) -> tuple[list[int], list[str]]:
    instructions = list(dis.get_instructions(code))
    return [i.offset for i in instructions], [i.opname for i in instructions]


def _opname(code: types.CodeType, lasti: int) -> str:
    """The instruction at ``lasti`` (which may point into its inline cache, on 3.11+)."""
    offsets, names = _instructions(code)
    index = bisect.bisect_right(offsets, lasti) - 1
    return names[index] if index >= 0 else ""


def place(frame: types.FrameType) -> Place:
    """Where ``frame`` is: its line, and the expression it evaluates (3.11+ positions)."""
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


#: What :func:`running_task` says when the loop runs a callback, not a task.
NO_TASK: Final = "no task (a loop callback)"


def task_of(loop: object) -> str | None:
    """The asyncio task that ``loop`` (running in any thread) is stepping now, named; None
    when it runs a callback (or nothing)."""
    tasks: Any = sys.modules.get("asyncio.tasks")
    try:
        current = getattr(tasks, "_current_tasks", {}).get(loop)
    except Exception:  # an unhashable or odd loop: no name rather than no report
        return None
    if current is None:
        return None
    coro = current.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    return f"{current.get_name()} running {name}()"


def running_task(frame: types.FrameType | None) -> str:
    """The asyncio task that the loop running in ``frame``'s thread is stepping, named."""
    while frame is not None:
        if frame.f_code.co_name == "_run_once" and "self" in frame.f_locals:
            return task_of(frame.f_locals["self"]) or NO_TASK
        frame = frame.f_back
    return "unknown"


def sample(thread: int, task: str | None = None) -> Sample | None:
    """A look at ``thread`` now (None if it has ended); ``task`` names the running task
    when the caller knows it (trio), else it is read from asyncio's loop."""
    frame = sys._current_frames().get(thread)
    if frame is None:
        return None
    stack: list[Place] = []
    user: Place | None = None
    walker: types.FrameType | None = frame
    while walker is not None:
        if walker.f_code.co_name in LOOP_STEPS:
            break  # everything outside is the loop machinery and the test runner
        where = place(walker)
        stack.append(where)
        if user is None and not is_library(walker.f_code.co_filename):
            user = where
        walker = walker.f_back
    stack.reverse()
    return Sample(user, task if task is not None else running_task(frame), tuple(stack))


def steps_loop_of(thread: int, selector: object) -> bool:
    """True if ``thread`` is in a step (``_run_once``) of the asyncio loop whose selector is
    ``selector``: not merely of some loop (a thread may run several, one after another, and
    a loop that stopped leaves its selector's mark behind)."""
    frame = sys._current_frames().get(thread)
    while frame is not None:
        if frame.f_code.co_name == "_run_once":
            loop = frame.f_locals.get("self")
            if getattr(loop, "_selector", None) is selector:
                return True
        frame = frame.f_back
    return False


def debugger_on_stack(thread: int) -> bool:
    """True when pdb (or any bdb debugger) is stopped in ``thread``: not a blocked loop."""
    frame = sys._current_frames().get(thread)
    while frame is not None:
        if frame.f_code.co_filename.endswith(("bdb.py", "pdb.py")):
            return True
        frame = frame.f_back
    return False


_COROUTINE_FLAGS: Final = (
    inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
)


def trio_step(thread: int) -> tuple[Any, int] | None:
    """The trio task that ``thread`` is stepping now, and its step count (trio's
    ``Task._schedule_points``, one more after each step), or None when the thread is not
    in a task step (waiting for I/O, or not in a trio run).

    It reads the ``task`` local of trio's ``unrolled_run`` frame, from the watchdog's thread
    (as a debugger would): no instrument hook runs on each step, so a watched trio run costs
    what a plain one does. Trio internals: where they are not found, None.
    """
    frame = sys._current_frames().get(thread)
    stepping = False
    while frame is not None:
        code = frame.f_code
        if code.co_flags & _COROUTINE_FLAGS:
            stepping = True  # a task's coroutine runs: a step, not the wait for I/O
        elif code.co_name == "unrolled_run" and code.co_filename.endswith("_run.py"):
            if not stepping:
                return None
            task = frame.f_locals.get("task")
            points = getattr(task, "_schedule_points", None)
            return None if task is None or not isinstance(points, int) else (task, points)
        frame = frame.f_back
    return None
