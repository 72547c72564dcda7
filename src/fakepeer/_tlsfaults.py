"""The TLS handshake faults at work: which fault a handshake meets, and that handshake.

The fault classes (``_faultclasses``: :class:`~fakepeer.faults.UntrustedCertificate`...)
are values; here a TLS peer's server draws, for each accepted connection, the first
handshake fault that applies to it (seeded from the peer's seed and the handshake's number,
so a seed replays the same draws), then:

- a certificate fault serves another certificate (signed by another CA, issued for another
  name, expired) or trusts another CA for the client's (mutual TLS): the handshake is
  asyncio's, and fails as against a real server;
- :class:`~fakepeer.faults.HandshakeReset` reads the ClientHello and resets (RST, with
  ``SO_LINGER`` 0); :class:`~fakepeer.faults.HandshakeStall` reads it and never answers,
  until the client closes or the peer stops. Both read in the loop (``sock_recv``), the
  first read bounded by the peer's ``timeout``.

Each failed handshake is a ``tls`` event of the peer that names its fault.

A STARTTLS peer's upgrades (``.start_tls()``, :func:`upgrade`) meet the same faults, drawn
from the same sequence: one counter per peer numbers every handshake it starts, from the
first byte or in an upgrade (a ``tls="starttls"`` peer only upgrades, so its draws are its
upgrades', in the order they start). The certificate faults serve the same faulty
contexts; the reset and the stall read the ClientHello from the plain transport (the peer's
protocol swapped for :class:`_Dropping`), bounded by the peer's ``timeout`` as above; each
failed upgrade is a ``tls`` event of its connection (``upgrade failed: ... (the fault
...)``), and the connection is lost.

A handshake the server fails (a client certificate missing or refused, no version in
common) ends with the alert a real server sends: asyncio aborts the transport without
flushing it, so the server's :class:`Alerting` object (``sslobject_class``) sends the alert
itself on the connection's socket (known through :data:`SOCKET`, set by :func:`handshake`
in the task whose callbacks make the object; for an upgrade, see :func:`upgrade`), and the
client reads it as its error
(``tlsv13 alert certificate required``...) rather than a bare EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import os
import random
import socket
import ssl
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn

from ._faultclasses import (
    ClientCertificateRefused,
    ExpiredCertificate,
    HandshakeReset,
    HandshakeStall,
    UntrustedCertificate,
    WrongHostname,
)
from ._faults import Fault, fault_name
from ._steps import clock
from ._tlsinfo import reason

if TYPE_CHECKING:
    from ._peerprotocol import _PeerProtocol
    from ._peerserver import PeerServer
    from ._tls import TLS

__all__ = [
    "SOCKET",
    "WRONG_NAME",
    "Alerting",
    "Descriptor",
    "HandshakeFailed",
    "context",
    "handshake",
    "upgrade",
]

#: The name a :class:`~fakepeer.faults.WrongHostname` certificate is issued for.
WRONG_NAME: Final = "wrong-host.invalid"
#: The most bytes read at a time from a client whose handshake a fault interrupts.
_CHUNK: Final = 65536
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class Descriptor:
    """What :class:`Alerting` sends its alert on for an upgrade: the file descriptor of the
    transport's socket (asyncio's ``get_extra_info("socket")`` has no ``send``)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, data: bytes) -> int:
        return os.write(self.fd, data)


#: The socket of the handshake going on in this task (see :class:`Alerting`).
SOCKET: contextvars.ContextVar[socket.socket | Descriptor | None] = contextvars.ContextVar(
    "fakepeer_tls_socket", default=None
)


class Alerting(ssl.SSLObject):
    """A server's TLS object that, when its handshake fails, sends the alert OpenSSL wrote
    for the client (asyncio would drop it) on :data:`SOCKET`'s socket."""

    _outgoing: ssl.MemoryBIO
    _sock: socket.socket | Descriptor | None

    @classmethod
    def _create(
        cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any, **kwargs: Any
    ) -> Alerting:
        made: Alerting = super()._create(incoming, outgoing, *args, **kwargs)  # type: ignore[misc]
        made._outgoing, made._sock = outgoing, SOCKET.get()
        return made

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError:
            alert = self._outgoing.read()
            if alert and self._sock is not None:
                with contextlib.suppress(OSError):  # a best effort, as a real server's
                    self._sock.send(alert)
            raise


