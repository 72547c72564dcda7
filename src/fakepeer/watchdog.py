"""The loop watchdog and the ``TaskDied`` watch of one test session, for any test runner.

fakepeer's pytest plugin is one user of this module (see :doc:`api-watchdog` for what the
two do): it reads its settings into :meth:`Guard.configure` when the session starts, runs
each phase of each test (setup, call, teardown) inside :meth:`Guard.phase`, the test body
inside :meth:`Guard.body` and :func:`heartbeat` in the test's own loop, and calls
:meth:`Guard.close` when the session ends. Nothing is installed (no selector class, no
signal handler, no thread) until a phase is watched with a limit above 0.

Settings are read with the readers of :mod:`fakepeer.settings`: a wrong value raises
:class:`ValueError` naming where it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Final

from ._errors import LoopBlocked, TaskDied
from ._unseen import TaskWatch, UnseenErrors, WatchedBody
from ._wait import current_async_library
from ._watch_signals import (
    DEFAULT_SIGNAL,
    free_signal,
    parse_signal,
    signal_name,
    taken_outside_python,
)
from ._watchdog import Heartbeat, Interrupt, Watchdog
from .settings import seconds, switch

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_SIGNAL",
    "ENVIRONMENT",
    "Guard",
    "Interrupt",
    "Marker",
    "current_async_library",
    "debugger",
    "heartbeat",
]

#: The loop watchdog's limit, in seconds, unless a setting says otherwise.
DEFAULT_LIMIT: Final = 0.5
#: The environment variable that sets the limit (over the ini file, under the command line).
ENVIRONMENT: Final = "FAKEPEER_LOOP_WATCHDOG"

#: A test's marker, as ``(args, kwargs)``: ``loop_watchdog(2)`` is ``((2,), {})``.
Marker = tuple[Sequence[object], Mapping[str, object]]


def debugger() -> str | None:
    """Why the loop watchdog must stay off in this process, or None: a debugger or tracer
    is active (it would look like a blocked loop), or no signal can interrupt the main
    thread here (no POSIX signals, or not called from the main thread)."""
    if sys.gettrace() is not None:
        return "a debugger or tracer is active"
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None and monitoring.get_tool(monitoring.DEBUGGER_ID) is not None:
        return "a debugger is active"
    if not Watchdog.available():
        return "no signal to interrupt the main thread on this platform"
    return None


def heartbeat(interval: float) -> contextlib.AbstractContextManager[object]:
    """In a running asyncio loop that has no watched selector (uvloop, a loop on a selector
    of its own): keep a timer beating every ``interval`` seconds while the block runs, so
    the watchdog sees the loop blocked when a beat is late. Does nothing for ``interval``
    0, outside an asyncio loop (trio runs are watched otherwise), or in a loop watched
    already."""
    beat = Heartbeat.start(interval) if interval else None
    return contextlib.closing(beat) if beat is not None else contextlib.nullcontext()


class Guard:
    """The loop watchdog (``limit`` seconds; 0 turns it off) and the ``TaskDied`` watch
    (``task_died``) of one test session, on the main thread.

    ``source`` says where the limit came from (shown when it is 0); ``off`` is why the
    watchdog must stay off (then it never installs anything), ``signum`` the signal that
    interrupts the test (default ``SIGUSR2``), shown as ``via``; ``exit_after``
    (seconds, None for never) ends the process when interrupted code stays blocked that
    long. Most callers use :meth:`configure`.
    """

    #: The keys :meth:`configure` reads (ini keys, and the command-line options' ``dest``).
    SETTINGS: Final = ("loop_watchdog", "loop_watchdog_signal", "loop_watchdog_exit", "task_died")

    def __init__(
        self,
        *,
        limit: float = DEFAULT_LIMIT,
        source: str = "default",
        task_died: bool = True,
        off: str | None = None,
        signum: int | None = None,
        via: str = DEFAULT_SIGNAL,
        exit_after: float | None = None,
    ) -> None:
        self.limit = limit
        self.source = source
        self.task_died = task_died
        self.off = off
        self.via = via
        self._reports: list[str] | None = None  # diagnoses of the phase being watched
        self._watchdog: Watchdog | None = None
        if off is None:
            self._watchdog = Watchdog(self._report, signum=signum, exit_after=exit_after)
        self._installed = False
        self._tasks = TaskWatch()

    @classmethod
    def configure(
        cls,
        *,
        ini: Mapping[str, object],
        command_line: Mapping[str, object],
        environment: Mapping[str, str] = os.environ,
        off: str | None = None,
    ) -> Guard:
        """The guard the settings ask for, each read from the ini file, then the
        ``environment`` (:data:`ENVIRONMENT`, for the limit), then the command line, the
        later winning: ``loop_watchdog`` (seconds), ``loop_watchdog_signal`` (a name or a
        number), ``loop_watchdog_exit`` (seconds) and ``task_died`` (on or off), keys of
        ``ini`` and ``command_line`` (a missing key, None or ``""`` is unset). ``off``: why
        the watchdog must stay off, if the caller knows (``--pdb``); else
        :func:`debugger` says. :class:`ValueError` for a wrong value, naming where it came
        from."""
        limit, source = DEFAULT_LIMIT, "default"
        layers = (
            (ini.get("loop_watchdog"), "ini loop_watchdog", "ini"),
            (environment.get(ENVIRONMENT), ENVIRONMENT, ENVIRONMENT),
            (command_line.get("loop_watchdog"), "--loop-watchdog", "--loop-watchdog"),
        )
        for value, where, label in layers:
            if value not in (None, ""):
                limit, source = seconds(value, where, zero=True), label
        name, where = command_line.get("loop_watchdog_signal"), "--loop-watchdog-signal"
        if name is None:
            name, where = ini.get("loop_watchdog_signal") or None, "ini"
        try:
            signum: int = parse_signal(str(name or DEFAULT_SIGNAL))
        except ValueError as exc:
            raise ValueError(f"{where} loop_watchdog_signal: {exc}") from None
        via = signal_name(signum)
        if taken_outside_python(signum):  # faulthandler.register(), a C library: not ours
            chosen = None if name else free_signal(signum)
            if chosen is None:
                via = (
                    f"{via}, which has a handler outside Python (faulthandler.register?), so "
                    "blocked tests are reported but not interrupted: set loop_watchdog_signal"
                )
            else:
                signum, via = chosen, f"{signal_name(chosen)} ({via} has a handler outside Python)"
        value, where = command_line.get("loop_watchdog_exit"), "--loop-watchdog-exit"
        if value is None:
            value, where = ini.get("loop_watchdog_exit"), "ini loop_watchdog_exit"
        exit_after = seconds(value, where) or None if value not in (None, "") else None
        task_died = True
        for value, where in (
            (ini.get("task_died"), "ini task_died"),
            (command_line.get("task_died"), "--task-died"),
        ):
            if value not in (None, ""):
                task_died = switch(value, where)
        return cls(
            limit=limit,
            source=source,
            task_died=task_died,
            off=off or debugger(),
            signum=int(signum),
            via=via,
            exit_after=exit_after,
        )

    # -- one test ----------------------------------------------------------------------------

    @property
    def watching(self) -> bool:
        """True unless the watchdog must stay off (``off``) for the whole session."""
        return self._watchdog is not None

    def limit_for(self, test: str, marker: Marker | None) -> float:
        """The limit of ``test``: the session's, or its ``loop_watchdog(seconds)`` marker's.
        :class:`ValueError` for a wrong marker."""
        if marker is None:
            return self.limit
        args, kwargs = marker
        if len(args) != 1 or kwargs or isinstance(args[0], bool):
            raise ValueError(
                f"{test}: @pytest.mark.loop_watchdog takes one number of seconds, "
                f"e.g. loop_watchdog(2)"
            )
        return seconds(args[0], f"{test}: loop_watchdog marker", zero=True)

    def task_died_for(self, test: str, marker: Marker | None) -> bool:
        """Whether ``TaskDied`` is on for ``test``: the session's setting, or its
        ``task_died(on)`` marker's. :class:`ValueError` for a wrong marker."""
        if marker is None:
            return self.task_died
        args, kwargs = marker
        if len(args) != 1 or kwargs:
            raise ValueError(
                f"{test}: @pytest.mark.task_died takes one switch, e.g. task_died(False)"
            )
        return switch(args[0], f"{test}: @pytest.mark.task_died")

    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """Follow the tasks of ``loop`` from now on (a test's loop, as it is made, so that
        the tasks of its async fixtures count too), if ``TaskDied`` is on for the session
        or for the phase being watched."""
        if self.task_died or self._tasks.phase is not None:
            self._tasks.install(loop)

    def phase(
        self, test: str, when: str, *, limit: float, task_died: bool
    ) -> contextlib.AbstractContextManager[object]:
        """A context manager around one phase (``when``: ``"setup"``, ``"call"``,
        ``"teardown"``) of ``test`` (its id), watched with ``limit`` seconds (0: not at
        all), and for tasks that die unseen if ``task_died``. On leaving, it raises
        :class:`~fakepeer.LoopBlocked` if a loop blocked longer than the limit (from the
        phase's own error, if it failed otherwise, unless that error is only the
        watchdog's interruption), or :class:`~fakepeer.TaskDied` if an exception in the
        event loop went unseen (noted on the phase's own error instead, if it failed
        otherwise)."""
        return _Phase(self, test, when, limit, task_died)

    def body(self, task_died: bool) -> contextlib.AbstractContextManager[object]:
        """Around the test body, in its running loop: with ``task_died``, in an asyncio
        loop, a task that dies unseen stops the body (a cancellation that leaves it as
        :class:`~fakepeer.TaskDied`), and the loop's tasks are followed. Does nothing
        otherwise (under trio, a nursery raises what its tasks raise)."""
        if not task_died or current_async_library() != "asyncio":
            return contextlib.nullcontext()
        return WatchedBody(self._tasks)

    def describe(self) -> str:
        """The settings in force, for a report's header: ``loop watchdog=0.5s via SIGUSR2``,
        ``loop watchdog=off (--pdb/--trace)``, with ``, task_died=off`` when it is."""
        if self.off is not None:
            text = f"off ({self.off})"
        elif self.limit == 0:
            text = f"off (0 from {self.source})"
        else:
            text = f"{self.limit:g}s via {self.via}"
        return f"loop watchdog={text}" + ("" if self.task_died else ", task_died=off")

    def uninstall(self) -> None:
        """Undo what the watchdog installed (idempotent): loops made afterwards are plain
        again, and the signal's handler is the one that was there before."""
        if self._watchdog is not None:
            self._watchdog.uninstall()

    def close(self) -> None:
        """The end of the session: :meth:`uninstall`, and stop following tasks."""
        self.uninstall()
        self._tasks.close()

    # -- for _Phase ----------------------------------------------------------------------------

    def _report(self, diagnosis: str) -> None:
        reports = self._reports
        if reports is not None:
            reports.append(diagnosis)

    def _watch(self, test: str, when: str, limit: float) -> list[str] | None:
        """Watch a phase (installing the watchdog on first use): its list of reports, or
        None when it is not watched."""
        watchdog = self._watchdog
        if watchdog is None or limit == 0:
            return None
        if not self._installed:
            watchdog.install()
            self._installed = True
        reports: list[str] = []
        self._reports = reports
        watchdog.watch(limit, f"during {when} of {test}", test=test)
        return reports

    def _unwatch(self) -> None:
        if self._watchdog is not None:
            self._watchdog.unwatch()
        self._reports = None


