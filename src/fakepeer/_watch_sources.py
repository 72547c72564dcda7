"""The loop-side half of the loop watchdog: how each kind of loop is seen as a *source*.

Apart from :mod:`._watchdog` (the thread that looks at the sources, decides and interrupts)
because this is the code that runs inside the watched loops, on their hot paths: the
selector hook, the heartbeat timer, the trio instrument and the patches that put them in
place. Each source has its own state: the thread that runs it, and ``busy``, the time it
went back to work (None while it waits for I/O).

- asyncio loops on a selector (the default everywhere), on any thread: while
  :meth:`._watchdog.Watchdog.install` is in effect, ``selectors.DefaultSelector`` is a
  subclass whose ``select`` keeps the two on the selector itself while a loop runs on it
  (one store each way: no task, no timer, so a fake-clock loop is not disturbed). A loop is
  running when its thread has asyncio's ``_run_once`` on the stack; a loop that stops
  leaves no mark.
- the fakepeer hub's loops (``_hub``), whose selector keeps the same marks; the hub is
  blamed only while code of the test's script (a reply callable) is on its stack, and the
  report says it serves the test's peer.
- trio runs (``trio.run`` and ``trio.lowlevel.start_guest_run``, as anyio's pytest plugin
  uses, get an instrument): a task step is busy from ``before_task_step`` to
  ``after_task_step``.
- any other loop (uvloop, a loop on a selector of its own): a :class:`Heartbeat` timer in
  it while it runs (``run_forever`` of asyncio's loops and of ``uvloop.Loop`` starts one,
  so a loop is watched however it is run: ``asyncio.run``, pytest-asyncio, anyio, directly;
  the pytest plugin also starts one in an async test's loop of any other kind); the loop is
  busy since its beat came due and did not run.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from . import _hub, _stacks

if TYPE_CHECKING:
    from ._watchdog import Watchdog

__all__ = ["HUB_CALLBACK", "Heartbeat", "Source"]

clock: Final = time.monotonic
_ident: Final = threading.get_ident
_MAIN: Final = threading.main_thread().ident or 0

#: Seconds between two readings of a loop thread's CPU clock (``time.thread_time``, a system
#: call) at the start of its steps: a reading older than the step's start is still a lower
#: bound of the step's CPU time once the time since the reading is taken off.
CPU_READING_AGE: Final = 0.005


class Source(Protocol):
    """A loop the watchdog watches (see the module docstring)."""

    @property
    def busy(self) -> float | None: ...
    @property
    def thread(self) -> int: ...

    def running(self) -> bool: ...
    def task(self) -> str | None: ...
    def label(self) -> str: ...


_sources: weakref.WeakSet[Any] = weakref.WeakSet()
_sources_lock = threading.Lock()


def _register(source: object) -> None:
    with _sources_lock:
        _sources.add(source)


def _unregister(source: object) -> None:
    with _sources_lock:
        _sources.discard(source)


def _snapshot() -> list[Source]:
    with _sources_lock:
        found: list[Source] = list(_sources)
    for loop, selector in list(_hub._SELECTORS.items()):
        if not _hub.hub.given_up(loop):
            found.append(_HubSource(selector, loop))
    return found


class _LateSteps:
    """What a watched selector calls when its loop comes back from a step longer than
    :attr:`limit` (infinite while no phase is watched), in the loop's thread: the watchdog
    decides whether the step counts (:meth:`Watchdog._late_step`)."""

    limit: float = math.inf
    watchdog: Watchdog | None = None

    def __call__(self, selector: Any, since: float, ended: float) -> None:
        watchdog = self.watchdog
        if watchdog is not None:
            watchdog._late_step(selector, since, ended, selector.cpu_since(since))


_late_steps: Final = _LateSteps()


class _Marked:
    """The base of watched selectors (see :func:`_watched_selector`): the marks a selector
    keeps for the loop watchdog, and how it is seen as a source. Listed before the stdlib
    selector class in their bases, so its ``super()`` calls reach that class."""

    busy: float | None = None
    thread = 0
    #: True while an asyncio loop runs on it (``run_forever``): only then is it marked
    #: busy between two selects, and only then are its steps measured (a selector that
    #: no loop owns, ``select`` called by the test's own code, is nobody's loop).
    looping = False
    cpu = 0.0  # the thread's CPU clock, read at ``cpu_read`` (see CPU_READING_AGE)
    cpu_read = -math.inf

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.thread = _ident()
        self.made = clock()  # a loop on another thread is blamed on the test that made it
        _register(self)

    def cpu_since(self, since: float) -> float:
        """In the loop's thread: at least how much CPU time it used since ``since`` (the
        start of its step, not before the last reading)."""
        return max(0.0, time.thread_time() - self.cpu - (since - self.cpu_read))

    def begin_run(self) -> bool:
        """``run_forever`` starts on this selector; False if it runs already."""
        if self.looping:
            return False
        self.looping = True
        return True

    def end_run(self) -> None:
        """``run_forever`` ends: its last step, if it began with a select, ends here."""
        busy, self.busy = self.busy, None
        self.looping = False
        if busy is not None:
            now = clock()
            if now - busy > _late_steps.limit:
                _late_steps(self, busy, now)

    def close(self) -> None:
        _unregister(self)
        self.busy = None
        super().close()  # type: ignore[misc]  # the selector's, next in the bases

    def running(self) -> bool:
        return _stacks.steps_loop_of(self.thread, self)

    def task(self) -> str | None:
        return None  # read from asyncio's loop by the sampler

    def label(self) -> str:
        return _thread_label("the event loop", self.thread)


def _watched_selector(base: type[selectors.BaseSelector]) -> type[selectors.BaseSelector]:
    """A subclass of ``base`` (and of :class:`_Marked`) whose ``select`` keeps the loop's
    busy mark and thread; its helpers are bound as default arguments, so the hot path does
    no global lookups."""
    base_select = base.select

    def select(
        self: Any,
        timeout: float | None = None,
        _select: Any = base_select,
        _clock: Callable[[], float] = clock,
        _ident: Callable[[], int] = _ident,
        _late: _LateSteps = _late_steps,
    ) -> list[Any]:
        busy = self.busy  # the step that ends here began then
        if busy is not None:
            now = _clock()
            if now - busy > _late.limit:
                _late(self, busy, now)
            self.busy = None
        try:
            return _select(self, timeout)  # type: ignore[no-any-return]
        finally:
            if self.looping:
                now = _clock()
                self.busy = now
                if now - self.cpu_read > CPU_READING_AGE:
                    self.cpu, self.cpu_read = time.thread_time(), now
            self.thread = _ident()

    name = f"Watched{base.__name__}"
    select.__qualname__ = f"{name}.select"
    namespace = {
        "__doc__": "The default selector, noting for the loop watchdog when its loop waits.",
        "__module__": __name__,
        "__qualname__": name,
        "select": select,
    }
    # a selector watched already (a session inside a session: pytester) has _Marked
    bases = (base,) if issubclass(base, _Marked) else (_Marked, base)
    return type(name, bases, namespace)


#: The running task of a hub loop that runs a callback: the script, on data received.
HUB_CALLBACK: Final = "the hub running a fake peer's script (a reply callable, on data received)"


class _HubSource:
    """A hub loop, seen through its selector's marks (see ``_hub._HubSelector``)."""

    library = "hub"  # the advice is about a script's code

    def __init__(self, selector: Any, loop: object) -> None:
        self.selector = selector
        self.loop = loop

    @property
    def busy(self) -> float | None:
        return self.selector.busy  # type: ignore[no-any-return]

    @property
    def thread(self) -> int:
        return self.selector.thread  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _HubSource) and other.selector is self.selector

    def __hash__(self) -> int:
        return id(self.selector)

    def running(self) -> bool:
        return _stacks.steps_loop_of(self.thread, self.selector)

    def task(self) -> str | None:
        return _stacks.task_of(self.loop) or HUB_CALLBACK

    def label(self) -> str:
        return "the fakepeer hub's event loop (it serves this test's fake peers)"


