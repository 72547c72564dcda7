"""Tests of ``fakepeer.protocols.mqtt``: packets parsed and built as MQTT 3.1.1 and 5 lay them
out (tables, no sockets), the framing however the bytes are split (Hypothesis), and the kit
against the real clients: paho-mqtt 2 (threaded) and aiomqtt (asyncio), each in 3.1.1 and 5.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator

import aiomqtt
import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from fakepeer import (
    FakePeer,
    FramingError,
    Matched,
    Matcher,
    Raw,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
    json,
    regex,
)
from fakepeer._framing import _incremental
from fakepeer.protocols import mqtt
from fakepeer.protocols._mqtt_packets import frame_length, varint
from fakepeer.testing import Rehearsal, check_framing

TIMEOUT = 5.0

# What the clients send, as recorded from paho-mqtt 2.2 (3.1.1, then 5).
CONNECT_4 = b"\x10\x0c\x00\x04MQTT\x04\x02\x00<\x00\x00"
CONNECT_5 = b"\x10\x0d\x00\x04MQTT\x05\x02\x00<\x00\x00\x00"
SUBSCRIBE_4 = b"\x82\x0e\x00\x01\x00\x09sensors/#\x00"
SUBSCRIBE_5 = b"\x82\x0f\x00\x01\x00\x00\x09sensors/#\x00"
PUBLISH_QOS1_4 = b"\x32\x0d\x00\x07cmd/led\x00\x01on"
PUBLISH_QOS1_5 = b"\x32\x0e\x00\x07cmd/led\x00\x01\x00on"
DISCONNECT = b"\xe0\x00"


# -- parsing -------------------------------------------------------------------------------------


def test_parse_connect_in_each_version() -> None:
    four = mqtt.parse(CONNECT_4)
    assert isinstance(four, mqtt.Connect)
    assert (four.version, four.client_id, four.keep_alive, four.clean_start) == (4, "", 60, True)
    assert mqtt.parse(CONNECT_5).version == 5
    full = b"\x00\x04MQTT\x04\xee\x00\x0a\x00\x02id\x00\x04will\x00\x03bye\x00\x05alice\x00\x02pw"
    connect = mqtt.parse(b"\x10" + varint(len(full)) + full)
    assert isinstance(connect, mqtt.Connect)
    assert (connect.client_id, connect.username, connect.password) == ("id", "alice", b"pw")
    assert (connect.will_topic, connect.will_payload, connect.will_qos) == ("will", b"bye", 1)
    assert (connect.will_retain, connect.clean_start, connect.keep_alive) == (True, True, 10)
    legacy = b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01x"
    assert mqtt.parse(b"\x10" + varint(len(legacy)) + legacy).version == 3


def test_parse_publish_reads_mqtt_5_properties_when_they_are_there() -> None:
    five = mqtt.parse(PUBLISH_QOS1_5)
    assert isinstance(five, mqtt.Publish)
    assert (five.topic, five.payload, five.qos, five.packet_id, five.version) == (
        "cmd/led",
        b"on",
        1,
        1,
        5,
    )
    four = mqtt.parse(PUBLISH_QOS1_4)  # "on" is no properties block: 3.1.1
    assert isinstance(four, mqtt.Publish)
    assert (four.payload, four.version) == (b"on", 4)
    forced = mqtt.parse(PUBLISH_QOS1_5, version=4)
    assert isinstance(forced, mqtt.Publish)
    assert forced.payload == b"\x00on"
    with_properties = mqtt.parse(b"\x30\x0b\x00\x01t\x05\x01\x01\x23\x00\x07hi")
    assert isinstance(with_properties, mqtt.Publish)
    assert (with_properties.properties, with_properties.payload) == (b"\x01\x01\x23\x00\x07", b"hi")


def test_parse_subscribe_unsubscribe_and_the_rest() -> None:
    for data, version in ((SUBSCRIBE_4, 4), (SUBSCRIBE_5, 5)):
        subscribe = mqtt.parse(data)
        assert isinstance(subscribe, mqtt.Subscribe)
        assert (subscribe.version, subscribe.packet_id) == (version, 1)
        assert subscribe.subscriptions == (mqtt.Subscription("sensors/#", 0, 0),)
        assert subscribe.topic_filters == ("sensors/#",)
    unsubscribe = mqtt.parse(b"\xa2\x0a\x00\x02\x00\x01a\x00\x03b/c")
    assert isinstance(unsubscribe, mqtt.Unsubscribe)
    assert (unsubscribe.topic_filters, unsubscribe.packet_id) == (("a", "b/c"), 2)
    puback = mqtt.parse(b"\x40\x02\x00\x07")
    assert (puback.type, puback.packet_id, puback.version) == (mqtt.PacketType.PUBACK, 7, None)
    assert mqtt.parse(b"\x40\x04\x00\x07\x10\x00").version == 5
    assert mqtt.parse(b"\xc0\x00").type is mqtt.PacketType.PINGREQ
    assert mqtt.parse(DISCONNECT) == mqtt.Packet(type=mqtt.PacketType.DISCONNECT, frame=DISCONNECT)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00\x00", "its packet type is 0, which MQTT reserves"),
        (b"\x30", "it is 1 bytes, short of its fixed header's length"),
        (b"\x30\x05\x00\x01t", "it is 5 bytes, short of its fixed header's length"),
        (b"\xc0\x00\x00", "its fixed header says 2 bytes, and it is 3"),
        (b"\x30\xff\xff\xff\xff\x01", "its Remaining Length takes more than 4 bytes"),
        (b"\x36\x03\x00\x01t", "its QoS bits say 3"),
        (b"\x30\x04\x00\x02a+", "its topic name 'a+' holds a wildcard"),
        (b"\x30\x03\x00\x01\xff", "its topic name is not UTF-8: invalid start byte"),
        (b"\x80\x06\x00\x01\x00\x01a\x00", "its SUBSCRIBE flags are 0x0, not 0x2"),
        (b"\x82\x02\x00\x01", "it subscribes to no topic filter"),
        (b"\x10\x07\x00\x04MQTT\x06", "it names protocol 'MQTT' level 6"),
        (b"\xc0\x01\x00", "a PINGREQ has no body, and this one has 1 bytes"),
    ],
)
def test_parse_says_what_is_wrong(data: bytes, why: str) -> None:
    with pytest.raises(FramingError, match=r"^not a well-formed MQTT packet: ") as caught:
        mqtt.parse(data)
    assert why in str(caught.value)


# -- builders ------------------------------------------------------------------------------------


def test_connack_answers_in_the_version_of_the_connect() -> None:
    assert mqtt.connack()(mqtt.parse(CONNECT_4)) == b"\x20\x02\x00\x00"
    assert mqtt.connack()(CONNECT_5) == b"\x20\x03\x00\x00\x00"  # bytes are parsed
    assert mqtt.connack(session_present=True, code=5)(CONNECT_4) == b"\x20\x02\x01\x05"
    assert mqtt.connack(version=5)(CONNECT_4) == b"\x20\x03\x00\x00\x00"


def test_suback_unsuback_and_acknowledgements_echo_the_packet_id() -> None:
    two = b"\x82\x0a\x00\x09\x00\x01a\x01\x00\x01b\x02"
    assert mqtt.suback()(two) == b"\x90\x04\x00\x09\x01\x02"  # the QoS asked for
    assert mqtt.suback(0x80)(two) == b"\x90\x04\x00\x09\x80\x80"
    assert mqtt.suback(0, 1)(two) == b"\x90\x04\x00\x09\x00\x01"
    assert mqtt.suback()(SUBSCRIBE_5) == b"\x90\x04\x00\x01\x00\x00"  # properties length 0
    unsubscribe = b"\xa2\x05\x00\x03\x00\x01a"
    assert mqtt.unsuback()(unsubscribe) == b"\xb0\x02\x00\x03"
    assert mqtt.unsuback()(b"\xa2\x06\x00\x03\x00\x00\x01a") == b"\xb0\x04\x00\x03\x00\x00"
    assert mqtt.puback()(PUBLISH_QOS1_4) == b"\x40\x02\x00\x01"
    assert mqtt.puback()(PUBLISH_QOS1_5) == b"\x40\x02\x00\x01"  # MQTT 5 may omit success
    assert mqtt.puback(0x10)(PUBLISH_QOS1_5) == b"\x40\x04\x00\x01\x10\x00"
    assert mqtt.pubrec()(b"\x34\x05\x00\x01t\x00\x05") == b"\x50\x02\x00\x05"
    assert mqtt.pubcomp()(b"\x62\x02\x00\x05") == b"\x70\x02\x00\x05"
    assert mqtt.pubrel()(b"\x50\x02\x00\x05") == b"\x62\x02\x00\x05"  # flags 0b0010
    pubrec_5 = b"\x50\x04\x00\x05\x00\x00"  # reason code, empty properties: MQTT 5
    assert mqtt.pubrel(0x92)(pubrec_5) == b"\x62\x04\x00\x05\x92\x00"
    assert mqtt.parse(mqtt.pubrel()(pubrec_5)).type is mqtt.PacketType.PUBREL  # well-formed
    assert mqtt.pingresp() == b"\xd0\x00"


def test_message_is_a_publish_from_the_broker() -> None:
    assert mqtt.message("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert mqtt.message("a/b", "hi", version=5) == b"\x30\x08\x00\x03a/b\x00hi"
    assert mqtt.message("t", b"x", qos=1, retain=True) == b"\x33\x06\x00\x01t\x00\x01x"
    assert mqtt.message("t", qos=2, packet_id=300, dup=True) == b"\x3c\x05\x00\x01t\x01\x2c"
    assert mqtt.parse(mqtt.message("t", bytes(200))) == mqtt.parse(mqtt.message("t", bytes(200)))
    assert len(mqtt.message("t", bytes(200))) == 2 + 1 + 3 + 200  # a 2-byte Remaining Length


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: mqtt.message("a/#"), "takes a topic name (a non-empty str without + or #)"),
        (lambda: mqtt.message("t", qos=3), "mqtt.message(qos=...) takes one of 0, 1, 2, got 3"),
        (lambda: mqtt.message("t", packet_id=4), "packet_id=...) needs qos=1 or 2"),
        (lambda: mqtt.message("t", qos=1, packet_id=0), "takes a packet_id from 1 to 65535"),
        (lambda: mqtt.message("t", version=6), "(version=...) takes one of 3, 4, 5, got 6"),
        (lambda: mqtt.publish("t", qos=True), "mqtt.publish(qos=...) takes one of ANY, 0, 1, 2"),
        (lambda: mqtt.publish(""), "takes a topic as a non-empty str or ANY"),
        (lambda: mqtt.publish(payload=1), "takes a payload as bytes, str, a fakepeer Matcher"),
        (lambda: mqtt.subscribe(""), "mqtt.subscribe(topic_filter=...) takes a non-empty str"),
        (lambda: mqtt.connect(5), "mqtt.connect(client_id=...) takes a str or ANY, got 5"),
        (lambda: mqtt.packet("PUBLISHED"), "takes a packet type (CONNECT, CONNACK, PUBLISH"),
        (lambda: mqtt.connack(code=256), "mqtt.connack() takes a code from 0 to 255, got 256"),
        (lambda: mqtt.framing(max_length=1), "mqtt.framing(max_length=...) takes a whole"),
        (lambda: mqtt.handshake(object()), "takes a FakePeer or a ConnectionScript"),  # type: ignore[arg-type]
    ],
)
def test_wrong_arguments_are_script_errors(call: object, text: str) -> None:
    with pytest.raises(ScriptError) as caught:
        call()  # type: ignore[operator]
    assert text in str(caught.value)


def test_a_reply_that_cannot_answer_its_request_says_why() -> None:
    three = b"\x82\x0e\x00\x01\x00\x01a\x00\x00\x01b\x00\x00\x01c\x00"
    with pytest.raises(ScriptError, match=r"has 2 codes for a SUBSCRIBE of 3 topic filters"):
        mqtt.suback(0, 1)(three)
    with pytest.raises(ScriptError, match=r"answers a PUBLISH at QoS 1 or 2, and got Publish\("):
        mqtt.puback()(b"\x30\x03\x00\x01t")
    with pytest.raises(ScriptError, match=r"connack\(\) answers a CONNECT, and got Packet"):
        mqtt.connack()(mqtt.parse(DISCONNECT))


# -- matchers ------------------------------------------------------------------------------------


def matched(matcher: Matcher, data: bytes) -> object:
    outcome = matcher.match(data, stream=False)
    return outcome.value if isinstance(outcome, Matched) else None


def test_matchers_by_type_and_fields() -> None:
    assert isinstance(matched(mqtt.connect(), CONNECT_4), mqtt.Connect)
    assert matched(mqtt.connect(version=5), CONNECT_4) is None
    assert matched(mqtt.connect(client_id=""), CONNECT_5) is not None
    assert matched(mqtt.connect(username=None), CONNECT_5) is not None
    assert matched(mqtt.connect(username="alice"), CONNECT_5) is None
    assert matched(mqtt.subscribe("sensors/#"), SUBSCRIBE_5) is not None
    assert matched(mqtt.subscribe("sensors/+"), SUBSCRIBE_5) is None  # filters as written
    assert matched(mqtt.subscribe(qos=1), SUBSCRIBE_4) is None
    assert matched(mqtt.publish("cmd/led", b"on", qos=1, version=5), PUBLISH_QOS1_5) is not None
    assert matched(mqtt.publish("cmd/led", qos=1), PUBLISH_QOS1_5) is not None
    assert matched(mqtt.publish("cmd/+", "on"), PUBLISH_QOS1_4) is not None  # a filter
    assert matched(mqtt.publish("cmd/#", qos=0), PUBLISH_QOS1_4) is None
    assert matched(mqtt.publish(payload=json({"on": True})), mqtt.message("t", b'{"on":true}'))
    assert matched(mqtt.pingreq(), b"\xc0\x00") is not None
    assert matched(mqtt.disconnect(), DISCONNECT) is not None
    assert matched(mqtt.packet("PUBACK", packet_id=7), b"\x40\x02\x00\x07") is not None
    assert matched(mqtt.packet(packet_id=8), b"\x40\x02\x00\x07") is None
    assert matched(mqtt.packet(), b"\x00\x00") is None  # not MQTT


def test_an_ambiguous_publish_matches_a_payload_only_with_the_version_pinned() -> None:
    """A 3.1.1 payload that starts with 0x00 also reads as MQTT 5 (no properties): a
    payload= that fits one reading only matches neither, unless version= chooses one."""
    ambiguous = mqtt.message("t", b"\x00\x01")
    assert matched(mqtt.publish("t", b"\x00\x01"), ambiguous) is None
    assert matched(mqtt.publish("t", b"\x01"), ambiguous) is None
    assert matched(mqtt.publish("t", b"\x00\x01", version=4), ambiguous) == mqtt.parse(
        ambiguous, version=4
    )
    assert matched(mqtt.publish("t", b"\x01", version=5), ambiguous) == mqtt.parse(
        ambiguous, version=5
    )
    assert matched(mqtt.publish("t", b"\x01", version=4), ambiguous) is None
    # readings that agree (any payload, or one both payloads fit) match: the MQTT 5 reading
    value = matched(mqtt.publish("t"), ambiguous)
    assert isinstance(value, mqtt.Publish)
    assert value.version == 5
    either = mqtt.publish("t", regex(rb"\x00?\x01"))
    assert matched(either, ambiguous) == mqtt.parse(ambiguous, version=5)
    assert mqtt.publish("t", b"\x01").explain(ambiguous) == (
        "is an MQTT PUBLISH that is ambiguous: a packet alone does not say which MQTT version "
        "wrote it, and its readings disagree (as version=5 its payload is b'\\x01' (matches); "
        "as version=4 its payload is b'\\x00\\x01' (does not match)); pass the version the "
        "client speaks (its CONNECT's protocol level) to the matcher: "
        "mqtt.publish(..., version=4) or mqtt.publish(..., version=5)"
    )


def test_descriptions_and_explanations() -> None:
    publish = mqtt.publish("cmd/#", b"on", qos=1)
    assert publish.describe() == "MQTT PUBLISH topic 'cmd/#' payload b'on' qos 1"
    assert publish.explain(SUBSCRIBE_4) == "is an MQTT SUBSCRIBE, not a PUBLISH"
    assert publish.explain(mqtt.message("cmd/x", b"off", qos=1)) == (
        "is an MQTT PUBLISH that has payload b'off', not b'on'"
    )
    assert mqtt.publish("a").explain(b"\x30\x03\x00\x01\xff") == (
        "is not a well-formed MQTT packet: its topic name is not UTF-8: invalid start byte"
    )
    assert mqtt.subscribe("x/#", qos=1).explain(SUBSCRIBE_4) == (
        "is an MQTT SUBSCRIBE that subscribes to [('sensors/#', 0)] (topic filter, QoS), "
        "none 'x/#' at QoS 1"
    )
    assert mqtt.publish("t", b"z").explain(mqtt.message("t", b"\x00\x01")) == (
        "is an MQTT PUBLISH that has payload b'\\x01', not b'z' (it reads as version=5, "
        "version=4: pass one to the matcher to choose)"
    )
    assert mqtt.packet().describe() == "MQTT packet"
    assert mqtt.publish(version=5).describe() == "MQTT PUBLISH (read as version 5)"


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "/x", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_topic_matches_as_a_broker(topic_filter: str, topic: str, matches: bool) -> None:
    assert mqtt.topic_matches(topic_filter, topic) is matches


def test_matchers_take_packets_off_a_raw_stream() -> None:
    peer = FakePeer(framing=Raw())
    mqtt.handshake(peer)
    peer.expect(mqtt.publish("cmd/led", qos=1)).reply(mqtt.puback())
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, CONNECT_4 + PUBLISH_QOS1_4[:5]) == [b"\x20\x02\x00\x00"]
    assert rehearsal.send(client, PUBLISH_QOS1_4[5:] + b"\xc0") == [b"\x40\x02\x00\x01"]
    assert rehearsal.send(client, b"\x00") == [b"\xd0\x00"]
    rehearsal.verify()


# -- the framing: the same packets however the bytes are split ------------------------------------


PACKETS = st.one_of(
    st.builds(
        mqtt.message,
        st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8),
        st.binary(max_size=300),
        qos=st.sampled_from([0, 1, 2]),
        version=st.sampled_from([4, 5]),
    ),
    st.sampled_from([CONNECT_4, CONNECT_5, SUBSCRIBE_4, SUBSCRIBE_5, DISCONNECT, b"\xc0\x00"]),
)


@settings(max_examples=40, deadline=None)
@given(packets=st.lists(PACKETS, min_size=1, max_size=4))
def test_the_framing_cuts_the_same_packets_however_split(packets: list[bytes]) -> None:
    assert check_framing(mqtt.framing(), b"".join(packets)) == packets


EDGES = [0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455]


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.sampled_from(EDGES), st.integers(0, 268435455)))
def test_remaining_lengths_at_the_varint_edges(value: int) -> None:
    encoded = varint(value)
    assert len(encoded) == 1 + (value > 127) + (value > 16383) + (value > 2097151)
    header = b"\x30" + encoded
    assert frame_length(header) == len(header) + value
    assert frame_length(header[:-1]) is None  # the Remaining Length still on its way
    framing = mqtt.framing()
    if len(header) + value > framing.max_length:
        with pytest.raises(FramingError, match="max_length"):  # known from the header alone
            framing.decode(header, False)
    elif value == 0:
        assert framing.decode(header, False) == ([header], 2)  # a whole packet already
    else:
        assert framing.decode(header, False) == ([], 0)


@pytest.mark.parametrize("remaining", [0, 127, 128, 16383, 16384])
def test_packets_with_edge_remaining_lengths_round_trip(remaining: int) -> None:
    body = b"" if remaining == 0 else string_topic_body(remaining)
    packet = (b"\xe0" if remaining == 0 else b"\x30") + varint(remaining) + body
    assert check_framing(mqtt.framing(), packet + DISCONNECT) == [packet, DISCONNECT]
    assert mqtt.framing().encode(packet) == packet  # a reply is a whole packet, unchanged


def test_the_framing_decodes_incrementally_and_names_itself() -> None:
    # A wrapper of LengthField (its encode names the builders): the Decoder still gets its
    # waiting/mark pair, so a packet in many small segments costs linear time.
    assert _incremental(mqtt.framing()) is not None
    assert repr(mqtt.framing()) == "mqtt.framing()"
    assert repr(mqtt.framing(max_length=64)) == "mqtt.framing(max_length=64)"
    assert mqtt.framing() == mqtt.framing() != mqtt.framing(max_length=64)
    with pytest.raises(
        ScriptError, match=r"^mqtt.framing\(\): a reply of 2 bytes .* mqtt.connack\(\)"
    ):
        mqtt.framing().encode(b"OK")


def string_topic_body(size: int) -> bytes:
    """A PUBLISH body of ``size`` bytes (at least 3): topic "t" and a payload."""
    return b"\x00\x01t" + bytes(size - 3)


def test_a_packet_over_max_length_names_the_keyword() -> None:
    with pytest.raises(FramingError, match=r"max_length") as caught:
        mqtt.framing(max_length=100).decode(mqtt.message("t", bytes(200)), False)
    assert "100" in str(caught.value)


# -- real clients: paho-mqtt -----------------------------------------------------------------------


class Paho:
    """A paho-mqtt 2 client run by its own thread (``loop_start``), with events to wait on."""

    def __init__(self, peer: FakePeer, protocol: MQTTProtocolVersion, keepalive: int = 60):
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.published = threading.Event()
        self.messages: list[paho.MQTTMessage] = []
        self.received = threading.Event()
        self.client.on_connect = lambda *args: self.connected.set()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_publish = lambda *args: self.published.set()
        self.client.on_message = self._message
        self.client.connect(peer.host, peer.port, keepalive=keepalive)
        self.client.loop_start()

    def _message(self, client: object, userdata: object, message: paho.MQTTMessage) -> None:
        self.messages.append(message)
        self.received.set()

    def wait(self, event: threading.Event) -> None:
        assert event.wait(TIMEOUT)
        event.clear()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


PahoFactory = Callable[..., Paho]


@pytest.fixture
def paho_client() -> Iterator[PahoFactory]:
    """Makes :class:`Paho` clients, and stops their threads at teardown, failed test or not
    (paho reconnects for ever when a connection drops: no thread may outlive its test)."""
    made: list[Paho] = []

    def make(peer: FakePeer, protocol: MQTTProtocolVersion, keepalive: int = 60) -> Paho:
        client = Paho(peer, protocol, keepalive)
        made.append(client)
        return client

    yield make
    for client in made:
        client.client.loop_stop()
        # Close its sockets now: the wake-up socket pair of loop_start() would otherwise wait
        # for the garbage collector (a Paho and its callbacks form a cycle), and then warn.
        client.client.reinitialise()


VERSIONS = [(MQTTProtocolVersion.MQTTv311, 4), (MQTTProtocolVersion.MQTTv5, 5)]


@pytest.fixture(params=VERSIONS, ids=["3.1.1", "5"])
def version(request: pytest.FixtureRequest) -> tuple[MQTTProtocolVersion, int]:
    return request.param  # type: ignore[no-any-return]


def test_paho_connect_subscribe_publish(
    version: tuple[MQTTProtocolVersion, int], paho_client: PahoFactory
) -> None:
    protocol, level = version
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    peer.expect(mqtt.subscribe("sensors/#")).reply(mqtt.suback()).reply(
        mqtt.message("sensors/temp", b"21.5", version=level)
    )
    peer.expect(mqtt.publish("cmd/led", b"on", qos=0, version=level))
    peer.expect(mqtt.publish("cmd/led", b"off", qos=1, version=level)).reply(mqtt.puback())
    peer.expect(mqtt.disconnect())
    with peer.serve():
        client = paho_client(peer, protocol)
        client.wait(client.connected)
        client.client.subscribe("sensors/#")
        client.wait(client.subscribed)
        client.wait(client.received)
        assert [(m.topic, m.payload) for m in client.messages] == [("sensors/temp", b"21.5")]
        client.client.publish("cmd/led", b"on")
        client.client.publish("cmd/led", b"off", qos=1).wait_for_publish(TIMEOUT)
        client.stop()
        peer.wait_until_done(timeout=TIMEOUT)
    (connection,) = peer.connections
    assert [mqtt.parse(m).type.name for m in connection.received] == [
        "CONNECT",
        "SUBSCRIBE",
        "PUBLISH",
        "PUBLISH",
        "DISCONNECT",
    ]
    assert {mqtt.parse(m).version for m in connection.received[:4]} == {level}


def test_paho_pushes_at_qos_1_and_pings(
    version: tuple[MQTTProtocolVersion, int], paho_client: PahoFactory
) -> None:
    protocol, level = version
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    push = mqtt.message("alerts", b"fire", qos=1, packet_id=42, version=level)
    peer.expect(mqtt.subscribe("alerts", qos=1)).reply(mqtt.suback()).reply(push)
    peer.expect(mqtt.packet("PUBACK", packet_id=42))
    peer.expect(mqtt.pingreq()).reply(mqtt.pingresp())
    with peer.serve():
        client = paho_client(peer, protocol, keepalive=1)
        client.wait(client.connected)
        client.client.subscribe("alerts", qos=1)
        client.wait(client.received)
        assert (client.messages[0].payload, client.messages[0].qos) == (b"fire", 1)
        peer.wait_until_done(timeout=TIMEOUT)  # its PUBACK, then a PINGREQ a second later
        client.stop()


def test_paho_gets_a_qos_2_message_of_the_broker_on_its_pubrel(
    version: tuple[MQTTProtocolVersion, int], paho_client: PahoFactory
) -> None:
    """MQTT 3.1.1 §4.3.3: the client answers a QoS 2 PUBLISH with PUBREC, and delivers the
    message once the broker's PUBREL comes (then answers PUBCOMP)."""
    protocol, level = version
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    push = mqtt.message("ledger", b"+1", qos=2, packet_id=9, version=level)
    peer.expect(mqtt.subscribe("ledger", qos=2)).reply(mqtt.suback()).reply(push)
    peer.expect(mqtt.packet("PUBREC", packet_id=9)).reply(mqtt.pubrel())
    peer.expect(mqtt.packet("PUBCOMP", packet_id=9))
    with peer.serve():
        client = paho_client(peer, protocol)
        client.wait(client.connected)
        client.client.subscribe("ledger", qos=2)
        client.wait(client.received)
        assert [(m.topic, m.payload, m.qos) for m in client.messages] == [("ledger", b"+1", 2)]
        peer.wait_until_done(timeout=TIMEOUT)
        client.stop()


