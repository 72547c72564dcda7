"""The loop watchdog's mechanism: it sees every loop a test runs, and interrupts the test
whose loop blocked.

**Seeing.** Each watched loop is a *source* with its own state: the thread that runs it, and
``busy``, the time it went back to work (None while it waits for I/O).
See :mod:`._watch_sources` for how each kind of loop is seen: asyncio loops on a
selector (the default selector is a watched subclass while :meth:`Watchdog.install` is in
effect), the fakepeer hub's loops, trio runs (an instrument) and any other loop, uvloop
included (a :class:`Heartbeat` timer in it while it runs).

**Noticing.** A daemon thread (``fakepeer-watchdog``) looks twenty times per limit (at least
every 25 ms). A source is blocked when its mark is older than the limit, is from the phase
being watched (a loop blocked since an earlier test is not this test's), and it is still
running (for a selector: its own loop is in a step on that thread, not merely some loop),
seen twice in a row a few milliseconds apart. Between phases the thread sleeps;
:meth:`Watchdog.watch` wakes it.

**The guarantee.** A block longer than the limit fails the phase in which it began, every
time, when (a) it lasts longer than the limit plus :func:`margin` (three look intervals:
15 ms at a limit of 0.05 s, 75 ms from 0.5 s up) and the machine lets the watchdog's thread
run, or (b) it is a step of a running asyncio loop on a watched selector that ends within
the phase and the loop blocked longer than the limit while the process ran (below). Once
the thread has seen a block, the verdict stands even if the block ends, or the phase does,
while the stacks are sampled (:meth:`Watchdog.unwatch` waits for that diagnosis). A block
shorter than the limit never fails a phase, with one exception: the thread measures wall
time, so a process stopped in the middle of a block (Ctrl-Z, a debugger attached) makes it
longer.

**The fallback (b).** A watched selector measures each step of its loop (from one of its
``select`` calls to the next, made by the loop's ``_run_once`` while ``run_forever`` runs,
and to the end of ``run_forever``; a selector that no loop runs on, ``select`` called by the
test's own code, is not measured). A step longer than the limit is counted only if the
loop's thread used more CPU time than the limit in it (``time.thread_time``: it computed,
e.g. one C call holding the GIL, so the thread could not look), or if the step is longer
than the limit without the stretches in which nothing was seen to run: of each stretch with
no look of the watchdog's thread, the part longer than :func:`quiet` (three look intervals)
is left out, since the whole process may have been stopped then, and a stopped process
blocks no loop. So a stopped process never fails a loop whose steps are shorter than the
limit less :func:`quiet`; the price: a machine so busy that it runs neither the watchdog's
thread nor the loop for longer than that is taken for stopped too. The report then says
that the step was seen only when the loop got back, and how much CPU time its thread used.

**Diagnosing.** :mod:`._stacks` samples the source's thread a few times, and
:func:`._diagnosis.describe` says what the samples show.

**Interrupting.** It sends the main thread (where pytest runs the test) a signal whose handler
raises :class:`Interrupt`, a ``BaseException``: a blocking system call returns with ``EINTR``
and the exception propagates from the stuck line, or, when another loop blocked, from where
the test waits. The pytest plugin fails the phase with :class:`~fakepeer.LoopBlocked`. The
handler passes signals it did not ask for to the handler that was there before, which is put
back at :meth:`Watchdog.uninstall`; while the suite's own handler replaces it, no signal is
sent (the report still fails the phase when it ends). Code that swallows the interruption
is interrupted again every limit; ending the process is opt-in (``exit_after``).
"""

from __future__ import annotations

import collections
import math
import os
import selectors
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any, Final

from . import _stacks
from ._diagnosis import Sample, describe
from ._watch_signals import (
    DEFAULT_SIGNAL,
    default_signal,
    parse_signal,
    pass_on,
    taken_outside_python,
)
from ._watch_sources import (
    _MAIN,
    Heartbeat,
    Source,
    _HubSource,
    _late_steps,
    _Patches,
    _snapshot,
    _watched_selector,
    clock,
)

