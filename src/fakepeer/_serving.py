"""``serve()``: starting and stopping a host, as context managers or step by step."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from ._wait import current_async_library

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["Serving"]

#: What is served: a FakePeer or a Proxy (what ``with``, ``start()``... return).
_H_co = TypeVar("_H_co", bound="Host", covariant=True)


class Serving(Generic[_H_co]):
    """What :meth:`FakePeer.serve` returns: a sync and an async context manager.

    Without ``with``, for a fixture that starts and stops a peer in different places:
    :meth:`listen` binds the port now and serves nothing yet (clients that connect wait in
    the kernel's queue); :meth:`start` serves on the hub, :meth:`start_async` in the running
    asyncio loop; :meth:`settle` lets the hub read what clients already sent; :meth:`stop`
    and :meth:`stop_async` stop serving. Then ``peer.verify()`` gives the verdict.
    """

    def __init__(self, peer: _H_co) -> None:
        self._peer = peer
        self._hosted_in_loop = False

    def listen(self) -> _H_co:
        """Bind and listen now, in this thread, serving nothing yet: ``peer.address`` is
        known, and clients that connect are queued by the kernel until :meth:`start` or
        :meth:`start_async`. Returns the peer."""
        self._peer._listen()
        return self._peer

    def start(self) -> _H_co:
        """Serve on the hub thread: listening when this returns. Returns the peer."""
        self._peer._start_on_hub()
        return self._peer

    async def start_async(self) -> _H_co:
        """Serve in the running asyncio loop (under trio: on the hub). Returns the peer."""
        if current_async_library() == "asyncio":
            self._hosted_in_loop = True
            await self._peer._start_in_loop()
        else:  # trio (or anything else): the hub serves, our loop only waits briefly
            self._peer._start_on_hub()
        return self._peer

    def settle(self) -> None:
        """Let the hub read what clients already sent (no wait when it has nothing to
        read), so a verdict taken now sees it."""
        self._peer._settle()

    def stop(self, *, wait: bool = True) -> None:
        """Stop serving on the hub, losing nothing the clients sent (see ``serve()``);
        idempotent. Raises nothing: a blocked hub (:class:`~fakepeer.HubBlocked`) is
        recorded as the peer's first problem, for the verdict.

        ``wait=False`` returns at once when all that is left to read are clients' closes,
        which cannot change the verdict (a fixture's teardown, after the verdict): their
        last events are then recorded moments later, on the hub."""
        self._peer._stop_on_hub(wait=wait)

    async def stop_async(self) -> None:
        """Stop serving, from the loop that :meth:`start_async` served in; idempotent."""
        if self._hosted_in_loop:
            await self._peer._stop_in_loop()
        else:
            self._peer._stop_on_hub()

    @property
    def in_loop(self) -> bool:
        """True when served in an asyncio loop of the caller's, not on the hub."""
        return self._hosted_in_loop

    def __enter__(self) -> _H_co:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._peer._conclude(exc)

    async def __aenter__(self) -> _H_co:
        return await self.start_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()
        self._peer._conclude(exc)
