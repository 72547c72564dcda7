"""The proxy: a peer that forwards to a real server, with the same faults and transcript.
``Proxy(upstream=(host, port))`` serves like a :class:`~fakepeer.FakePeer`; for each client it
connects to the upstream server and relays both ways: the client's bytes as they arrive, the
server's through ``proxy.faults`` (latency, slicing, resets...). The transcript has both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from . import _upstream
from ._actions import Action, Await, Close, HalfClose, Reset, Write
from ._datagramfaults import DATAGRAM_FAULTS
from ._errors import ScriptError, UpstreamError
from ._faults import Fault
from ._framing import Framing, check_framing
from ._host import Host
from ._inspection import _reading
from ._listening import unsent
from ._peerprotocol import _LINGER_RESET
from ._recording import refuse_cut_or_shaped
from ._recording_toml import framing_table, recording
from ._relay import Relay
from ._runtime import (
    _UPSTREAM,
    MAX_SEND_BUFFER,
    PeerServer,
    Steps,
    _PeerProtocol,
    clock,
    stream_transport,
)
from ._tls import configure
from ._tlsinfo import reason
from ._transcript import DEFAULT_BUDGET
from ._upstream import Upstream
from ._version import __version__

__all__ = ["Proxy", "UpstreamError"]

#: The errors of a connection the server reset (a write after its RST: a broken pipe).
_RESETS = (ConnectionResetError, BrokenPipeError)


class _Upstream(asyncio.Protocol):
    """The proxy's connection to the real server, feeding one client connection; the
    upstream :class:`~fakepeer._steps.Side` its :class:`~fakepeer._steps.Steps` drive."""

    __slots__ = ("client", "eof_received_", "eof_sent", "transport")

    def __init__(self, client: _ProxyProtocol) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.eof_received_ = False  # the server is done sending
        self.eof_sent = False  # the client's EOF was passed on: the client is done sending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream_transport(transport)
        self.client.server.upstreams.add(self)

    def data_received(self, data: bytes) -> None:
        self.client.from_upstream(data)

    def eof_received(self) -> bool:
        self.eof_received_ = True
        self.client.from_upstream_eof()
        # The server may still read (it half-closed): keep the connection open for what the
        # client sends next, until the client is done too (then it is closed: see _do). Not
        # over TLS, which asyncio closes on the server's close_notify whatever we return.
        return not self.eof_sent and not self.client.server.upstream.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.server.upstreams.discard(self)
        if exc is not None:
            self.client.upstream_failed(exc)
        else:  # closed without an EOF first (a fault closed it): the client's turn
            self.client.from_upstream_eof()

    # Backpressure: while the server does not take what the client sends, stop reading it.
    def pause_writing(self) -> None:
        self.client.pause_client()

    def resume_writing(self) -> None:
        self.client._resume(_UPSTREAM)

    # -- the upstream side of the executor (lock held) ---------------------------------------

    def _write_all(self, writes: list[bytes], now: float) -> None:
        data = writes[0] if len(writes) == 1 else b"".join(writes)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
        else:  # never lost quietly: the transcript says the client's bytes did not go
            self.client.unsent(data, now, "upstream")

    def _do(self, action: Action, now: float) -> None:
        transport = self.transport
        if isinstance(action, Write):
            self._write_all([action.data], now)
            return
        if transport is None or transport.is_closing():
            return
        if isinstance(action, HalfClose):
            self.eof_sent = True
            if self.eof_received_:  # both directions are over
                transport.close()
            elif transport.can_write_eof():
                transport.write_eof()
        elif isinstance(action, Reset):
            transport.abort()
        elif isinstance(action, Close):
            transport.close()  # and the client is closed once the upstream is gone

    def _act(self, action: Action) -> None:
        with self.client.server.lock:
            self._do(action, clock())

    async def _await(self, action: Await) -> list[Action]:  # pragma: no cover - never queued
        return []


class _ProxyProtocol(_PeerProtocol):
    """A client connection of a proxy: the runtime of a :class:`~fakepeer._relay.Relay`.
    The client's side runs through the connection's own executor, the upstream server's
    through ``up_steps``."""

    __slots__ = ("relay", "up", "up_steps")

    server: ProxyServer

    def __init__(self, server: PeerServer) -> None:
        super().__init__(server)
        self.relay: Relay | None = None  # once connection_made has served the connection
        self.up = _Upstream(self)
        self.up_steps = Steps(self.up)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        connection = self.connection
        if connection is None:  # refused while stopping
            return
        server = self.server
        with server.lock:
            self.relay = Relay(server.conversation, connection, server.upstream.text)
        self.pause_client()  # until the upstream connection is made
        loop = asyncio.get_running_loop()
        loop.call_soon(self._keep_paused)
        # The task runs in the handler slot, so stopping the peer cancels and awaits it.
        self.handler = loop.create_task(self._connect())

    async def _connect(self) -> None:
        server = self.server
        relay = self.relay
        assert relay is not None
        try:
            async with asyncio.timeout(server.timeout):
                transport = await _upstream.connect(lambda: self.up, server.upstream)
        except ssl.SSLError as exc:  # connected, but the handshake failed
            self._fail(relay.upstream_handshake_failed(exc, reason(exc), clock()))
            return
        except (OSError, TimeoutError) as exc:
            self._fail(relay.upstream_failed(exc, connecting=True))
            return
        agreed = _upstream.agreed(transport, server.upstream)
        with server.lock:
            now = clock()
            self.up_steps.run(relay.upstream_connected(agreed, now), now)
            server.changed()
        self._resume(_UPSTREAM)

    # -- backpressure -------------------------------------------------------------------------

    def pause_client(self) -> None:
        """Read nothing more from the client until the upstream server takes it (not while
        the peer stops: the stop reads everything the client sent)."""
        if not self.server.draining:
            self._pause(_UPSTREAM)

    def pause_writing(self) -> None:  # the client does not read what the server sends
        upstream = self.up.transport
        if upstream is not None and not upstream.is_closing():
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.up.transport
        if upstream is not None and not upstream.is_closing():
            upstream.resume_reading()

    # -- client to server --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.paused and self._hold(data):  # read while paused (see _PeerProtocol._hold)
            return
        server = self.server
        relay = self.relay
        assert relay is not None
        with server.lock:
            now = clock()
            self.read += len(data)
            self.last_read = now
            self.up_steps.run(relay.client_data(data, now), now)
            server.changed()

    def eof_received(self) -> bool:
        self.eof = True
        server = self.server
        relay = self.relay
        assert relay is not None
        with server.lock:
            now = clock()
            self.up_steps.run(relay.client_eof(now), now)
            try:
                self._run(relay.client_done(now), now)
            except Exception as exc:
                self._crash(exc, now)
            server.changed()
        # keep sending what the server still answers (TLS cannot: its transport closes after
        # the client's close_notify, and says so if asked to keep it)
        return server.tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        relay = self.relay
        if relay is not None:
            with self.server.lock:
                self.up_steps.cancel()
                self.up_steps.run(relay.client_lost(), clock())
        super().connection_lost(exc)

    # -- server to client (through the faults) -----------------------------------------------

    def _write_all(self, writes: list[bytes], now: float) -> None:
        transport = self.transport
        if transport is not None and transport.is_closing() and self.connection is not None:
            self.unsent(b"".join(writes), now, "client's")
            return
        super()._write_all(writes, now)

    def _do(self, action: Action, now: float) -> None:
        transport = self.transport
        if isinstance(action, Write) and transport is not None and transport.is_closing():
            self.unsent(action.data, now, "client's")
            return
        super()._do(action, now)

    def unsent(self, data: bytes, now: float, whose: str) -> None:
        """``data`` could not be sent: ``whose`` connection is closed (lock held)."""
        if data and self.connection is not None:
            why = f"(not sent: the {whose} connection is closed)"
            self.server.conversation.event(now, self.connection, "dropped", data, why)

    def _deliver(self, event: Callable[[Relay, float], list[Action]]) -> None:
        server = self.server
        relay = self.relay
        assert relay is not None
        with server.lock:
            now = clock()
            try:
                self._run(event(relay, now), now)
            except Exception as exc:
                self._crash(exc, now)
            server.changed()

    def from_upstream(self, data: bytes) -> None:
        self._deliver(lambda relay, now: relay.upstream_data(data, now))

    def from_upstream_eof(self) -> None:
        self._deliver(Relay.upstream_eof)

    def upstream_failed(self, exc: BaseException) -> None:
        relay = self.relay
        assert relay is not None
        transport = self.transport
        if not isinstance(exc, _RESETS) or transport is None or self.connection is None:
            self._fail(relay.upstream_failed(exc, connecting=False))
            return
        server = self.server
        with server.lock:  # the server's reset is its answer: passed on as a reset, no error
            self.steps.clear()
            if not transport.is_closing():
                sock = transport.get_extra_info("socket")
                lost = transport.get_write_buffer_size() + unsent(sock)  # the RST discards it
                if sock is not None:
                    with contextlib.suppress(OSError):  # an RST, not a FIN
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                transport.abort()
                note, now = "(as the upstream server did)", clock()
                if lost:
                    why = f"(up to {lost:,} bytes not yet delivered, discarded by the reset"
                    server.conversation.note(self.connection, now, "dropped", why + " passed on)")
                server.conversation.closed(self.connection, now, "reset", note)
            server.changed()

    def cancel(self) -> None:
        super().cancel()
        self.up_steps.cancel()

    def shutdown(self) -> None:
        super().shutdown()
        upstream = self.up.transport
        if upstream is not None:
            upstream.abort()


class ProxyServer(PeerServer):
    """A :class:`PeerServer` whose connections relay to ``upstream``."""

    protocol: Callable[[PeerServer], _PeerProtocol] = _ProxyProtocol

    def __init__(self, *args: object, upstream: Upstream, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.upstream = upstream
        #: Upstream connections not lost yet, some of them closing still: a TLS one closes
        #: after the server's answer to its close_notify, which may never come.
        self.upstreams: set[_Upstream] = set()

    async def stop(self, timeout: float = 1.0) -> None:
        """:meth:`PeerServer.stop`, then abort what is left of the upstream connections."""
        try:
            await super().stop(timeout)
        finally:
            if self.upstreams:
                for upstream in list(self.upstreams):
                    if upstream.transport is not None:
                        upstream.transport.abort()
                await asyncio.sleep(0)  # let the aborts' connection_lost run


#: What a script on a Proxy would start with: it has none (see Proxy.__getattr__).
_SCRIPT_METHODS: Final = frozenset(
    {"on_connect", "expect", "always", "otherwise", "handler", "on_connection"}
)


class _NoScript(ScriptError, AttributeError):
    """A script method asked of a proxy: a :class:`~fakepeer.ScriptError` that is also an
    ``AttributeError``, so ``hasattr(proxy, "expect")`` is False rather than an error."""


class Proxy(Host):
    """A fault-injecting proxy on loopback in front of a real server at ``upstream``.

    Serve it like a peer; point the client at ``proxy.address``; apply ``proxy.faults``
    to what the server sends back. With no faults, bytes pass unchanged both ways. If the
    upstream server cannot be reached, the client's connection is closed and leaving
    ``serve()`` raises :class:`UpstreamError`.

    ``upstream`` is where the server is: a ``(host, port)`` tuple (host: an IPv4 or IPv6
    address, ``'::1'`` and ``'[::1]'`` alike, or a name) or the path of a Unix socket (a
    :class:`str` or :class:`os.PathLike`; what ``peer.address`` is for a ``unix=`` peer);
    anything else is a :class:`~fakepeer.ScriptError`. It is kept as ``proxy.upstream``
    (a tuple with the host unbracketed, or the path as a :class:`str`). ``timeout`` is how
    long the proxy waits for the server to accept a connection (and finish the TLS
    handshake), and the default bound of the ``wait_*`` methods.

    TLS on either side, in any combination; faults act on the plain bytes inside it:

    - ``tls=True`` serves TLS to the clients with a certificate made for the test, as
      ``FakePeer(tls=True)`` does, with the same ``tls_hostnames``, ``tls_min_version``,
      ``tls_max_version`` and ``tls_alpn`` options; the client trusts it through
      :meth:`client_ssl_context`, :attr:`ca_pem` or :attr:`ca_path`.
    - ``upstream_tls`` makes the proxy a TLS client of the server: ``True`` verifies it
      against the system's CAs (:func:`ssl.create_default_context`); an
      :class:`ssl.SSLContext` (a client one) is used as given, such as one that trusts a
      test server's CA. ``upstream_server_hostname`` is the name sent (SNI) and checked
      against its certificate (default: the upstream's host; a Unix socket upstream needs
      it unless the context checks no host name). A failed upstream handshake (a
      certificate not trusted, say) closes the client's connection and is an
      :class:`UpstreamError` naming the upstream and the reason.

    A TLS connection has no half-close: a client's EOF is not passed on to a TLS upstream.

    The other keywords are those of :class:`~fakepeer.FakePeer` (``unix=`` listens on a
    Unix socket, ``host='::1'`` or ``'localhost'`` on IPv6 too), and so are the serving,
    inspection and verdict methods; a proxy has no script: the script's methods
    (``expect()``, ``always()``, ``handler``...) raise :class:`~fakepeer.ScriptError`.
    Wrong options or combinations (``upstream_server_hostname`` without ``upstream_tls``,
    ``tls_*`` without ``tls=True``, ``unix`` with ``host`` or ``port``, a server-side
    context as ``upstream_tls``) are a :class:`~fakepeer.ScriptError` saying what to do.
    A proxy relays byte streams: ``transport`` is ``"tcp"`` (the default); ``"udp"`` is a
    :class:`~fakepeer.ScriptError` (datagrams are not relayed).
    """

    _relays = True
    #: What the last :meth:`record` left out, a line per connection (the CLI prints them).
    _left_out: list[str] = []  # noqa: RUF012 - replaced, never changed in place

    def _check_fault(self, fault: Fault) -> None:
        if isinstance(fault, DATAGRAM_FAULTS):
            raise ScriptError(
                f"{fault} on a Proxy: it is a datagram fault, and a proxy relays byte streams "
                "(a stream loses, repeats and reorders nothing); for a stream, blackhole(), "
                "latency(), slice() or reset_peer()"
            )

    def __init__(
        self,
        upstream: tuple[str, int] | str | os.PathLike[str],
        *,
        name: str = "proxy",
        host: str = "127.0.0.1",
        port: int = 0,
        unix: bool | str | os.PathLike[str] | None = None,
        timeout: float = 5.0,
        seed: int | None = None,
        external: bool = False,
        max_send_buffer: int = MAX_SEND_BUFFER,
        transcript_budget: int | None = DEFAULT_BUDGET,
        tls: bool = False,
        tls_hostnames: Sequence[str] | None = None,
        tls_min_version: ssl.TLSVersion | None = None,
        tls_max_version: ssl.TLSVersion | None = None,
        tls_alpn: Sequence[str] | None = None,
        upstream_tls: bool | ssl.SSLContext = False,
        upstream_server_hostname: str | None = None,
        transport: str = "tcp",
        tls_client_cert: bool = False,
    ) -> None:
        if tls_client_cert is not False:
            raise ScriptError(
                "Proxy(tls_client_cert=...): a proxy asks its clients for no certificate (no "
                "mutual TLS); to test a client's certificate, serve FakePeer(tls=True, "
                "tls_client_cert=True) in the server's place"
            )
        if transport != "tcp":
            raise ScriptError(
                f"Proxy(transport={transport!r}): a proxy relays byte streams (TCP, TLS, Unix "
                "sockets), not datagrams; for a UDP client, serve FakePeer(transport='udp') "
                "in the server's place, with its datagram faults"
            )
        self._upstream = _upstream.check(upstream, upstream_tls, upstream_server_hostname)
        super().__init__(
            title=f"proxy {name!r}",
            name=name,
            host=host,
            port=port,
            unix=unix,
            timeout=timeout,
            seed=seed,
            external=external,
            max_send_buffer=max_send_buffer,
            transcript_budget=transcript_budget,
        )
        self._tls = configure(
            tls,
            self._where.hosts,
            owner="Proxy",
            hostnames=tls_hostnames,
            min_version=tls_min_version,
            max_version=tls_max_version,
            alpn=tls_alpn,
        )
        #: Where the upstream server is: ``(host, port)`` or a Unix socket's path.
        self.upstream: tuple[str, int] | str = self._upstream.address
        over = " over TLS" if self._upstream.tls else ""
        self._conversation.transcript.upstream = self._upstream.text + over

    if not TYPE_CHECKING:  # for the type checker, a proxy has no such method at all

        def __getattr__(self, name: str) -> object:
            if name in _SCRIPT_METHODS:
                raise _NoScript(
                    f"proxy.{name}: a Proxy forwards to its upstream server and has no "
                    "script; use a FakePeer to script a conversation"
                )
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def record(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        framing: Framing | None = None,
        reply_framing: Framing | None = None,
    ) -> str:
        """The conversation relayed so far, as a script file that replays it: returned as
        TOML text, and written to ``path`` (UTF-8) when given. Callable while serving (the
        connections so far) or after.

        ``framing`` cuts what the client sent into messages, one ``[[expect]]`` each
        (``Lines(b"\\r\\n")``, ``http1.framing()``: the client's protocol); the default
        :class:`~fakepeer.Raw` makes one per *turn*, what the client sent until the server
        answered, which replays any protocol as recorded (the file's ``max_length`` raised
        to hold the largest message recorded). What the server sent after a
        message and before the next is its ``reply``, unframed (``reply_framing=None``) or
        as messages of ``reply_framing`` (a list when several); what it sent first is a
        ``[[greeting]]``; its close, ``close = true`` on the last rule, its reset ``reset =
        true``, and a half-close (the client sent more, taken without a reset) ``half_close
        = true``, the client's later bytes ``[[expect]]`` rules with no reply. Bytes no rule
        can answer (after the server closed for good, or a message its close cut short) are
        left out, as the header comment says. One connection:
        top-level rules; several: a ``[[connection]]`` table each, so a replay answers
        connection 1, 2, ... as the server did. A connection with nothing said either way
        (a port probe: connected, then closed) is left out, and the rest numbered from 1
        (the header comment says how many were left out). Written with tomli-w: the extra
        ``pip install 'fakepeer[record]'``. See the how-to, docs/howto-record.md.

        Raises :class:`~fakepeer.ScriptError` (the caller's to fix): a fault was added to
        this proxy (a recording is of what the server said); the transcript was cut to its
        budget (record through ``Proxy(..., transcript_budget=None)``); what the client
        sent does not fit ``framing``, or a reply ``reply_framing``, naming the connection;
        a framing of your own (the file names built-in ones); tomli-w is missing.
        """
        text, _ = self._recording(framing, reply_framing)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def _recording(self, framing: Framing | None, reply_framing: Framing | None) -> tuple[str, int]:
        """:meth:`record`'s text, and how many conversations it holds."""
        framing = check_framing(framing)
        framing_table(framing)  # a framing the file can name, or a ScriptError now
        if reply_framing is not None:
            reply_framing = check_framing(reply_framing, "reply_framing")
            framing_table(reply_framing, "reply_framing")
        with _reading(self._lock, self._conversation):
            transcript = self._conversation.transcript
            events, omitted = transcript.events, transcript.omitted_events
        if len(self.faults):
            faults = ", ".join(str(fault) for fault in self.faults)
            raise ScriptError(
                f"Proxy.record(): this proxy has faults ({faults}), and a recording is of "
                "what the server said: record through a proxy with no faults"
            )
        refuse_cut_or_shaped(events, omitted)
        by = f"fakepeer {__version__} from {transcript.upstream}"
        text, connections, self._left_out = recording(events, framing, reply_framing, by)
        return text, connections

    def _make_server(self, server: type[PeerServer] = ProxyServer, **extra: Any) -> PeerServer:
        return super()._make_server(server, upstream=self._upstream, **extra)

    def __repr__(self) -> str:
        if "_state" not in vars(self):  # its constructor raised (a ScriptError, shown by pytest)
            return "<Proxy, not made>"
        return f"<Proxy {self.name!r} {self._state} to {self._conversation.transcript.upstream}>"
