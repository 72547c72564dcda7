"""MQTT control packets as values: what :mod:`fakepeer.protocols.mqtt` parses and builds.

The layouts are those of MQTT Version 3.1.1 (OASIS Standard, 29 October 2014, §2 and §3) and
MQTT Version 5.0 (OASIS Standard, 7 March 2019, §2 and §3): a fixed header (the packet type
in the high 4 bits of the first byte, flags in the low 4, then the Remaining Length as a
Variable Byte Integer), a variable header and a payload. MQTT 5 adds properties (a length,
then identifier-value pairs) to most variable headers. Pure: no I/O.

A packet alone does not always say which version wrote it: only CONNECT carries the
protocol level. :func:`readings` gives every way a frame can be read, preferred first, and
the matchers take the first that fits; see :func:`fakepeer.protocols.mqtt.parse`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fakepeer import FramingError

__all__ = [
    "Connect",
    "Packet",
    "PacketType",
    "Publish",
    "Subscribe",
    "Subscription",
    "Unsubscribe",
    "frame",
    "frame_length",
    "readings",
    "string",
    "varint",
]


class PacketType(enum.IntEnum):
    """The MQTT control packet types (the high 4 bits of a packet's first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  # MQTT 5 only


@dataclass(frozen=True, kw_only=True)
class Packet:
    """An MQTT control packet a client sent: the match value of the kit's matchers.

    ``type`` is its :class:`PacketType`, ``flags`` the low 4 bits of its first byte;
    ``version`` the protocol level it was read as: 3 (MQTT 3.1), 4 (3.1.1) or 5, or ``None``
    when the packet cannot tell (a PINGREQ, an empty DISCONNECT, a two-byte PUBACK);
    ``packet_id`` its Packet Identifier, if it has one; ``frame`` the whole packet as it came.
    The other packets a client sends (PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ, DISCONNECT,
    AUTH) are plain :class:`Packet` values; CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE are the
    subclasses with their fields.
    """

    type: PacketType
    flags: int = 0
    version: int | None = None
    packet_id: int | None = None
    frame: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, kw_only=True)
class Connect(Packet):
    """A CONNECT: ``version`` is its protocol level (3, 4 or 5); ``keep_alive`` in seconds;
    ``clean_start`` is 3.1.1's Clean Session flag; ``properties`` the raw MQTT 5 properties
    (without their length), ``b""`` before 5."""

    protocol_name: str = "MQTT"
    client_id: str = ""
    clean_start: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will_topic: str | None = None
    will_payload: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    properties: bytes = b""


@dataclass(frozen=True, kw_only=True)
class Publish(Packet):
    """A PUBLISH: the application message ``payload`` on ``topic``, with its ``qos`` (0, 1
    or 2), ``retain`` and ``dup`` flags; ``packet_id`` is ``None`` at QoS 0."""

    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    properties: bytes = b""


@dataclass(frozen=True)
class Subscription:
    """One topic filter of a SUBSCRIBE, with its requested ``qos`` and its whole
    subscription ``options`` byte (MQTT 5 adds No Local, Retain As Published and Retain
    Handling to the QoS bits)."""

    topic_filter: str
    qos: int = 0
    options: int = 0


@dataclass(frozen=True, kw_only=True)
class Subscribe(Packet):
    """A SUBSCRIBE: its ``subscriptions``, in the order the client listed them."""

    subscriptions: tuple[Subscription, ...] = ()
    properties: bytes = b""

    @property
    def topic_filters(self) -> tuple[str, ...]:
        """The topic filters, in order."""
        return tuple(s.topic_filter for s in self.subscriptions)


@dataclass(frozen=True, kw_only=True)
class Unsubscribe(Packet):
    """An UNSUBSCRIBE: the topic filters the client leaves."""

    topic_filters: tuple[str, ...] = ()
    properties: bytes = b""


# -- encoding --------------------------------------------------------------------------------

#: The largest Remaining Length: four bytes of Variable Byte Integer (§1.5.5 in MQTT 5).
LARGEST: Final = 268_435_455


def varint(value: int) -> bytes:
    """``value`` (0 to 268,435,455) as an MQTT Variable Byte Integer."""
    out = bytearray()
    while True:
        value, group = divmod(value, 128)
        out.append(group | (0x80 if value else 0))
        if not value:
            return bytes(out)


