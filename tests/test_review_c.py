"""Reviewer C (issue 15): reproductions that FAIL on 08cac7f. Every wait is bounded."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from fakepeer import Error, FakePeer, Lines, ScriptError, UnexpectedData
from fakepeer.protocols import modbus, mqtt, resp

TIMEOUT = 5.0


def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data``, shut our side, return all the peer sent until it closed."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    return received


# -- early reply checks (Rule._add -> _framing.encodable) -----------------------------------


class SequencedLines:
    """A custom framing as the docs allow one (streaming, decode, encode): each reply carries
    a sequence number, as MySQL's packets do. Nothing in docs/api-framing.md says encode
    must be free of state."""

    streaming = False

    def __init__(self) -> None:
        self.sequence = 0

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        return Lines().decode(buffer, eof)

    def encode(self, message: bytes) -> bytes:
        framed = bytes([self.sequence]) + message + b"\n"
        self.sequence += 1
        return framed


def test_early_check_does_not_consume_a_custom_framings_encode() -> None:
    # 08cac7f: the check as the rule is written calls encode() once per constant reply, so
    # the wire carries sequence numbers 2 and 3 instead of 0 and 1.
    peer = FakePeer(framing=SequencedLines())
    peer.expect(b"a").reply(b"x")
    peer.expect(b"b").reply(b"y")
    with peer.serve():
        assert _exchange(peer.address, b"a\nb\n") == b"\x00x\n\x01y\n"


class ByteLength:
    """A custom framing whose encode raises struct.error (not a ScriptError) past 255."""

    streaming = False

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        return Lines().decode(buffer, eof)

    def encode(self, message: bytes) -> bytes:
        return struct.pack(">B", len(message)) + message


def test_a_custom_encode_that_raises_otherwise_is_no_crash_of_reply() -> None:
    # encodable()'s docstring: "a framing of your own that raises anything else is left to
    # the send"; on 08cac7f struct.error escapes from .reply() at the test's line.
    peer = FakePeer(framing=ByteLength())
    with contextlib.suppress(ScriptError):  # acceptable too: a ScriptError at the line
        peer.expect(b"a").reply(b"x" * 300)


def test_a_deeply_nested_resp_reply_is_no_recursion_error() -> None:
    # RESP allows any nesting; _resp_wire._value_end recurses: RecursionError from .reply().
    nested = b"*1\r\n" * 3000 + b":1\r\n"
    peer = FakePeer(framing=resp.framing())
    with contextlib.suppress(ScriptError):  # acceptable too
        peer.expect(resp.command("GET", "k")).reply(nested)


# -- UDP: a reply no datagram can carry ------------------------------------------------------


def test_a_udp_reply_too_big_for_a_datagram_fails_the_test() -> None:
    # 08cac7f: nothing fails; the transcript says '#1 sent ... 70000 bytes' and notes
    # 'ICMP: OSError: [Errno 90] Message too long (a client's port is closed?)'.
    peer = FakePeer(transport="udp")
    with pytest.raises(Error):  # noqa: PT012
        peer.expect(b"hi").reply(b"x" * 70000)
        with peer.serve():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"hi", peer.address)
            peer.wait_until_done(timeout=TIMEOUT)


# -- MQTT ------------------------------------------------------------------------------------


def test_mqtt_has_a_pubrel_for_a_qos_2_message_of_the_broker() -> None:
    # mqtt.message(qos=2): the client answers PUBREC and waits for the broker's PUBREL
    # (MQTT 3.1.1 §4.3.3, fig. 4.3) before paho calls on_message; the kit has no builder.
    pubrec = b"\x50\x02\x00\x07"
    assert mqtt.pubrel()(mqtt.parse(pubrec)) == b"\x62\x02\x00\x07"


def test_mqtt_a_3_1_1_payload_starting_with_0x00_keeps_its_first_byte() -> None:
    # paho 3.1.1 publishes b"\x00\x2a" (a big-endian 42): the reply gets payload b"*".
    # (Fix C: the same bytes are an MQTT 5 client's b"*", and a matcher sees one packet, not
    # the connection's CONNECT: the script says which version its client speaks, version=4.)
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    got: list[mqtt.Publish] = []

    def acknowledge(packet: mqtt.Publish) -> bytes:
        got.append(packet)
        return mqtt.puback()(packet)

    peer.expect(mqtt.publish("t", qos=1, version=4)).reply(acknowledge)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    try:
        with peer.serve():
            client.connect(peer.host, peer.port)
            client.loop_start()
            assert connected.wait(TIMEOUT)
            client.publish("t", b"\x00\x2a", qos=1).wait_for_publish(TIMEOUT)
            peer.wait_until_done(timeout=TIMEOUT)
    finally:
        client.disconnect()
        client.loop_stop()
        client.reinitialise()
    assert (got[0].version, got[0].payload) == (4, b"\x00\x2a")


def test_mqtt_explain_offers_no_version_choice_for_a_wrong_packet_type() -> None:
    # The version cannot make a PUBLISH a PUBREC: the hint is noise (seen with paho).
    publish = b"\x34\x0d\x00\x03t/u\x00\x02\x00hello"
    why = mqtt.packet("PUBREC").explain(publish)
    assert "pass one to the matcher" not in why, why


def test_mqtt_message_refuses_dup_at_qos_0() -> None:
    # MQTT 3.1.1 §3.3.1.1 [MQTT-3.3.1-2] / MQTT 5 [MQTT-3.3.1-2]: DUP MUST be 0 at QoS 0.
    with pytest.raises(ScriptError):
        mqtt.message("t", b"x", qos=0, dup=True)


# -- Modbus ----------------------------------------------------------------------------------


def _mbap(transaction: int, unit: int, pdu: bytes) -> bytes:
    return (
        transaction.to_bytes(2, "big")
        + b"\x00\x00"
        + (len(pdu) + 1).to_bytes(2, "big")
        + (bytes([unit]) + pdu)
    )


@pytest.mark.parametrize(
    ("pdu", "function"),
    [
        (b"\x10\x00\x00\x00\x00\x00", 0x10),  # write multiple registers, quantity 0
        (b"\x0f\x00\x00\x07\xb1\xf7" + b"\x00" * 247, 0x0F),  # write 1969 coils (max 1968)
    ],
    ids=["fc16-quantity-0", "fc15-1969-coils"],
)
def test_modbus_device_answers_an_illegal_write_quantity_with_exception_3(
    pdu: bytes, function: int
) -> None:
    # Modbus Application Protocol V1.1b3 §6.11 (quantity 1 to 0x07B0) and §6.12 (1 to
    # 0x007B): outside, exception code 03. 08cac7f answers the write as done.
    peer = FakePeer(framing=modbus.framing())
    modbus.device(peer, holding_registers={0: 1}, coils=dict.fromkeys(range(2000), False))
    with peer.serve():
        answer = _exchange(peer.address, _mbap(9, 1, pdu))
    assert answer == _mbap(9, 1, bytes([function | 0x80, 3]))


def test_mqtt_handshake_refusing_closes_the_connection() -> None:
    # MQTT 3.1.1 §3.2.2.3 [MQTT-3.2.2-5]: after a CONNACK with a non-zero return code the
    # server MUST close the connection (MQTT 5 [MQTT-3.2.2-7], codes >= 0x80). The howto's
    # "connack(session_present=True, code=5) refuses a connection" also breaks
    # [MQTT-3.2.2-4]: Session Present MUST be 0 with a non-zero code.
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer, code=5)
    connect_4 = b"\x10\x0c\x00\x04MQTT\x04\x02\x00<\x00\x00"
    with peer.serve(), socket.create_connection(peer.address, timeout=2) as sock:
        sock.sendall(connect_4)
        received = b""
        try:
            while chunk := sock.recv(100):
                received += chunk
        except TimeoutError:
            pytest.fail(f"the peer kept the connection open after {received!r}")
    assert received == b"\x20\x02\x00\x05"


def test_mqtt_publish_payload_does_not_match_a_3_1_1_payload_less_its_first_byte() -> None:
    # A 3.1.1 client (its CONNECT says level 4) publishes b"\x00*" at QoS 0: the script
    # wants b"*", and 08cac7f says it matched (the MQTT 5 reading eats the 0x00 as an empty
    # properties length), so a test of a client that sends the wrong bytes passes.
    connect_4 = b"\x10\x0c\x00\x04MQTT\x04\x02\x00<\x00\x00"
    publish_4 = b"\x30\x05\x00\x01t\x00*"
    peer = FakePeer(framing=mqtt.framing())
    mqtt.handshake(peer)
    peer.expect(mqtt.publish("t", b"*"))
    with (  # noqa: PT012
        pytest.raises(UnexpectedData),
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        sock.sendall(connect_4 + publish_4)
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        peer.wait_until_done(timeout=2)
