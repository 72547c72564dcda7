"""A small pcapng reader for the tests, written from the format's description apart from
fakepeer's writer (its checksum is a plain sum of 16-bit words, not the writer's): it checks
each block's framing as it reads, and parses the IPv4/IPv6, TCP and UDP headers."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field


@dataclass
class Packet:
    at: int  # microseconds since the epoch
    version: int
    source: str
    destination: str
    sport: int
    dport: int
    protocol: str  # "tcp" or "udp"
    seq: int = 0
    ack: int = 0
    flags: str = ""  # "S", "SA", "A", "PA", "FA", "RA" ...
    payload: bytes = b""
    comments: list[str] = field(default_factory=list)


@dataclass
class Capture:
    comments: list[str]
    application: str
    linktype: int
    packets: list[Packet]


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _options(body: bytes) -> list[tuple[int, bytes]]:
    found = []
    offset = 0
    while offset < len(body):
        code, length = struct.unpack_from("<HH", body, offset)
        offset += 4
        if code == 0:
            assert length == 0
            assert offset == len(body), "bytes after opt_endofopt"
            break
        found.append((code, body[offset : offset + length]))
        offset += length + (-length % 4)
    else:
        assert not found, "options without opt_endofopt"
    return found


_FLAGS = ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "A"))


def _packet(at: int, data: bytes, comments: list[str]) -> Packet:
    version = data[0] >> 4
    if version == 4:
        assert data[0] == 0x45
        total, protocol = struct.unpack_from("!H", data, 2)[0], data[9]
        assert total == len(data)
        assert _sum16(data[:20]) == 0xFFFF, "IPv4 header checksum"
        source, destination, payload = data[12:16], data[16:20], data[20:]
        pseudo = source + destination + struct.pack("!BBH", 0, protocol, len(payload))
    else:
        assert version == 6
        length, protocol = struct.unpack_from("!HB", data, 4)
        assert length == len(data) - 40
        source, destination, payload = data[8:24], data[24:40], data[40:]
        pseudo = source + destination + struct.pack("!IxxxB", len(payload), protocol)
    assert _sum16(pseudo + payload) == 0xFFFF, "TCP/UDP checksum"
    sport, dport = struct.unpack_from("!HH", payload)
    packet = Packet(
        at,
        version,
        str(ipaddress.ip_address(source)),
        str(ipaddress.ip_address(destination)),
        sport,
        dport,
        {6: "tcp", 17: "udp"}[protocol],
        comments=comments,
    )
    if protocol == 17:
        assert struct.unpack_from("!H", payload, 4)[0] == len(payload)
        packet.payload = payload[8:]
        return packet
    packet.seq, packet.ack = struct.unpack_from("!II", payload, 4)
    offset, flags = payload[12] >> 4, payload[13]
    packet.flags = "".join(letter for bit, letter in _FLAGS if flags & bit)
    packet.payload = payload[offset * 4 :]
    return packet


def read(data: bytes) -> Capture:
    """Every block of ``data``, checked: its two lengths agree, it is a multiple of 4."""
    offset = 0
    capture = Capture([], "", -1, [])
    kinds = []
    while offset < len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        assert length % 4 == 0, (kind, length)
        assert length >= 12, (kind, length)
        assert offset + length <= len(data)
        assert struct.unpack_from("<I", data, offset + length - 4)[0] == length
        body = data[offset + 8 : offset + length - 4]
        kinds.append(kind)
        if kind == 0x0A0D0D0A:
            magic, major, minor, section = struct.unpack_from("<IHHq", body)
            assert (magic, major, minor, section) == (0x1A2B3C4D, 1, 0, -1)
            for code, value in _options(body[16:]):
                if code == 1:
                    capture.comments.append(value.decode())
                elif code == 4:
                    capture.application = value.decode()
        elif kind == 1:
            capture.linktype = struct.unpack_from("<H", body)[0]
            _options(body[8:])
        elif kind == 6:
            interface, high, low, captured, original = struct.unpack_from("<IIIII", body)
            assert interface == 0
            assert captured == original
            packet = body[20 : 20 + captured]
            rest = body[20 + captured + (-captured % 4) :]
            comments = [value.decode() for code, value in _options(rest) if code == 1]
            capture.packets.append(_packet(high << 32 | low, packet, comments))
        offset += length
    assert kinds[:2] == [0x0A0D0D0A, 1], kinds[:2]
    assert set(kinds[2:]) <= {6}
    return capture