class _TrioSource:
    """A trio run. Its instrument hooks only the start and end of the run: which task step
    runs, and since when, is read from the run's thread at each look
    (:func:`._stacks.trio_step`), so a watched trio run costs what a plain one does (hooks
    on every task step made the smallest steps a third slower)."""

    def __init__(self) -> None:
        self.thread = 0
        self.library = "trio"
        self.current = ""
        self._step: tuple[int, int] | None = None  # (id of the task, its step count)
        self._since = 0.0  # when a look first saw that step

    # trio.abc.Instrument's hooks (duck-typed: trio accepts any object with them)
    def before_run(self) -> None:
        self.thread = _ident()

    def after_run(self) -> None:
        self.thread = 0
        _unregister(self)

    @property
    def busy(self) -> float | None:
        """When the task step that runs now was first seen, or None between steps."""
        found = _stacks.trio_step(self.thread) if self.thread else None
        if found is None:
            self._step = None
            return None
        task, points = found
        step = (id(task), points)
        if step != self._step:
            self._step, self._since = step, clock()
            self.current = str(getattr(task, "name", "?"))
        return self._since

    def running(self) -> bool:
        return self._step is not None

    def task(self) -> str | None:
        return f"trio task {self.current}"

    def label(self) -> str:
        return _thread_label("the trio run", self.thread)


