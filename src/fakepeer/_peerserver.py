"""The server: :class:`PeerServer` listens, accepts, settles and stops one peer's connections.

One per serving peer, in whichever event loop hosts it (the test's own, or the hub's
background thread). It sits on a bare :class:`asyncio.Protocol`
(:class:`~fakepeer._peerprotocol._PeerProtocol`), not streams: a reply that needs no wait is
written inside ``data_received`` itself, with no task or queue involved. Apart from the
connection's protocol because it is about the set of connections, not one: the listening
socket, the kernel's accept queue, whether anything is left to read (readiness, read from
any thread with the lock held), and the orderly stop.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import select
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Final

from . import _accepting, _explain, _tlsfaults
from ._connection import Connection
from ._conversation import Conversation
from ._errors import ConversationError
from ._listening import Where, bind
from ._peerprotocol import _PeerProtocol
from ._state import ConnectionRecord
from ._steps import clock
from ._tls import TLS
from ._tlsinfo import reason as _reason

__all__ = ["BACKLOG", "MAX_SEND_BUFFER", "PeerServer"]

#: The listen backlog: how many connections the kernel queues before the peer accepts them
#: (capped by the system, net.core.somaxconn: 4096 on current Linux).
BACKLOG: Final = 4096
#: The most bytes that may wait to be sent to one client (``FakePeer(max_send_buffer=...)``).
MAX_SEND_BUFFER: Final = 4 << 20


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
        where: Where,
        *,
        timeout: float = 5.0,
        backlog: int = BACKLOG,
        max_send_buffer: int = MAX_SEND_BUFFER,
        handles: list[Connection] | None = None,
        tls: TLS | None = None,
    ) -> None:
        self.conversation = conversation
        self.tls = tls  # the test's certificates, or None for plain TCP
        # TLS from the first byte: the handshake comes before connection_made (with
        # tls="starttls", a rule's .start_tls() upgrades a plain connection: _upgrading)
        self.handshaking = tls is not None and not tls.starttls
        self.timeout = timeout
        self.loop: asyncio.AbstractEventLoop | None = None  # set by attach()
        self.lock = lock
        self.changed = changed
        self.where = where
        self.backlog = backlog
        self.max_send_buffer = max_send_buffer
        self.protocols: set[_PeerProtocol] = set()
        # the user's handles, in order of arrival (the peer's list: it outlives the server)
        self.handles: list[Connection] = [] if handles is None else handles
        self.listeners: list[socket.socket] = []  # one per address; none when not listening
        self.adopting: set[asyncio.Task[None]] = set()  # tasks making accepted connections
        # those of them in a TLS handshake, with the protocol they made once it started
        self.handshakes: dict[asyncio.Task[None], list[_PeerProtocol]] = {}
        # those a handshake fault interrupted (a reset, a stall): recorded, cancelled at the stop
        self.interrupted: weakref.WeakSet[asyncio.Task[None]] = weakref.WeakSet()
        self.unmade = 0  # connections accepted whose connection_made has not run yet
        self.background: set[asyncio.Task[None]] = set()  # a stop nobody waits for
        self.stopping = False  # stop() is judging and closing the connections
        self.draining = False  # stop() reads what clients sent, whatever backpressure says
        self.handshakes_until = 0.0  # a stop waits for TLS handshakes going on until then
        self.closed = False  # stop() is over: nothing more is served or recorded
        self.abandoned = False  # the loop was found blocked and given up (see _hosting)
        self.refusing = False
        # the connect-phase faults (see _accepting): connections accepted in all, those an
        # accept_delay holds (with the timer that serves them), the accept queue left full
        self.accepted = 0
        self.waiting: dict[socket.socket, asyncio.TimerHandle] = {}
        self.queue_full = False
        self.fillers: list[socket.socket] = []
        self.progress = 0.0
        self._drained: asyncio.Future[None] | None = None
        #: Every address listened on (``(host, port)`` or a Unix socket's path), once bound.
        self.addresses: tuple[tuple[str, int] | str, ...] = ()

    # -- listening ---------------------------------------------------------------------------

    def listen(self) -> tuple[tuple[str, int] | str, ...]:
        """Bind and listen now, in the calling thread; return the bound addresses (see
        :mod:`~fakepeer._listening`: :class:`~fakepeer.ScriptError` if it cannot).

        Clients can connect from here on: the kernel queues them until :meth:`attach`.
        """
        self.listeners = bind(self.where, self.backlog)
        self.addresses = tuple(_bound(sock) for sock in self.listeners)
        return self.addresses

    def attach(self) -> None:
        """On the serving loop: accept the connections of the listening socket."""
        loop = self.loop
        assert loop is not None
        with self.lock:
            if not self.listeners or self.closed:  # stopped before the loop got to it
                return
            for listener in self.listeners:
                loop.add_reader(listener.fileno(), self._accept)
        self._accept()  # some may be queued already

    def _accept(self) -> None:
        """Accept what the kernel queued (up to ``backlog`` at a time), under the lock, so
        that a thread holding the lock sees every accepted socket in ``unmade`` or
        ``protocols``."""
        with self.lock:
            for listener in self.listeners:
                if self.closed or not self._accept_from(listener):
                    return

    def _accept_from(self, listener: socket.socket) -> bool:
        """Accept what ``listener`` has queued; False if accepting failed (retried soon)."""
        for _ in range(self.backlog):
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as exc:  # out of file descriptors, say: try again soon
                self._accept_failed(exc)
                return False
            self._adopt(sock)
        return True

    def _accept_failed(self, exc: OSError) -> None:
        loop = self.loop
        assert loop is not None
        self.conversation.note_peer(clock(), "error", f"accept() failed: {exc}; retrying")
        for listener in self.listeners:
            loop.remove_reader(listener.fileno())
        loop.call_later(0.1, self.attach)

    def _adopt(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if self.fillers and _accepting.is_filler(self, sock):
            sock.close()  # the peer's own, which kept the accept queue full
        elif not _accepting.admit(self, sock):  # (the accept faults may take it)
            self.serve_accepted(sock)

    def serve_accepted(self, sock: socket.socket) -> None:
        """Serve an accepted (non-blocking) socket: its connection is made on the loop."""
        loop = self.loop
        assert loop is not None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unmade += 1
        made: list[_PeerProtocol] = []
        task = loop.create_task(self._serve(sock, made))
        self.adopting.add(task)
        task.add_done_callback(self.adopting.discard)
        if self.handshaking:
            self.handshakes[task] = made
            task.add_done_callback(lambda done: self.handshakes.pop(done, None))

    async def _serve(self, sock: socket.socket, made: list[_PeerProtocol]) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> _PeerProtocol:
            made.append(self.protocol(self))
            return made[0]

        tls = self.tls
        try:
            if tls is None or not self.handshaking:
                if tls is not None:  # STARTTLS: the socket an upgrade's alert goes to
                    _tlsfaults.SOCKET.set(sock)  # (see _tlsfaults.upgrade)
                await loop.connect_accepted_socket(protocol, sock)
            else:
                await _tlsfaults.handshake(self, protocol=protocol, sock=sock)
        except (Exception, asyncio.CancelledError) as exc:
            sock.close()
            self._unserved(exc, made)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _unserved(self, exc: BaseException, made: list[_PeerProtocol]) -> None:
        """An accepted socket was not served: its TLS handshake failed (recorded, not a
        problem: the client sees its own error), the stop cancelled it, or the loop could
        not make a transport (an error)."""
        with self.lock:
            if not made or made[0].transport is None:  # connection_made never ran
                self.unmade -= 1
            if self.closed:
                pass
            elif isinstance(exc, asyncio.CancelledError):
                if self.draining and self.handshaking and not made:
                    self.conversation.note_peer(
                        clock(), "tls", "handshake cut off: the peer stopped"
                    )
            elif self.handshaking:
                self.conversation.note_peer(clock(), "tls", f"handshake failed: {_reason(exc)}")
            else:  # pragma: no cover - the loop could not make a transport
                self.conversation.note_peer(clock(), "error", f"could not serve a client: {exc}")
            self.changed()

    def _close_listener(self) -> None:
        """Stop listening (on the loop): clients connecting from now on are refused."""
        with self.lock:
            listeners, self.listeners = self.listeners, []
        for listener in listeners:
            if self.loop is not None and not self.loop.is_closed():
                self.loop.remove_reader(listener.fileno())
            listener.close()

    def refuse(self) -> None:
        """Stop listening (new connections are refused); open ones go on. On the loop."""
        if self.listeners and not self.refusing:
            self.refusing = True
            self._close_listener()

    def listen_again(self) -> list[socket.socket] | None:
        """After :meth:`refuse`: sockets listening on the same addresses again, at once
        (clients can connect from now on); :meth:`accept_again` then serves them."""
        with self.lock:  # a stop in another thread closes them, or sees them closed
            if not self.refusing or self.draining or self.closed:
                return None
            self.listeners = bind(self.where, self.backlog)
            self.refusing = False  # (a refuse now closes these, before accept_again or after)
            return self.listeners

    async def accept_again(self, socks: list[socket.socket]) -> None:
        """Serve the connections of ``socks``, from :meth:`listen_again`."""
        if self.draining or self.closed or self.listeners is not socks:
            if self.listeners is socks:
                self._close_listener()
            else:
                for sock in socks:
                    sock.close()
            return
        if self.queue_full:  # accept_queue_full is still on: fill the new sockets' queues
            self.queue_full = False
            _accepting.release_fillers(self)
            _accepting.fill(self)
            return
        self.attach()

    def abort_listener(self) -> None:
        """Close the listening socket, its loop being closed (any thread)."""
        self._close_listener()

    def stop_listening(self) -> None:
        """From any thread: the listening socket stops listening at once (clients connecting
        now are refused), its descriptor kept until the loop closes it (Linux)."""
        for listener in list(self.listeners):
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
            # A TLS handshake going on is a connection to come; a stop waits for it only until
            # handshakes_until (then cancels it: the client sent no message yet, none is lost)
            shaking = sum(
                1 for made in self.handshakes.values() if not made or not made[0].transport
            )
            if self.unmade > shaking:
                return _READABLE
            if not self.draining or clock() < self.handshakes_until:
                return _IN_FLIGHT
        listeners = self.listeners
        if (
            listeners
            and not (self.refusing or self.queue_full)
            and _readable([sock.fileno() for sock in listeners])
        ):
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
        """Record an exception raised while handling an event, with its notes (a
        predicate's says which function raised, on what). Call with the lock held."""
        notes = "".join(f"\n  {note}" for note in getattr(exc, "__notes__", ()))
        problem = ConversationError(
            f"connection #{connection.id}: handling an event raised {type(exc).__name__}: {exc}"
            f"{notes}",
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
        self.handshakes_until = clock() + timeout
        with self.lock:
            listeners = self.listeners
            for listener in listeners:
                loop.remove_reader(listener.fileno())
            fds = [listener.fileno() for listener in listeners]
            while self.listeners and not self.queue_full and _readable(fds):
                before = len(self.adopting)
                self._accept()
                if len(self.adopting) == before:
                    break
            self._close_listener()
            _accepting.release(self)  # (the queued clients of a full queue get an RST)
            for protocol in list(self.protocols):  # backpressure must not hide what was sent
                protocol.resume_at_stop()
        if not await self.settle():
            with self.lock:
                self._unread_at_stop()
        self._cancel_handshakes()
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

    def _unread_at_stop(self) -> None:
        """The stop read for ``timeout`` and clients still send: say so on each such
        connection, rather than lose what it sends next quietly (lock held)."""
        now = clock()
        for protocol in self.protocols:
            record, fd = protocol.connection, protocol.fileno()
            sending = protocol.in_flight(now) or (fd is not None and bool(_ready([fd])))
            if record and record.problem is None and protocol.lagging() and sending:
                self.conversation.fail(
                    record, _explain.still_sending(record.id, self.timeout), now, note=True
                )

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

    def _cancel_handshakes(self) -> None:
        for task in list(self.interrupted):  # a stall: it ends with the peer
            task.cancel()
        for task, made in list(self.handshakes.items()):  # a TLS handshake going on still:
            unserved = not made or made[0].transport is None
            if unserved and task.cancel() and not self.closed:
                note = "a handshake cut off: the peer stopped before it ended"
                self.conversation.note_peer(clock(), "tls", note)

    def abort(self) -> None:
        """On the loop, after it was found blocked (or nobody was served): drop every
        connection at once, and every TLS handshake going on (a stalled one, say)."""
        self._close_listener()
        _accepting.release(self)
        self._cancel_handshakes()
        for protocol in list(self.protocols):
            protocol.cancel()
            if protocol.transport is not None:
                protocol.transport.abort()


# What :meth:`PeerServer._stillness` finds.
_QUIET: Final = "quiet"
_READABLE: Final = "readable"
_IN_FLIGHT: Final = "in flight"


def _bound(sock: socket.socket) -> tuple[str, int] | str:
    """The address ``sock`` listens on: ``(host, port)``, or a Unix socket's path."""
    name = sock.getsockname()
    if isinstance(name, str | bytes):
        return os.fsdecode(name)
    return (str(name[0]), int(name[1]))


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
