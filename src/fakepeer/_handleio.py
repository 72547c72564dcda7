"""The user's handle's IO: what a test, a reply callable or a handler does to a connection.

:class:`HandleIO` is the :class:`~fakepeer._connection.ConnectionIO` behind each
:class:`~fakepeer.Connection`: it pushes bytes (bounded by the send buffer), closes and resets
from any thread, and, for a handler on the serving loop, receives messages or bytes with a
bound. Apart from the connection's protocol (:mod:`fakepeer._peerprotocol`), which it drives
through that protocol's locked methods, because it is the user's side of the connection, not
the loop's: the loop's callbacks never call it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._actions import Close, Push, Reset
from ._errors import ClientNotReading, FramingError, HandlerFailed, ScriptError, WaitTimeout
from ._steps import clock

if TYPE_CHECKING:
    from ._peerprotocol import _PeerProtocol

__all__ = ["HandleIO"]


class HandleIO:
    """The IO of one connection's user handle, on its :class:`_PeerProtocol`."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: _PeerProtocol) -> None:
        self.protocol = protocol

    def send(self, data: bytes) -> None:
        protocol = self.protocol
        server = protocol.server
        framed = server.conversation.reply_framing.encode(data)
        with server.lock:
            transport = protocol.transport
            waiting = protocol.pushing + (
                transport.get_write_buffer_size() if transport is not None else 0
            )
            if waiting and waiting + len(framed) > server.max_send_buffer:
                self._not_reading(waiting, len(framed))
            protocol.pushing += len(framed)
        protocol._later(Push(framed))

    def _not_reading(self, waiting: int, size: int) -> None:
        """A push would go over the send buffer: fail the connection, and raise (lock held)."""
        __tracebackhide__ = True
        protocol = self.protocol
        server = protocol.server
        connection = protocol.connection
        assert connection is not None
        problem = ClientNotReading(
            f"connection #{connection.id}: the client is not reading: {waiting:,} bytes wait "
            f"to be sent to it, and {size:,} more would go over the limit of "
            f"{server.max_send_buffer:,} bytes (FakePeer(max_send_buffer=...) changes it)",
            connection=connection.id,
            waiting=waiting,
        )
        # raised in the test itself (not on the serving loop): it is handled there
        server.conversation.fail(
            connection, problem, clock(), delivered=not protocol._in_loop(), note=True
        )
        protocol.pushing = 0
        protocol._later(Reset())  # frees what waits: the client was not going to read it
        server.changed()
        raise problem.copy()

    def close(self) -> None:
        protocol = self.protocol
        protocol._later(Close())

    def reset(self) -> None:
        protocol = self.protocol
        protocol._later(Reset())

    async def receive(self) -> bytes:
        return await self._take(None)

    async def receive_exactly(self, count: int) -> bytes:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ScriptError(f"receive_exactly() takes a whole number >= 1, got {count!r}")
        return await self._take(count)

    async def _take(self, count: int | None) -> bytes:
        """The next framed message (``count`` None) or ``count`` raw bytes, with a bound."""
        protocol = self.protocol
        server = protocol.server
        connection = protocol.connection
        readable = protocol.readable
        if connection is None or readable is None or not protocol._in_loop():
            raise RuntimeError(
                "receive() and receive_exactly() are for the connection's handler, "
                "awaited in the loop that serves the peer"
            )
        protocol.receiving = True
        try:
            async with asyncio.timeout(server.timeout):
                while True:
                    with server.lock:
                        now = clock()
                        outcome = server.conversation.take(connection, count, protocol.eof, now)
                        if isinstance(outcome, bytes):
                            if len(connection.buffer) <= server.conversation.limit:
                                protocol.handler_caught_up()
                            server.changed()
                            return outcome
                        if outcome is not None:
                            if isinstance(outcome, FramingError):
                                protocol._crash_close(now)
                            server.changed()
                            raise outcome
                        readable.clear()
                    await readable.wait()
        except TimeoutError:
            what = "a message" if count is None else f"{count} byte(s)"
            raise WaitTimeout(
                f"connection #{connection.id}: the handler waited {server.timeout} s "
                f"for {what} from the client"
            ) from None
        finally:
            protocol.receiving = False

    async def run_handler(self) -> None:
        """The connection's handler, as its task: close when it returns, fail the
        connection with :class:`~fakepeer.HandlerFailed` when it raises."""
        protocol = self.protocol
        connection = protocol.connection
        assert connection is not None
        handler = connection.script.handler
        assert handler is not None
        name = getattr(handler, "__qualname__", repr(handler))
        try:
            await handler(protocol.handle)
        except Exception as exc:
            if connection.failed:  # already recorded (a FramingError, say): not the handler's
                protocol._act(Close())
                return
            problem = HandlerFailed(
                f"the handler {name} ({connection.script.handler_where}) of connection "
                f"#{connection.id} raised {type(exc).__name__}: {exc}",
                connection=connection.id,
            )
            problem.__cause__ = exc
            protocol._fail(problem)
        else:
            protocol._act(Close())
        finally:
            protocol.handler = None
