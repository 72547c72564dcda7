"""The UDP server: :class:`UdpServer` serves a ``FakePeer(transport="udp")``.

One datagram socket per address listened on, served by the loop's
``create_datagram_endpoint`` (no thread of its own). A "connection" is a client address:
the first datagram from an address makes its :class:`DatagramClient`, a
:class:`~fakepeer._peerprotocol._PeerProtocol` whose transport sends to that address only,
so the conversation, the script, the user's handle and the executor are those of a stream
peer. Each datagram is one message (see :class:`~fakepeer._datagram.DatagramFraming`); each
write one datagram. There is no EOF or close: the stop judges what is left.

A refuse fault closes the socket for real, so the kernel answers datagrams to the port
with ICMP port unreachable (a connected client socket gets ``ConnectionRefusedError``);
removing it binds the same port again. At most ``max_clients`` addresses are served: a
datagram from one more is dropped and counted, and the verdict names the keyword.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from typing import TYPE_CHECKING, Any, Final

from ._actions import Action, Call, Close, HalfClose, Hold, Later, Reset, Stop, Write
from ._datagramfaults import Copied, HeldBack
from ._errors import ConversationError, ScriptError
from ._listening import _ATTEMPTS, _UNAVAILABLE, Where, _failed
from ._peerprotocol import _PeerProtocol
from ._peerserver import _QUIET, _READABLE, PeerServer, _bound, _readable
from ._steps import clock

if TYPE_CHECKING:
    from ._connection import Connection
    from ._conversation import Conversation
    from ._tls import TLS

__all__ = ["MAX_CLIENTS", "DatagramClient", "UdpServer", "bind_udp"]

#: The most client addresses a UDP peer serves (``FakePeer(max_clients=...)``).
MAX_CLIENTS: Final = 1024
#: The most fault timers (held-back datagrams) a client keeps before forgetting fired ones.
_TIMERS: Final = 64


def bind_udp(where: Where) -> list[socket.socket]:
    """Non-blocking UDP sockets bound where ``where`` says, all on one port (``where.port``
    is set to it, so a rebind after a refuse fault takes the same port).
    :class:`~fakepeer.ScriptError` naming the address and the reason if one cannot be."""
    __tracebackhide__ = True
    for _attempt in range(_ATTEMPTS):
        sockets = _bind_hosts(where)
        if sockets is not None:
            return sockets
    raise _failed(where, where.hosts[-1], where.port, OSError(errno.EADDRINUSE, "taken"))


def _bind_hosts(where: Where) -> list[socket.socket] | None:
    sockets: list[socket.socket] = []
    port = where.port
    try:
        for index, host in enumerate(where.hosts):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                # A rebind after a refuse fault may come before the loop let go of the old
                # socket (uvloop closes it on its next turn): both may be bound meanwhile,
                # with SO_REUSEADDR on both. Set after binding port 0, so that the kernel
                # picks a port no other socket has, reusable or not.
                if port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            except OSError as exc:
                sock.close()
                if where.named and index and exc.errno in _UNAVAILABLE:
                    continue
                if where.named and index and where.port == 0 and exc.errno == errno.EADDRINUSE:
                    for bound in sockets:
                        bound.close()
                    return None
                raise _failed(where, host, port, exc) from None
            sock.setblocking(False)
            sockets.append(sock)
            port = int(sock.getsockname()[1])
    except BaseException:
        for bound in sockets:
            bound.close()
        raise
    where.port = port
    return sockets


class _Endpoint(asyncio.DatagramProtocol):
    """One bound socket's protocol: hands each datagram to the server."""

    def __init__(self, server: UdpServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index  # which address of the peer's (the same after a rebind)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's
        # Serving from here on (uvloop reads before create_datagram_endpoint returns).
        server = self.server
        with server.lock:
            if self.sock in server.listeners:
                server.endpoints[self.index] = self
                return
        transport.close()  # refused or stopped meanwhile

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # The hot path of every datagram: one locked section, one call per layer.
        server = self.server
        with server.lock:
            client = server.clients.get(addr)
            if client is None:
                client = server.new_client(self, addr)
                if client is None:
                    return
            elif server.closed:
                return
            client.datagram(data)

    def error_received(self, exc: Exception) -> None:
        # an ICMP error for something sent earlier (the client's port is closed, say), or a
        # send the kernel refused at once (a datagram over the size limit): that one fails
        conversation = self.server.conversation
        with self.server.lock:
            if isinstance(exc, OSError) and exc.errno == errno.EMSGSIZE:
                text = f"a datagram could not be sent: {type(exc).__name__}: {exc}"
                conversation.note_peer(clock(), "error", text)
                conversation.problems.append(ConversationError(text))
            else:
                conversation.note_peer(
                    clock(),
                    "error",
                    f"ICMP: {type(exc).__name__}: {exc} (a client's port is closed?)",
                )
            self.server.changed()


class _AddressTransport:
    """The transport of one client address, as a :class:`_PeerProtocol` uses one."""

    def __init__(self, server: UdpServer, index: int, address: Any) -> None:
        self.server = server
        self.index = index  # the peer's address the client sent to: replies come from it
        self.address = address

    def sendto(self, data: bytes) -> bool:
        """Send ``data`` as one datagram; False if the socket is closed (refused, stopped)."""
        endpoint = self.server.endpoints.get(self.index)
        transport = None if endpoint is None else endpoint.transport
        if transport is None or transport.is_closing():
            return False
        transport.sendto(data, self.address)
        return True

    def is_closing(self) -> bool:
        return False  # an address is never closed: only the socket, which sendto sees

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.address if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    abort = close
    pause_reading = close
    resume_reading = close

    def is_reading(self) -> bool:
        return True

    def can_write_eof(self) -> bool:
        return False


_STREAM_ONLY: Final = {
    Close: "closes the connection",
    HalfClose: "half-closes the connection",
    Reset: "resets the connection",
    Stop: "stops reading the connection",
}


class DatagramClient(_PeerProtocol):
    """One client address of a UDP peer: a "connection" that sends datagrams."""

    address_transport: _AddressTransport

    def _write_all(self, writes: list[bytes], now: float) -> None:
        self._send(writes, now, "")

    def datagram(self, data: bytes) -> None:
        """A datagram from this client (lock held): what :meth:`data_received` does, with
        nothing a datagram never needs (no backpressure, no handler, nothing buffered)."""
        connection = self.connection
        assert connection is not None
        if self.paused or connection.handled:  # (a UDP peer neither pauses nor has handlers)
            self.data_received(data)
            return
        server = self.server
        now = clock()
        self.read += len(data)
        self.last_read = now
        try:
            actions = server.conversation.receive(connection, data, now)
            if actions:
                if type(actions[-1]) is Call:  # (a Call comes alone)
                    actions = self._resolve(actions)
                steps = self.steps
                if len(actions) == 1 and type(actions[0]) is Write and steps.worker is None:
                    self._send_one(actions[0].data, clock(), "")  # what steps.run would do
                else:
                    steps.run(actions, clock())  # after the script's callables
        except Exception as exc:  # a bug of ours: never lose it
            self._crash(exc, now)
        server.changed()

    def _send(self, writes: list[bytes], now: float, note: str) -> None:
        for data in writes:
            self._send_one(data, now, note)

    def _send_one(self, data: bytes, now: float, note: str) -> None:
        """Send ``data`` as one datagram to the client, and record it (lock held)."""
        connection = self.connection
        assert connection is not None
        if self.address_transport.sendto(data):
            self.server.conversation.event(now, connection, "sent", data, note)
        else:
            self.server.conversation.event(now, connection, "dropped", data, "(the port is closed)")

    def _do(self, action: Action, now: float) -> None:
        connection = self.connection
        assert connection is not None
        conversation = self.server.conversation
        if type(action) is HeldBack:
            self._send([action.data], now, "(held back: reorder)")
        elif type(action) is Copied:
            self._send([action.data], now, "(a copy: duplicate)")
        elif isinstance(action, Write):
            self._write_all([action.data], now)
        elif type(action) is Close and connection.failed:
            pass  # the peer's own end of a failed connection (a stream's is closed): no step's
        elif type(action) in _STREAM_ONLY:
            what = _STREAM_ONLY[type(action)]
            problem = ScriptError(
                f"connection #{connection.id}: a step {what}, but a UDP peer has no "
                "connection (transport='udp'): use a stream peer (transport='tcp')"
            )
            conversation.fail(connection, problem, now, note=True)
        elif isinstance(action, Hold):
            conversation.held(connection, now)
        elif isinstance(action, Later):
            loop = asyncio.get_running_loop()
            if len(self.timers) >= _TIMERS:
                self.timers = [timer for timer in self.timers if timer.when() > loop.time()]
            later: Action = action.action  # type: ignore[assignment]
            self.timers.append(loop.call_later(action.seconds, self._act, later))

    def lagging(self) -> bool:
        return False  # its datagrams come through the server's socket

    def inert_at_eof(self) -> bool:
        connection = self.connection
        return connection is not None and not connection.buffer and self.worker is None

    def fileno(self) -> int | None:
        return None


class UdpServer(PeerServer):
    """Serves a UDP peer on one loop; see the module docstring."""

    def __init__(
        self,
        conversation: Conversation,
        lock: Any,
        changed: Any,
        where: Where,
        *,
        timeout: float = 5.0,
        max_send_buffer: int = 0,
        handles: list[Connection] | None = None,
        tls: TLS | None = None,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        super().__init__(
            conversation, lock, changed, where, timeout=timeout, handles=handles, tls=tls
        )
        self.max_clients = max_clients
        self.clients: dict[Any, DatagramClient] = {}
        self.endpoints: dict[int, _Endpoint] = {}  # by the index of the address
        self.attaching: set[asyncio.Task[None]] = set()
        self.ignored = 0  # datagrams from addresses past max_clients

    def listen(self) -> tuple[tuple[str, int] | str, ...]:
        self.listeners = bind_udp(self.where)
        self.addresses = tuple(_bound(sock) for sock in self.listeners)
        return self.addresses

    def attach(self) -> None:
        loop = self.loop
        assert loop is not None
        with self.lock:
            if not self.listeners or self.closed:
                return
            for index, sock in enumerate(self.listeners):
                task = loop.create_task(self._endpoint(sock, index))
                self.attaching.add(task)
                task.add_done_callback(self.attaching.discard)

    async def _endpoint(self, sock: socket.socket, index: int) -> None:
        loop = asyncio.get_running_loop()
        endpoint = _Endpoint(self, sock, index)
        try:
            await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
        except OSError:
            with self.lock:  # a refuse fault (or the stop) closed the socket meanwhile: fine
                if sock.fileno() >= 0 and sock in self.listeners and not self.closed:
                    raise

    def new_client(self, endpoint: _Endpoint, addr: Any) -> DatagramClient | None:
        """The first datagram from ``addr`` came (lock held): its client, or None if it is
        not served (the peer stopped, or serves ``max_clients`` addresses already)."""
        if self.closed:
            return None
        if len(self.clients) >= self.max_clients:
            self._overflow(addr)
            return None
        client = DatagramClient(self)
        client.address_transport = _AddressTransport(self, endpoint.index, addr)
        self.unmade += 1
        client.connection_made(client.address_transport)  # type: ignore[arg-type]
        self.clients[addr] = client
        return client

    def _overflow(self, addr: Any) -> None:
        self.ignored += 1
        if self.ignored > 1:
            return
        text = (
            f"a datagram from {addr!r} was ignored: the peer already serves "
            f"{self.max_clients} client addresses, its limit (FakePeer(max_clients=...) "
            "raises it); later ones from new addresses are ignored too"
        )
        self.conversation.note_peer(clock(), "error", text)
        self.conversation.problems.append(ConversationError(text))
        self.changed()

    def _stillness(self, *, eof_ok: bool = False) -> object:
        if self.attaching:
            return _READABLE
        listeners = self.listeners
        if listeners and not self.refusing and _readable([sock.fileno() for sock in listeners]):
            return _READABLE
        return _QUIET

    def inert(self) -> bool:
        """Never: leaving ``serve()`` waits for the stop, which closes the sockets, so the
        port is closed (ICMP port unreachable) by the time the test goes on."""
        return False

    def _close_listener(self) -> None:
        with self.lock:
            listeners, self.listeners = self.listeners, []
            endpoints, self.endpoints = list(self.endpoints.values()), {}
        loop = self.loop
        open_loop = loop is not None and not loop.is_closed()
        for endpoint in endpoints:
            if open_loop and endpoint.transport is not None:
                endpoint.transport.abort()
        for sock in listeners:
            # The port refuses at once, even while a loop that holds its own descriptor of
            # the socket (uvloop) has not let go of it yet: see stop_listening.
            with contextlib.suppress(OSError):
                sock.connect(sock.getsockname())
            sock.close()

    def refuse(self) -> None:
        if self.listeners and not self.refusing:
            self.refusing = True
            self._close_listener()
            with self.lock:
                self.conversation.note_peer(
                    clock(), "fault", "the port is closed (datagrams get ICMP port unreachable)"
                )

    def listen_again(self) -> list[socket.socket] | None:
        with self.lock:
            if not self.refusing or self.draining or self.closed:
                return None
            self.listeners = bind_udp(self.where)
            self.refusing = False  # (a refuse now closes these, before accept_again or after)
            return self.listeners

    def stop_listening(self) -> None:
        """From any thread: refuse every client at once (the loop closes the sockets
        soon). Connected to itself, a UDP socket takes datagrams from itself only: the
        kernel answers the others with ICMP port unreachable, as if it were closed."""
        for sock in list(self.listeners):
            with contextlib.suppress(OSError):
                sock.connect(sock.getsockname())

    def abort(self) -> None:
        self._close_listener()
        for client in list(self.protocols):
            client.cancel()

    async def stop(self, timeout: float = 1.0) -> None:
        """Read what clients sent, judge each client address (no EOF: what it was still
        expected to send fails the verdict), cancel pending steps, close the sockets."""
        if self.closed or self.stopping or self.draining:
            return
        self.progress = clock()
        self.draining = True
        try:
            await self.settle()
            self.stopping = True
            self._close_listener()
            protocols = list(self.protocols)
            workers = [p.worker for p in protocols if p.worker is not None]
            for protocol in protocols:
                protocol.shutdown()
            if workers:
                await asyncio.wait(workers, timeout=timeout)
        finally:
            with self.lock:
                self.protocols.clear()
            for task in self.attaching:
                task.cancel()
            self.close()
