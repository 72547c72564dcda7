"""MQTT 3.1.1 and 5.0, the broker's side: a framing, matchers, packet builders, a preset.

The formats are those of *MQTT Version 3.1.1* (OASIS Standard, 29 October 2014) and *MQTT
Version 5.0* (OASIS Standard, 7 March 2019), §2 (the fixed header, Variable Byte Integers,
properties) and §3 (each control packet); MQTT 3.1 (protocol level 3, ``MQIsdp``) reads as
3.1.1. A fake broker in four lines, for paho-mqtt, aiomqtt or any MQTT client::

    from fakepeer import FakePeer
    from fakepeer.protocols import mqtt

    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)  # CONNECT -> CONNACK, PINGREQ -> PINGRESP, DISCONNECT -> close
    peer.expect(mqtt.subscribe("sensors/#")).reply(mqtt.suback()).reply(
        mqtt.message("sensors/temp", b"21.5"))
    peer.expect(mqtt.publish("cmd/led", b"on", qos=1)).reply(mqtt.puback())

**Framing.** :func:`framing` decodes as :class:`~fakepeer.LengthField`
``(offset=1, size="varint")``: a rule sees each whole packet, fixed header included, and a
reply must be a whole packet, as the builders make them (the framing checks its Remaining
Length, naming the builders if it is wrong, and sends it unchanged).
Bytes that break the fixed header (a Remaining Length over 4 bytes, a packet over
``max_length``) fail the connection with a :class:`~fakepeer.FramingError`.

**Matchers** (:func:`packet`, :func:`connect`, :func:`publish`, :func:`subscribe`,
:func:`unsubscribe`, :func:`pingreq`, :func:`disconnect`) return a
:class:`~fakepeer.Matcher` whose match value, what a reply callable receives, is the parsed
packet: a frozen :class:`Packet`, or its subclass :class:`Connect`, :class:`Publish`,
:class:`Subscribe`, :class:`Unsubscribe`. Each argument is a value the packet's field must
equal, or :data:`fakepeer.ANY` (the default) for any. A packet that is not well-formed MQTT
matches none of them, and the failure says what is wrong with it. They also work with
:class:`~fakepeer.Raw` framing (each takes one packet off the front of the stream).

**Versions.** Only CONNECT says which version a client speaks, and a matcher sees one packet.
The matchers read the version from the packet's layout where it shows: a SUBSCRIBE or an
UNSUBSCRIBE, an acknowledgement with a reason code. A PUBLISH is ambiguous when the bytes
after its topic (and packet identifier) begin with a well-formed block of MQTT 5 properties:
every MQTT 5 PUBLISH (its properties length, ``0x00`` when it has none, comes first), and a
3.1.1 PUBLISH whose payload starts so (with the byte ``0x00``, for one). It then reads two
ways, MQTT 5 first, and the readings differ in ``payload`` (and ``properties``) only. Without
``version=``, :func:`publish` matches such a packet only when every reading fits its
arguments: ``payload=b"on"`` matches neither reading of an MQTT 5 client's ``b"\x00on"``,
and the failure says the packet is ambiguous, shows both payloads and names the fix. Pass
the version your client speaks, ``version=4`` (3.1.1) or ``version=5``, to match a payload.

.. warning::
   With ``payload=ANY`` (the default) and no ``version=``, the match value a reply callable
   receives for an ambiguous PUBLISH is the MQTT 5 reading (``version`` 5): a 3.1.1 payload
   that starts with ``0x00`` arrives without its first bytes. A reply that uses the payload
   should be on a matcher with ``version=``; :func:`parse` takes ``version=`` too.

**Builders** return a whole packet (bytes), or, where the answer depends on the request, a
reply callable for :meth:`~fakepeer.Rule.reply` that takes the parsed request (or its bytes):
:func:`connack` (the CONNECT's version), :func:`suback` and :func:`unsuback` (its packet
identifier and topic filters), :func:`puback`, :func:`pubrec`, :func:`pubrel` and
:func:`pubcomp` (its packet identifier). Answering an MQTT 5 client, they add the
properties (empty) that MQTT 5 puts in those packets. :func:`message` (a PUBLISH from the
broker) and :func:`pingresp` return bytes, for ``.reply()``, ``.send()``,
``connection.send()`` or ``peer.broadcast()``; :func:`message` takes the version as
``version=`` (default 4, MQTT 3.1.1: pass ``version=5`` for an MQTT 5 client, which reads
the properties length that 5 puts before the payload).

**Errors.** A wrong argument is a :class:`~fakepeer.ScriptError` where the script is written;
a reply callable that cannot answer its request (a SUBACK with 2 codes for 3 topic filters,
a request that is not the packet it answers) raises :class:`~fakepeer.ScriptError`, which the
peer reports as a :class:`~fakepeer.ReplyFailed`. :func:`parse` raises
:class:`~fakepeer.FramingError` for bytes that are not a well-formed packet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fakepeer import (
    ANY,
    ConnectionScript,
    FakePeer,
    FramingError,
    LengthField,
    Matcher,
    Rule,
    ScriptError,
)

from ._kit_framing import KitFraming
from ._mqtt_matchers import PacketMatcher, check_choice, check_type, topic_matches
from ._mqtt_packets import (
    Connect,
    Packet,
    PacketType,
    Publish,
    Subscribe,
    Subscription,
    Unsubscribe,
    frame,
    readings,
    string,
)

__all__ = [
    "Connect",
    "MQTTFraming",
    "Packet",
    "PacketType",
    "Publish",
    "Subscribe",
    "Subscription",
    "Unsubscribe",
    "connack",
    "connect",
    "disconnect",
    "framing",
    "handshake",
    "message",
    "packet",
    "parse",
    "pingreq",
    "pingresp",
    "puback",
    "pubcomp",
    "publish",
    "pubrec",
    "pubrel",
    "suback",
    "subscribe",
    "topic_matches",
    "unsuback",
    "unsubscribe",
]

#: A reply callable of the kit: takes the parsed request (or its bytes), returns a packet.
Reply = Callable[[object], bytes]

#: The largest MQTT packet: a 4-byte Remaining Length of 268,435,455, and its fixed header.
_LARGEST_PACKET: Final = 268_435_455 + 5


class MQTTFraming(KitFraming):
    """The framing :func:`framing` returns: it decodes as
    ``LengthField(offset=1, size="varint", max_length=max_length)`` (a packet that arrives in
    many small segments costs time linear in its length), and its ``encode`` checks that a
    reply is one whole packet, raising a :class:`~fakepeer.ScriptError` that names the
    builders (where a constant reply is written). ``length_field`` is that LengthField.
    Immutable; equal when the limits are."""

    def __init__(self, *, max_length: int = 1 << 20) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ScriptError(
                "mqtt.framing(max_length=...) takes a whole number of bytes >= 2, got "
                f"{max_length!r}"
            )
        inner = LengthField(offset=1, size="varint", max_length=min(max_length, _LARGEST_PACKET))
        super().__init__(inner, kit="mqtt.framing", default=1 << 20, builders=_BUILDERS)


#: What a reply check that fails says.
_BUILDERS: Final = (
    "build replies with the kit: mqtt.connack(), mqtt.suback(), mqtt.unsuback(), "
    "mqtt.puback(), mqtt.pubrec(), mqtt.pubrel(), mqtt.pubcomp(), mqtt.pingresp(), "
    "mqtt.message(...) (to send bytes as written, pass FakePeer(reply_framing=Raw()))"
)


def framing(*, max_length: int = 1 << 20) -> MQTTFraming:
    """The framing of what an MQTT client sends: it decodes as
    ``LengthField(offset=1, size="varint")``, and checks that a reply is one whole packet
    (a :class:`~fakepeer.ScriptError` naming the builders, raised where a constant reply is
    written; bytes malformed on purpose go out with ``reply_framing=Raw()``).

    ``max_length``: the most bytes one packet may take, fixed header included (default 1 MiB;
    MQTT allows up to 256 MiB); a client that sends a bigger packet fails the connection with
    a :class:`~fakepeer.FramingError` that names this keyword.
    """
    return MQTTFraming(max_length=max_length)


def parse(data: bytes, *, version: int | None = None) -> Packet:
    """The packet ``data`` (one whole packet, fixed header included), parsed.

    ``version`` (3, 4 or 5) reads it as that version; ``None`` (the default) as the module
    docstring says (a PUBLISH as MQTT 5 if it can be). :class:`~fakepeer.FramingError` when
    ``data`` is not a well-formed MQTT packet, saying why.
    """
    check_choice("parse", "version", version, (None, 3, 4, 5))
    try:
        return readings(bytes(data), version)[0]
    except FramingError as error:
        raise FramingError(f"not a well-formed MQTT packet: {error}") from None


# -- matchers ----------------------------------------------------------------------------------


def _text(function: str, keyword: str, value: object, *, empty: bool = False) -> None:
    """:class:`ScriptError` unless ``value`` is ANY or a str (non-empty, unless ``empty``)."""
    if value is not ANY and not (isinstance(value, str) and (empty or value)):
        kind = "a str" if empty else "a non-empty str"
        raise ScriptError(f"mqtt.{function}({keyword}=...) takes {kind} or ANY, got {value!r}")


def packet(type: PacketType | str | object = ANY, *, packet_id: object = ANY) -> Matcher:
    """Any MQTT packet of ``type`` (a :class:`PacketType`, or its name: ``"PUBACK"``), with
    ``packet_id`` if given: for the packets that have no matcher of their own, such as the
    PUBACK a client answers a QoS 1 :func:`message` with."""
    kind = check_type(type)
    return PacketMatcher(kind, {"packet_id": packet_id})


def connect(client_id: object = ANY, *, version: object = ANY, username: object = ANY) -> Matcher:
    """A CONNECT, from ``client_id`` (a str), at protocol level ``version`` (3, 4 or 5),
    with ``username`` (a str, or ``None`` for none)."""
    check_choice("connect", "version", version, (ANY, 3, 4, 5))
    _text("connect", "client_id", client_id, empty=True)
    if username is not None:  # None: a CONNECT without a user name
        _text("connect", "username", username, empty=True)
    return PacketMatcher(
        PacketType.CONNECT, {"client_id": client_id, "version": version, "username": username}
    )


def publish(
    topic: object = ANY,
    payload: object = ANY,
    qos: object = ANY,
    *,
    retain: object = ANY,
    version: int | None = None,
) -> Matcher:
    """A PUBLISH on ``topic``, a topic name, or a topic filter whose ``+`` and ``#``
    wildcards match as a broker's would (``"sensors/+/temp"``), with ``payload`` (bytes, a
    str as UTF-8, or any :class:`~fakepeer.Matcher`, such as :func:`~fakepeer.json`), at
    ``qos`` (0, 1 or 2), with the ``retain`` flag. ``version``: see the module docstring."""
    check_choice("publish", "qos", qos, (ANY, 0, 1, 2))
    check_choice("publish", "version", version, (None, 3, 4, 5))
    if topic is not ANY and not (isinstance(topic, str) and topic):
        raise ScriptError(f"mqtt.publish() takes a topic as a non-empty str or ANY, got {topic!r}")
    if isinstance(payload, str):
        payload = payload.encode()
    if payload is not ANY and not isinstance(payload, bytes | Matcher):
        raise ScriptError(
            f"mqtt.publish() takes a payload as bytes, str, a fakepeer Matcher or ANY, got "
            f"{payload!r}"
        )
    return PacketMatcher(
        PacketType.PUBLISH,
        {"topic": topic, "payload": payload, "qos": qos, "retain": retain},
        version=version,
    )


def subscribe(topic_filter: object = ANY, *, qos: object = ANY) -> Matcher:
    """A SUBSCRIBE with ``topic_filter`` among its topic filters (compared as written,
    wildcards and all), requested at ``qos``."""
    check_choice("subscribe", "qos", qos, (ANY, 0, 1, 2))
    _text("subscribe", "topic_filter", topic_filter)
    return PacketMatcher(PacketType.SUBSCRIBE, {"topic_filter": topic_filter, "qos": qos})


def unsubscribe(topic_filter: object = ANY) -> Matcher:
    """An UNSUBSCRIBE with ``topic_filter`` among its topic filters."""
    _text("unsubscribe", "topic_filter", topic_filter)
    return PacketMatcher(PacketType.UNSUBSCRIBE, {"topic_filter": topic_filter})


def pingreq() -> Matcher:
    """A PINGREQ, the client's keep-alive."""
    return PacketMatcher(PacketType.PINGREQ, {})