def test_paho_qos_2_and_unsubscribe(
    version: tuple[MQTTProtocolVersion, int], paho_client: PahoFactory
) -> None:
    protocol, level = version
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    peer.expect(mqtt.publish("ledger", b"+1", qos=2, version=level)).reply(mqtt.pubrec())
    peer.expect(mqtt.packet("PUBREL")).reply(mqtt.pubcomp())
    peer.expect(mqtt.subscribe("news")).reply(mqtt.suback())
    peer.expect(mqtt.unsubscribe("news")).reply(mqtt.unsuback())
    unsubscribed = threading.Event()
    with peer.serve():
        client = paho_client(peer, protocol)
        client.client.on_unsubscribe = lambda *args: unsubscribed.set()
        client.wait(client.connected)
        client.client.publish("ledger", b"+1", qos=2).wait_for_publish(TIMEOUT)  # PUBCOMP
        client.client.subscribe("news")
        client.wait(client.subscribed)
        client.client.unsubscribe("news")
        assert unsubscribed.wait(TIMEOUT)
        client.stop()
        peer.wait_until_done(timeout=TIMEOUT)


def test_a_client_that_publishes_elsewhere_fails_with_a_diagnosis(paho_client: PahoFactory) -> None:
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    peer.expect(mqtt.publish("cmd/led", b"on"))

    def run() -> None:
        with peer.serve():
            client = paho_client(peer, MQTTProtocolVersion.MQTTv311)
            client.wait(client.connected)
            client.client.publish("cmd/lamp", b"on").wait_for_publish(TIMEOUT)
            peer.wait_until_done(timeout=TIMEOUT)

    with pytest.raises(UnexpectedData) as caught:
        run()
    text = str(caught.value)
    assert "MQTT PUBLISH topic 'cmd/led' payload b'on'" in text
    assert "is an MQTT PUBLISH that has topic 'cmd/lamp', not 'cmd/led'" in text


