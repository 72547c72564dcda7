"""The bytes of a capture file: pcapng blocks, and the IPv4, IPv6, TCP and UDP headers of the
packets in them (pure: no I/O, no clock).

The file format is pcapng, as the IETF draft "PCAP Next Generation (pcapng) Capture File
Format" (draft-ietf-opsawg-pcapng) and Wireshark's documentation describe it: a Section
Header Block, one Interface Description Block, then one Enhanced Packet Block per packet, all
little-endian, every block and option padded to 32 bits, with comments as ``opt_comment``
options (UTF-8). The interface's link type is ``LINKTYPE_RAW`` (101, tcpdump.org's list of
link-layer header types): each packet starts with its IPv4 or IPv6 header (the version nibble
tells which), so one interface carries both families, and no made-up Ethernet addresses are
needed (a loopback interface has none worth showing).

Headers follow RFC 791 (IPv4), RFC 8200 (IPv6), RFC 9293 (TCP), RFC 768 (UDP); their
checksums are the Internet checksum of RFC 1071, computed on whole integers: a ones'-complement
sum of 16-bit words is the number the bytes spell, modulo 0xFFFF (2**16 is 1 modulo 0xFFFF),
so ``int.from_bytes`` does the summing in C. What the packets mean (which, in what order,
with what sequence numbers) is :mod:`fakepeer._capture`'s business.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final, NamedTuple

__all__ = [
    "ACK",
    "FIN",
    "LINKTYPE_RAW",
    "MSS",
    "PSH",
    "RST",
    "SNAPLEN",
    "SYN",
    "Packet",
    "capture_file",
    "checksum",
    "ip_packet",
    "tcp_segment",
    "udp_datagram",
]

#: The link type of the one interface: raw IPv4 or IPv6, no link-layer header.
LINKTYPE_RAW: Final = 101
#: The most bytes of TCP payload in one segment: the loopback's MTU (65,535 for an IPv4
#: packet) less the IPv4 and TCP headers, as a TCP stack on loopback announces it.
MSS: Final = 65495
#: The interface's snapshot length: no packet here is longer (a 64 KiB IP packet at most).
SNAPLEN: Final = 262144

_SHB: Final = 0x0A0D0D0A
_IDB: Final = 0x00000001
_EPB: Final = 0x00000006
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_OPT_END: Final = b"\x00\x00\x00\x00"
_OPT_COMMENT: Final = 1
_SHB_USERAPPL: Final = 4
_IF_NAME: Final = 2
_IF_TSRESOL: Final = 9

# TCP flags (RFC 9293, section 3.1)
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10

_TCP: Final = 6
_UDP: Final = 17


class Packet(NamedTuple):
    """One packet of the capture: ``at`` in microseconds since the Unix epoch, the IP
    ``data``, and the comments Wireshark shows with it."""

    at: int
    data: bytes
    comments: list[str]


def checksum(*parts: bytes) -> int:
    """The Internet checksum (RFC 1071) of the bytes of ``parts`` one after the other; every
    part but the last must be of even length."""
    total = 0
    for part in parts:
        number = int.from_bytes(part, "big")
        total += number << 8 if len(part) % 2 else number  # as if padded with a zero byte
    rest = total % 0xFFFF
    return 0xFFFF - rest if rest else 0


def ip_packet(source: bytes, destination: bytes, protocol: int, payload: bytes) -> bytes:
    """``payload`` (a TCP segment or a UDP datagram, checksummed already) in an IPv4 header
    (``source`` and ``destination`` of 4 bytes: don't fragment, TTL 64, its checksum) or an
    IPv6 one (16 bytes: hop limit 64)."""
    if len(source) == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, protocol, 0,
            source, destination,
        )  # fmt: skip
        return header[:10] + checksum(header).to_bytes(2, "big") + header[12:] + payload
    header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), protocol, 64, source, destination)
    return header + payload


def _pseudo(source: bytes, destination: bytes, protocol: int, length: int) -> bytes:
    """The pseudo-header the TCP and UDP checksums cover (RFC 9293 3.1, RFC 8200 8.1)."""
    if len(source) == 4:
        return source + destination + struct.pack("!BBH", 0, protocol, length)
    return source + destination + struct.pack("!IxxxB", length, protocol)


def tcp_segment(
    ends: tuple[tuple[bytes, int], tuple[bytes, int]],
    *,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    options: bytes = b"",
) -> bytes:
    """An IP packet holding one TCP segment from ``ends[0]`` to ``ends[1]`` (each an address
    of 4 or 16 bytes and a port), with ``options`` (a multiple of 4 bytes), a window of
    65,535 (scaled by the handshake's option) and its checksum."""
    (source, sport), (destination, dport) = ends
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32,
        (20 + len(options)) << 2, flags, 0xFFFF, 0, 0,
    ) + options  # fmt: skip
    pseudo = _pseudo(source, destination, _TCP, len(header) + len(payload))
    total = checksum(pseudo, header, payload).to_bytes(2, "big")
    return ip_packet(source, destination, _TCP, header[:16] + total + header[18:] + payload)


def udp_datagram(ends: tuple[tuple[bytes, int], tuple[bytes, int]], payload: bytes) -> bytes:
    """An IP packet holding one UDP datagram from ``ends[0]`` to ``ends[1]`` (as for
    :func:`tcp_segment`), with its checksum (0xFFFF for a sum of 0: RFC 768)."""
    (source, sport), (destination, dport) = ends
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    total = checksum(_pseudo(source, destination, _UDP, 8 + len(payload)), header, payload)
    header = header[:6] + (total or 0xFFFF).to_bytes(2, "big")
    return ip_packet(source, destination, _UDP, header + payload)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _options(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    """Options and their end, or nothing if there are none."""
    body = b"".join(_option(code, value) for code, value in pairs)
    return body + _OPT_END if body else b""


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)  # body is padded to 32 bits already
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def _comments(comments: Iterable[str]) -> list[tuple[int, bytes]]:
    # An option's length is 16 bits: a longer comment is cut (at a character's boundary).
    return [
        (_OPT_COMMENT, text.encode("utf-8", "replace")[:65000].decode("utf-8", "ignore").encode())
        for text in comments
        if text
    ]


def capture_file(application: str, comments: Iterable[str], packets: Iterable[Packet]) -> bytes:
    """A whole pcapng file: a section (written by ``application``, with ``comments``), one
    interface (``LINKTYPE_RAW``, microseconds), then ``packets``."""
    pairs = [(_SHB_USERAPPL, application.encode()), *_comments(comments)]
    header = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1)  # length of the section: unknown
    blocks = [_block(_SHB, header + _options(pairs))]
    interface = struct.pack("<HHI", LINKTYPE_RAW, 0, SNAPLEN)
    names = [(_IF_NAME, b"fakepeer"), (_IF_TSRESOL, b"\x06")]
    blocks.append(_block(_IDB, interface + _options(names)))
    for at, data, notes in packets:
        head = struct.pack("<IIIII", 0, at >> 32, at & 0xFFFFFFFF, len(data), len(data))
        padding = b"\x00" * (-len(data) % 4)
        blocks.append(_block(_EPB, head + data + padding + _options(_comments(notes))))
    return b"".join(blocks)