class Heartbeat:
    """Watches a loop that has no watched selector (uvloop, a loop on a selector of its own)
    with a timer in it: the loop is busy since its beat came due and did not run.

    ``interval``: seconds between beats, or None to follow the watchdog's limit
    (:attr:`every`). :meth:`close` ends it. One per loop at a time.
    """

    #: The interval of heartbeats that follow the limit (set by :meth:`Watchdog.watch`): a
    #: twenty-fifth of it, at most 20 ms, so a block is seen soon after the limit.
    every: float = 0.02
    _beating: Final[dict[int, Heartbeat]] = {}  # id(loop) -> its heartbeat, while it beats

    def __init__(self, loop: Any, interval: float | None = None) -> None:
        self.loop = loop
        self.interval = interval
        self.thread = _ident()
        wait = self._interval()
        self._handle = loop.call_later(wait, self._beat)
        self.busy: float | None = clock() + wait
        self._beating[id(loop)] = self
        _register(self)

    @classmethod
    def begin(cls, loop: Any, interval: float | None = None) -> Heartbeat | None:
        """A heartbeat in ``loop`` (about to run, or running, in this thread); None where the
        loop is watched already (a watched selector, a hub loop, a heartbeat), or closed."""
        selector = getattr(loop, "_selector", None)
        if isinstance(selector, (_Marked, _hub._HubSelector)) or id(loop) in cls._beating:
            return None
        try:
            return cls(loop, interval)
        except Exception:  # a closed loop: running it raises the loop's own error
            return None

    @classmethod
    def start(cls, interval: float | None = None) -> Heartbeat | None:
        """:meth:`begin` in the running asyncio loop; None where none runs (a trio test: trio
        runs are instrumented instead)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return cls.begin(loop, interval)

    def _interval(self) -> float:
        return self.every if self.interval is None else self.interval

    def _beat(self) -> None:
        wait = self._interval()
        self.busy = clock() + wait  # when the next beat is due
        self._handle = self.loop.call_later(wait, self._beat)

    def close(self) -> None:
        self._handle.cancel()
        self.busy = None
        if self._beating.get(id(self.loop)) is self:
            del self._beating[id(self.loop)]
        _unregister(self)

    def running(self) -> bool:
        busy = self.busy
        return bool(self.loop.is_running()) and busy is not None and clock() > busy

    def task(self) -> str | None:
        return _stacks.task_of(self.loop) or _stacks.NO_TASK

    def label(self) -> str:
        name = type(self.loop).__module__.split(".")[0]
        return _thread_label(f"the event loop ({name})", self.thread)


def _thread_label(what: str, thread: int) -> str:
    if thread == _MAIN:
        return what
    for candidate in threading.enumerate():
        if candidate.ident == thread:
            return f"{what} on thread {candidate.name!r}"
    return f"{what} on another thread"


# -- patches: an instrument for every trio run, a heartbeat in every unwatched loop ------------


class _Patches:
    """While installed: ``trio.run`` and ``trio.lowlevel.start_guest_run`` add a
    :class:`_TrioSource` to the instruments of each run, and ``run_forever`` of asyncio's
    loops and of ``uvloop.Loop`` keeps a :class:`Heartbeat` in a loop without a watched
    selector while it runs. Modules imported since are patched at the next :meth:`apply`
    (see :meth:`Watchdog.watch`)."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, str, Any, bool]] = []  # owner, name, original, own

    @staticmethod
    def _targets() -> list[tuple[Any, str, Callable[[Any], Any]]]:
        targets: list[tuple[Any, str, Callable[[Any], Any]]] = [
            (asyncio.BaseEventLoop, "run_forever", _with_heartbeat)
        ]
        uvloop = sys.modules.get("uvloop")
        if uvloop is not None:
            targets.append((getattr(uvloop, "Loop", None), "run_forever", _with_heartbeat))
        trio = sys.modules.get("trio")
        if trio is not None:
            targets.append((trio, "run", _instrumented))
            targets.append((getattr(trio, "lowlevel", None), "start_guest_run", _instrumented))
        return targets

    def apply(self) -> None:
        for owner, name, wrap in self._targets():
            original = getattr(owner, name, None)
            if original is None or getattr(original, "_fakepeer_patch", False):
                continue
            own = name in vars(owner)
            self.saved.append((owner, name, original, own))
            setattr(owner, name, wrap(original))

    def undo(self) -> None:
        for owner, name, original, own in reversed(self.saved):
            if own:
                setattr(owner, name, original)
            else:  # inherited: the attribute goes, the base's shows again
                delattr(owner, name)
        self.saved.clear()


