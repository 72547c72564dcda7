"""Review (issue 15), newcomer 2: an IoT/MQTT/Modbus/Redis user following the docs.

Each test FAILS on the reviewed code: it states what the docs promise.
"""

from __future__ import annotations

import socket

import pytest

from fakepeer import ANY, ConversationError, FakePeer, Matched, Matcher, ScriptError
from fakepeer._explain import framing_hint
from fakepeer.protocols import modbus, mqtt, resp


def _send(address: tuple[str, int], data: bytes) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        sock.recv(10)  # the peer fails the connection and closes it


def _failure(peer: FakePeer, data: bytes) -> str:
    with pytest.raises(ConversationError) as info, peer.serve():
        _send(peer.address, data)
    return str(info.value)


def test_forgotten_resp_framing_is_named_when_redis_py_says_hello_first() -> None:
    # api-protocols.md: "with another framing, such as Raw(), they match nothing, and a
    # failure says that the matcher needs its kit's framing". redis-py's first command is
    # HELLO 3, which resp.handshake()'s always rule would take as a whole message; the
    # failure only says "the data is the command 'HELLO', not 'GET'" (the handshake looks
    # broken) and never mentions the framing.
    peer = FakePeer()  # forgot framing=resp.framing()
    resp.handshake(peer)
    peer.expect(resp.command("GET", "k")).reply(resp.bulk_string("v"))
    text = _failure(peer, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
    assert "framing" in text.split("fake peer")[0], text


def test_publish_matcher_with_the_wrong_version_does_not_call_the_packet_malformed() -> None:
    # A well-formed MQTT 3.1.1 PUBLISH (QoS 1, payload b"on"), a matcher with version=5
    # (the test's mistake): the failure says "the data is not a well-formed MQTT packet: it
    # ends inside its properties", which sends the reader after the client. It should say
    # that it does not read as version 5, and what it is as version 4.
    peer = FakePeer(framing=mqtt.framing())
    peer.expect(mqtt.publish("heating/kitchen", b"on", qos=1, version=5))
    publish = b"\x32\x15\x00\x0fheating/kitchen\x00\x01on"
    text = _failure(peer, publish).split("fake peer")[0]
    assert "not a well-formed MQTT packet" not in text, text
    assert "version=4" in text or "version 4" in text, text


@pytest.mark.parametrize(
    "build",
    [
        lambda: modbus.registers(ANY),  # type: ignore[arg-type]
        lambda: modbus.registers([ANY, 5]),  # type: ignore[list-item]
        lambda: modbus.coils(ANY),  # type: ignore[arg-type]
        lambda: modbus.coils([ANY, False]),  # type: ignore[list-item]
    ],
    ids=["registers(ANY)", "registers([ANY, 5])", "coils(ANY)", "coils([ANY, False])"],
)
def test_reply_builders_refuse_any_where_written(build) -> None:  # type: ignore[no-untyped-def]
    # modbus.registers()/coils() validate with the matchers' helper, which lets ANY through:
    # registers(ANY) is a bare AssertionError, registers([ANY]) is accepted and raises
    # AttributeError when the peer answers (a ReplyFailed), coils([ANY]) silently sends True.
    # The error text of registers([70000]) even says "... or ANY".
    with pytest.raises(ScriptError):
        build()


@pytest.mark.parametrize(
    ("framing", "kit"),
    [(mqtt.framing(), "mqtt."), (modbus.framing(), "modbus.")],
    ids=["mqtt", "modbus"],
)
def test_a_str_reply_under_a_kit_framing_names_the_builders(framing, kit) -> None:  # type: ignore[no-untyped-def]
    # api-protocols.md, "Every kit has the same shape": the framing's encode "checks that a
    # reply is one (ScriptError naming the builders, raised where a constant reply is
    # written)". resp does; mqtt and modbus say only "a reply of 2 bytes is not the frame
    # its length field declares ... LengthField(offset=1, size='varint', ...)".
    peer = FakePeer(framing=framing)
    with pytest.raises(ScriptError) as info:
        peer.expect(ANY).reply("OK")
    assert kit in str(info.value), str(info.value)


# -- the fixes' own edges ---------------------------------------------------------------------


class _WholeOnly(Matcher):
    """Matches b"HI" as a whole message only, as a kit's matcher does."""

    def match(self, data: bytes, *, stream: bool = False) -> Matched | None:
        return Matched(data, len(data)) if data == b"HI" and not stream else None

    def describe(self) -> str:
        return "whole HI"


class _Raises(_WholeOnly):
    def match(self, data: bytes, *, stream: bool = False) -> Matched | None:
        raise RuntimeError("boom")


class _StreamAware(_WholeOnly):
    def _explain(self, data: bytes, stream: bool) -> str:  # judges the stream itself
        return "does not match in stream mode"


def test_the_framing_hint_names_any_whole_message_rule_and_never_raises() -> None:
    peer = FakePeer()
    rules = [peer.expect(_Raises()), peer.always(_StreamAware()), peer.always(_WholeOnly())]
    hint = framing_hint(b"HI", rules, stream=True)
    assert hint.startswith("\n  hint:      always #2 whole HI"), hint
    assert "FakePeer(framing=<kit>.framing())" in hint
    assert framing_hint(b"HI", rules, stream=False) == ""  # a message framing: nothing forgot
    assert framing_hint(b"HO", rules, stream=True) == ""  # no rule would take it whole
    assert framing_hint(b"HI", rules[:2], stream=True) == ""  # raising / stream-aware: none


def test_a_version_4_matcher_on_an_mqtt_5_only_packet_says_what_it_is() -> None:
    # A QoS 0 PUBLISH of 3.1.1: read as 5, the payload's b"o" is a property length that
    # runs past the end. The failure names what it is as 3.1.1, and the version to pass.
    matcher = mqtt.publish("cmd", b"on", version=5)
    text = matcher.explain(b"\x30\x07\x00\x03cmdon")
    assert text == (
        "does not read as MQTT 5; as 3.1.1 it is a PUBLISH of b'on' to 'cmd' (does the "
        "client speak 3.1.1? then version=4)"
    ), text


def test_coils_and_write_single_coil_agree_on_0_and_1() -> None:
    assert modbus.write_single_coil(1, 1).describe() == modbus.write_single_coil(1, True).describe()
    modbus.coils([1, 0, True])  # accepted, as in write_multiple_coils
    with pytest.raises(ScriptError, match=r"takes True, False, 0, 1 or ANY, got 2"):
        modbus.write_single_coil(1, 2)
    with pytest.raises(ScriptError, match=r"takes True, False, 0 or 1, got 2"):
        modbus.coils([2])
