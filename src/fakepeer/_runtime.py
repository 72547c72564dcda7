"""The runtime: an asyncio server that executes the conversation's actions.

One :class:`PeerServer` per serving peer, in whichever event loop hosts it (the test's own, or
the hub's background thread). It sits on a bare :class:`asyncio.Protocol`, not streams: a reply
that needs no wait is written inside ``data_received`` itself, with no task or queue involved.
Only a connection whose actions include a :class:`~fakepeer._actions.Wait` gets a worker
task, which runs its remaining actions in order and is cancelled when the peer stops.

Every call into the conversation holds the peer's lock, so the test's thread can read the
transcript or add rules while the hub thread serves.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import inspect
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol, cast

from ._actions import (
    Action,
    Await,
    Call,
    Close,
    Dropped,
    HalfClose,
    Hold,
    Later,
    Push,
    Reset,
    Stop,
    Wait,
    Write,
)
from ._connection import Connection
from ._conversation import Conversation
from ._errors import (
    ClientNotReading,
    ConversationError,
    FramingError,
    HandlerFailed,
    ScriptError,
    WaitTimeout,
)
from ._state import ConnectionRecord

__all__ = ["BACKLOG", "MAX_SEND_BUFFER", "PeerServer", "Side", "Steps", "stream_transport"]

_LINGER_RESET: Final = struct.pack("ii", 1, 0)
clock: Final = time.monotonic

#: The listen backlog: how many connections the kernel queues before the peer accepts them
#: (capped by the system, net.core.somaxconn: 4096 on current Linux).
BACKLOG: Final = 4096
#: The most bytes that may wait to be sent to one client (``FakePeer(max_send_buffer=...)``).
MAX_SEND_BUFFER: Final = 4 << 20

# Why a connection does not read from its client now (a bit each; it reads when none is set).
_SENDING: Final = 1  # the client does not read our replies: backpressure
_HANDLER_BEHIND: Final = 2  # the handler has not received what is buffered
_FAULT: Final = 4  # a stop_reading fault
_UPSTREAM: Final = 8  # a proxy's upstream server is not connected yet, or takes nothing now

#: A client that sent at least this many bytes may still have some in its own send queue
#: when the peer's socket would block: the tail of a bulk send waits there for the peer's
#: ACK or window update (Nagle, RFC 896; flow control, RFC 9293 3.8.6), which the peer's
#: reads set off and the kernel delivers a moment later. Below it, everything sent fits
#: the first window Linux advertises (some 64 KiB), and nothing waits.
_BULK: Final = 32 * 1024
#: How long a stop (or settle) waits, after such a client's last byte, for more of them
#: before it takes the socket's "would block" for the end (seconds). An EOF ends the wait.
IN_FLIGHT_GRACE: Final = 0.1


def _format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "?"


def stream_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """``transport``, which a loop passed to ``connection_made`` of a stream protocol, as the
    read-write transport it is. Duck typing, not ``isinstance``: uvloop's ``TCPTransport``
    has every method of :class:`asyncio.Transport` without subclassing it (an assertion
    there failed in ``connection_made``, which the loop only logs: nobody was served)."""
    return cast("asyncio.Transport", transport)


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
            if isinstance(action, Wait | Await):
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


class _PeerProtocol(asyncio.Protocol):
    """One connection. Every method that touches the conversation holds the peer's lock;
    actions that need no wait run right away, inside the same locked section."""

    __slots__ = (
        "_held",
        "connection",
        "eof",
        "handle",
        "handler",
        "last_read",
        "paused",
        "pushing",
        "read",
        "readable",
        "reading_stopped",
        "receiving",
        "server",
        "steps",
        "timers",
        "transport",
    )

    def __init__(self, server: PeerServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.connection: ConnectionRecord | None = None  # the core's record
        self.handle: Connection | None = None  # the user's handle on it
        self.steps = Steps(self)  # the executor of this connection's actions
        # handler mode: the handler task, and a wake-up
        self.handler: asyncio.Task[None] | None = None
        self.readable: asyncio.Event | None = None
        self.eof = False
        self.reading_stopped = False  # a stop_reading fault paused the client for good
        self.paused = 0  # why reading is paused: _SENDING | _HANDLER_BEHIND | _FAULT
        self.pushing = 0  # bytes pushed from another thread, not yet written
        self.receiving = False  # the handler waits in receive() or receive_exactly()
        self.timers: list[asyncio.TimerHandle] = []  # faults' Later actions
        self.read = 0  # bytes read from the client, and when the last of them came
        self.last_read = 0.0
        self._held: bytearray | None = None  # read while paused, not yet seen (see _hold)

    @property
    def worker(self) -> asyncio.Task[None] | None:
        """The task running this connection's actions after a wait, if any."""
        return self.steps.worker

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = stream_transport(transport)
        server = self.server
        client = _format_address(transport.get_extra_info("peername"))
        # One locked step from "being made" to "served": a thread that holds the lock sees
        # this connection in unmade or in protocols, never in neither (see PeerServer.idle).
        with server.lock:
            server.unmade -= 1
            if server.closed:  # the peer was given up (its loop blocked): nobody serves it
                transport.abort()
                return
            server.protocols.add(self)
            now = clock()
            self.connection, actions = server.conversation.connect(client, now)
            self.handle = Connection(self.connection, self)
            server.handles.append(self.handle)
            try:
                if actions:
                    self._run(self._resolve(actions), clock())  # after the script's callables
            except Exception as exc:
                self._crash(exc, now)
            server.changed()
        loop = asyncio.get_running_loop()
        if self.paused:  # see _hold: a loop may start reading once this returns, paused or not
            loop.call_soon(self._keep_paused)
        if self.connection.handled:
            self.readable = asyncio.Event()
            self.handler = loop.create_task(self._handle())

    def data_received(self, data: bytes) -> None:
        if self.paused and self._hold(data):
            return
        server = self.server
        connection = self.connection
        assert connection is not None
        with server.lock:
            now = clock()
            self.read += len(data)
            self.last_read = now
            try:
                actions = server.conversation.receive(connection, data, now)
                if actions:
                    self._run(self._resolve(actions), clock())  # after the script's callables
            except Exception as exc:  # a bug of ours or a custom framing's: never lose it
                self._crash(exc, now)
            if connection.handled and len(connection.buffer) > server.conversation.limit:
                self._pause(_HANDLER_BEHIND)  # backpressure until the handler catches up
            server.changed()
        if self.readable is not None:
            self.readable.set()

    def eof_received(self) -> bool:
        server = self.server
        assert self.connection is not None
        with server.lock:
            now = clock()
            try:
                actions = server.conversation.eof(self.connection, now)
                self._run(self._resolve(actions), clock())  # after the script's callables
            except Exception as exc:
                self._crash(exc, now)
            server.changed()
        self.eof = True
        if self.readable is not None:
            self.readable.set()
        return True  # keep the transport: the Close action ends it after pending steps

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        with server.lock:
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
                try:  # what is left is still matched; its replies go nowhere
                    self._resolve(server.conversation.lost(self.connection, clock(), reason))
                except Exception as error:
                    server.crashed(error, self.connection)
                server.changed()
        server.forget(self)

    # Backpressure: while the client does not read what the peer writes, read nothing more
    # from it (its requests wait in the kernel, and then in the client: TCP flow control).
    def pause_writing(self) -> None:
        if not self.server.draining:  # the stop reads everything the client sent
            self._pause(_SENDING)

    def resume_writing(self) -> None:
        self._resume(_SENDING)

    def _pause(self, reason: int) -> None:
        transport = self.transport
        if not self.paused and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if self.paused:
            return
        held, self._held = self._held, None
        if held:  # first what was read while paused, as if it were read now
            self.data_received(bytes(held))
            if self.paused:  # and that paused it again
                return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    # A loop may start reading a connection once connection_made returns, whatever it asked
    # for there: uvloop does (asyncio's selector transports do not; CPython gh-103607), so a
    # pause asked for in connection_made (a stop_reading fault, a greeting past the
    # high-water mark) would not hold, and the client's first bytes would be read anyway.

    def _keep_paused(self) -> None:
        """Soon after ``connection_made``: pause the transport again if the loop started
        reading it although reading is paused."""
        transport = self.transport
        if (
            self.paused
            and transport is not None
            and not transport.is_closing()
            and transport.is_reading()
        ):
            transport.pause_reading()

    def _hold(self, data: bytes) -> bool:
        """Bytes read while reading is paused (the loop started reading before
        :meth:`_keep_paused` ran): keep them unseen until reading resumes, as if they were
        still in the kernel, and pause now. False if the transport is closing: then the
        bytes are the last ones, and are seen now."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if self._held is None:
            self._held = bytearray()
        self._held += data
        if transport.is_reading():
            transport.pause_reading()
        return True

    # -- seen from other threads, lock held -----------------------------------------------------

    def lagging(self) -> bool:
        """True if the client may have sent something the conversation has not seen yet:
        the connection still reads, or its transport is closing after an error with
        ``connection_lost`` still to come."""
        transport = self.transport
        if transport is None:
            return True
        if transport.is_closing():
            return self.connection is not None and not self.connection.ended
        return not self.eof and transport.is_reading()

    def in_flight(self, now: float) -> bool:
        """True if the client may still have bytes on their way although its socket would
        block now: it sent in bulk (see ``_BULK``), has not closed, and its last byte came
        less than ``IN_FLIGHT_GRACE`` ago."""
        return not self.eof and self.read >= _BULK and now - self.last_read < IN_FLIGHT_GRACE

    def inert_at_eof(self) -> bool:
        """True if this connection's EOF, read now, could not change the verdict: the script
        (not a handler) serves it, nothing is buffered that EOF could leave incomplete, and
        no step is pending. A proxy relays EOF, so its connections never are."""
        connection = self.connection
        return (
            type(self) is _PeerProtocol
            and connection is not None
            and not connection.handled
            and not connection.buffer
            and self.worker is None
        )

    def fileno(self) -> int | None:
        """The connection's socket, or None while its transport is closing."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return None
        sock = transport.get_extra_info("socket")
        return None if sock is None else int(sock.fileno())

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
            now = clock()
            server.conversation.fail(self.connection, problem, now)
            self._crash_close(now)
            server.changed()

    def _crash_close(self, now: float) -> None:
        assert self.connection is not None
        self.steps.clear()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()
            self.server.conversation.closed(self.connection, now, "closed", "(after the error)")

    def _resolve(self, actions: list[Action]) -> list[Action]:
        """``actions``, with the reply callable of a ``Call`` called (now, with the user's
        handle) and its outcome reported, as often as the conversation asks (lock held)."""
        conversation = self.server.conversation
        connection = self.connection
        assert connection is not None
        while len(actions) == 1 and type(actions[0]) is Call:
            call = actions[0]
            result: object = None
            error: Exception | None = None
            try:
                if call.wants_connection:
                    result = call.function(call.value, self.handle)
                else:
                    result = call.function(call.value)
            except Exception as exc:
                error = exc
            actions = conversation.replied(connection, result, error, clock())
        return actions

    def _run(self, actions: list[Action], now: float) -> None:
        self.steps.run(actions, now)

    def _write_all(self, writes: list[bytes], now: float) -> None:
        """The replies to the messages of one segment, in one ``write``: a client that
        pipelines 100,000 requests gets one write, not 100,000 (each of which costs the size
        of the write buffer on 3.12+, where asyncio sums it). Each is recorded as sent. Every
        write of the peer goes through here."""
        transport = self.transport
        connection = self.connection
        assert transport is not None
        assert connection is not None
        if transport.is_closing():
            return
        data = writes[0] if len(writes) == 1 else b"".join(writes)
        if self._unsendable(data, now):
            return
        transport.write(data)
        sent = self.server.conversation.sent
        for data in writes:
            sent(connection, data, now)

    def _unsendable(self, data: bytes, now: float) -> bool:
        """While the stop reads what a client that reads nothing sent, its replies beyond
        the send buffer are recorded as dropped, not buffered (it would never read them)."""
        server = self.server
        transport = self.transport
        connection = self.connection
        if not server.draining or transport is None or connection is None:
            return False
        if transport.get_write_buffer_size() <= server.max_send_buffer:
            return False
        why = "the peer's stop: the client reads nothing, and the send buffer is full"
        server.conversation.dropped(connection, Dropped(data, why), now)
        return True

    def _do(self, action: Action, now: float) -> None:
        transport = self.transport
        connection = self.connection
        assert transport is not None
        assert connection is not None
        if transport.is_closing():
            return
        conversation = self.server.conversation
        if isinstance(action, Write):
            if type(action) is Push:
                self.pushing = max(0, self.pushing - len(action.data))
                if connection.failed:  # the peer pushes nothing more to a failed connection
                    return
            self._write_all([action.data], now)
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
            self._pause(_FAULT)
            conversation.note(connection, now, "stopped", "(reading: a stop_reading fault)")

    async def _await(self, action: Await) -> list[Action]:
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
            more = self._resolve(more)
            server.changed()
        return more

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
        server = self.server
        framed = server.conversation.framing.encode(data)
        with server.lock:
            transport = self.transport
            waiting = self.pushing + (
                transport.get_write_buffer_size() if transport is not None else 0
            )
            if waiting and waiting + len(framed) > server.max_send_buffer:
                self._not_reading(waiting, len(framed))
            self.pushing += len(framed)
        self._later(Push(framed))

    def _not_reading(self, waiting: int, size: int) -> None:
        """A push would go over the send buffer: fail the connection, and raise (lock held)."""
        __tracebackhide__ = True
        server = self.server
        connection = self.connection
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
            connection, problem, clock(), delivered=not self._in_loop(), note=True
        )
        self.pushing = 0
        self._later(Reset())  # frees what waits: the client was not going to read it
        server.changed()
        raise problem.copy()

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
        self.receiving = True
        try:
            async with asyncio.timeout(server.timeout):
                while True:
                    with server.lock:
                        now = clock()
                        outcome = server.conversation.take(connection, count, self.eof, now)
                        if isinstance(outcome, bytes):
                            if len(connection.buffer) <= server.conversation.limit:
                                self._resume(_HANDLER_BEHIND)
                            server.changed()
                            return outcome
                        if outcome is not None:
                            if isinstance(outcome, FramingError):
                                self._crash_close(now)
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
            self.receiving = False

    async def _handle(self) -> None:
        connection = self.connection
        assert connection is not None
        handler = connection.script.handler
        assert handler is not None
        name = getattr(handler, "__qualname__", repr(handler))
        try:
            await handler(self.handle)
        except Exception as exc:
            if connection.failed:  # already recorded (a FramingError, say): not the handler's
                self._act(Close())
                return
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

    def cancel(self) -> None:
        """Cancel this connection's steps, handler and timers."""
        self.steps.cancel()
        if self.handler is not None:
            self.handler.cancel()
        for timer in self.timers:
            timer.cancel()

    def shutdown(self) -> None:
        """The peer stops: judge what is left unread, cancel the steps, close (abort if
        writes are stuck)."""
        if self.connection is not None:
            with self.server.lock:
                self.server.conversation.stop(
                    self.connection, clock(), receiving=self.receiving, eof=self.eof
                )
                self.server.changed()
        self.cancel()
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
    """Serves one conversation on one loop; see the module docstring.

    The listening socket is made by :meth:`listen`, in whichever thread starts the peer, so
    the peer listens before ``serve()`` returns without waiting for the loop; :meth:`attach`
    (on the loop) then accepts its connections. ``changed`` is called, with ``lock`` held,
    after every event, so the peer can wake whoever waits for a condition. ``progress`` is
    the time of the loop's last step in :meth:`settle` or :meth:`stop`: a thread waiting for
    them tells a busy loop from a blocked one by it.
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
        backlog: int = BACKLOG,
        max_send_buffer: int = MAX_SEND_BUFFER,
        handles: list[Connection] | None = None,
    ) -> None:
        self.conversation = conversation
        self.timeout = timeout
        self.loop: asyncio.AbstractEventLoop | None = None  # set by attach()
        self.lock = lock
        self.changed = changed
        self.host = host
        self.port = port
        self.backlog = backlog
        self.max_send_buffer = max_send_buffer
        self.protocols: set[_PeerProtocol] = set()
        # the user's handles, in order of arrival (the peer's list: it outlives the server)
        self.handles: list[Connection] = [] if handles is None else handles
        self.listener: socket.socket | None = None
        self.adopting: set[asyncio.Task[None]] = set()  # tasks making accepted connections
        self.unmade = 0  # connections accepted whose connection_made has not run yet
        self.background: set[asyncio.Task[None]] = set()  # a stop nobody waits for
        self.stopping = False  # stop() is judging and closing the connections
        self.draining = False  # stop() reads what clients sent, whatever backpressure says
        self.closed = False  # stop() is over: nothing more is served or recorded
        self.abandoned = False  # the loop was found blocked and given up (see _hosting)
        self.refusing = False
        self.progress = 0.0
        self._drained: asyncio.Future[None] | None = None
        self.address: tuple[str, int] = (host, port)

    # -- listening ---------------------------------------------------------------------------

    def listen(self) -> tuple[str, int]:
        """Bind and listen now, in the calling thread; return the bound ``(host, port)``.

        Clients can connect from here on: the kernel queues them until :meth:`attach`.
        """
        self.listener = _listening_socket((self.host, self.port), self.backlog)
        sockname = self.listener.getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    def attach(self) -> None:
        """On the serving loop: accept the connections of the listening socket."""
        loop = self.loop
        assert loop is not None
        with self.lock:
            listener = self.listener
            if listener is None or self.closed:  # stopped before the loop got to it
                return
            loop.add_reader(listener.fileno(), self._accept)
        self._accept()  # some may be queued already

    def _accept(self) -> None:
        """Accept what the kernel queued (up to ``backlog`` at a time), under the lock, so
        that a thread holding the lock sees every accepted socket in ``unmade`` or
        ``protocols``."""
        with self.lock:
            listener = self.listener
            if listener is None or self.closed:
                return
            for _ in range(self.backlog):
                try:
                    sock, _address = listener.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except ConnectionAbortedError:
                    continue  # the client gave up before we got to it
                except OSError as exc:  # out of file descriptors, say: try again soon
                    self._accept_failed(exc)
                    return
                self._adopt(sock)

    def _accept_failed(self, exc: OSError) -> None:
        loop = self.loop
        listener = self.listener
        assert loop is not None
        assert listener is not None
        self.conversation.note_peer(clock(), "error", f"accept() failed: {exc}; retrying")
        loop.remove_reader(listener.fileno())
        loop.call_later(0.1, self.attach)

    def _adopt(self, sock: socket.socket) -> None:
        loop = self.loop
        assert loop is not None
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unmade += 1
        task = loop.create_task(self._serve(sock))
        self.adopting.add(task)
        task.add_done_callback(self.adopting.discard)

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        made: list[_PeerProtocol] = []

        def protocol() -> _PeerProtocol:
            made.append(self.protocol(self))
            return made[0]

        try:
            await loop.connect_accepted_socket(protocol, sock)
        except Exception as exc:  # pragma: no cover - the loop could not make a transport
            sock.close()
            with self.lock:
                if not made or made[0].transport is None:  # connection_made never ran
                    self.unmade -= 1
                self.conversation.note_peer(clock(), "error", f"could not serve a client: {exc}")

    def _close_listener(self) -> None:
        """Stop listening (on the loop): clients connecting from now on are refused."""
        with self.lock:
            listener, self.listener = self.listener, None
        if listener is None:
            return
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(listener.fileno())
        listener.close()

    def refuse(self) -> None:
        """Stop listening (new connections are refused); open ones go on. On the loop."""
        if self.listener is not None and not self.refusing:
            self.refusing = True
            self._close_listener()

    def listen_again(self) -> socket.socket | None:
        """After :meth:`refuse`: a socket listening on the same address again, at once
        (clients can connect from now on); :meth:`accept_again` then serves it."""
        with self.lock:  # a stop in another thread closes it, or sees it closed
            if not self.refusing or self.draining or self.closed:
                return None
            self.listener = _listening_socket(self.address, self.backlog)
            return self.listener

    async def accept_again(self, sock: socket.socket) -> None:
        """Serve the connections of ``sock``, from :meth:`listen_again`."""
        if self.draining or self.closed or self.listener is not sock:
            if self.listener is sock:
                self._close_listener()
            else:
                sock.close()
            return
        self.refusing = False
        self.attach()

    def abort_listener(self) -> None:
        """Close the listening socket, its loop being closed (any thread)."""
        self._close_listener()

    def stop_listening(self) -> None:
        """From any thread: the listening socket stops listening at once (clients connecting
        now are refused), its descriptor kept until the loop closes it (Linux)."""
        listener = self.listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)

    # -- state seen from other threads (lock held) -------------------------------------------

    def quiet(self, *, eof_ok: bool = False) -> bool:
        """True when the loop has nothing the verdict could be waiting for: no connection
        being accepted, no byte a client sent still unread or on its way (see
        :meth:`_PeerProtocol.in_flight`). With ``eof_ok``, a client's close not yet read
        counts as quiet where it cannot change the verdict (see
        :meth:`_PeerProtocol.inert_at_eof`). Call with the lock held, from any thread; it
        reads readiness only (``poll`` with no wait, a peek)."""
        return self._stillness(eof_ok=eof_ok) is _QUIET

    def _stillness(self, *, eof_ok: bool = False) -> object:
        """:data:`_QUIET`, :data:`_READABLE` (a connection or the listener has something
        to read now) or :data:`_IN_FLIGHT` (nothing now, but a bulk client may have more on
        its way); see :meth:`quiet`."""
        if self.unmade:
            return _READABLE
        listener = self.listener
        if listener is not None and not self.refusing and _readable([listener.fileno()]):
            return _READABLE
        waiting: dict[int, _PeerProtocol] = {}
        for protocol in self.protocols:
            if protocol.lagging():
                fd = protocol.fileno()
                if fd is None:
                    return _READABLE  # a transport closing, its connection_lost to come
                waiting[fd] = protocol
        ready = _ready(list(waiting))
        for fd in ready:
            if not (eof_ok and waiting[fd].inert_at_eof() and _only_eof(fd)):
                return _READABLE
        now = clock()
        if any(protocol.in_flight(now) for protocol in waiting.values()):
            return _IN_FLIGHT
        return _QUIET

    def inert(self) -> bool:
        """True when stopping could add nothing to the verdict: no connection holds bytes
        the stop would judge, runs a handler or has a step pending (lock held, any
        thread)."""
        return all(protocol.inert_at_eof() for protocol in self.protocols)

    def idle(self) -> bool:
        """True when no client is connected or connecting (lock held, any thread)."""
        return not self.protocols and self.quiet()

    # -- events of the connections ------------------------------------------------------------

    def crashed(self, exc: BaseException, connection: ConnectionRecord) -> None:
        """Record an exception raised while handling an event. Call with the lock held."""
        problem = ConversationError(
            f"connection #{connection.id}: handling an event raised {type(exc).__name__}: {exc}",
            connection=connection.id,
        )
        problem.__cause__ = exc
        self.conversation.fail(connection, problem, clock())

    def forget(self, protocol: _PeerProtocol) -> None:
        """A connection is gone; wake :meth:`stop` when it was the last one."""
        drained = self._drained
        if drained is not None and not self.protocols and not drained.done():
            drained.set_result(None)

    # -- settling and stopping ---------------------------------------------------------------

    async def settle(self, limit: float | None = None) -> bool:
        """Read what clients already sent: accept the queued connections and read every
        connection until its socket would block (the kernel's buffers are empty) and, for a
        client that sent in bulk and has not closed, until no byte came for
        ``IN_FLIGHT_GRACE`` seconds (the tail of a bulk send reaches the peer a moment
        after its socket would block).

        Returns False if clients were still sending after ``limit`` seconds (default: the
        peer's ``timeout``); ``progress`` is stamped at every turn of the loop.
        """
        deadline = clock() + (self.timeout if limit is None else limit)
        while True:
            self.progress = now = clock()
            with self.lock:
                stillness = self._stillness()
            if stillness is _QUIET:
                return True
            if now >= deadline:
                return False
            # Readable: one turn reads it. In flight: let select() wait for it a little.
            await asyncio.sleep(0 if stillness is _READABLE else 0.002)

    async def stop(self, timeout: float = 1.0) -> None:
        """Stop serving, losing nothing; return within about ``timeout`` once clients stop
        sending.

        In order: stop listening, after accepting what the kernel already queued; read every
        connection until its socket would block, and a bulk sender until no byte came for
        ``IN_FLIGHT_GRACE`` seconds or it closed (see :meth:`settle`; for at most the peer's
        ``timeout``, in case a client never stops sending); judge what is left (a message
        cut short is an :class:`~fakepeer.IncompleteMessage`, whether or not the client
        closed); close every connection and cancel every step. Bytes the peer wrote are
        flushed if the client reads them; a client that does not read cannot delay this past
        ``timeout``: its connection is aborted. Nothing is recorded after this returns.
        """
        if self.closed or self.stopping or self.draining:
            return
        loop = asyncio.get_running_loop()
        self.progress = clock()
        self.draining = True  # from here on, no listening again (a refuse fault removed)
        with self.lock:
            listener = self.listener
            if listener is not None:
                loop.remove_reader(listener.fileno())
                while self.listener is not None and _readable([listener.fileno()]):
                    before = len(self.adopting)
                    self._accept()
                    if len(self.adopting) == before:
                        break
            self._close_listener()
            for protocol in list(self.protocols):  # backpressure must not hide what was sent
                protocol._resume(_SENDING | _UPSTREAM)
        await self.settle()
        self.stopping = True
        protocols = list(self.protocols)
        workers = [task for p in protocols for task in (p.worker, p.handler) if task is not None]
        for protocol in protocols:
            protocol.shutdown()
        if self.protocols:
            self._drained = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                while self._drained is not None and not self._drained.done():
                    self.progress = clock()
                    await asyncio.wait([self._drained], timeout=0.05)
                if workers:
                    await asyncio.wait(workers)
        except TimeoutError:
            for protocol in list(self.protocols):
                if protocol.transport is not None:
                    protocol.transport.abort()
            await asyncio.sleep(0)  # let the aborts' connection_lost run
        finally:
            self.close()

    def stop_soon(self) -> None:
        """On the loop: :meth:`stop` in a task of its own, nobody waiting for it."""
        loop = self.loop
        assert loop is not None
        task = loop.create_task(self.stop())
        self.background.add(task)  # a reference, until it is done
        task.add_done_callback(self.background.discard)

    def close(self) -> None:
        """Nothing more is served or recorded from now on (any thread, lock not needed)."""
        self.closed = True
        self.conversation.finish()

    def abort(self) -> None:
        """On the loop, after it was found blocked: drop every connection at once."""
        self._close_listener()
        for protocol in list(self.protocols):
            protocol.cancel()
            if protocol.transport is not None:
                protocol.transport.abort()


# What :meth:`PeerServer._stillness` finds.
_QUIET: Final = "quiet"
_READABLE: Final = "readable"
_IN_FLIGHT: Final = "in flight"


def _listening_socket(address: tuple[str, int], backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on ``address`` (a literal IPv4 or IPv6 host)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.create_server(address, family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def _readable(fds: list[int]) -> bool:
    """True if any of ``fds`` has something to read (or an error or EOF) right now."""
    return bool(_ready(fds))


def _ready(fds: list[int]) -> list[int]:
    """Those of ``fds`` with something to read (or an error or EOF) right now."""
    if not fds:
        return []
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _events in poller.poll(0)]


def _only_eof(fd: int) -> bool:
    """True if all the socket ``fd`` holds is the peer's FIN: no byte, no error, from any
    thread. It reads readiness (``POLLRDHUP``) and the queue's length (``FIONREAD``), never
    the socket itself: a peek would take a pending error (an RST's ``ECONNRESET``) off it,
    and the loop would then read a plain EOF instead."""
    rdhup = getattr(select, "POLLRDHUP", 0)
    if not rdhup:  # not Linux: cannot tell without a peek; say no, and let the loop read it
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | rdhup)
    events = sum(revents for _fd, revents in poller.poll(0))
    if not events & rdhup or events & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
        return False
    import fcntl  # noqa: PLC0415 - POSIX only, and POLLRDHUP says this is Linux
    import termios  # noqa: PLC0415

    queued = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, queued)
    except OSError:
        return False
    return queued[0] == 0