class HandshakeFailed(Exception):
    """A handshake a fault made fail: the reason, then the fault, for the transcript."""


def context(tls: TLS, fault: Fault) -> ssl.SSLContext:
    """The server context a certificate fault serves with (made on first use, then kept:
    ``peer.faults`` makes it as the fault is added, off the loop)."""
    name = fault_name(type(fault))
    made = tls.faulty.get(name)
    if made is None:
        made = tls.faulty[name] = _make(tls, fault)
    return made


def _make(tls: TLS, fault: Fault) -> ssl.SSLContext:
    if isinstance(fault, UntrustedCertificate):
        return tls.context_for(tls.trustme.CA().issue_cert(*tls.hostnames))
    if isinstance(fault, WrongHostname):
        return tls.context_for(tls.ca.issue_cert(WRONG_NAME))
    if isinstance(fault, ExpiredCertificate):
        now = datetime.datetime.now(datetime.UTC)
        day = datetime.timedelta(days=1)
        leaf = tls.ca.issue_cert(*tls.hostnames, not_before=now - 2 * day, not_after=now - day)
        return tls.context_for(leaf)
    if isinstance(fault, ClientCertificateRefused):
        return tls.context_for(tls.leaf, trusted=tls.trustme.CA().cert_pem.bytes())
    return tls.server_context  # the reset and the stall never get to the handshake


def _drawn(server: PeerServer, tls: TLS) -> Fault | None:
    """The handshake fault this handshake meets: the first, in the order added, that its
    draw applies to; None for a good handshake."""
    with server.lock:
        faults = [f for f in server.conversation.faults if getattr(f, "tls_handshake", False)]
        if not faults:
            return None
        tls.draws += 1
        rng = random.Random(f"fakepeer/{server.conversation.seed}/tls/{tls.draws}")
    for fault in faults:
        chance = fault._chance()
        if chance >= 1 or rng.random() < chance:
            return fault
    return None


async def handshake(
    server: PeerServer, sock: socket.socket, protocol: Callable[[], _PeerProtocol]
) -> None:
    """Serve ``sock`` over TLS, as the handshake fault drawn for it lets it: a reset or a
    stall is recorded here (the connection is never made); a failed handshake raises
    :class:`HandshakeFailed` (the server records it) or asyncio's error."""
    tls = server.tls
    assert tls is not None
    fault = _drawn(server, tls)
    if isinstance(fault, HandshakeReset | HandshakeStall):
        await _interrupt(server, sock, fault)
        return
    loop = asyncio.get_running_loop()
    ssl_context = tls.server_context if fault is None else context(tls, fault)
    SOCKET.set(sock)  # this task's: its callbacks make the server's TLS object
    try:
        await loop.connect_accepted_socket(
            protocol, sock, ssl=ssl_context, ssl_handshake_timeout=server.timeout
        )
    except Exception as exc:
        if fault is None:
            raise
        why = reason(exc)
        raise HandshakeFailed(f"{why} (the fault {fault})") from exc


