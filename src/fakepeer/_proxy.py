"""The proxy: a peer that forwards to a real server, with the same faults and transcript.

``Proxy(upstream=(host, port))`` serves like a :class:`~fakepeer.FakePeer` (``with`` on the
hub, ``async with`` in the running loop). For each client it connects to the upstream server
and relays bytes both ways: what the client sends goes upstream as it arrives; what the server
sends back goes through ``proxy.faults`` (latency, slicing, resets...) on its way to the
client. The transcript records both directions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ._actions import Dropped, Wait, Write
from ._errors import ConversationError, ScriptError
from ._faults import FaultState, shape
from ._peer import FakePeer
from ._runtime import MAX_SEND_BUFFER, PeerServer, _PeerProtocol, clock, stream_transport
from ._script import Close, HalfClose, Reset, Rule
from ._transcript import DEFAULT_BUDGET

__all__ = ["Proxy", "UpstreamError"]


class UpstreamError(ConversationError):
    """The proxy could not reach its upstream server, or lost it mid-connection."""


UpstreamError.__module__ = "fakepeer"


class _Upstream(asyncio.Protocol):
    """The proxy's connection to the real server, feeding one client connection."""

    def __init__(self, side: _ProxyProtocol) -> None:
        self.side = side

    def data_received(self, data: bytes) -> None:
        self.side.from_upstream(data)

    def eof_received(self) -> bool:
        self.side.from_upstream_eof()
        return False  # nothing more to read: let asyncio close our side of it

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.side.upstream_failed(exc)
        else:  # closed without an EOF first (a fault closed it): the client's turn
            self.side.from_upstream_eof()

    # Backpressure: while the server does not take what the client sends, stop reading it.
    def pause_writing(self) -> None:
        self.side.pause_client()

    def resume_writing(self) -> None:
        self.side.resume_client()


