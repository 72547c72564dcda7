"""The hub: one process-wide event loop on a background thread, shared by all peers.

``with peer.serve():`` hosts the peer here, so it answers even while the test's own thread
blocks: a blocking client in a sync test, or a blocking call inside an async test (which
starves the test's loop, but not the hub's).

The thread starts on first use, is a daemon (it never keeps the interpreter alive), and is
stopped at interpreter exit or by :func:`shutdown`. Every call into it is bounded by a
timeout.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import selectors
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Hub", "hub"]

T = TypeVar("T")

#: The hub's selector class: epoll where there is one (not selectors.DefaultSelector, which the
#: loop watchdog may have replaced for the main thread's loops).
_BASE: type[selectors.BaseSelector] = getattr(
    selectors, "EpollSelector", getattr(selectors, "PollSelector", selectors.SelectSelector)
)


#: The selector of each hub loop (the hub makes them, so it need not ask the loop).
_SELECTORS: dict[asyncio.AbstractEventLoop, _HubSelector] = {}
_THREADS: dict[asyncio.AbstractEventLoop, threading.Thread] = {}


class _HubSelector(_BASE):  # type: ignore[valid-type,misc]  # a class from a variable
    """The hub loop's selector; ``waiting`` is true while the loop waits in ``select()``:
    every callback of its last turn has run, none runs until ``select()`` returns.

    Another thread holding a peer's lock reads it, after checking that none of the peer's
    sockets is readable, to know the hub holds nothing it took off a socket and has not
    handled yet (see ``_hosting``).
    """

    waiting = False
    queued = 0  # callbacks handed to the loop from other threads (Hub.soon)...
    done = 0  # ...and those that ran
    busy: float | None = None  # for the loop watchdog: when the loop went back to work
    thread = 0  # ...in which thread
    turns = 0  # select() calls: the loop's turns...
    watchers = 0  # ...which threads in Hub.rest() are told of, through ``turned``

    def __init__(self) -> None:
        super().__init__()
        self.turned = threading.Condition(threading.Lock())

    def select(self, timeout: float | None = None) -> list[Any]:
        # asyncio selects with timeout 0 when callbacks are ready: that is no waiting
        self.waiting = timeout is None or timeout > 0
        self.turns += 1
        if self.watchers:  # read after ``waiting`` is set: see Hub.rest
            with self.turned:
                self.turned.notify_all()
        self.busy = None
        try:
            return super().select(timeout)  # type: ignore[no-any-return]
        finally:
            self.waiting = False
            self.busy = time.monotonic()
            self.thread = threading.get_ident()


class Hub:
    """A lazily started event loop on a daemon thread named ``fakepeer-hub``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._given_up: set[asyncio.AbstractEventLoop] = set()
        #: How many times a thread waited for the hub (see ``_hosting``): tests count them.
        self.handovers = 0

    def thread(self) -> threading.Thread | None:
        """The hub's thread, if it was started."""
        return self._thread

    def give_up(self, loop: asyncio.AbstractEventLoop, *callbacks: Callable[[], None]) -> None:
        """``loop`` was found blocked: serve new peers on a new hub thread from now on.

        ``callbacks`` run on the old loop once it is unblocked, then it stops and its thread
        ends (see :meth:`_main`): it leaves nothing open behind it.
        """
        with self._lock:
            first = loop not in self._given_up
            self._given_up.add(loop)
            if self._loop is loop:
                self._loop = self._thread = None
        with contextlib.suppress(RuntimeError):  # closed already
            for callback in callbacks:
                loop.call_soon_threadsafe(callback)
            if first:  # once: a second stop would cut short the clean-up in _main
                loop.call_soon_threadsafe(loop.stop)

    def thread_of(self, loop: asyncio.AbstractEventLoop) -> threading.Thread | None:
        """The thread that runs the hub loop ``loop`` (also one given up), if any."""
        return _THREADS.get(loop)

    def waiting(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True if ``loop`` is a hub loop that waits in ``select()`` with nothing to do:
        every callback handed to it with :meth:`soon` has run (any thread)."""
        selector = _SELECTORS.get(loop)
        return selector is not None and selector.waiting and selector.done == selector.queued

    def turn(self, loop: asyncio.AbstractEventLoop) -> int:
        """How many turns (``select()`` calls) the hub loop ``loop`` made so far."""
        selector = _SELECTORS.get(loop)
        return 0 if selector is None else selector.turns

    def rest(self, loop: asyncio.AbstractEventLoop, deadline: float, turn: int) -> bool:
        """Wait until ``loop`` :meth:`waiting`: True as soon as it is, False once the clock
        (:func:`time.monotonic`) reaches ``deadline`` or the loop reaches its turn number
        ``turn`` (see :meth:`turn`) without resting.

        The calling thread sleeps without the GIL, woken by the hub at each turn: the hub
        thread gets the GIL at once, where a spin would keep it from it for a switch interval
        (5 ms) each time it wants it back, on a loaded machine."""
        selector = _SELECTORS.get(loop)
        if selector is None:
            return False
        with selector.turned:
            selector.watchers += 1  # before reading ``waiting``: see _HubSelector.select
            try:
                while not self.waiting(loop):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or selector.turns >= turn:
                        return False
                    selector.turned.wait(remaining)
                return True
            finally:
                selector.watchers -= 1

    def soon(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        """``loop.call_soon_threadsafe(callback)``, counted, so that :meth:`waiting` is not
        true while it has not run. Raises ``RuntimeError`` if the loop is closed."""
        selector = _SELECTORS.get(loop)
        if selector is None:
            loop.call_soon_threadsafe(callback)
            return

        def counted() -> None:
            try:
                callback()
            finally:
                selector.done += 1  # only the hub's thread counts up here

        with self._lock:
            selector.queued += 1
        try:
            loop.call_soon_threadsafe(counted)
        except BaseException:
            with self._lock:
                selector.queued -= 1
            raise

    def given_up(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True if ``loop`` is a hub loop that was given up as blocked."""
        return loop in self._given_up

    @property
    def running(self) -> bool:
        """True while the hub thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def in_hub_thread(self) -> bool:
        """True when called from the hub's own thread (where blocking calls would deadlock)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def loop(self) -> asyncio.AbstractEventLoop:
        """The hub's loop, starting the thread if needed."""
        with self._lock:
            if self._loop is not None and self.running:
                return self._loop
            made: list[asyncio.AbstractEventLoop] = []
            ready = threading.Event()
            thread = threading.Thread(
                target=self._main, args=(made, ready), name="fakepeer-hub", daemon=True
            )
            thread.start()
            if not ready.wait(10):  # pragma: no cover - a thread that cannot start
                raise RuntimeError("the fakepeer hub thread did not start within 10 s")
            self._loop, self._thread = made[0], thread
            return made[0]

    @staticmethod
    def _main(made: list[asyncio.AbstractEventLoop], ready: threading.Event) -> None:
        # The loop is made in its own thread: the loop watchdog's selector (see _watchdog)
        # watches loops made in the main thread, and the hub's must not pass for one of them.
        selector = _HubSelector()
        loop = asyncio.SelectorEventLoop(selector)
        made.append(loop)
        _SELECTORS[loop] = selector
        _THREADS[loop] = threading.current_thread()
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
            _SELECTORS.pop(loop, None)
            _THREADS.pop(loop, None)
            loop.close()
            hub._given_up.discard(loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coroutine`` on the hub and wait at most ``timeout`` seconds for its result."""
        if self.in_hub_thread():
            coroutine.close()
            raise RuntimeError(
                "a blocking fakepeer call was made from the hub thread itself "
                "(from a reply callable?); it would deadlock"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        self.handovers += 1
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the fakepeer hub did not answer within {timeout} s") from None

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the loop and join the thread. The hub starts again on next use."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:
            thread.join(timeout)


hub = Hub()
atexit.register(hub.shutdown)