async def _interrupt(server: PeerServer, sock: socket.socket, fault: Fault) -> None:
    """Read the ClientHello (for the peer's ``timeout`` at most), then reset or stall."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(server.timeout):
            hello = await loop.sock_recv(sock, _CHUNK)
    except TimeoutError:
        hello = None
    except OSError as exc:
        sock.close()
        _settled(server, f"handshake failed: {exc} (the fault {fault})")
        return
    if not hello:
        sock.close()
        what = "the client closed" if hello == b"" else f"nothing within {server.timeout:g} s"
        _settled(server, f"handshake failed: {what} before its ClientHello ({fault})")
        return
    if isinstance(fault, HandshakeReset):
        with contextlib.suppress(OSError):  # a Unix socket has no RST: it closes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()
        _settled(server, f"handshake reset after the ClientHello (the fault {fault})")
        return
    _settled(server, f"handshake stalled: the ClientHello read, never answered ({fault})")
    await _stall(server, sock)


async def _stall(server: PeerServer, sock: socket.socket) -> None:
    """Read and drop what the client sends until it closes; a stop cancels it."""
    loop = asyncio.get_running_loop()
    try:
        while await loop.sock_recv(sock, _CHUNK):
            pass
        end = "the client closed its stalled handshake"
    except OSError as exc:
        end = f"the client's stalled handshake ended: {exc}"
    except asyncio.CancelledError:  # the peer stops: it counts this socket as unmade again
        with server.lock:
            server.unmade += 1
        raise
    finally:
        sock.close()
    with server.lock:
        if not server.closed:
            server.conversation.note_peer(clock(), "tls", end)
            server.changed()


def _settled(server: PeerServer, note: str) -> None:
    """The handshake will never make a connection: not one being accepted any more (the
    stop need not wait for it), and what happened, recorded."""
    with server.lock:
        server.unmade -= 1
        task = asyncio.current_task()
        if task is not None:  # no handshake going on any more: a fault's, recorded
            server.handshakes.pop(task, None)
            server.interrupted.add(task)
        if not server.closed:
            server.conversation.note_peer(clock(), "tls", note)
        server.changed()


# -- STARTTLS: the upgrades ----------------------------------------------------------------------


async def upgrade(
    protocol: _PeerProtocol, transport: asyncio.Transport, tls: TLS
) -> asyncio.Transport | None:
    """Upgrade ``protocol``'s connection (``transport``, plain text so far) to TLS as the
    server, as the handshake fault drawn for it lets it: the TLS transport (None if the
    transport closed first). A fault's failure raises :class:`HandshakeFailed`, naming it;
    a handshake that fails by itself, asyncio's error."""
    server = protocol.server
    fault = _drawn(server, tls)
    if isinstance(fault, HandshakeReset | HandshakeStall):
        await _interrupt_upgrade(protocol, transport, fault)
    # The TLS object is made in a callback of the loop's: asyncio's runs in this task's
    # context, uvloop's in the transport's (the server set SOCKET there as it was made).
    sock = transport.get_extra_info("socket")
    SOCKET.set(None if sock is None else Descriptor(sock.fileno()))
    loop = asyncio.get_running_loop()
    try:
        return await loop.start_tls(
            transport,
            protocol,
            tls.server_context if fault is None else context(tls, fault),
            server_side=True,
            ssl_handshake_timeout=server.timeout,
        )
    except Exception as exc:
        if fault is None:
            raise
        raise HandshakeFailed(f"{reason(exc)} (the fault {fault})") from exc


class _Dropping(asyncio.Protocol):
    """An upgrading transport's protocol while a fault interrupts its handshake: what the
    client sends is dropped; :attr:`woken` is set when bytes come, and when it is gone."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self.heard = False  # the client sent something (its ClientHello)
        self.gone = False  # it closed, or the connection was lost

    def data_received(self, data: bytes) -> None:
        self.heard = True
        self.woken.set()

    def eof_received(self) -> None:  # (the transport closes)
        self.gone = True
        self.woken.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.woken.set()


async def _interrupt_upgrade(
    protocol: _PeerProtocol, transport: asyncio.Transport, fault: Fault
) -> NoReturn:
    """Read the ClientHello's first bytes (for the peer's ``timeout`` at most), then reset
    the connection, or stall until the client closes (a stop cancels it); raises
    :class:`HandshakeFailed` when it is over."""
    server = protocol.server
    connection = protocol.connection
    assert connection is not None
    dropping = _Dropping()
    transport.set_protocol(dropping)
    transport.resume_reading()  # whatever paused the peer's protocol: this one reads
    try:
        async with asyncio.timeout(server.timeout):
            await dropping.woken.wait()
    except TimeoutError:
        raise HandshakeFailed(
            f"no ClientHello within {server.timeout:g} s (the fault {fault})"
        ) from None
    if not dropping.heard:
        raise HandshakeFailed(f"the client closed before its ClientHello (the fault {fault})")
    if isinstance(fault, HandshakeReset):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # a Unix socket has no RST: it closes
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()
        raise HandshakeFailed(f"reset after the ClientHello (the fault {fault})")
    with server.lock:
        note = f"upgrade stalled: the ClientHello read, never answered (the fault {fault})"
        server.conversation.note(connection, clock(), "tls", note)
        server.changed()
    while not dropping.gone:
        dropping.woken.clear()
        await dropping.woken.wait()
    raise HandshakeFailed(f"the client closed its stalled handshake (the fault {fault})")