__all__ = ["DEFAULT_SIGNAL", "Heartbeat", "Interrupt", "Watchdog", "parse_signal"]


class Interrupt(BaseException):
    """Raised in the main thread by the watchdog's signal handler to get the test moving.

    A ``BaseException``, so that ``except Exception`` in the stuck code does not swallow it.
    The pytest plugin turns it into :class:`~fakepeer.LoopBlocked` for the report.
    """


def look_interval(limit: float) -> float:
    """Seconds between the watchdog thread's looks at the loops, for a limit of ``limit``
    seconds: a twentieth of it, at least 5 ms and at most 25 ms."""
    return min(max(limit / 20, 0.005), 0.025)


def quiet(limit: float) -> float:
    """The longest stretch, in seconds, without a look of the watchdog's thread that a
    loop's own measure of its step (the fallback) takes for the process running, for a
    limit of ``limit`` seconds: three look intervals (:func:`look_interval`). A longer one
    may be the process stopped (Ctrl-Z, a debugger attached, a machine that did not run
    it): it is left out of the step, unless the loop's thread computed all along."""
    return 3 * look_interval(limit)


def margin(limit: float) -> float:
    """How much longer than ``limit`` seconds a loop may stay blocked before the watchdog is
    sure to have seen it: three look intervals (:func:`look_interval`), one to come to the
    next look, one for the look that confirms it, one for a mark that lags the block (a
    heartbeat's, a trio step's); 15 ms for a limit of 0.05 s, 75 ms from 0.5 s up."""
    return 3 * look_interval(limit)


#: The end of the report on a step that the watchdog's thread did not see while it lasted,
#: measured by its loop when it got back to its I/O wait (see :func:`unseen`).
UNSEEN: Final = (
    "\n  seen:        only when the loop got back to its I/O wait, so there is no stack to show"
)


def unseen(cpu: float) -> str:
    """The end of the report on a step measured by its loop (:data:`UNSEEN`): what is known,
    the CPU time the loop's thread used in the step (``cpu`` seconds, at least)."""
    return f"{UNSEEN}; the loop's thread computed for {cpu:.2f} s of it"


#: Seconds :meth:`Watchdog.unwatch` waits at most for a diagnosis under way.
DIAGNOSIS_WAIT: Final = 1.0


# -- the watchdog ------------------------------------------------------------------------------


