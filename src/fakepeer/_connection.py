"""The user's handle on one connection: what a test, a reply callable or a handler holds.

It refers to the core's record of the connection (:class:`~fakepeer._state.ConnectionRecord`,
which it reads) and to the runtime that serves it (which it asks to act: send, close,
reset, receive). It keeps no state of its own.
"""

from __future__ import annotations

from typing import Protocol

from ._state import ConnectionRecord
from ._tlsinfo import TLSInfo

__all__ = ["Connection", "ConnectionIO"]


class ConnectionIO(Protocol):
    """What the runtime does for a :class:`Connection`."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def reset(self) -> None: ...

    async def receive(self) -> bytes: ...

    async def receive_exactly(self, count: int) -> bytes: ...


class Connection:
    """One accepted connection, as the test and the script see it.

    ``id`` counts connections from 1 in order of arrival; ``client`` is the client's
    ``host:port``; ``received`` the messages it sent (for :class:`~fakepeer.Raw`, the byte runs
    that rules matched); ``state`` its state for ``.when()`` rules; ``open`` is false once
    either side closed it.

    From the test (any thread) or a reply callable: :meth:`send`, :meth:`close`,
    :meth:`reset`. From a handler: also ``await`` :meth:`receive` and
    :meth:`receive_exactly`.
    """

    __slots__ = ("__weakref__", "_io", "_record")  # weak references: a kit's per-connection cache

    def __init__(self, record: ConnectionRecord, io: ConnectionIO) -> None:
        self._record = record
        self._io = io

    @property
    def id(self) -> int:
        """The connection's number, from 1 in order of arrival."""
        return self._record.id

    @property
    def client(self) -> str:
        """The client's address, ``host:port``."""
        return self._record.client

    @property
    def received(self) -> list[bytes]:
        """The messages the client sent on this connection, in order."""
        return self._record.received

    @property
    def state(self) -> str:
        """The connection's state for ``.when()`` rules (``"start"`` at first)."""
        return self._record.state

    @property
    def open(self) -> bool:
        """True until the connection was closed, reset or lost."""
        return not self._record.ended

    @property
    def closed_by(self) -> str | None:
        """Who closed the connection first: ``"client"`` (the peer read its EOF, from
        ``close()`` or ``shutdown(SHUT_WR)``, or it reset the connection), ``"peer"`` (a
        rule's ``.close()`` or ``.reset()``, :meth:`close`, a fault, a failure, a failed
        STARTTLS handshake, the peer's stop); None while neither did. A half-close of the
        peer is no close. See :meth:`FakePeer.wait_for_closes
        <fakepeer.FakePeer.wait_for_closes>`."""
        ending = self._record.ending
        return None if ending is None else ending[0]

    @property
    def tls(self) -> TLSInfo | None:
        """What the TLS handshake of this connection agreed (version, cipher, SNI, ALPN,
        client certificate), a :class:`~fakepeer.TLSInfo`; None while it is plain text (a
        peer without TLS, or before ``.start_tls()`` upgraded it)."""
        return self._record.tls

    @property
    def transcript(self) -> str:
        """This connection's part of the transcript, rendered."""
        return self._record.transcript.render(connection=self._record.id)

    def send(self, data: bytes | str) -> None:
        """Push ``data`` (framed) to the client now, from any thread; returns at once.

        Raises :class:`~fakepeer.ClientNotReading` if the bytes already waiting for this
        client plus these would go over ``FakePeer(max_send_buffer=...)``."""
        if isinstance(data, str):
            data = data.encode()
        self._io.send(data)

    def close(self) -> None:
        """Close the connection gracefully, from any thread."""
        self._io.close()

    def reset(self) -> None:
        """Abort the connection with a TCP RST, from any thread."""
        self._io.reset()

    async def receive(self) -> bytes:
        """In a handler: the next message (framed); raises ``EOFError`` if the client
        closed, :class:`~fakepeer.WaitTimeout` after the peer's timeout."""
        return await self._io.receive()

    async def receive_exactly(self, count: int) -> bytes:
        """In a handler: exactly ``count`` raw bytes (not yet framed); raises ``EOFError`` if
        the client closed first, :class:`~fakepeer.WaitTimeout` after the peer's timeout."""
        return await self._io.receive_exactly(count)

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return f"<Connection #{self.id} from {self.client} {state}, {len(self.received)} received>"
