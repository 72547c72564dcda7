"""A transcript as a packet capture (pcapng): what :meth:`Transcript.to_pcapng
<fakepeer.Transcript.to_pcapng>` returns. Pure: no I/O, no clock.

Each connection of the transcript becomes a TCP connection between the client's address and
port (its ``connected`` event's note, ``from 127.0.0.1:51234``) and the peer's (the
transcript's ``address``), over IPv4 or IPv6 as the client's address is:

- ``connected``: a three-way handshake (SYN with MSS 65,495 and window scale 7, SYN-ACK, ACK);
- each ``received`` (or ``unexpected``, ``pending``) and ``sent`` event: its bytes, in one
  segment, or several of at most :data:`~fakepeer._pcapng.MSS` bytes; a framed peer's
  message is sent with its framing put back (``framing.encode``);
- ``eof``: the client's FIN; ``half-closed``, ``closed``: the peer's; each acknowledged;
- ``reset``: the peer's RST; ``lost`` with a reason that says reset: the client's RST (else
  the client's FIN).

Sequence and acknowledgment numbers count every byte, so Wireshark reassembles the stream;
a receiver acknowledges on its own only when 4 MiB are in flight (half the scaled window),
at a FIN, and after a gap. Bytes the transcript did not keep (an event cut by its budget, or
events left out) are a gap in the sequence numbers, with a comment that says so: Wireshark
marks the next segment "previous segment not captured", which is what happened. A UDP peer's
events are datagrams. Every other event (a match, a state, a TLS handshake, a fault) is a
comment on the connection's packet before it; the peer's own events, on the next packet.
A Unix socket has no IP address: 127.0.0.1 stands for both ends, port :data:`UNIX_PEER_PORT`
for the peer and ``UNIX_CLIENT_PORT + n - 1`` for connection ``n``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Final

from ._pcapng import (
    ACK,
    FIN,
    MSS,
    PSH,
    RST,
    SYN,
    Packet,
    capture_file,
    tcp_segment,
    udp_datagram,
)
from ._show import show
from ._transcript import Event, _Ring
from ._version import __version__

if TYPE_CHECKING:
    from ._framing import Framing
    from ._transcript import Transcript

__all__ = ["UNIX_CLIENT_PORT", "UNIX_PEER_PORT", "pcapng"]

#: The port that stands for a Unix socket peer's, on 127.0.0.1.
UNIX_PEER_PORT: Final = 40000
#: Connection ``n`` of a Unix socket peer comes from this port plus ``n - 1`` (up to 65,535,
#: then from here again).
UNIX_CLIENT_PORT: Final = 50000

#: The events whose bytes a client sent.
_FROM_CLIENT: Final = frozenset({"received", "unexpected", "pending"})
_WIRE: Final = _FROM_CLIENT | {"sent"}
#: The most bytes of a UDP datagram over IPv4 (65,535 less the IP and UDP headers).
_DATAGRAM: Final = 65507
#: Bytes in flight (not acknowledged) in one direction before the receiver acknowledges.
_IN_FLIGHT: Final = 4 * 1024 * 1024
#: SYN options: MSS 65,495, a NOP, window scale 7 (a window of 65,535 * 128 bytes).
_SYN_OPTIONS: Final = b"\x02\x04\xff\xd7\x01\x03\x03\x07"
_LOOPBACK: Final = {4: ipaddress.ip_address("127.0.0.1"), 6: ipaddress.ip_address("::1")}
_ADDRESS: Final = re.compile(r"\[([0-9A-Fa-f:.]+)(?:%[^\]]*)?\]:(\d+)|(\d+\.\d+\.\d+\.\d+):(\d+)")
_CLIENT, _PEER = 0, 1

_Address = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _addresses(text: str) -> list[_Address]:
    """Every ``host:port`` and ``[host]:port`` in ``text``, in order."""
    found: list[_Address] = []
    for match in _ADDRESS.finditer(text):
        host, port = (match[1], match[2]) if match[1] else (match[3], match[4])
        try:
            found.append((ipaddress.ip_address(host), int(port) & 0xFFFF))
        except ValueError:  # not an address after all
            continue
    return found


class _Flow:
    """One connection: its two ends, and for each direction (client, peer) the next
    sequence number, the bytes not acknowledged yet, and whether it sent its FIN."""

    def __init__(self, number: int, client: _Address, peer: _Address) -> None:
        self.number = number
        self.ends = ((client[0].packed, client[1]), (peer[0].packed, peer[1]))
        start = (number * 0x9E3779B9) & 0xFFFFFFFF
        self.next = [start, start ^ 0x5BD1E995]  # the initial sequence numbers
        self.unacked = [0, 0]
        self.fin = [False, False]
        self.over = False  # reset, or both FINs sent
        self.last: Packet | None = None  # its latest packet, for the comments of later events
        self.notes: list[str] = []  # for its next packet (a gap's)


class _Capture:
    """The packets of a transcript, in the order of its events (see the module's text)."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.packets: list[Packet] = []
        self.flows: dict[int, _Flow] = {}
        self.notes: list[str] = []  # the peer's own events, for the next packet
        self.unix = transcript.address.startswith("unix socket")
        self.peers = [] if self.unix else _addresses(transcript.address)
        wall, started = transcript.wall, transcript.started
        self.offset = 0.0 if wall is None or started is None else wall - started

    def micros(self, at: float) -> int:
        return max(0, round((at + self.offset) * 1_000_000))

    # -- packets -----------------------------------------------------------------------------

    def emit(self, flow: _Flow, at: float, data: bytes, notes: list[str]) -> Packet:
        if self.notes:
            notes = [*self.notes, *notes]
            self.notes = []
        if flow.notes:
            notes = [*flow.notes, *notes]
            flow.notes = []
        stamp = self.micros(at)
        if self.packets:  # never before the packet before it (pending bytes come last)
            stamp = max(stamp, self.packets[-1].at)
        packet = Packet(stamp, data, notes)
        self.packets.append(packet)
        flow.last = packet
        return packet

    def segment(  # noqa: PLR0917 - the fields of a segment, in the header's order
        self,
        flow: _Flow,
        side: int,
        at: float,
        flags: int,
        payload: bytes = b"",
        notes: list[str] | None = None,
        options: bytes = b"",
    ) -> None:
        ends = flow.ends if side == _CLIENT else flow.ends[::-1]
        seq, ack = flow.next[side], flow.next[1 - side]
        if flags & SYN and side == _PEER:
            ack = flow.next[_CLIENT]
        elif flags & SYN:
            ack = 0
        data = tcp_segment(ends, seq=seq, ack=ack, flags=flags, payload=payload, options=options)
        self.emit(flow, at, data, notes or [])
        flow.next[side] += len(payload) + bool(flags & (SYN | FIN))
        flow.unacked[side] += len(payload)
        if flags & ACK:
            flow.unacked[1 - side] = 0

    def acknowledge(self, flow: _Flow, side: int, at: float) -> None:
        """``side`` acknowledges what the other side sent."""
        self.segment(flow, side, at, ACK)

    # -- events ------------------------------------------------------------------------------

    def flow(self, event: Event) -> _Flow:
        """The connection of ``event``, opened (its handshake) if it is new."""
        number = event.connection
        flow = self.flows.get(number)
        if flow is not None:
            return flow
        client = None
        if event.kind == "connected" and not self.unix:
            found = _addresses(event.note)
            client = found[0] if found else None
        if client is None:
            port = UNIX_CLIENT_PORT + (number - 1) % (0x10000 - UNIX_CLIENT_PORT)
            client = (_LOOPBACK[4], port)
        version = client[0].version
        peer = next((a for a in self.peers if a[0].version == version), None)
        if peer is None:
            peer = (_LOOPBACK[version], UNIX_PEER_PORT)
        flow = self.flows[number] = _Flow(number, client, peer)
        if not self.transcript.datagrams:
            note = _comment(event) if event.kind == "connected" else ""
            self.segment(flow, _CLIENT, event.at, SYN, notes=[note], options=_SYN_OPTIONS)
            self.segment(flow, _PEER, event.at, SYN | ACK, options=_SYN_OPTIONS)
            self.acknowledge(flow, _CLIENT, event.at)
        return flow

    def event(self, event: Event) -> None:
        if not event.connection:
            self.notes.append(_comment(event))
            return
        new = event.connection not in self.flows
        flow = self.flow(event)
        if new and event.kind == "connected" and not self.transcript.datagrams:
            return  # its note is on the SYN
        if flow.over:
            self.note(flow, event)
            return
        data = self.wire(event)
        side = _PEER if event.kind == "sent" else _CLIENT
        if data is not None and not flow.fin[side]:
            self.data(flow, side, event, data)
        elif self.transcript.datagrams or data is not None:  # (data after its side's FIN)
            self.note(flow, event)
        else:
            self.close(flow, event)

    def wire(self, event: Event) -> bytes | None:
        """The bytes ``event`` put on the wire, or None if it is no such event."""
        kind = event.kind
        if kind == "sent":
            return event.data
        if kind not in _FROM_CLIENT:
            return None
        transcript = self.transcript
        framing = transcript.framing
        framed = framing is not None and event.connection not in transcript.unframed
        if kind == "pending":  # a framed connection's bytes that are no message yet
            return event.data if framed else None  # (else they are in ``received`` events)
        if not framed or event.size >= 0 or event.note.startswith("("):
            return event.data  # the bytes as they came (or the kept ends of a message)
        assert framing is not None
        return _reframed(framing, event.data)

    def data(self, flow: _Flow, side: int, event: Event, data: bytes) -> None:
        notes = [_comment(event)]
        if self.transcript.datagrams:
            ends = flow.ends if side == _CLIENT else flow.ends[::-1]
            if event.size > len(data):
                notes.append(f"{event.size:,} bytes: the first and last {len(data):,} kept")
            self.emit(flow, event.at, udp_datagram(ends, data[:_DATAGRAM]), notes)
            return
        if event.size > len(data):  # cut by the budget: its first and last bytes, a gap
            front = (len(data) + 1) // 2
            self.stream(flow, side, event.at, data[:front], notes)
            missing = event.size - len(data)
            self.skip(flow, side, missing)
            flow.notes.append(
                f"#{flow.number} {missing:,} bytes of {event.size:,} not kept here: over the "
                "transcript budget"
            )
            self.stream(flow, side, event.at, data[front:], [])
            return
        self.stream(flow, side, event.at, data, notes)

    def stream(self, flow: _Flow, side: int, at: float, data: bytes, notes: list[str]) -> None:
        for start in range(0, len(data), MSS):
            chunk = data[start : start + MSS]
            if flow.unacked[side] + len(chunk) > _IN_FLIGHT:
                self.acknowledge(flow, 1 - side, at)
            last = start + MSS >= len(data)
            self.segment(flow, side, at, ACK | (PSH if last else 0), chunk, notes)
            notes = []

    def skip(self, flow: _Flow, side: int, count: int) -> None:
        """``count`` bytes of ``side`` were not kept: a gap in its sequence numbers."""
        flow.next[side] += count

    def close(self, flow: _Flow, event: Event) -> None:
        kind = event.kind
        reset = kind == "reset" or (kind == "lost" and "reset" in event.note.lower())
        side = _CLIENT if kind in ("eof", "lost") else _PEER
        if reset:
            self.segment(flow, side, event.at, RST | ACK, notes=[_comment(event)])
            flow.over = True
        elif kind in ("eof", "lost", "half-closed", "closed") and not flow.fin[side]:
            self.segment(flow, side, event.at, FIN | ACK, notes=[_comment(event)])
            self.acknowledge(flow, 1 - side, event.at)
            flow.fin[side] = True
            flow.over = all(flow.fin)
        else:
            self.note(flow, event)

    def note(self, flow: _Flow, event: Event) -> None:
        """``event`` put nothing on the wire: a comment on the connection's packet before."""
        if flow.last is None:
            flow.notes.append(_comment(event))
        else:
            flow.last.comments.append(_comment(event))

    def gap(self, ring: _Ring) -> None:
        """Events of a connection left out by the budget: the bytes of each side skipped."""
        flow = self.flows.get(ring.connection)
        if flow is None or self.transcript.datagrams:
            return
        self.skip(flow, _CLIENT, ring.dropped_in)
        self.skip(flow, _PEER, ring.dropped_out)
        flow.notes.append(self.transcript._omission(ring))

    def comments(self) -> list[str]:
        """The section's comments: what the capture is, and what it is not."""
        transcript = self.transcript
        lines = [transcript.heading()]
        if any(e.kind == "tls" for e in transcript.events) or " TLS" in transcript.address:
            lines.append(
                "TLS: the segments hold the inner plain text, as if decrypted (no TLS records)"
            )
        if self.unix:
            lines.append(
                f"a Unix socket has no IP address: 127.0.0.1 stands for both ends, port "
                f"{UNIX_PEER_PORT} for the peer, {UNIX_CLIENT_PORT} + n - 1 for connection n"
            )
        if self.packets:
            self.packets[-1].comments.extend(self.notes)
        else:
            lines.extend(self.notes)
        return lines


def _reframed(framing: Framing, message: bytes) -> bytes:
    """The bytes that framed into ``message``: itself, if ``framing`` keeps whole messages
    (a protocol kit's), else ``framing.encode(message)`` if that decodes to it, else the
    message as it is (a framing of the user's that cannot say)."""
    for way in ("kept", "encoded"):
        try:
            wire = message if way == "kept" else framing.encode(message)
            if framing.decode(wire, True) == ([message], len(wire)):
                return wire
        except Exception:  # a framing that cannot: the next way
            continue
    return message


def _comment(event: Event) -> str:
    """``event`` as a comment: its connection, kind and note, its bytes if it has no
    packet of its own."""
    wire = event.kind in _WIRE
    if wire and not event.note:
        if event.kind == "unexpected":  # the packet that failed the test: mark it
            return f"#{event.connection} unexpected: no rule matched"
        return ""  # the packet shows it
    parts = [f"#{event.connection}" if event.connection else "peer", event.kind]
    if event.data and not wire:
        parts.append(show(event.data, 100))
    if event.note:
        parts.append(event.note)
    return " ".join(parts)


def pcapng(transcript: Transcript) -> bytes:
    """``transcript`` as a pcapng capture file (see the module's text)."""
    capture = _Capture(transcript)
    for row in transcript._rows(None):
        if isinstance(row, _Ring):
            capture.gap(row)
        else:
            capture.event(row)
    comments = capture.comments()
    return capture_file(f"fakepeer {__version__}", comments, capture.packets)