def _like(wrapper: Any, wrapped: Callable[..., Any]) -> Any:
    wrapper.__wrapped__ = wrapped
    wrapper.__name__ = getattr(wrapped, "__name__", "run")
    wrapper.__qualname__ = getattr(wrapped, "__qualname__", wrapper.__name__)
    wrapper.__doc__ = wrapped.__doc__
    wrapper._fakepeer_patch = True
    return wrapper


def _instrumented(run: Callable[..., Any]) -> Callable[..., Any]:
    def instrumented(*args: Any, instruments: Any = (), **kwargs: Any) -> Any:
        source = _TrioSource()
        _register(source)
        return run(*args, instruments=(*instruments, source), **kwargs)

    return _like(instrumented, run)  # type: ignore[no-any-return]


def _with_heartbeat(run_forever: Callable[..., Any]) -> Callable[..., Any]:
    def run_forever_watched(self: Any, *args: Any, **kwargs: Any) -> Any:
        heartbeat = Heartbeat.begin(self)
        selector = getattr(self, "_selector", None)
        ours = isinstance(selector, _Marked) and selector.begin_run()
        try:
            return run_forever(self, *args, **kwargs)
        finally:
            if heartbeat is not None:
                heartbeat.close()
            if ours:  # its last step ends here; stopped, it is not busy until it runs again
                selector.end_run()  # type: ignore[union-attr]

    return _like(run_forever_watched, run_forever)  # type: ignore[no-any-return]