def string(text: str) -> bytes:
    """An MQTT UTF-8 Encoded String: two bytes of length, then the UTF-8 bytes."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def frame(kind: PacketType, flags: int, body: bytes) -> bytes:
    """A whole packet: the fixed header, then ``body`` (variable header and payload)."""
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def frame_length(data: bytes) -> int | None:
    """How many bytes the packet at the front of ``data`` takes, or ``None`` if its fixed
    header has not all arrived; :class:`FramingError` for a Remaining Length over 4 bytes."""
    value = 0
    for index in range(1, 5):
        if index >= len(data):
            return None
        byte = data[index]
        value |= (byte & 0x7F) << (7 * (index - 1))
        if not byte & 0x80:
            return index + 1 + value
    raise FramingError("its Remaining Length takes more than 4 bytes")


# -- decoding --------------------------------------------------------------------------------

#: MQTT 5 property identifiers by the type of their value (MQTT 5.0 §2.2.2.2).
_BYTE: Final = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_TWO: Final = frozenset({0x13, 0x21, 0x22, 0x23})
_FOUR: Final = frozenset({0x02, 0x11, 0x18, 0x27})
_VARINT: Final = frozenset({0x0B})
_UTF8: Final = frozenset({0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F})
_BINARY: Final = frozenset({0x09, 0x16})
_PAIR: Final = frozenset({0x26})
#: The properties a PUBLISH may carry (MQTT 5.0 §3.3.2.3).
_PUBLISH: Final = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26})


class _Reader:
    """Reads the fields of one packet's body; :class:`FramingError` when they run short."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position

    def take(self, count: int, what: str) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise FramingError(f"it ends inside its {what}")
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def uint16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def binary(self, what: str) -> bytes:
        return self.take(self.uint16(what), what)

    def string(self, what: str) -> str:
        try:
            return self.binary(what).decode()
        except UnicodeDecodeError as error:
            raise FramingError(f"its {what} is not UTF-8: {error.reason}") from None

    def varint(self, what: str) -> int:
        value = 0
        for index in range(4):
            byte = self.byte(what)
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                return value
        raise FramingError(f"its {what} takes more than 4 bytes")

    def rest(self) -> bytes:
        chunk = self.data[self.position :]
        self.position = len(self.data)
        return chunk

    def left(self) -> int:
        return len(self.data) - self.position

    def properties(self, allowed: frozenset[int] | None = None) -> bytes:
        """The MQTT 5 properties block (without its length), each property checked."""
        block = self.take(self.varint("properties length"), "properties")
        inner = _Reader(block, 0)
        while inner.left():
            identifier = inner.byte("properties")
            if allowed is not None and identifier not in allowed:
                raise FramingError(f"its properties hold 0x{identifier:02x}, not allowed there")
            inner.skip_property(identifier)
        return block

    def skip_property(self, identifier: int) -> None:
        what = f"property 0x{identifier:02x}"
        if identifier in _BYTE:
            self.take(1, what)
        elif identifier in _TWO:
            self.take(2, what)
        elif identifier in _FOUR:
            self.take(4, what)
        elif identifier in _VARINT:
            self.varint(what)
        elif identifier in _UTF8:
            self.string(what)
        elif identifier in _BINARY:
            self.binary(what)
        elif identifier in _PAIR:
            self.string(what)
            self.string(what)
        else:
            raise FramingError(f"its properties hold an unknown identifier 0x{identifier:02x}")


def _topic_filter(reader: _Reader) -> str:
    topic = reader.string("topic filter")
    if not topic:
        raise FramingError("it has an empty topic filter")
    return topic


