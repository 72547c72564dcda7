"""The runtime: an asyncio server that executes the conversation's actions.

One :class:`PeerServer` per serving peer, in whichever event loop hosts it (the test's own, or
the hub's background thread). It sits on a bare :class:`asyncio.Protocol`, not streams: a reply
that needs no wait is written inside ``data_received`` itself, with no task or queue involved.
Only a connection whose actions include a :class:`~fakepeer._conversation.Wait` gets a worker
task, which runs its remaining actions in order and is cancelled when the peer stops.

Every call into the conversation holds the peer's lock, so the test's thread can read the
transcript or add rules while the hub thread serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from ._actions import Later, Stop
from ._conversation import (
    Action,
    Await,
    Close,
    Connection,
    Conversation,
    HalfClose,
    Hold,
    Reset,
    Wait,
    Write,
)
from ._errors import ConversationError, HandlerFailed, ScriptError, WaitTimeout

__all__ = ["PeerServer"]

_LINGER_RESET: Final = struct.pack("ii", 1, 0)
clock: Final = time.monotonic


def _format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "?"


class _PeerProtocol(asyncio.Protocol):
    """One connection. Every method that touches the conversation holds the peer's lock;
    actions that need no wait run right away, inside the same locked section."""

    __slots__ = (
        "_pending",
        "_queue",
        "connection",
        "eof",
        "handler",
        "readable",
        "reading_stopped",
        "server",
        "timers",
        "transport",
        "worker",
    )

    def __init__(self, server: PeerServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.connection: Connection | None = None
        # Made on first use (see the properties): most connections never need them, and an
        # empty deque costs some 700 bytes, a sixth of what a held connection costs.
        self._queue: deque[Action] | None = None
        self.worker: asyncio.Task[None] | None = None
        # handler mode: the handler task, framed messages not yet received, and a wake-up
        self.handler: asyncio.Task[None] | None = None
        self._pending: deque[bytes] | None = None
        self.readable: asyncio.Event | None = None
        self.eof = False
        self.reading_stopped = False  # a stop_reading fault paused the client for good
        self.timers: list[asyncio.TimerHandle] = []  # faults' Later actions

    @property
    def queue(self) -> deque[Action]:
        """Actions waiting for the worker task, in order (made on first use)."""
        if self._queue is None:
            self._queue = deque()
        return self._queue

    @property
    def pending(self) -> deque[bytes]:
        """Handler mode: messages framed but not yet received (made on first use)."""
        if self._pending is None:
            self._pending = deque()
        return self._pending

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        if server.stopping:  # accepted while the peer was stopping: nobody will serve it
            transport.abort()
            return
        server.protocols.add(self)
        client = _format_address(transport.get_extra_info("peername"))
        with server.lock:
            now = clock()
            self.connection, actions = server.conversation.connect(client, now)
            self.connection.io = self
            try:
                if actions:
                    self._run(actions, now)
            except Exception as exc:
                self._crash(exc, now)
            server.changed()
        if self.connection.handled:
            self.readable = asyncio.Event()
            self.handler = asyncio.get_running_loop().create_task(self._handle())

    def data_received(self, data: bytes) -> None:
        server = self.server
        connection = self.connection
        assert connection is not None
        with server.lock:
            now = clock()
            try:
                actions = server.conversation.receive(connection, data, now)
                if actions:
                    self._run(actions, now)
            except Exception as exc:  # a bug of ours or a custom framing's: never lose it
                self._crash(exc, now)
            server.changed()
        if self.readable is not None:
            self.readable.set()

    def eof_received(self) -> bool:
        server = self.server
        assert self.connection is not None
        with server.lock:
            now = clock()
            try:
                self._run(server.conversation.eof(self.connection, now), now)
            except Exception as exc:
                self._crash(exc, now)
            server.changed()
        self.eof = True
        if self.readable is not None:
            self.readable.set()
        return True  # keep the transport: the Close action ends it after pending steps

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server.protocols.discard(self)
        if self.worker is not None:
            self.worker.cancel()
        for timer in self.timers:
            timer.cancel()
        self.eof = True
        if self.readable is not None:
            self.readable.set()
        if self.connection is not None:
            reason = None if exc is None else f"{type(exc).__name__}: {exc}"
            with server.lock:
                try:
                    server.conversation.lost(self.connection, clock(), reason)
                except Exception as error:
                    server.crashed(error, self.connection)
                server.changed()
        server.forget(self)

    # -- executing actions (lock held) -------------------------------------------------------

    def _crash(self, exc: Exception, now: float) -> None:
        """Record ``exc`` as a problem of this connection and abort it."""
        assert self.connection is not None
        self.server.crashed(exc, self.connection)
        self._crash_close(now)

    def _fail(self, problem: ConversationError) -> None:
        """Record ``problem`` against this connection and close it (takes the lock)."""
        server = self.server
        assert self.connection is not None
        with server.lock:
            server.conversation.problems.append(problem)
            self.connection.failed = True
            self._crash_close(clock())
            server.changed()

    def _crash_close(self, now: float) -> None:
        assert self.connection is not None
        if self._queue:
            self._queue.clear()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()
            self.server.conversation.closed(self.connection, now, "closed", "(after the error)")

    def _run(self, actions: list[Action], now: float) -> None:
        if self.worker is not None:
            self.queue.extend(actions)
            return
        for index, action in enumerate(actions):
            if isinstance(action, Wait | Await):
                self.queue.extend(actions[index:])
                self.worker = asyncio.get_running_loop().create_task(self._work())
                return
            self._do(action, now)

    async def _work(self) -> None:
        try:
            while self.queue:
                action = self.queue.popleft()
                if isinstance(action, Wait):
                    await asyncio.sleep(action.seconds)
                    continue
                if isinstance(action, Await):
                    await self._await(action)
                    continue
                self._act(action)
        finally:
            self.worker = None

    def _do(self, action: Action, now: float) -> None:
        transport = self.transport
        connection = self.connection
        assert transport is not None
        assert connection is not None
        if transport.is_closing():
            return
        conversation = self.server.conversation
        if isinstance(action, Write):
            transport.write(action.data)
            conversation.sent(connection, action.data, now)
        elif isinstance(action, Close):
            transport.close()
            conversation.closed(connection, now, "closed")
        elif isinstance(action, HalfClose):
            if transport.can_write_eof():
                transport.write_eof()
            conversation.closed(connection, now, "half-closed")
        elif isinstance(action, Reset):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
            conversation.closed(connection, now, "reset")
        elif isinstance(action, Hold):
            conversation.held(connection, now)
        elif isinstance(action, Later):
            loop = asyncio.get_running_loop()
            later: Action = action.action  # type: ignore[assignment]  # an action, by contract
            self.timers.append(loop.call_later(action.seconds, self._act, later))
        elif isinstance(action, Stop):
            self.reading_stopped = True
            transport.pause_reading()
            conversation.note(connection, now, "stopped", "(reading: a stop_reading fault)")

    async def _await(self, action: Await) -> None:
        server = self.server
        assert self.connection is not None
        result: object = None
        error: BaseException | None = None
        try:
            async with asyncio.timeout(server.timeout):
                result = await action.awaitable
        except TimeoutError:
            error = TimeoutError(f"it did not finish within {server.timeout} s")
        except Exception as exc:
            error = exc
        with server.lock:
            more = server.conversation.awaited(self.connection, action, result, error, clock())
            self.queue.extendleft(reversed(more))
            server.changed()

    # -- ConnectionIO: what the test, a reply callable or a handler does to the connection ----

    def _in_loop(self) -> bool:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return running is self.server.loop

    def _later(self, action: Action) -> None:
        """Run ``action`` now if called on the serving loop, else soon on it (any thread)."""
        loop = self.server.loop
        if self._in_loop():
            self._act(action)
        elif loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to act on
                loop.call_soon_threadsafe(self._act, action)

    def _act(self, action: Action) -> None:
        server = self.server
        with server.lock:
            now = clock()
            try:
                self._do(action, now)
            except Exception as exc:
                self._crash(exc, now)
            server.changed()

    def send(self, data: bytes) -> None:
        self._later(Write(self.server.conversation.framing.encode(data)))

    def close(self) -> None:
        self._later(Close())

    def reset(self) -> None:
        self._later(Reset())

    async def receive(self) -> bytes:
        return await self._take(None)

    async def receive_exactly(self, count: int) -> bytes:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ScriptError(f"receive_exactly() takes a whole number >= 1, got {count!r}")
        return await self._take(count)

    async def _take(self, count: int | None) -> bytes:
        """The next framed message (``count`` None) or ``count`` raw bytes, with a bound."""
        server = self.server
        connection = self.connection
        readable = self.readable
        if connection is None or readable is None or not self._in_loop():
            raise RuntimeError(
                "receive() and receive_exactly() are for the connection's handler, "
                "awaited in the loop that serves the peer"
            )
        framing = server.conversation.framing
        try:
            async with asyncio.timeout(server.timeout):
                while True:
                    with server.lock:
                        buffer = connection.buffer
                        if count is None and not self.pending and buffer:
                            messages, consumed = framing.decode(bytes(buffer), self.eof)
                            del buffer[:consumed]
                            self.pending.extend(messages)
                        if count is None and self.pending:
                            message = self.pending.popleft()
                        elif count is not None and not self.pending and len(buffer) >= count:
                            message = bytes(buffer[:count])
                            del buffer[:count]
                        elif count is not None and self.pending:
                            raise ScriptError(
                                "receive_exactly() after receive() left framed messages "
                                "unread; receive() them first"
                            )
                        elif self.eof:
                            left = f" ({len(buffer)} byte(s) left unframed)" if buffer else ""
                            raise EOFError(f"the client closed the connection{left}")
                        else:
                            readable.clear()
                            message = None
                        if message is not None:
                            server.conversation.delivered(connection, message, clock())
                            server.changed()
                            return message
                    await readable.wait()
        except TimeoutError:
            what = "a message" if count is None else f"{count} byte(s)"
            raise WaitTimeout(
                f"connection #{connection.id}: the handler waited {server.timeout} s "
                f"for {what} from the client"
            ) from None

    async def _handle(self) -> None:
        connection = self.connection
        assert connection is not None
        handler = connection.script.handler
        assert handler is not None
        name = getattr(handler, "__qualname__", repr(handler))
        try:
            await handler(connection)
        except Exception as exc:
            problem = HandlerFailed(
                f"the handler {name} ({connection.script.handler_where}) of connection "
                f"#{connection.id} raised {type(exc).__name__}: {exc}",
                connection=connection.id,
            )
            problem.__cause__ = exc
            self._fail(problem)
        else:
            self._act(Close())
        finally:
            self.handler = None

    def shutdown(self) -> None:
        """Stop this connection now: cancel its steps, close (abort if writes are stuck)."""
        if self.worker is not None:
            self.worker.cancel()
        if self.handler is not None:
            self.handler.cancel()
        for timer in self.timers:
            timer.cancel()
        for action in self._queue or ():
            if isinstance(action, Await) and inspect.iscoroutine(action.awaitable):
                action.awaitable.close()  # never started: say so, quietly
        if self._queue:
            self._queue.clear()
        transport = self.transport
        if transport is None:
            return
        if transport.is_closing():  # closing, but perhaps stuck on bytes nobody reads
            if transport.get_write_buffer_size() > 0:
                transport.abort()
            return
        if transport.get_write_buffer_size() > 0:
            transport.abort()
        else:
            transport.close()
        if self.connection is not None:
            with self.server.lock:
                self.server.conversation.closed(
                    self.connection, clock(), "closed", note="(the peer stopped)"
                )


class PeerServer:
    """Serves one conversation on the running loop; see the module docstring.

    ``changed`` is called, with ``lock`` held, after every event, so the peer can wake
    whoever waits for a condition.
    """

    #: What serves each connection (the proxy relays instead).
    protocol: Callable[[PeerServer], _PeerProtocol] = _PeerProtocol

    def __init__(
        self,
        conversation: Conversation,
        lock: threading.RLock,
        changed: Callable[[], None],
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
    ) -> None:
        self.conversation = conversation
        self.timeout = timeout
        self.loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self.lock = lock
        self.changed = changed
        self.host = host
        self.port = port
        self.protocols: set[_PeerProtocol] = set()
        self.server: asyncio.Server | None = None
        self.stopping = False
        self.refusing = False
        self._drained: asyncio.Future[None] | None = None
        self.address: tuple[str, int] = (host, port)

    async def start(self) -> tuple[str, int]:
        """Bind and listen; return the bound ``(host, port)``. Listening when it returns."""
        loop = self.loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: self.protocol(self), self.host, self.port, backlog=128
        )
        sockname = self.server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    def refuse(self) -> None:
        """Stop listening (new connections are refused); open ones go on. On the loop."""
        if self.server is not None and not self.refusing:
            self.refusing = True
            self.server.close()

    def listen_again(self) -> socket.socket | None:
        """After :meth:`refuse`: a socket listening on the same address again, at once
        (clients can connect from now on); :meth:`accept_again` then serves it."""
        if not self.refusing or self.stopping:
            return None
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        return socket.create_server(self.address, family=family, backlog=128)

    async def accept_again(self, sock: socket.socket) -> None:
        """Serve the connections of ``sock``, from :meth:`listen_again`."""
        if self.stopping:
            sock.close()
            return
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: self.protocol(self), sock=sock)
        self.refusing = False

    def crashed(self, exc: BaseException, connection: Connection) -> None:
        """Record an exception raised while handling an event. Call with the lock held."""
        problem = ConversationError(
            f"connection #{connection.id}: handling an event raised {type(exc).__name__}: {exc}",
            connection=connection.id,
        )
        problem.__cause__ = exc
        self.conversation.problems.append(problem)
        connection.failed = True

    async def settle(self) -> None:
        """Give the loop two turns so bytes already sent by clients are read.

        On loopback, bytes a client sent are in our socket's buffer by the time its ``send``
        returns; one turn of the selector hands them to ``data_received``.
        """
        for _ in range(2):
            await asyncio.sleep(0)

    def forget(self, protocol: _PeerProtocol) -> None:
        """A connection is gone; wake :meth:`stop` when it was the last one."""
        drained = self._drained
        if drained is not None and not self.protocols and not drained.done():
            drained.set_result(None)

    async def stop(self, timeout: float = 1.0) -> None:
        """Stop listening, end every connection and step; return within about ``timeout``.

        Bytes the peer wrote are flushed if the client reads them; a client that does not
        read (or never closes) cannot delay this past ``timeout``: its connection is aborted.
        """
        server = self.server
        if server is None:
            return
        self.server = None
        loop = asyncio.get_running_loop()
        if self.protocols:
            await self.settle()
        self.stopping = True
        server.close()
        protocols = list(self.protocols)
        workers = [task for p in protocols for task in (p.worker, p.handler) if task is not None]
        for protocol in protocols:
            protocol.shutdown()
        if self.protocols:
            self._drained = loop.create_future()
            if not self.protocols:  # pragma: no cover - emptied between the two checks
                self._drained.set_result(None)
        try:
            async with asyncio.timeout(timeout):
                if self._drained is not None:
                    await self._drained
                if workers:
                    await asyncio.wait(workers)
                await server.wait_closed()  # at once: every connection is gone by now
        except TimeoutError:
            for protocol in list(self.protocols):
                if protocol.transport is not None:
                    protocol.transport.abort()
            await asyncio.sleep(0)  # let the aborts' connection_lost run