class _ProxyProtocol(_PeerProtocol):
    __slots__ = ("pending_up", "up_queue", "up_state", "up_worker", "upstream", "upstream_ended")

    server: ProxyServer

    def __init__(self, server: PeerServer) -> None:
        super().__init__(server)
        self.upstream: asyncio.Transport | None = None
        self.pending_up: list[bytes] = []
        # Client-to-server bytes through the upstream faults: a queue and its worker.
        self.up_queue: deque[object] = deque()
        self.up_worker: asyncio.Task[None] | None = None
        self.up_state: FaultState | None = None
        self.upstream_ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.connection is not None:  # not refused while stopping
            self.pause_client()  # until the upstream connection is made
            loop = asyncio.get_running_loop()
            loop.call_soon(self._keep_client_paused)  # see _PeerProtocol._keep_paused
            # The task runs in the handler slot, so stopping the peer cancels and awaits it.
            self.handler = loop.create_task(self._connect())

    async def _connect(self) -> None:
        server = self.server
        host, port = server.upstream
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(server.timeout):
                made, _ = await loop.create_connection(lambda: _Upstream(self), host, port)
        except (OSError, TimeoutError) as exc:
            self.upstream_failed(exc, connecting=True)
            return
        self.upstream = upstream = stream_transport(made)
        for data in self.pending_up:
            upstream.write(data)
        self.pending_up.clear()
        if self.eof and upstream.can_write_eof():
            upstream.write_eof()
        self.resume_client()

    # -- backpressure -------------------------------------------------------------------------

    def pause_client(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _keep_client_paused(self) -> None:
        """Soon after ``connection_made``: uvloop starts reading once it returns, paused or
        not. What the client sent meanwhile waits in ``pending_up``."""
        if self.upstream is None:
            self.pause_client()

    def resume_client(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing() and not self.reading_stopped:
            transport.resume_reading()

    def pause_writing(self) -> None:  # the client does not read what the server sends
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()

    # -- client to server --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.paused and self._hold(data):  # a stop_reading fault (see _PeerProtocol._hold)
            return
        server = self.server
        connection = self.connection
        assert connection is not None
        conversation = server.conversation
        with server.lock:
            now = clock()
            self.read += len(data)
            self.last_read = now
            conversation.relayed(connection, data, now)
            if self.up_state is None:
                self.up_state = FaultState.seeded(conversation.seed, connection.id, "/up")
            if any(fault.shapes("upstream") for fault in conversation.faults):
                actions = shape(conversation.faults, [Write(data)], self.up_state, "upstream")
                for action in actions:
                    if isinstance(action, Dropped):
                        conversation.dropped(connection, action, now, ", upstream")
            else:
                self.up_state.sent += len(data)  # limit_data counts from the first byte
                actions = [Write(data)]
            server.changed()
        self._up_run(actions)

    def _up_run(self, actions: list[object]) -> None:
        if self.up_worker is not None:
            self.up_queue.extend(actions)
            return
        for index, action in enumerate(actions):
            if isinstance(action, Wait):
                self.up_queue.extend(actions[index:])
                self.up_worker = asyncio.get_running_loop().create_task(self._up_work())
                return
            self._up_do(action)

    async def _up_work(self) -> None:
        try:
            while self.up_queue:
                action = self.up_queue.popleft()
                if isinstance(action, Wait):
                    await asyncio.sleep(action.seconds)
                else:
                    self._up_do(action)
        finally:
            self.up_worker = None

    def _up_do(self, action: object) -> None:
        upstream = self.upstream
        if isinstance(action, Write):
            if upstream is None:
                self.pending_up.append(action.data)
            elif not upstream.is_closing():
                upstream.write(action.data)
        elif isinstance(action, Close | Reset) and upstream is not None:
            if isinstance(action, Reset):
                upstream.abort()
            else:
                upstream.close()  # and the client is closed once the upstream is gone

    def eof_received(self) -> bool:
        self.eof = True
        upstream = self.upstream
        if upstream is not None and upstream.can_write_eof() and not upstream.is_closing():
            upstream.write_eof()
        assert self.connection is not None
        with self.server.lock:
            self.server.conversation.note(self.connection, clock(), "eof", "")
        return True  # keep sending what the server still answers

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()
        super().connection_lost(exc)

    # -- server to client (through the faults) -----------------------------------------------

    def _deliver(self, actions: list[object]) -> None:
        server = self.server
        connection = self.connection
        assert connection is not None
        with server.lock:
            now = clock()
            shaped = server.conversation.faulty(connection, actions, now)  # type: ignore[arg-type]
            try:
                self._run(shaped, now)
            except Exception as exc:
                self._crash(exc, now)
            server.changed()

    def from_upstream(self, data: bytes) -> None:
        self._deliver([Write(data)])

    def from_upstream_eof(self) -> None:
        if self.upstream_ended:
            return
        self.upstream_ended = True
        self._deliver([HalfClose() if not self.eof else Close()])

    def upstream_failed(self, exc: BaseException, *, connecting: bool = False) -> None:
        server = self.server
        connection = self.connection
        assert connection is not None
        host, port = server.upstream
        doing = "could not connect to" if connecting else "lost its connection to"
        problem = UpstreamError(
            f"connection #{connection.id}: the proxy {doing} the upstream server "
            f"{host}:{port}: {type(exc).__name__}: {exc}",
            connection=connection.id,
        )
        problem.__cause__ = exc
        self._fail(problem)

    def shutdown(self) -> None:
        if self.up_worker is not None:
            self.up_worker.cancel()
        super().shutdown()
        if self.upstream is not None:
            self.upstream.abort()


class ProxyServer(PeerServer):
    """A :class:`PeerServer` whose connections relay to ``upstream``."""

    protocol: Callable[[PeerServer], _PeerProtocol] = _ProxyProtocol

    def __init__(self, *args: object, upstream: tuple[str, int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.upstream = upstream


class Proxy(FakePeer):
    """A fault-injecting proxy on loopback in front of a real server at ``upstream``.

    Serve it like a peer; point the client at ``proxy.address``; apply ``proxy.faults``
    to what the server sends back. With no faults, bytes pass unchanged both ways. If the
    upstream server cannot be reached, the client's connection is closed and leaving
    ``serve()`` raises :class:`UpstreamError`.

    ``upstream`` is the server's ``(host, port)``, a tuple (anything else is a
    :class:`~fakepeer.ScriptError`), kept as ``proxy.upstream``. ``timeout`` is how long the
    proxy waits for the server to accept a connection, and the default bound of the
    ``wait_*`` methods. The other keywords are those of :class:`~fakepeer.FakePeer`. Writing a
    script on a proxy (``expect()``, ``always()``...) raises :class:`~fakepeer.ScriptError`.
    """

    _relays = True

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        name: str = "proxy",
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 5.0,
        seed: int | None = None,
        external: bool = False,
        max_send_buffer: int = MAX_SEND_BUFFER,
        transcript_budget: int | None = DEFAULT_BUDGET,
    ) -> None:
        if (
            not isinstance(upstream, tuple)
            or len(upstream) != 2
            or not isinstance(upstream[0], str)
            or isinstance(upstream[1], bool)
            or not isinstance(upstream[1], int)
        ):
            raise ScriptError(f"Proxy(upstream=...) takes a (host, port) tuple, got {upstream!r}")
        super().__init__(
            name=name,
            host=host,
            port=port,
            timeout=timeout,
            seed=seed,
            external=external,
            max_send_buffer=max_send_buffer,
            transcript_budget=transcript_budget,
        )
        self.upstream = upstream
        self._conversation.transcript.title = f"proxy {name!r}"
        self._conversation.transcript.upstream = f"{upstream[0]}:{upstream[1]}"

    def _rule(self, kind: str, matcher: object) -> Rule:
        raise ScriptError(
            "a Proxy forwards to its upstream server and has no script; "
            "use a FakePeer to script a conversation"
        )

    def _make_server(self, server: type[PeerServer] = ProxyServer, **extra: Any) -> PeerServer:
        return super()._make_server(server, upstream=self.upstream, **extra)

    def __repr__(self) -> str:
        return f"<Proxy {self.name!r} {self._state} to {self.upstream[0]}:{self.upstream[1]}>"
