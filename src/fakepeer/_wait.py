"""Waiting for a condition from any kind of code: a thread, asyncio, or trio.

A condition lives in a :class:`Waiters` set guarded by the peer's lock. Whoever changes the
state calls :meth:`Waiters.notify` (lock held); each waiter whose condition now holds is
woken through a callback that is safe to call from any thread:

- sync code blocks on a :class:`threading.Event`;
- asyncio awaits a future resolved with ``loop.call_soon_threadsafe``;
- trio awaits a :class:`trio.Event` set through its ``TrioToken.run_sync_soon``.

trio is never imported here: it is only used when the caller is already running under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Waiters", "current_async_library"]

Condition = Callable[[], bool]


def current_async_library() -> str | None:
    """``"asyncio"`` or ``"trio"`` when called from a task of that library, else None."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio: Any = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return None
        return "trio"
    return None


class Waiters:
    """Conditions someone is waiting for, each with a thread-safe wake-up callback."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._waiting: dict[int, tuple[Condition, Callable[[], None]]] = {}
        self._next = 0

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def notify(self) -> None:
        """Wake every waiter whose condition holds. Call with the lock held."""
        for key, (condition, wake) in list(self._waiting.items()):
            if condition():
                del self._waiting[key]
                wake()

    def _add(self, condition: Condition, wake: Callable[[], None]) -> int | None:
        """Register unless ``condition`` already holds (then return None). Lock held."""
        if condition():
            return None
        self._next += 1
        self._waiting[self._next] = (condition, wake)
        return self._next

    def _remove(self, key: int) -> None:
        with self._lock:
            self._waiting.pop(key, None)

    def wait(self, condition: Condition, timeout: float) -> bool:
        """Block this thread until ``condition`` holds; False if ``timeout`` ran out."""
        event = threading.Event()
        start = time.monotonic()
        # Bounded too: the hub holds the lock while the script's code runs, which may block.
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            key = self._add(condition, event.set)
        finally:
            self._lock.release()
        if key is None:
            return True
        try:
            return event.wait(max(0.0, timeout - (time.monotonic() - start)))
        finally:
            self._remove(key)

    async def wait_async(self, condition: Condition, timeout: float) -> bool:
        """Await ``condition`` in asyncio or trio; False if ``timeout`` ran out."""
        library = current_async_library()
        if library == "asyncio":
            return await self._wait_asyncio(condition, timeout)
        if library == "trio":
            return await self._wait_trio(condition, timeout)
        raise RuntimeError("the *_async waits must be awaited from asyncio or trio code")

    async def _wait_asyncio(self, condition: Condition, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(resolve)

        with self._lock:
            key = self._add(condition, wake)
        if key is None:
            return True
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            self._remove(key)
        return True

    async def _wait_trio(self, condition: Condition, timeout: float) -> bool:
        trio: Any = sys.modules["trio"]
        event = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake() -> None:
            with contextlib.suppress(trio.RunFinishedError):  # the run ended: nobody to wake
                token.run_sync_soon(event.set)

        with self._lock:
            key = self._add(condition, wake)
        if key is None:
            return True
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self._remove(key)
        return bool(event.is_set())
