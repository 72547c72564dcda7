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
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from ._errors import ScriptError
from ._steps import clock
from ._tlsinfo import agreed

if TYPE_CHECKING:
    from ._peerprotocol import _PeerProtocol

__all__ = ["reason", "start_tls"]


def reason(exc: BaseException) -> str:
    """Why a handshake failed, without the line of CPython's C source it was raised at."""
    return re.sub(r" \(_ssl\.c:\d+\)$", "", str(exc)) or type(exc).__name__


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
        if not server.conversation.upgrading(connection, now):
            if connection.failed:
                protocol._crash_close(now)
            server.changed()
            return
    loop = asyncio.get_running_loop()
    assert tls is not None
    try:
        secure = await loop.start_tls(
            transport,
            protocol,
            tls.server_context,
            server_side=True,
            ssl_handshake_timeout=server.timeout,
        )
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


def _failed(protocol: _PeerProtocol, exc: BaseException) -> None:
    """The handshake failed: recorded, the rest of the steps dropped, the connection lost
    (the TLS layer never made it, so it never says so itself)."""
    server = protocol.server
    connection = protocol.connection
    transport = protocol.transport
    assert connection is not None
    with server.lock:
        protocol.steps.clear()
        if not isinstance(exc, asyncio.CancelledError):
            server.conversation.note(connection, clock(), "tls", f"upgrade failed: {reason(exc)}")
        server.changed()
    if transport is not None and not transport.is_closing():
        transport.abort()
    if protocol in server.protocols:
        protocol.connection_lost(ConnectionAbortedError("the TLS handshake failed"))