def disconnect() -> Matcher:
    """A DISCONNECT (with or without MQTT 5's reason code)."""
    return PacketMatcher(PacketType.DISCONNECT, {})


# -- builders ----------------------------------------------------------------------------------


def _request(request: object, kind: PacketType, builder: str) -> Packet:
    """The packet a reply callable answers: ``request`` as parsed, or parsed from bytes."""
    if isinstance(request, bytes | bytearray):
        try:
            request = parse(bytes(request))
        except FramingError as error:
            raise ScriptError(f"mqtt.{builder}() answers a {kind.name}, and got {error}") from None
    if not isinstance(request, Packet) or request.type is not kind:
        raise ScriptError(
            f"mqtt.{builder}() answers a {kind.name}, and got {request!r}: use it in the "
            f".reply() of a {kind.name.lower()}() rule"
        )
    return request


def _code(builder: str, code: object) -> int:
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
        raise ScriptError(f"mqtt.{builder}() takes a code from 0 to 255, got {code!r}")
    return code


def connack(*, session_present: bool = False, code: int = 0, version: int | None = None) -> Reply:
    """A reply callable answering a CONNECT with a CONNACK: ``session_present`` flag,
    ``code`` (3.1.1's return code, MQTT 5's reason code: 0 accepts; 5 in 3.1.1, 0x87 in 5,
    "not authorized"), for the CONNECT's protocol level unless ``version`` says otherwise."""
    _code("connack", code)
    check_choice("connack", "version", version, (None, 3, 4, 5))
    flags = b"\x01" if session_present else b"\x00"

    def answer(request: object) -> bytes:
        level = version or _request(request, PacketType.CONNECT, "connack").version
        properties = b"\x00" if level == 5 else b""
        return frame(PacketType.CONNACK, 0, flags + bytes([code]) + properties)

    return answer


