"""STARTTLS in the runtime: a plain connection upgraded to TLS in the middle of the script.

A rule's ``.start_tls()`` is a :class:`~fakepeer._actions.StartTLS` action; the connection's
:class:`~fakepeer._steps.Steps` run it in their worker task, once what was written before
it is on its way, and the actions after it wait for the handshake. :func:`start_tls` asks
the conversation whether the handshake may start (bytes the client sent in plain text since
the message that asked for it fail the connection instead), does it as the server with
:meth:`asyncio.loop.start_tls` (bounded by the peer's timeout), and swaps the protocol's
transport for the TLS one, whose bytes arrive decrypted in the protocol's ``data_received``
as before. A failed handshake is recorded as a ``tls`` event of the connection, which is
lost: as for ``FakePeer(tls=True)``, the client sees its own error.

The TLS handshake faults (``peer.faults.expired_certificate()``...) apply to upgrades as to
a ``tls=True`` peer's handshakes, drawn the same way (:func:`fakepeer._tlsfaults.upgrade`):
a certificate fault serves its faulty context, :class:`~fakepeer.faults.HandshakeReset`
resets the connection once the ClientHello's first bytes came, and
:class:`~fakepeer.faults.HandshakeStall` drops what the client sends until it closes or the
peer stops. Each is the upgrade's ``tls`` event, naming the fault, and the connection is
lost as for any failed upgrade.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from . import _tlsfaults
from ._errors import ScriptError
from ._steps import clock
from ._tlsinfo import agreed, reason

if TYPE_CHECKING:
    from ._peerprotocol import _PeerProtocol

#: The protocol's pause reason while the upgrade's handshake runs (``_peerprotocol``).
HANDSHAKE: Final = 16

__all__ = ["HANDSHAKE", "handshaken", "start_tls"]


def handshaken(protocol: _PeerProtocol, transport: asyncio.BaseTransport, at: float) -> None:
    """A connection of a ``tls=True`` peer is made, its handshake over: what it agreed is
    recorded (a plain or STARTTLS peer's connection is plain text so far: nothing). The
    handshake's end is as a byte read then: a stop that comes right after it waits a moment
    for the client's first message, sent once its handshake returned (``in_flight``)."""
    server = protocol.server
    tls = server.tls
    record = protocol.connection
    if tls is not None and not tls.starttls and record is not None:
        info = agreed(transport.get_extra_info("ssl_object"), tls.names)
        server.conversation.secured(record, info, at)
        protocol.last_read = at


async def start_tls(protocol: _PeerProtocol) -> None:
    """Upgrade ``protocol``'s connection to TLS as the server, and report it."""
    server = protocol.server
    tls = server.tls
    connection = protocol.connection
    transport = protocol.transport
    assert connection is not None
    with server.lock:
        now = clock()
        if transport is None or transport.is_closing():
            return
        if tls is None or connection.tls is not None:  # pragma: no cover - the script refuses
            what = "has no certificate" if tls is None else "is TLS already"
            problem = ScriptError(f".start_tls() on connection #{connection.id}, which {what}")
            server.conversation.fail(connection, problem, now, note=True)
        if protocol._held:  # read in plain text while reading was paused: after the command
            connection.buffer += protocol._held
            protocol._held = None
        if not server.conversation.upgrading(connection, now):
            if connection.failed:
                protocol._crash_close(now)
            server.changed()
            return
    assert tls is not None
    # The TLS layer hands the protocol what the client sends inside TLS as soon as the
    # handshake ends, before start_tls() returns here: held until the upgrade is recorded.
    protocol.paused |= HANDSHAKE
    try:  # as the handshake fault drawn for it lets it (see _tlsfaults)
        secure = await _tlsfaults.upgrade(protocol, transport, tls)
    except (Exception, asyncio.CancelledError) as exc:
        _failed(protocol, exc)
        if isinstance(exc, asyncio.CancelledError):
            raise
        return
    if secure is None:  # pragma: no cover - the transport closed before the handshake ended
        _failed(protocol, ConnectionResetError("the connection closed during the handshake"))
        return
    with server.lock:
        protocol.transport = secure
        info = agreed(secure.get_extra_info("ssl_object"), tls.names, starttls=True)
        server.conversation.secured(connection, info, clock())
        server.changed()
        protocol._resume(HANDSHAKE)  # what came inside TLS meanwhile, seen now


def _failed(protocol: _PeerProtocol, exc: BaseException) -> None:
    """The handshake failed: recorded, the rest of the steps dropped, the connection lost
    (the TLS layer never made it, so it never says so itself)."""
    server = protocol.server
    connection = protocol.connection
    transport = protocol.transport
    assert connection is not None
    with server.lock:
        protocol.paused &= ~HANDSHAKE
        protocol._held = None  # (nothing came through a handshake that failed)
        protocol.steps.clear()
        why = None if isinstance(exc, asyncio.CancelledError) else reason(exc)
        server.conversation.upgrade_failed(connection, clock(), why)
        server.changed()
    if transport is not None and not transport.is_closing():
        transport.abort()
    if protocol in server.protocols:
        protocol.connection_lost(ConnectionAbortedError("the TLS handshake failed"))