class _Phase:
    """See :meth:`Guard.phase`."""

    def __init__(self, guard: Guard, test: str, when: str, limit: float, task_died: bool):
        self.guard, self.test, self.when, self.limit = guard, test, when, limit
        self.unseen: UnseenErrors | None = None
        if task_died:
            grace = limit or DEFAULT_LIMIT
            self.unseen = UnseenErrors(guard._tasks, test, when, grace)
        self.reports: list[str] | None = None

    def __enter__(self) -> _Phase:
        if self.unseen is not None:
            self.unseen.__enter__()
        try:
            self.reports = self.guard._watch(self.test, self.when, self.limit)
        except BaseException:
            if self.unseen is not None:
                self.unseen.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        unseen = self.unseen
        if unseen is None:
            self._blocked(exc)
            return
        try:
            try:
                self._blocked(exc)
            finally:
                unseen.__exit__(None, None, None)
        except TaskDied as raised:
            raise raised.with_traceback(None)  # noqa: B904  # its context is the phase's error
        except BaseException as raised:
            unseen.annotate(raised)
            raise
        if exc is not None:
            if isinstance(exc, TaskDied):  # from the body's wrapper: the frames between are
                raise exc.with_traceback(None)  # the runner's; its context is the test's error
            unseen.annotate(exc)
            return  # the phase's own error goes on
        died = unseen.verdict()
        if died is not None:
            raise died

    def _blocked(self, exc: BaseException | None) -> None:
        """Stop watching; raise :class:`~fakepeer.LoopBlocked` if a loop blocked (from the
        phase's error ``exc``, unless it is only the watchdog's interruption)."""
        __tracebackhide__ = True
        reports = self.reports
        if reports is None:
            return
        self.guard._unwatch()
        if not reports:
            return
        if exc is None:
            raise LoopBlocked(reports[0])
        raise LoopBlocked(reports[0]) from (None if _only_interrupts(exc) else exc)


def _only_interrupts(exc: BaseException) -> bool:
    """True for the watchdog's interruption, alone or in exception groups (trio's)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(inner) for inner in exc.exceptions)
    return isinstance(exc, Interrupt)
