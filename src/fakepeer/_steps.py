"""The executor: :class:`Steps` runs a list of actions on one :class:`Side` of a connection.

Apart from the connection's protocol because two protocols drive it: the client's side
(:class:`~fakepeer._peerprotocol._PeerProtocol`) and, for a proxy, the upstream server's.
It knows nothing of sockets or of the conversation: only the order of actions, and which of
them must wait for a worker task (a :class:`~fakepeer._actions.Wait`, an
:class:`~fakepeer._actions.Await` or a :class:`~fakepeer._actions.StartTLS`).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from typing import Final, Protocol, cast

from ._actions import Action, Await, StartTLS, Wait, Write

__all__ = ["Side", "Steps", "Upgradable", "clock"]

#: The runtime's clock (seconds): every ``now`` an action is run at comes from it.
clock: Final = time.monotonic


class Side(Protocol):
    """One side of a connection, as :class:`Steps` drives it: the client's (a
    :class:`_PeerProtocol`) or, for a proxy, the upstream server's."""

    def _write_all(self, writes: list[bytes], now: float) -> None:
        """Write ``writes`` (consecutive writes of one batch), lock held."""

    def _do(self, action: Action, now: float) -> None:
        """Do any other action at once (lock held)."""

    def _act(self, action: Action) -> None:
        """:meth:`_do` from the worker task: takes the lock, records a crash."""

    async def _await(self, action: Await) -> list[Action]:
        """Await a reply callable's awaitable; return the actions that follow it."""
        ...


class Upgradable(Side, Protocol):
    """A side that can upgrade to TLS: the client's (only its script has ``.start_tls()``)."""

    async def _start_tls(self) -> None:
        """Do the TLS handshake as the server, and report it (takes the lock)."""


class Steps:
    """The executor: runs a list of actions on one :class:`Side` of a connection, in order.

    What needs no wait runs at once, in the caller's locked section (consecutive writes as
    one); from the first :class:`Wait` or :class:`Await` on, the rest goes to a queue that a
    worker task runs, and later actions join that queue, so the order holds. The client's
    side and a proxy's upstream side each have one.
    """

    __slots__ = ("_queue", "side", "worker")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.worker: asyncio.Task[None] | None = None
        self._queue: deque[Action] | None = None  # made on first use (see _PeerProtocol)

    @property
    def queue(self) -> deque[Action]:
        """Actions waiting for the worker task, in order (made on first use)."""
        if self._queue is None:
            self._queue = deque()
        return self._queue

    def run(self, actions: list[Action], now: float) -> None:
        """Run ``actions`` (lock held), or queue them behind a wait."""
        if self.worker is not None:
            self.queue.extend(actions)
            return
        side = self.side
        writes: list[bytes] = []  # consecutive writes, written as one (see _write_all)
        for index, action in enumerate(actions):
            if type(action) is Write:
                writes.append(action.data)
                continue
            if writes:
                side._write_all(writes, now)
                writes = []
            if isinstance(action, Wait | Await | StartTLS):
                self.queue.extend(actions[index:])
                self.worker = asyncio.get_running_loop().create_task(self._work())
                return
            side._do(action, now)
        if writes:
            side._write_all(writes, now)

    async def _work(self) -> None:
        side = self.side
        try:
            while self.queue:
                action = self.queue.popleft()
                if isinstance(action, Wait):
                    await asyncio.sleep(action.seconds)
                    continue
                if isinstance(action, Await):
                    self.queue.extendleft(reversed(await side._await(action)))
                    continue
                if isinstance(action, StartTLS):
                    await cast("Upgradable", side)._start_tls()
                    continue
                side._act(action)
        finally:
            self.worker = None

    def clear(self) -> None:
        """Forget the queued actions (the connection failed)."""
        if self._queue:
            self._queue.clear()

    def cancel(self) -> None:
        """Cancel the worker and drop what is queued."""
        if self.worker is not None:
            self.worker.cancel()
        for action in self._queue or ():
            if isinstance(action, Await) and inspect.iscoroutine(action.awaitable):
                action.awaitable.close()  # never started: say so, quietly
        self.clear()