def suback(*codes: int) -> Reply:
    """A reply callable answering a SUBSCRIBE with a SUBACK, its packet identifier echoed.

    ``codes``: none grants each topic filter the QoS it asked for; one is the code for every
    filter; else one code per filter, in order (0, 1, 2: the granted QoS; 0x80: failure).
    """
    for code in codes:
        _code("suback", code)

    def answer(request: object) -> bytes:
        subscribe = _request(request, PacketType.SUBSCRIBE, "suback")
        assert isinstance(subscribe, Subscribe)
        count = len(subscribe.subscriptions)
        if not codes:
            granted = bytes(s.qos for s in subscribe.subscriptions)
        elif len(codes) == 1:
            granted = bytes(codes) * count
        elif len(codes) == count:
            granted = bytes(codes)
        else:
            raise ScriptError(
                f"mqtt.suback() has {len(codes)} codes for a SUBSCRIBE of {count} topic "
                f"filters {list(subscribe.topic_filters)}: give one code, or one per filter"
            )
        return _acknowledge(PacketType.SUBACK, subscribe, granted)

    return answer


def unsuback() -> Reply:
    """A reply callable answering an UNSUBSCRIBE with an UNSUBACK, its packet identifier
    echoed (MQTT 5: a success reason code per topic filter)."""

    def answer(request: object) -> bytes:
        unsubscribe = _request(request, PacketType.UNSUBSCRIBE, "unsuback")
        assert isinstance(unsubscribe, Unsubscribe)
        return _acknowledge(PacketType.UNSUBACK, unsubscribe, bytes(len(unsubscribe.topic_filters)))

    return answer


