"""Exceptions nobody saw, turned into a failing phase of a test (:class:`~fakepeer.TaskDied`).

Two ways in:

- asyncio only *logs* a task exception nobody retrieved, when the task is collected ("Task
  exception was never retrieved"), and an exception in a loop callback. :class:`UnseenErrors`
  (a logging handler on the "asyncio" logger during one phase) collects those records.
- A task the client still holds is never collected while the test runs: a test awaiting
  what that dead task would have done hangs, and the log comes late, in another test or
  never. :class:`TaskWatch` puts a task factory on the test's loop (chained to the one that
  was there) that adds a done-callback to every task. A task that finished with an
  exception nobody retrieved is looked at again ``grace`` seconds later (the loop
  watchdog's limit); if nobody retrieved it by then, the phase fails with ``TaskDied``
  naming the task, and the test body, if it is running, is cancelled so that it does not
  wait for the dead task forever.

"Nobody retrieved it" is CPython's ``Future._log_traceback`` (the C and the pure-Python
futures alike): true from the moment an exception is set on the task until ``result()``,
``exception()``, an ``await`` or ``gather`` retrieves it; it is the flag that makes asyncio
log "never retrieved". It is private: where a future has no such attribute, its exception
counts as seen, and only asyncio's log remains.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import re
import sys
import time
import traceback
import weakref
from typing import Any, Final

from ._errors import TaskDied
from ._watchdog import Interrupt

__all__ = ["TaskWatch", "UnseenErrors", "WatchedBody"]

_NAMES_KEPT: Final = 1024  # names of dead tasks remembered, to tell which test left one
_HERE: Final = os.path.normcase(os.path.abspath(__file__))
_ASYNCIO: Final = os.path.normcase(os.path.dirname(os.path.abspath(asyncio.__file__)))
# CPython 3.13.0 names a task "None" when a task factory is set and no name is given
# (create_task calls set_name(None)); fixed in 3.13.1.
_NAMELESS_BUG: Final = sys.version_info[:3] == (3, 13, 0)
_NAME: Final = re.compile(r"""<\w*Task \w+(?: \w+)* name=(?P<q>['"])(?P<name>.*?)(?P=q) """)
_HINT: Final = (
    "fakepeer cannot tell which test made it (it follows the tasks of async tests and "
    "their fixtures, not plain futures, nor the loops of asyncio.run() in sync tests), so it "
    "may come from an earlier test and have been collected only now. To find it: "
    "PYTHONASYNCIODEBUG=1 (with pytest-asyncio: --asyncio-debug) makes asyncio show where it "
    "was created; run with -p no:randomly to keep the order, or run this test alone."
)


@dataclasses.dataclass(frozen=True)
class _Origin:
    """A phase of a test: where a task was made, or where it died."""

    nodeid: str | None = None
    when: str | None = None

    def __str__(self) -> str:
        if self.nodeid is None:
            return "outside any test fakepeer watched"
        return f"during {self.when} of {self.nodeid}"


_NOWHERE: Final = _Origin()


def _unretrieved(task: object) -> bool:
    """True while the exception of a finished ``task`` was never retrieved (see the module)."""
    return bool(getattr(task, "_log_traceback", False))


if _NAMELESS_BUG:

    class _Task(asyncio.Task):  # type: ignore[type-arg]  # generic only in the stubs
        def set_name(self, value: object) -> None:
            if value is not None:
                super().set_name(value)

    # asyncio's messages and reprs name the class: keep them as they were
    _Task.__name__ = _Task.__qualname__ = "Task"

else:
    _Task = asyncio.Task  # type: ignore[assignment,misc]  # the same class, without the fix


class _Factory:
    """The task factory of a watched loop: the previous factory's task (or a plain Task),
    followed from its creation."""

    def __init__(self, watch: TaskWatch, previous: Any) -> None:
        self.watch = watch
        self.previous = previous

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if self.previous is not None:
            task = self.previous(loop, coro, **kwargs)
        else:
            task = _Task(coro, loop=loop, **kwargs)
        self.watch.adopt(task)
        return task


@dataclasses.dataclass
class _Pending:
    """A task that died unseen, to be looked at again when its grace is over."""

    loop: asyncio.AbstractEventLoop
    deadline: float  # time.monotonic()
    grace: float
    died: _Origin
    handle: asyncio.TimerHandle | None = None


class TaskWatch:
    """Follows the tasks of the tests' loops for one session, on the main thread.

    ``phase`` is the phase being watched (set by :meth:`UnseenErrors.__enter__`), or None
    between phases and in tests that turned ``TaskDied`` off.
    """

    def __init__(self) -> None:
        self.phase: UnseenErrors | None = None
        self._made: weakref.WeakKeyDictionary[Any, _Origin] = weakref.WeakKeyDictionary()
        self._names: collections.OrderedDict[str, tuple[_Origin, _Origin, bool]] = (
            collections.OrderedDict()
        )
        self._pending: dict[weakref.ref[Any], _Pending] = {}
        self._loops: dict[int, asyncio.AbstractEventLoop] = {}

    # -- the task factory -------------------------------------------------------------------

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Follow the tasks ``loop`` makes from now on; False if it was followed already."""
        current = loop.get_task_factory()
        if loop.is_closed() or (isinstance(current, _Factory) and current.watch is self):
            return False
        loop.set_task_factory(_Factory(self, current))
        self._loops[id(loop)] = loop
        return True

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        """Put back the factory ``loop`` had (unless someone replaced ours meanwhile)."""
        self._loops.pop(id(loop), None)
        current = loop.get_task_factory()
        if isinstance(current, _Factory) and current.watch is self and not loop.is_closed():
            loop.set_task_factory(current.previous)

    def close(self) -> None:
        for loop in list(self._loops.values()):
            self.uninstall(loop)
        self._pending.clear()

    def adopt(self, task: Any, origin: _Origin | None = None) -> None:
        """Follow ``task`` (made where ``origin`` says; by default, in the current phase)."""
        try:
            if task in self._made:
                return
            self._made[task] = origin or self._here()
        except TypeError:  # not weakly referenceable: not a future we know
            return
        task.add_done_callback(self._done)

    def adopt_running(self, loop: asyncio.AbstractEventLoop, but: Any) -> None:
        """Follow the tasks already running in ``loop`` (made before the factory was there,
        e.g. by an anyio fixture), except ``but``."""
        before = dataclasses.replace(self._here(), when="setup (or earlier)")
        for task in asyncio.all_tasks(loop):
            if task is not but:
                self.adopt(task, before)

    def _here(self) -> _Origin:
        phase = self.phase
        return _NOWHERE if phase is None else phase.origin

    # -- a task is done ---------------------------------------------------------------------

    def _done(self, task: Any) -> None:
        if not _unretrieved(task):
            return  # a result, cancelled, or someone already has the exception
        phase = self.phase
        died = self._here()
        self._remember(task, died, watched=phase is not None)
        if phase is None:
            return  # its test turned TaskDied off: asyncio's log is all there is
        ref = weakref.ref(task, self._collected)  # weak: a task nobody holds gets logged
        pending = _Pending(task.get_loop(), time.monotonic() + phase.grace, phase.grace, died)
        pending.handle = pending.loop.call_later(phase.grace, self._check, ref)
        self._pending[ref] = pending

    def _remember(self, task: Any, died: _Origin, *, watched: bool) -> None:
        name = _name_of(task)
        if name is None:
            return
        self._names[name] = (self._made.get(task, _NOWHERE), died, watched)
        self._names.move_to_end(name)
        while len(self._names) > _NAMES_KEPT:
            self._names.popitem(last=False)

    def _collected(self, ref: weakref.ref[Any]) -> None:
        pending = self._pending.pop(ref, None)
        if pending is not None and pending.handle is not None:
            pending.handle.cancel()

    def _check(self, ref: weakref.ref[Any], *, early: bool = False) -> None:
        pending = self._pending.pop(ref, None)
        task = ref()
        if pending is None or task is None or not _unretrieved(task):
            return
        phase = self.phase
        if phase is None:
            return  # looked at during a test that turned TaskDied off: left to asyncio
        phase.add(self._describe(task, pending, phase, early=early))

    def overdue(self) -> None:
        """Look at once at dead tasks whose grace is over but whose loop did not run to look
        (it is closed, or it is not running now, between phases)."""
        for key, loop in list(self._loops.items()):
            if loop.is_closed():  # a test's loop, gone with its test: let it go
                del self._loops[key]
        now = time.monotonic()
        for ref, pending in list(self._pending.items()):
            loop = pending.loop
            if loop.is_closed() or (pending.deadline <= now and not loop.is_running()):
                if pending.handle is not None:
                    pending.handle.cancel()
                self._check(ref)

    def sweep(self) -> None:
        """The phase failed: report every dead task nobody retrieved so far, grace or not
        (the failure may well come from one)."""
        for ref, pending in list(self._pending.items()):
            if pending.handle is not None:
                pending.handle.cancel()
            self._check(ref, early=True)

    def _describe(self, task: Any, pending: _Pending, phase: UnseenErrors, *, early: bool) -> str:
        """What the report says about a dead task; retrieves its exception, so that asyncio
        does not log it again when the task is collected (in another test)."""
        exc = task.exception()
        made = self._made.get(task, _NOWHERE)
        found = "" if pending.died == phase.origin else f" (found {phase.where})"
        within = "before the phase failed" if early else f"within {pending.grace:g} s"
        lines = [
            f"a task died {pending.died} and nobody retrieved its exception {within}{found}",
            f"task:        {_name_of(task)} running {_coroutine_of(task)}",
            f"made:        {made}{_made_at(task)}",
            f"exception:   {type(exc).__name__}: {exc}",
        ]
        if phase.body is not None:
            lines.append(
                "stopped:     the test body, which may be waiting for what the dead task "
                "would have done"
            )
        lines.append(
            "hint:        await the task, gather() it or call task.exception() to see its "
            "exception; a task nobody awaits needs its own error handling"
        )
        if phase.nodeid not in (made.nodeid, pending.died.nodeid):
            lines.append(
                f"note:        {phase.nodeid} may have nothing to do with it: the task comes "
                f"from an earlier test, {made.nodeid or pending.died.nodeid}"
            )
        trace = "".join(traceback.format_exception(exc)).rstrip()
        return "\n".join(lines) + "\n\n" + trace

    # -- what asyncio logged ----------------------------------------------------------------

    def attribution(self, message: str, phase: UnseenErrors) -> str | None:
        """Where a task asyncio logged as "never retrieved" came from, as a paragraph for the
        report; None when it died in a test that turned TaskDied off."""
        match = _NAME.search(message)
        known = None if match is None else self._names.get(match["name"])
        if match is None or known is None or known[0].nodeid is None:
            return "\n\n" + _HINT
        made, died, watched = known
        if not watched:
            return None
        if phase.nodeid in (made.nodeid, died.nodeid):
            return f"\n\nfakepeer saw this task made {made}, and die {died}."
        return (
            f"\n\nIt may come from an earlier test: the last task named {match['name']!r} "
            f"that fakepeer saw die unseen was created by {made.nodeid} ({made}) and died "
            f"{died}; asyncio logged it only now, when it was collected."
        )


def _name_of(task: Any) -> str | None:
    get_name = getattr(task, "get_name", None)
    return None if get_name is None else str(get_name())


def _coroutine_of(task: Any) -> str:
    get_coro = getattr(task, "get_coro", None)
    coro = None if get_coro is None else get_coro()
    if coro is None:
        return "(a coroutine asyncio no longer shows)"
    qualname = getattr(coro, "__qualname__", None)
    code = getattr(coro, "cr_code", None)
    if qualname is None:
        return repr(coro)
    if code is None:
        return f"{qualname}()"
    return f"{qualname}() (defined at {code.co_filename}:{code.co_firstlineno})"


def _made_at(task: Any) -> str:
    """Where the task was created, when asyncio's debug mode recorded it."""
    frames = getattr(task, "_source_traceback", None) or []
    for frame in reversed(frames):
        filename = os.path.normcase(os.path.abspath(frame.filename))
        if filename != _HERE and not filename.startswith(_ASYNCIO):
            return f", at {frame.filename}:{frame.lineno} in {frame.name}"
    return ""


class UnseenErrors(logging.Handler):
    """The unseen exceptions of one phase of a test: what asyncio logs about them (as a
    handler of the "asyncio" logger), and the tasks the :class:`TaskWatch` finds dead.

    While ``body`` is set (the test body runs in its loop), the first one found cancels it.
    """

    def __init__(self, watch: TaskWatch, nodeid: str, when: str, grace: float) -> None:
        super().__init__(logging.ERROR)
        self.watch = watch
        self.nodeid = nodeid
        self.origin = _Origin(nodeid, when)
        self.where = str(self.origin)
        self.grace = grace
        self.found: list[str] = []
        self.body: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancels = 0
        self._again: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Interrupt):
            return  # the watchdog's own interruption: already reported as LoopBlocked
        text = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        about = ""
        if "never retrieved" in text:
            found = self.watch.attribution(text, self)
            if found is None:
                return
            about = found
        self.add(
            f"an exception in the event loop went unseen {self.where}: asyncio only logged "
            f"it\n{text}{about}"
        )

    def add(self, diagnosis: str) -> None:
        """Report ``diagnosis``, and stop the test body if it runs: the phase fails anyway,
        and the body may be waiting for the dead task (this may be called from any thread:
        asyncio may log on another one, or while collecting garbage anywhere)."""
        self.found.append(diagnosis)
        loop = self._loop
        if self.body is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._stop_body)

    def _stop_body(self) -> None:
        body = self.body
        if body is None or body.done() or not self.found:
            return
        self._cancels += 1
        body.cancel(msg="fakepeer: a task died unseen (TaskDied)")
        if self._again is None and self._loop is not None:
            # code that swallows the cancellation gets it again
            self._again = self._loop.call_later(self.grace, self._stop_again)

    def _stop_again(self) -> None:
        self._again = None
        self._stop_body()

    # -- the phase ---------------------------------------------------------------------------

    def __enter__(self) -> UnseenErrors:
        self.watch.phase = self
        logging.getLogger("asyncio").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("asyncio").removeHandler(self)
        try:
            self.watch.overdue()
        finally:
            self.watch.phase = None

    def attach(self) -> bool:
        """Called by the test body's wrapper, in the test's loop: follow its tasks, and let
        a dead one stop the body. True when the factory was put on the loop here."""
        loop = asyncio.get_running_loop()
        body = asyncio.current_task()
        installed = self.watch.install(loop)
        self.watch.adopt_running(loop, body)
        self._loop, self.body = loop, body
        return installed

    def detach(self, installed: bool) -> bool:
        """When the body is over: take back the cancellations this sent (True if any), and
        the factory if :meth:`attach` put it there."""
        body, loop = self.body, self._loop
        self.body = None
        if self._again is not None:
            self._again.cancel()
            self._again = None
        cancels, self._cancels = self._cancels, 0
        if body is not None:
            for _ in range(cancels):
                body.uncancel()
        if installed and loop is not None:
            self.watch.uninstall(loop)
        return cancels > 0

    def verdict(self) -> TaskDied | None:
        """The ``TaskDied`` for what was found so far (taken: it is reported once)."""
        found, self.found = self.found, []
        if not found:
            return None
        more = f"\n\n(and {len(found) - 1} more)" if len(found) > 1 else ""
        return TaskDied(found[0] + more)

    def annotate(self, exc: BaseException) -> None:
        """The phase failed otherwise: add what was found to its exception, as a note, with
        the dead tasks nobody retrieved so far."""
        if not isinstance(exc, TaskDied):
            self.watch.phase = self
            try:
                self.watch.sweep()
            finally:
                self.watch.phase = None
        died = self.verdict()
        if died is not None and not isinstance(exc, TaskDied):
            exc.add_note(f"\nfakepeer: also, TaskDied: {died}")


class WatchedBody:
    """Around the test body, in its loop: a task that dies unseen while it runs stops it,
    and the ``CancelledError`` that stopped it leaves as :class:`~fakepeer.TaskDied`."""

    def __init__(self, watch: TaskWatch) -> None:
        self.watch = watch
        self.phase: UnseenErrors | None = None
        self.installed = False

    def __enter__(self) -> WatchedBody:
        phase = self.watch.phase
        if phase is not None:
            self.phase = phase
            self.installed = phase.attach()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        __tracebackhide__ = True
        phase = self.phase
        if phase is None:
            return
        stopped = phase.detach(self.installed)
        died = phase.verdict()
        if died is None:
            return
        if stopped and isinstance(exc, asyncio.CancelledError):
            raise died from None  # the cancellation was this one's
        if exc is None or isinstance(exc, Exception):
            raise died  # the test's own error stays in the report, as its context
        exc.add_note(f"\nfakepeer: also, TaskDied: {died}")  # pytest's outcomes, interrupts