class Watchdog:
    """Watches every loop while :meth:`watch` says a phase of a test runs.

    ``report`` receives each diagnosis (from the watchdog thread) before the test's thread is
    interrupted with ``signum``. ``exit_after``: if set, how long (seconds) a loop may stay
    blocked after the first interruption before the process is ended, the last resort for
    code that swallows ``BaseException``; by default it is interrupted again every limit.
    """

    def __init__(
        self,
        report: Callable[[str], None],
        *,
        signum: int | None = None,
        exit_after: float | None = None,
    ) -> None:
        self._report = report
        self._signum = signum if signum is not None else default_signal()
        self._exit_after = exit_after
        self._limit = 0.0
        self._where = ""
        self._phase = 0.0  # when the watched phase began
        self._stop = threading.Event()
        # set by watch() and uninstall(): the thread must not sleep through a phase's start
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_selector: type[selectors.BaseSelector] | None = None
        self._previous_handler: Any = None
        self._handler_installed = False
        #: True when a handler outside Python has the signal: reports, no interruptions.
        self.taken = False
        self._test = ""
        self._test_started = 0.0
        self._patches = _Patches()
        self._pending: tuple[str, Source, float] | None = None  # diagnosis, source, mark
        self._generation = 0  # one more at each watch(): which phase a diagnosis is for
        self._idle = threading.Event()  # clear while the thread diagnoses a block
        self._idle.set()
        # steps that took longer than the limit, seen by their loop when they ended
        # steps that took longer than the limit, seen by their loop when they ended, and
        # counted (see _late_step): source, since, end, CPU time, phase
        self._late: list[tuple[Source, float, float, float, int]] = []
        # when the process was last seen running (a look of the thread, the start of a
        # phase), and the stretches between two such sights longer than quiet(): the
        # process may have been stopped then (Ctrl-Z, a debugger attached)
        self._looked = 0.0
        self._holes: collections.deque[tuple[float, float]] = collections.deque(maxlen=64)
        self._excused: dict[Source, float] = {}  # a debugger stopped the loop at that mark
        self._sent = 0  # our signals not handled yet
        # source -> (its mark, its first alarm, how many since): once per limit, per source
        self._alarms: dict[Source, tuple[float, float, int]] = {}

    @staticmethod
    def available() -> bool:
        """True where the watchdog can interrupt the main thread (a POSIX signal)."""
        return (
            default_signal() is not None and threading.current_thread() is threading.main_thread()
        )

    @property
    def signum(self) -> int | None:
        return self._signum

    def install(self) -> None:
        """Patch the default selector and trio, install the signal handler, start the
        thread. Call from the main thread."""
        if self._thread is not None:
            return
        self._previous_selector = selectors.DefaultSelector
        selectors.DefaultSelector = _watched_selector(  # type: ignore[misc,assignment]
            selectors.DefaultSelector
        )
        self._patches.apply()
        self._take_signal()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fakepeer-watchdog", daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        """Undo :meth:`install`: loops made afterwards are plain again, the signal's handler
        is the one that was there before."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(5)
        if self._previous_selector is not None:
            selectors.DefaultSelector = self._previous_selector  # type: ignore[misc,assignment]
        self._patches.undo()
        if self._handler_installed and self._signum is not None:
            current = signal.getsignal(self._signum)
            if _is_ours(current, self):  # else someone replaced it since: leave theirs
                signal.signal(self._signum, self._previous_handler)
            self._handler_installed = False

    def _take_signal(self) -> None:
        """Install the handler of the signal, unless a handler outside Python has it (it
        would be lost for good): then the watchdog reports without interrupting, and
        :attr:`taken` says so."""
        signum = self._signum
        if signum is None:
            return
        if taken_outside_python(signum):
            self.taken = True
            return
        self._previous_handler = signal.signal(signum, self._on_signal)
        self._handler_installed = True

    def _retake_signal(self) -> None:
        """Between phases: if a test left the signal at its default (asyncio's
        ``remove_signal_handler`` does), take it again, or no later test is interrupted."""
        signum = self._signum
        if not self._handler_installed or signum is None:
            return
        current = signal.getsignal(signum)
        if _is_ours(current, self) or current not in (signal.SIG_DFL, None):
            return  # ours, or the suite's own handler: theirs to keep
        if threading.current_thread() is threading.main_thread():
            signal.signal(signum, self._on_signal)

    def watch(self, limit: float, where: str, *, test: str = "") -> None:
        """Watch from now on, with ``limit`` seconds (0 = not at all); ``where`` names the
        phase in the reports."""
        self._generation += 1
        self._pending = None
        self._alarms.clear()
        self._late.clear()
        self._excused.clear()
        if test != self._test:  # a new test: loops made from now on are its own
            self._test, self._test_started = test, clock()
        self._retake_signal()
        self._patches.apply()  # trio or uvloop may have been imported since install()
        self._where = where
        self._phase = self._looked = clock()  # a sight of the process running, too
        if limit:
            Heartbeat.every = min(max(limit / 25, 0.002), 0.02)
        self._limit = limit
        _late_steps.watchdog = self
        _late_steps.limit = limit or math.inf
        self._wake.set()  # its first look is one look interval from now, not later

    def unwatch(self) -> None:
        """Stop watching (between phases). A block the thread has seen by now is reported
        for this phase: this waits (a few milliseconds, at most :data:`DIAGNOSIS_WAIT`) for
        a diagnosis under way, even if the loop moved on meanwhile."""
        limit, self._limit = self._limit, 0.0
        _late_steps.limit = math.inf
        self._pending = None
        self._idle.wait(DIAGNOSIS_WAIT)
        self._pending = None  # a signal sent meanwhile finds no phase to interrupt
        late, self._late = self._late, []
        for source, since, ended, cpu, generation in late:
            if generation != self._generation or self._excused.get(source) == since:
                continue
            if self._alarms.get(source, (None,))[0] == since:
                continue  # the thread saw it, and reported it with its stack
            self._alarms[source] = (since, ended, 1)
            self._report(
                describe(
                    [],
                    blocked_for=ended - since,
                    limit=limit,
                    where=self._where,
                    loop=source.label(),
                )
                + unseen(cpu)
            )

    def _late_step(self, source: Source, since: float, ended: float, cpu: float) -> None:
        """From a loop's thread: its step from ``since`` to ``ended`` took longer than the
        limit, and its thread used at least ``cpu`` seconds of CPU in it. The step counts if
        the loop blocked longer than the limit while the process ran: its thread computed
        longer than that, or the step is longer than the limit without the stretches in
        which nothing was seen to run (:meth:`_unseen_in`): the process may have been
        stopped then, and a stopped process blocks nothing."""
        limit = self._limit
        if since < self._phase or not limit:
            return  # from before the phase: not this phase's
        if source.thread != _MAIN and _made(source) < self._test_started:
            return  # a loop on a thread of a fixture from before this test
        if cpu <= limit and ended - since - self._unseen_in(since, ended, limit) <= limit:
            return
        self._late.append((source, since, ended, cpu, self._generation))

    def _unseen_in(self, since: float, ended: float, limit: float) -> float:
        """Seconds of ``since``..``ended`` in which the process was not seen running: of each
        stretch with no look of the watchdog's thread, the part longer than :func:`quiet`.
        The step's own start and end are sights too (its loop's thread ran then)."""
        holes = list(self._holes)  # the thread appends to it
        looked = self._looked
        if ended - looked > quiet(limit):  # the thread has not looked since: a stretch too
            holes.append((max(looked, since), ended))
        unseen = 0.0
        for start, end in holes:  # of each, only the part longer than quiet() is left out
            unseen += max(0.0, min(end, ended) - max(start, since) - quiet(limit))
        return unseen

    # -- signals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        if self._sent > 0:
            self._sent -= 1
            pending, self._pending = self._pending, None
            # Only in the phase, and if the loop is still stuck where it was diagnosed: had
            # it moved on meanwhile, raising here would hit whatever code runs now (the
            # phase fails all the same: the diagnosis is in its report already).
            if (
                pending is not None
                and self._limit
                and pending[1].busy == pending[2]
                and pending[1].running()
            ):
                raise Interrupt(pending[0])
            return
        pass_on(self._previous_handler, signum, frame)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        seen: dict[Source, float] = {}  # a source's mark seen blocked on the last look
        while not self._stop.is_set():
            limit = self._limit
            if not limit:  # between phases: idle until watch() (or uninstall()) wakes it
                seen.clear()
                self._wake.wait()
                self._wake.clear()
                continue
            interval = look_interval(limit)
            # to confirm a new sight, look again soon
            new = any(self._alarms.get(s, (None,))[0] != mark for s, mark in seen.items())
            self._wake.wait(min(interval, 0.005) if new else interval)
            self._wake.clear()
            limit, generation = self._limit, self._generation  # the phase may have changed
            if not limit or self._stop.is_set():
                continue
            now = clock()
            if now - self._looked > quiet(limit):
                self._holes.append((self._looked, now))
            self._looked = now
            confirmed: dict[Source, float] = {}
            for source in _snapshot():
                since = source.busy
                if since is None or since < self._phase or now - since < limit:
                    continue
                if source.thread != _MAIN and _made(source) < self._test_started:
                    continue  # a loop on a thread of a fixture from before this test
                if not source.running():
                    continue
                if seen.get(source) == since:
                    self._alarm(source, since, limit, generation)
                else:
                    confirmed[source] = since  # confirm on the next look
            seen = confirmed

    def _alarm(self, source: Source, since: float, limit: float, generation: int) -> None:
        """``source`` has been seen blocked since ``since`` on two looks: report it for the
        phase ``generation`` (once per block), and interrupt the test (once per limit).
        The block is a fact from here on: the phase fails even if the loop moves on, or the
        phase ends, while the diagnosis is made (:meth:`unwatch` waits for it)."""
        self._idle.clear()
        try:
            if self._generation == generation and self._limit:  # else the phase is over
                self._alarm_in_phase(source, since, limit, generation)
        finally:
            self._idle.set()

    def _alarm_in_phase(self, source: Source, since: float, limit: float, generation: int) -> None:
        now = clock()
        thread = source.thread
        if _stacks.debugger_on_stack(thread):
            self._excused[source] = since  # its end is not a late step either
            return
        previous = self._alarms.get(source)
        if previous is not None and previous[0] == since:
            _, first, count = previous
            if self._exit_after is not None and now - first > self._exit_after:
                self._give_up(source, since, now - since)
                return
            if now - first < count * limit:
                return  # interrupted already: again once per limit
        else:
            first, count = now, 0
        samples, seen = _samples(source, since, min(look_interval(limit), 0.02))
        if isinstance(source, _HubSource) and not any(s.user for s in samples):
            return  # the hub is busy in fakepeer's own work, not blocked by the script
        if self._generation != generation:  # unwatch() gave up waiting: too late to report
            return
        diagnosis = describe(
            samples,
            blocked_for=max(seen, now) - since,
            limit=limit,
            where=self._where,
            loop=source.label(),
            library=getattr(source, "library", "asyncio"),
        )
        if previous is None or previous[0] != since:
            self._report(diagnosis)
        self._alarms[source] = (since, first, count + 1)
        if not self._limit or source.busy != since:
            return  # the phase ended or the loop moved on: nothing left to interrupt
        if self._signum is None or not _is_ours(signal.getsignal(self._signum), self):
            return  # the suite's own handler replaced ours: the report alone fails the phase
        self._pending = (diagnosis, source, since)
        self._sent += 1
        signal.pthread_kill(_MAIN, self._signum)

    def _give_up(self, source: Source, since: float, blocked_for: float) -> None:
        diagnosis = describe(
            _samples(source, since, 0.02)[0],
            blocked_for=blocked_for,
            limit=self._limit,
            where=self._where,
            loop=source.label(),
            library=getattr(source, "library", "asyncio"),
        )
        stream = sys.__stderr__
        if stream is not None:
            stream.write(
                "\nfakepeer loop watchdog: the loop is still blocked "
                f"{self._exit_after:g} s after it was first interrupted; the code swallows "
                "the interruption, and loop_watchdog_exit ends the process.\n\n"
                f"{diagnosis}\n"
            )
            stream.flush()
        os._exit(3)


def _made(source: Source) -> float:
    """When ``source`` was made (its loop's selector), or now for sources that follow the
    test (a trio run, a heartbeat, the hub)."""
    made = getattr(source, "made", None)
    return clock() if made is None else float(made)


def _samples(
    source: Source, since: float, gap: float, count: int = 3
) -> tuple[list[Sample], float]:
    """Up to ``count`` samples of ``source``'s thread, ``gap`` seconds apart, taken while it
    stays blocked since ``since``; and when it was last seen so. A sample after which the
    loop has moved on may show later code: it is dropped, and sampling stops there."""
    taken: list[Sample] = []
    seen = 0.0
    for index in range(count):
        if index:
            time.sleep(gap)
        sample = _stacks.sample(source.thread, source.task())
        if source.busy != since or not source.running():
            break
        seen = clock()
        if sample is not None:
            taken.append(sample)
    return taken, seen


def _is_ours(handler: object, watchdog: Watchdog) -> bool:
    return getattr(handler, "__self__", None) is watchdog