def _acknowledge(kind: PacketType, request: Packet, codes: bytes) -> bytes:
    body = (request.packet_id or 0).to_bytes(2, "big")
    if request.version == 5:
        body += b"\x00" + codes
    elif kind is PacketType.SUBACK:
        body += codes
    return frame(kind, 0, body)


def _publish_ack(
    kind: PacketType, answers: PacketType, name: str, code: int, flags: int = 0
) -> Reply:
    _code(name, code)

    def answer(request: object) -> bytes:
        parsed = _request(request, answers, name)
        if parsed.packet_id is None:
            raise ScriptError(f"mqtt.{name}() answers a PUBLISH at QoS 1 or 2, and got {parsed!r}")
        body = parsed.packet_id.to_bytes(2, "big")
        if code:
            body += bytes([code]) + (b"\x00" if parsed.version == 5 else b"")
        return frame(kind, flags, body)

    return answer


def puback(code: int = 0) -> Reply:
    """A reply callable answering a QoS 1 PUBLISH with a PUBACK, its packet identifier
    echoed; ``code``: MQTT 5's reason code (0, success: the only one 3.1.1 has)."""
    return _publish_ack(PacketType.PUBACK, PacketType.PUBLISH, "puback", code)


def pubrec(code: int = 0) -> Reply:
    """A reply callable answering a QoS 2 PUBLISH with a PUBREC (the client then sends a
    PUBREL: answer it with :func:`pubcomp`)."""
    return _publish_ack(PacketType.PUBREC, PacketType.PUBLISH, "pubrec", code)


def pubrel(code: int = 0) -> Reply:
    """A reply callable answering a PUBREC (``packet("PUBREC")``, a client's answer to a
    QoS 2 :func:`message`) with a PUBREL (fixed header ``0x62``: MQTT 3.1.1 and 5.0 §3.6),
    its packet identifier echoed; the client then delivers the message and sends a PUBCOMP.
    ``code``: MQTT 5's reason code (0, success; 0x92, packet identifier not found)."""
    return _publish_ack(PacketType.PUBREL, PacketType.PUBREC, "pubrel", code, flags=2)