def test_a_suback_with_the_wrong_number_of_codes_fails_the_reply(paho_client: PahoFactory) -> None:
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    peer.expect(mqtt.subscribe("a")).reply(mqtt.suback(0, 1))

    def run() -> None:
        with peer.serve():
            client = paho_client(peer, MQTTProtocolVersion.MQTTv311)
            client.wait(client.connected)
            client.client.subscribe("a")
            peer.wait_until_done(timeout=TIMEOUT)

    with pytest.raises(ReplyFailed, match=r"has 2 codes for a SUBSCRIBE of 1 topic filters"):
        run()


# -- real clients: aiomqtt -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("protocol", "level"),
    [(aiomqtt.ProtocolVersion.V311, 4), (aiomqtt.ProtocolVersion.V5, 5)],
    ids=["3.1.1", "5"],
)
async def test_aiomqtt(protocol: aiomqtt.ProtocolVersion, level: int) -> None:
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    peer.expect(mqtt.subscribe("sensors/+/temp")).reply(mqtt.suback()).reply(
        mqtt.message("sensors/kitchen/temp", b"19.0", version=level)
    )
    peer.expect(mqtt.publish("cmd/led", b"on", qos=1, version=level)).reply(mqtt.puback())
    peer.expect(mqtt.publish("cmd/led", b"off", qos=0, version=level))
    peer.expect(mqtt.pingreq()).reply(mqtt.pingresp())  # a second later
    async with peer.serve():
        client = aiomqtt.Client(
            peer.host, peer.port, protocol=protocol, identifier="kit", keepalive=1
        )
        async with client:
            await client.subscribe("sensors/+/temp")
            async with asyncio.timeout(TIMEOUT):
                message = await anext(aiter(client.messages))
            assert (str(message.topic), message.payload) == ("sensors/kitchen/temp", b"19.0")
            await client.publish("cmd/led", b"on", qos=1, timeout=TIMEOUT)
            await client.publish("cmd/led", b"off")
            await peer.wait_until_done_async(timeout=TIMEOUT)  # up to the PINGREQ
    connect = mqtt.parse(peer.connections[0].received[0])
    assert isinstance(connect, mqtt.Connect)
    assert (connect.client_id, connect.version) == ("kit", level)


def test_connection_scripts_take_the_preset_too() -> None:
    peer = FakePeer(framing=mqtt.framing())
    second = peer.on_connection(1)
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    rules = mqtt.handshake(second, session_present=True)
    assert {rule.where for rule in rules} == {f"test_protocol_mqtt.py:{line}"}  # not the kit
    assert [rule.matcher.describe() for rule in rules if rule.matcher] == [
        "MQTT CONNECT",
        "MQTT PINGREQ",
        "MQTT DISCONNECT",
    ]
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, CONNECT_5) == [b"\x20\x03\x01\x00\x00"]
    assert rehearsal.send(client, DISCONNECT) == []
    rehearsal.verify()