def _connect(data: bytes, start: int, flags: int) -> Connect:
    reader = _Reader(data, start)
    name = reader.string("protocol name")
    level = reader.byte("protocol level")
    if (name, level) not in (("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)):
        raise FramingError(f"it names protocol {name!r} level {level}, not MQTT 3.1, 3.1.1 or 5")
    options = reader.byte("connect flags")
    keep_alive = reader.uint16("keep alive")
    properties = reader.properties() if level == 5 else b""
    client_id = reader.string("client identifier")
    will_topic = will_payload = None
    if options & 0x04:
        if level == 5:
            reader.properties()
        will_topic = reader.string("will topic")
        will_payload = reader.binary("will payload")
    username = reader.string("user name") if options & 0x80 else None
    password = reader.binary("password") if options & 0x40 else None
    return Connect(
        type=PacketType.CONNECT,
        flags=flags,
        version=level,
        frame=data,
        protocol_name=name,
        client_id=client_id,
        clean_start=bool(options & 0x02),
        keep_alive=keep_alive,
        username=username,
        password=password,
        will_topic=will_topic,
        will_payload=will_payload,
        will_qos=(options >> 3) & 0x03,
        will_retain=bool(options & 0x20),
        properties=properties,
    )


def _publish(data: bytes, start: int, flags: int, version: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise FramingError("its QoS bits say 3")
    reader = _Reader(data, start)
    topic = reader.string("topic name")
    if "+" in topic or "#" in topic:
        raise FramingError(f"its topic name {topic!r} holds a wildcard")
    packet_id = reader.uint16("packet identifier") if qos else None
    properties = reader.properties(_PUBLISH) if version == 5 else b""
    return Publish(
        type=PacketType.PUBLISH,
        flags=flags,
        version=version,
        packet_id=packet_id,
        frame=data,
        topic=topic,
        payload=reader.rest(),
        qos=qos,
        retain=bool(flags & 0x01),
        dup=bool(flags & 0x08),
        properties=properties,
    )


def _subscribe(data: bytes, start: int, flags: int, version: int) -> Subscribe:
    reader = _Reader(data, start)
    packet_id = reader.uint16("packet identifier")
    properties = reader.properties() if version == 5 else b""
    subscriptions = []
    while reader.left():
        topic = _topic_filter(reader)
        options = reader.byte("subscription options")
        reserved = 0xC0 if version == 5 else 0xFC
        if options & reserved or options & 0x03 == 3 or (options >> 4) & 0x03 == 3:
            raise FramingError(f"its subscription options 0x{options:02x} are malformed")
        subscriptions.append(Subscription(topic, options & 0x03, options))
    if not subscriptions:
        raise FramingError("it subscribes to no topic filter")
    return Subscribe(
        type=PacketType.SUBSCRIBE,
        flags=flags,
        version=version,
        packet_id=packet_id,
        frame=data,
        subscriptions=tuple(subscriptions),
        properties=properties,
    )


def _unsubscribe(data: bytes, start: int, flags: int, version: int) -> Unsubscribe:
    reader = _Reader(data, start)
    packet_id = reader.uint16("packet identifier")
    properties = reader.properties() if version == 5 else b""
    filters = []
    while reader.left():
        filters.append(_topic_filter(reader))
    if not filters:
        raise FramingError("it unsubscribes from no topic filter")
    return Unsubscribe(
        type=PacketType.UNSUBSCRIBE,
        flags=flags,
        version=version,
        packet_id=packet_id,
        frame=data,
        topic_filters=tuple(filters),
        properties=properties,
    )


def _plain(data: bytes, start: int, kind: PacketType, flags: int) -> Packet:
    """PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ, DISCONNECT, AUTH (and what a client should
    not send: CONNACK, SUBACK, UNSUBACK, PINGRESP)."""
    body = data[start:]
    packet_id = None
    version = None
    if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        reader = _Reader(data, start)
        packet_id = reader.uint16("packet identifier")
        if reader.left():  # a reason code, then maybe properties: MQTT 5 only
            reader.byte("reason code")
            if reader.left():
                reader.properties()
            if reader.left():
                raise FramingError(f"it has {reader.left()} bytes after its properties")
            version = 5
    elif kind in (PacketType.PINGREQ, PacketType.PINGRESP) and body:
        raise FramingError(f"a {kind.name} has no body, and this one has {len(body)} bytes")
    elif kind in (PacketType.DISCONNECT, PacketType.AUTH) and body:
        version = 5  # a reason code and properties
    return Packet(type=kind, flags=flags, version=version, packet_id=packet_id, frame=data)


#: The flags each packet type must have (MQTT 5.0 §2.1.3); PUBLISH's are its own.
_FLAGS: Final = {PacketType.PUBREL: 2, PacketType.SUBSCRIBE: 2, PacketType.UNSUBSCRIBE: 2}


def readings(data: bytes, version: int | None = None) -> list[Packet]:
    """Every way to read the whole packet ``data``, the preferred first.

    With ``version`` (3, 4 or 5), one reading as that version (a CONNECT says its own).
    Without, a PUBLISH is read as MQTT 5 first, then 3.1.1 (both when its bytes allow);
    SUBSCRIBE and UNSUBSCRIBE as whichever layout fits. :class:`FramingError` saying what is
    wrong when no reading fits.
    """
    length = frame_length(data)
    if length is None or length > len(data):
        raise FramingError(f"it is {len(data)} bytes, short of its fixed header's length")
    if length < len(data):
        raise FramingError(f"its fixed header says {length} bytes, and it is {len(data)}")
    kind = PacketType(data[0] >> 4) if data[0] >> 4 else None
    if kind is None:
        raise FramingError("its packet type is 0, which MQTT reserves")
    flags = data[0] & 0x0F
    if kind is not PacketType.PUBLISH and flags != _FLAGS.get(kind, 0):
        raise FramingError(f"its {kind.name} flags are {flags:#x}, not {_FLAGS.get(kind, 0):#x}")
    start = _body_start(data)
    parse: Callable[[bytes, int, int, int], Packet]
    if kind is PacketType.CONNECT:
        return [_connect(data, start, flags)]
    if kind is PacketType.PUBLISH:
        parse, versions = _publish, (5, 4)
    elif kind is PacketType.SUBSCRIBE:
        parse, versions = _subscribe, (4, 5)
    elif kind is PacketType.UNSUBSCRIBE:
        parse, versions = _unsubscribe, (4, 5)
    else:
        return [_plain(data, start, kind, flags)]
    if version is not None:
        return [parse(data, start, flags, version)]
    found: list[Packet] = []
    error: FramingError | None = None
    for candidate in versions:
        try:
            found.append(parse(data, start, flags, candidate))
        except FramingError as failed:
            error = error or failed
    if not found:
        assert error is not None
        raise error
    return found


def _body_start(data: bytes) -> int:
    """Where the variable header starts: after the first byte and the Remaining Length."""
    index = 1
    while data[index] & 0x80:
        index += 1
    return index + 1