def pubcomp(code: int = 0) -> Reply:
    """A reply callable answering a PUBREL (``packet("PUBREL")``) with a PUBCOMP."""
    return _publish_ack(PacketType.PUBCOMP, PacketType.PUBREL, "pubcomp", code)


def pingresp() -> bytes:
    """A PINGRESP: the answer to a PINGREQ, the same in every version."""
    return frame(PacketType.PINGRESP, 0, b"")


def message(
    topic: str,
    payload: bytes | str = b"",
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
    version: int = 4,
) -> bytes:
    """A PUBLISH from the broker: ``payload`` (bytes, or a str as UTF-8) on ``topic``.

    ``qos`` 0, 1 or 2; at QoS 1 or 2 it carries ``packet_id`` (default 1), and the client
    answers with a PUBACK (QoS 1): script it with ``packet("PUBACK", packet_id=...)``. At
    QoS 2 the client answers with a PUBREC, the broker with a PUBREL, the client with a
    PUBCOMP (PUBREC -> PUBREL -> PUBCOMP, MQTT 3.1.1 §4.3.3): script
    ``expect(packet("PUBREC", packet_id=...)).reply(pubrel())`` then
    ``expect(packet("PUBCOMP", packet_id=...))``; a client delivers the message on the PUBREL.
    ``version`` 3, 4 (3.1.1, the default) or 5 (MQTT 5 puts a properties length, 0 here,
    before the payload).
    """
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
        raise ScriptError(
            f"mqtt.message() takes a topic name (a non-empty str without + or #), got {topic!r}"
        )
    if isinstance(payload, str):
        payload = payload.encode()
    if not isinstance(payload, bytes | bytearray):
        raise ScriptError(f"mqtt.message() takes a payload as bytes or str, got {payload!r}")
    check_choice("message", "qos", qos, (0, 1, 2))
    check_choice("message", "version", version, (3, 4, 5))
    for keyword, flag in (("retain", retain), ("dup", dup)):
        if not isinstance(flag, bool):
            raise ScriptError(f"mqtt.message({keyword}=...) takes True or False, got {flag!r}")
    if dup and not qos:
        raise ScriptError(
            "mqtt.message(dup=True) needs qos=1 or 2: a QoS 0 PUBLISH has DUP 0 (MQTT-3.3.1-2)"
        )
    body = string(topic)
    if qos:
        identifier = 1 if packet_id is None else packet_id
        if isinstance(identifier, bool) or not isinstance(identifier, int):
            raise ScriptError(
                f"mqtt.message() takes a packet_id from 1 to 65535, got {packet_id!r}"
            )
        if not 1 <= identifier <= 0xFFFF:
            raise ScriptError(
                f"mqtt.message() takes a packet_id from 1 to 65535, got {packet_id!r}"
            )
        body += identifier.to_bytes(2, "big")
    elif packet_id is not None:
        raise ScriptError("mqtt.message(packet_id=...) needs qos=1 or 2: QoS 0 has no packet_id")
    if version == 5:
        body += b"\x00"
    flags = dup << 3 | qos << 1 | int(retain)
    return frame(PacketType.PUBLISH, flags, body + bytes(payload))


# -- presets -----------------------------------------------------------------------------------


def handshake(
    script: FakePeer | ConnectionScript, *, session_present: bool = False, code: int = 0
) -> list[Rule]:
    """Add to ``script`` (a :class:`~fakepeer.FakePeer` or a
    :class:`~fakepeer.ConnectionScript`) the permanent rules a client needs around its own
    conversation: CONNECT is answered with :func:`connack` (``session_present``, ``code``;
    a non-zero ``code`` refuses the client, and the connection is then closed, as MQTT
    requires), PINGREQ with :func:`pingresp`, and DISCONNECT closes the connection, as a
    broker does.
    Returns the rules, in that order.

    They are ``always`` rules: any number of connections, any number of pings, none required
    (add ``peer.expect(mqtt.connect(...))`` before it to require a CONNECT).
    """
    if not isinstance(script, FakePeer | ConnectionScript):
        raise ScriptError(
            f"mqtt.handshake() takes a FakePeer or a ConnectionScript, got {script!r}"
        )
    answer = script.always(connect()).reply(connack(session_present=session_present, code=code))
    if code:  # a refusal: the server then closes the connection (MQTT-3.2.2-5, MQTT-3.2.2-7)
        answer.close()
    return [
        answer,
        script.always(pingreq()).reply(pingresp()),
        script.always(disconnect()).close(),
    ]
