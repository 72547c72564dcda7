"""One served connection: :class:`_PeerProtocol`, the asyncio protocol of a client.

It holds everything that happens to one connection: the loop's callbacks (bytes, EOF, loss),
backpressure (why reading is paused, and the bytes read while it was), and the execution of
the conversation's actions on the transport (through its :class:`~fakepeer._steps.Steps`);
the user's handle does its IO through :class:`~fakepeer._handleio.HandleIO`. Apart from the
server (:mod:`fakepeer._peerserver`), which listens, accepts and stops, because nothing here
depends on how the connection was accepted: a proxy subclasses it.

Every method that touches the conversation holds the peer's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Final, cast

from . import _upgrading
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
    Write,
)
from ._connection import Connection
from ._errors import ConversationError
from ._handleio import HandleIO
from ._listening import format_address
from ._state import ConnectionRecord
from ._steps import Steps, clock

if TYPE_CHECKING:
    from ._peerserver import PeerServer

__all__ = ["IN_FLIGHT_GRACE", "stream_transport"]

_LINGER_RESET: Final = struct.pack("ii", 1, 0)

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
HELD_BACK_GRACE: Final = 0.5  #: the same, once the stop began: a loaded machine pauses longer


def stream_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """``transport``, which a loop passed to ``connection_made`` of a stream protocol, as the
    read-write transport it is. Duck typing, not ``isinstance``: uvloop's ``TCPTransport``
    has every method of :class:`asyncio.Transport` without subclassing it (an assertion
    there failed in ``connection_made``, which the loop only logs: nobody was served)."""
    return cast("asyncio.Transport", transport)


class _PeerProtocol(asyncio.Protocol):
    """One connection. Every method that touches the conversation holds the peer's lock;
    actions that need no wait run right away, inside the same locked section."""

    __slots__ = (
        "_held",
        "connection",
        "eof",
        "grace",
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
        self.grace = HELD_BACK_GRACE if server.draining else IN_FLIGHT_GRACE  # see in_flight()
        self._held: bytearray | None = None  # read while paused, not yet seen (see _hold)

    @property
    def worker(self) -> asyncio.Task[None] | None:
        """The task running this connection's actions after a wait, if any."""
        return self.steps.worker

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = stream_transport(transport)
        server = self.server
        client = format_address(transport.get_extra_info("peername"))
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
            _upgrading.handshaken(self, transport, now)  # tls=True
            io = HandleIO(self)
            self.handle = Connection(self.connection, io)
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
            self.handler = loop.create_task(io.run_handler())

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
                    if type(actions[-1]) is Call:  # (a Call comes alone)
                        actions = self._resolve(actions)
                    self.steps.run(actions, clock())  # after the script's callables
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
        # keep the transport: the Close action ends it after pending steps (TLS cannot: its
        # transport closes after the client's close_notify, and says so if asked to keep it)
        return self.connection.tls is None

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

    def resume_at_stop(self) -> None:
        """Read on at the stop despite backpressure; a bulk sender's tail gets longer."""
        self.grace = HELD_BACK_GRACE  # for a bulk sender (in_flight), however late it became one
        self._resume(_SENDING | _UPSTREAM)

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

    def handler_caught_up(self) -> None:
        """The handler took what it was behind on: read from the client again (lock held)."""
        self._resume(_HANDLER_BEHIND)

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
        :meth:`_keep_paused` ran, or a STARTTLS handshake is being recorded): keep them
        unseen until reading resumes, as if still in the kernel, and pause now. False if the
        transport is closing: then the bytes are the last ones, and are seen now."""
        transport = self.transport
        upgrading = self.paused & _upgrading.HANDSHAKE  # (the TLS layer reads, not this)
        if transport is None or (transport.is_closing() and not upgrading):
            return False
        if self._held is None:
            self._held = bytearray()
        self._held += data
        if not upgrading and transport.is_reading():
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
        """True if the client may have bytes on their way though its socket would block: it
        sent in bulk (``_BULK``) or nothing since its TLS handshake, in ``IN_FLIGHT_GRACE``."""
        late = self.read >= _BULK or not self.read  # (not read: last_read is 0 but for TLS)
        return not self.eof and late and now - self.last_read < self.grace

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

    async def _start_tls(self) -> None:
        await _upgrading.start_tls(self)  # see there: STARTTLS

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
