"""Tests of :class:`fakepeer.LengthField`: the general length-field framing (Netty's
LengthFieldBasedFrameDecoder terms), against the protocols it must express, and end to end."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any, Literal, TypeAlias

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fakepeer
from fakepeer import (
    FakePeer,
    Framing,
    FramingError,
    LengthField,
    LengthPrefixed,
    ScriptError,
    UnexpectedData,
)
from fakepeer._explain import waits_for
from fakepeer._framing import Decoder, check_framing
from fakepeer.testing import check_framing as check_splits
from test_framing import (
    TOKENS,
    counting_decode,
    error_text,
    feed,
    incrementally,
    per_segment,
    split_at,
)

TIMEOUT = 5.0
Size: TypeAlias = int | Literal["varint"]


def varint(value: int) -> bytes:
    """A variable-length integer, written here apart from the code under test: 7 bits a byte,
    least significant first, the high bit on all but the last (MQTT 5.0 §1.5.5)."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(value & 0x7F)
        value >>= 7
    return bytes([group | 0x80 for group in groups[:-1]] + [groups[-1]])


# -- the protocols it must express, with real frames -------------------------------------------

#: Modbus/TCP (Modbus Messaging on TCP/IP Implementation Guide V1.0b, §3.1.3): transaction id,
#: protocol id 0, the length of what follows (unit id and PDU), unit id, PDU. A Read Holding
#: Registers request (function 3, address 0, 2 registers) and its response (4 data bytes).
MBAP_REQUEST = bytes.fromhex("0001 0000 0006 01 03 0000 0002")
MBAP_RESPONSE = bytes.fromhex("0001 0000 0007 01 03 04 000a 000b")
#: MQTT (3.1.1 §2.2, 5.0 §2.1): a type-and-flags byte, the Remaining Length as a Variable Byte
#: Integer. PINGREQ; a QoS 0 PUBLISH of "hi" to "a/b"; a PUBLISH whose length takes 2 bytes.
MQTT_PINGREQ = b"\xc0\x00"
MQTT_PUBLISH = b"\x30\x07\x00\x03a/bhi"
MQTT_LONG = b"\x30\xc1\x02\x00\x01t" + b"x" * 318  # 321 = 0xC1 0x02, the spec's example
#: DNS over TCP (RFC 1035 §4.2.2): a two-byte length, then the DNS message (a query for
#: example.com A, 29 bytes).
DNS_QUERY = (
    bytes.fromhex("abcd 0100 0001 0000 0000 0000") + b"\x07example\x03com\x00\x00\x01\x00\x01"
)
#: PostgreSQL v3 (Frontend/Backend Protocol, Message Formats): a type byte, an Int32 length
#: that counts itself but not the type byte. Query "SELECT 1;" and Sync.
PG_QUERY = b"Q\x00\x00\x00\x0eSELECT 1;\x00"
PG_SYNC = b"S\x00\x00\x00\x04"
#: TPKT (RFC 1006 §6): version 3, reserved, a 16-bit length of the whole packet; an X.224
#: Connection Request as RDP sends it (MS-RDPBCGR 4.1.1), 19 bytes.
TPKT_CR = bytes.fromhex("0300 0013 0ee0 0000 0000 00 0100 0800 0300 0000")
#: Kafka (protocol guide): an Int32 size, then the request: ApiVersions v0, correlation id 1,
#: client id "kafka-python".
KAFKA_API_VERSIONS = bytes.fromhex("0012 0000 00000001 000c") + b"kafka-python"
#: protobuf (Encoding guide): field 1 = 150 is 08 96 01; length-delimited streams put its
#: varint length before it (Java's writeDelimitedTo, Netty's ProtobufVarint32FrameDecoder).
PROTOBUF_150 = bytes.fromhex("089601")

#: (name, framing, stream on the wire, the messages a rule sees).
PROTOCOLS: list[tuple[str, LengthField, bytes, list[bytes]]] = [
    (
        "Modbus/TCP MBAP",
        LengthField(offset=4, size=2),
        MBAP_REQUEST + MBAP_RESPONSE,
        [MBAP_REQUEST, MBAP_RESPONSE],
    ),
    (
        "MQTT fixed header",
        LengthField(offset=1, size="varint"),
        MQTT_PINGREQ + MQTT_PUBLISH + MQTT_LONG,
        [MQTT_PINGREQ, MQTT_PUBLISH, MQTT_LONG],
    ),
    (
        "DNS over TCP",
        LengthField(size=2, strip=2),
        b"\x00\x1d" + DNS_QUERY + b"\x00\x1d" + DNS_QUERY,
        [DNS_QUERY, DNS_QUERY],
    ),
    (
        "PostgreSQL v3",
        LengthField(offset=1, size=4, adjustment=-4),
        PG_QUERY + PG_SYNC,
        [PG_QUERY, PG_SYNC],
    ),
    ("TPKT", LengthField(offset=2, size=2, adjustment=-4), TPKT_CR + TPKT_CR, [TPKT_CR] * 2),
    (
        "Kafka",
        LengthField(size=4, strip=4),
        b"\x00\x00\x00\x16" + KAFKA_API_VERSIONS,
        [KAFKA_API_VERSIONS],
    ),
    (
        "protobuf, length-delimited",
        LengthField(size="varint", strip="header"),
        b"\x03" + PROTOBUF_150 + b"\x00" + b"\x03" + PROTOBUF_150,
        [PROTOBUF_150, b"", PROTOBUF_150],
    ),
]


@pytest.mark.parametrize(
    ("framing", "stream", "messages"),
    [case[1:] for case in PROTOCOLS],
    ids=[case[0] for case in PROTOCOLS],
)
def test_it_expresses_the_protocols(
    framing: LengthField, stream: bytes, messages: list[bytes]
) -> None:
    assert len(DNS_QUERY) == 0x1D  # the frames are right
    assert len(KAFKA_API_VERSIONS) == 0x16
    # However the stream is split (every cut, every byte alone), with nothing left over.
    assert check_splits(framing, stream, messages) == messages


@pytest.mark.parametrize(
    ("framing", "stream", "messages"),
    [case[1:] for case in PROTOCOLS],
    ids=[case[0] for case in PROTOCOLS],
)
def test_replies_to_the_protocols_are_framed_back(
    framing: LengthField, stream: bytes, messages: list[bytes]
) -> None:
    """Whole frames (strip=0) go out as written; a stripped header is put back."""
    assert b"".join(framing.encode(message) for message in messages) == stream


@pytest.mark.parametrize(
    ("value", "encoded"),
    [  # MQTT 5.0 §1.5.5, Table 1-1: the boundaries of each length
        (0, "00"),
        (127, "7f"),
        (128, "8001"),
        (16_383, "ff7f"),
        (16_384, "808001"),
        (2_097_151, "ffff7f"),
        (2_097_152, "80808001"),
        (268_435_455, "ffffff7f"),
    ],
)
def test_varint_lengths_as_mqtt_specifies(value: int, encoded: str) -> None:
    framing = LengthField(size="varint", strip="header", max_length=1 << 29)
    assert varint(value).hex() == encoded
    header = bytes.fromhex(encoded)
    assert framing._frame(header, 0) == (len(header) + value, len(header))
    if value < 1000:
        assert framing.encode(b"x" * value) == header + b"x" * value


# -- decode tables -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framing", "buffer", "messages", "consumed"),
    [
        (LengthField(), b"", [], 0),
        (LengthField(), b"\x00\x00\x00", [], 0),
        (LengthField(), b"\x00\x00\x00\x00", [b"\x00\x00\x00\x00"], 4),
        (LengthField(), b"\x00\x00\x00\x02ab\x00", [b"\x00\x00\x00\x02ab"], 6),
        (LengthField(size=2, byteorder="little"), b"\x02\x00ab", [b"\x02\x00ab"], 4),
        (LengthField(size=3), b"\x00\x00\x01a", [b"\x00\x00\x01a"], 4),
        (LengthField(size=8, strip=8), bytes(7) + b"\x01a", [b"a"], 9),
        (LengthField(offset=2, size=1, strip=1), b"AB\x01c", [b"B\x01c"], 4),
        (LengthField(offset=1, size=1, adjustment=2), b"T\x00xy", [b"T\x00xy"], 4),
        (LengthField(offset=1, size=1, adjustment=2), b"T\x00x", [], 0),
        (LengthField(size=1, adjustment=-1, strip=1), b"\x01\x03ab", [b"", b"ab"], 4),
        (LengthField(offset=1, size="varint"), b"\x10\x80", [], 0),
        (LengthField(offset=1, size="varint"), b"\x10\x80\x00", [b"\x10\x80\x00"], 3),  # long form
        (LengthField(offset=2, size="varint", strip=2), b"AB\x01c", [b"\x01c"], 4),
        (LengthField(offset=2, size="varint", strip="header"), b"AB\x01c", [b"c"], 4),
    ],
)
def test_decode(framing: LengthField, buffer: bytes, messages: list[bytes], consumed: int) -> None:
    assert framing.decode(buffer, False) == (messages, consumed)
    assert framing.decode(buffer, True) == (messages, consumed)  # EOF changes nothing


def with_hint(diagnosis: str) -> str:
    return f"{diagnosis}\n  hint:      if such a message is right, raise the limit: " + (
        "LengthField(max_length=...)"
    )


@pytest.mark.parametrize(
    ("framing", "buffer", "diagnosis"),
    [
        (
            LengthField(offset=4, size=2, max_length=20),
            b"\x00\x01\x00\x00\x00\x0f",  # no need for the bytes: the header says it all
            with_hint(
                "the length field declares 15 bytes, a frame of 21 bytes, over the limit of "
                "20 bytes of LengthField(offset=4, size=2, max_length=20)\n"
                "  header:    '\\x00\\x01\\x00\\x00\\x00\\x0f'"
            ),
        ),
        (
            LengthField(offset=1, size=4, adjustment=-4),
            b"Q\x00\x00\x00\x02SELECT",
            "the length field declares 2 bytes, and with adjustment=-4 the frame would be 3 "
            "bytes, shorter than its own 5-byte header (offset 1 + a 4-byte length field) of "
            "LengthField(offset=1, adjustment=-4)\n  header:    'Q\\x00\\x00\\x00\\x02'",
        ),
        (
            LengthField(size=2, adjustment=-3),
            b"\x00\x01",
            "the length field declares 1 bytes, and with adjustment=-3 the frame would be 0 "
            "bytes, shorter than its own 2-byte header (a 2-byte length field) of "
            "LengthField(size=2, adjustment=-3)\n  header:    '\\x00\\x01'",
        ),
        (
            LengthField(offset=1, size="varint"),
            b"\x30\xff\xff\xff\xff\x01",
            "the length field at offset 1 of LengthField(offset=1, size='varint') is a "
            "malformed varint: all its 4 bytes have the continuation bit (0x80) set, and it "
            "takes at most 4 (values up to 268,435,455, as MQTT's Variable Byte Integer)\n"
            "  header:    '0\\xff\\xff\\xff\\xff'",
        ),
        (
            LengthField(offset=1, size="varint", max_length=3),
            b"\x30\x80\x80",  # a frame of at least 4 bytes, before the varint ends
            with_hint(
                "the varint length field runs on: a frame of at least 4 bytes, over the limit "
                "of 3 bytes of LengthField(offset=1, size='varint', max_length=3)\n"
                "  header:    '0\\x80\\x80'"
            ),
        ),
        (
            LengthField(size="varint", max_length=200),
            b"\xc8\x01",
            with_hint(
                "the length field declares 200 bytes, a frame of 202 bytes, over the limit "
                "of 200 bytes of LengthField(size='varint', max_length=200)\n"
                "  header:    '\\xc8\\x01'"
            ),
        ),
    ],
)
def test_decode_errors(framing: LengthField, buffer: bytes, diagnosis: str) -> None:
    assert error_text(lambda: framing.decode(buffer, False)) == diagnosis
    # Frames before the bad one make no difference: the error is raised at once.
    first = framing.encode(bytes(framing.offset) + varint(0)) if framing.size == "varint" else b""
    assert error_text(lambda: framing.decode(first + buffer, False)) == diagnosis


def test_default_max_length() -> None:
    assert LengthField().max_length == 16 << 20  # like LengthPrefixed: capped at 16 MiB
    assert LengthField(size=1).max_length == 256
    assert LengthField(size=2).max_length == 65537
    assert LengthField(offset=4, size=2).max_length == 65541  # Modbus: 6 + 65535
    assert LengthField(offset=2, size=2, adjustment=-4).max_length == 65535  # TPKT
    assert LengthField(size=3).max_length == 16 << 20
    assert LengthField(size="varint").max_length == 16 << 20
    assert LengthField(size=1, adjustment=-255).max_length == 1


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "diagnosis"),
    [
        (
            {"offset": -1},
            "LengthField(offset=...) takes the length field's position in the frame, a whole "
            "number of bytes >= 0, got -1",
        ),
        (
            {"offset": 1.0},
            "LengthField(offset=...) takes the length field's position in the frame, a whole "
            "number of bytes >= 0, got 1.0",
        ),
        ({"size": 5}, "LengthField(size=...) takes 1, 2, 3, 4 or 8 (bytes), or 'varint', got 5"),
        (
            {"size": True},
            "LengthField(size=...) takes 1, 2, 3, 4 or 8 (bytes), or 'varint', got True",
        ),
        (
            {"size": "vint"},
            "LengthField(size=...) takes 1, 2, 3, 4 or 8 (bytes), or 'varint', got 'vint'",
        ),
        ({"byteorder": "net"}, "LengthField(byteorder=...) takes 'big' or 'little', got 'net'"),
        (
            {"size": "varint", "byteorder": "little"},
            "LengthField(size='varint', byteorder='little'): a varint has its own order (the "
            "least significant 7 bits first); leave byteorder= out",
        ),
        (
            {"adjustment": 1.5},
            "LengthField(adjustment=...) takes a whole number of bytes (added to the field's "
            "value), got 1.5",
        ),
        (
            {"size": 1, "adjustment": -256},
            "LengthField(adjustment=-256) leaves no frame possible: the length field declares "
            "at most 255 bytes, so every frame would end before its own header",
        ),
        (
            {"strip": -1},
            "LengthField(strip=...) takes a whole number of bytes >= 0 or 'header', got -1",
        ),
        (
            {"strip": "all"},
            "LengthField(strip=...) takes a whole number of bytes >= 0 or 'header', got 'all'",
        ),
        (
            {"offset": 4, "size": 2, "strip": 7},
            "LengthField(strip=7) strips more than the header (offset 4 + a 2-byte length "
            "field: 6 bytes): a frame's body is the rules' to match; strip at most the header",
        ),
        (
            {"offset": 1, "size": "varint", "strip": 2},
            "LengthField(offset=1, size='varint', strip=2): a varint has no fixed size, so strip "
            "may cut the 1 byte(s) before it, or the whole header with strip='header', not a "
            "number of bytes into the field",
        ),
        (
            {"max_length": 0},
            "LengthField(max_length=...) takes a whole number of bytes >= 1, got 0",
        ),
        (
            {"offset": 4, "size": 2, "max_length": 5},
            "LengthField(max_length=5) leaves no room for a message: the framing alone (offset "
            "4 + a 2-byte length field) takes 6 bytes",
        ),
        (
            {"size": "varint", "adjustment": 2, "max_length": 2},
            "LengthField(max_length=2) leaves no room for a message: the framing alone (a "
            "1-byte varint + adjustment=2) takes 3 bytes",
        ),
    ],
)
def test_bad_arguments_name_the_keyword(arguments: dict[str, Any], diagnosis: str) -> None:
    assert error_text(lambda: LengthField(**arguments), ScriptError) == diagnosis


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        LengthField(4)  # type: ignore[call-arg]


# -- encode --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framing", "message", "framed"),
    [
        (LengthField(size=2, strip=2), b"PONG", b"\x00\x04PONG"),
        (LengthField(size=2, byteorder="little", strip=2), b"PONG", b"\x04\x00PONG"),
        (LengthField(size=3, strip="header"), b"", b"\x00\x00\x00"),
        (LengthField(size=1, adjustment=-1, strip=1), b"ab", b"\x03ab"),  # counts itself
        (LengthField(size=1, adjustment=2, strip=1), b"abc", b"\x01abc"),
        (LengthField(size="varint", strip="header"), b"x" * 200, b"\xc8\x01" + b"x" * 200),
        (LengthField(offset=4, size=2), MBAP_RESPONSE, MBAP_RESPONSE),  # whole, unchanged
        (LengthField(offset=1, size="varint"), MQTT_LONG, MQTT_LONG),
    ],
)
def test_encode(framing: LengthField, message: bytes, framed: bytes) -> None:
    assert framing.encode(message) == framed
    assert framing.decode(framed, False) == ([message], len(framed))


def test_max_length_bounds_what_the_client_sends_not_the_replies() -> None:
    """The limit guards against a client's runaway length; the script's replies are its own."""
    for framing in (
        LengthField(offset=1, size="varint", max_length=10),
        LengthField(size=2, strip=2, max_length=10),
    ):
        reply = framing.encode(MQTT_LONG if framing.strip == 0 else b"x" * 300)
        assert len(reply) > 300
        with pytest.raises(FramingError):
            framing.decode(reply, False)


@pytest.mark.parametrize(
    ("framing", "message", "diagnosis"),
    [
        (
            LengthField(offset=4, size=2),
            MBAP_RESPONSE[:-1],
            "a reply of 12 bytes is not the frame its length field declares: '\\x00\\x07' at "
            "offset 4 says a frame of 13 bytes for LengthField(offset=4, size=2) (strip=0: a "
            "reply is a whole frame, length field included)\n"
            "  reply:     '\\x00\\x01\\x00\\x00\\x00\\x07\\x01\\x03\\x04\\x00\\n\\x00'",
        ),
        (
            LengthField(offset=4, size=2),
            b"\x00\x01\x00",
            "a reply of 3 bytes is shorter than the header of LengthField(offset=4, size=2) "
            "(strip=0: a reply is a whole frame, length field included)\n"
            "  reply:     '\\x00\\x01\\x00'",
        ),
        (
            LengthField(offset=1, size=4, adjustment=-4),
            b"Q\x00\x00\x00\x01",
            "a reply is not a frame of LengthField(offset=1, adjustment=-4) (strip=0: a reply "
            "is a whole frame): the length field declares 1 bytes, and with adjustment=-4 the "
            "frame would be 2 bytes, shorter than its own 5-byte header (offset 1 + a 4-byte "
            "length field) of LengthField(offset=1, adjustment=-4)\n"
            "  reply:     'Q\\x00\\x00\\x00\\x01'",
        ),
        (
            LengthField(size=1, strip=1),
            b"x" * 256,
            "a reply of 256 bytes cannot be framed by LengthField(size=1, strip=1): its length "
            "field would declare 256, and it holds 0 to 255",
        ),
        (
            LengthField(size=1, adjustment=2, strip=1),
            b"x",
            "a reply of 1 bytes cannot be framed by LengthField(size=1, adjustment=2, strip=1): "
            "its length field would declare -1, and it holds 0 to 255",
        ),
        (
            LengthField(offset=2, size=2, adjustment=-4, strip=4),
            b"\x02\xf0\x80",
            "LengthField(offset=2, size=2, adjustment=-4, strip=4) cannot frame a reply: it "
            "strips 4 bytes off the front of each frame, which a reply does not give back; "
            "write whole frames and pass FakePeer(reply_framing=LengthField(offset=2, size=2, "
            "adjustment=-4)), or reply_framing=Raw() to send replies as written",
        ),
        (
            LengthField(offset=1, size="varint", strip="header"),
            b"x",
            "LengthField(offset=1, size='varint', strip='header') cannot frame a reply: it "
            "strips the header (offset and length field) off the front of each frame, which a "
            "reply does not give back; write whole frames and pass "
            "FakePeer(reply_framing=LengthField(offset=1, size='varint')), or reply_framing=Raw() "
            "to send replies as written",
        ),
        (
            LengthField(size=4, strip=2),
            b"x",
            "LengthField(strip=2) cannot frame a reply: it strips 2 bytes off the front of each "
            "frame, which a reply does not give back; write whole frames and pass "
            "FakePeer(reply_framing=LengthField()), or reply_framing=Raw() to send replies as "
            "written",
        ),
    ],
)
def test_encode_errors(framing: LengthField, message: bytes, diagnosis: str) -> None:
    assert error_text(lambda: framing.encode(message), ScriptError) == diagnosis


# -- the usual values ----------------------------------------------------------------------------


def test_equality_repr_hash_and_immutability() -> None:
    assert LengthField() == LengthField(offset=0, size=4, byteorder="big", strip=0)
    assert hash(LengthField()) == hash(LengthField(size=4))
    assert LengthField(size=2, strip=2) == LengthField(size=2, strip="header")  # the same bytes
    assert LengthField(size="varint", strip="header") != LengthField(size="varint")
    assert repr(LengthField()) == "LengthField()"
    assert repr(LengthField(offset=4, size=2)) == "LengthField(offset=4, size=2)"
    assert repr(LengthField(size=2, strip="header")) == "LengthField(size=2, strip=2)"
    assert (
        repr(LengthField(offset=1, size="varint", max_length=100))
        == "LengthField(offset=1, size='varint', max_length=100)"
    )
    assert (
        repr(LengthField(size=2, byteorder="little", adjustment=-2, strip=2))
        == "LengthField(size=2, byteorder='little', adjustment=-2, strip=2)"
    )
    assert isinstance(LengthField(), Framing)
    assert LengthField().streaming is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        LengthField().offset = 1  # type: ignore[misc]
    assert dataclasses.replace(LengthField(size=2), strip=2) == LengthField(size=2, strip=2)
    assert check_framing(LengthField()) == LengthField()


@pytest.mark.parametrize(
    ("framing", "buffer", "words"),
    [
        (
            LengthField(offset=4, size=2),
            b"\x00\x01\x00",
            "LengthField(offset=4, size=2) waits for the rest of its 2-byte length field at "
            "offset 4 (3 bytes here)",
        ),
        (
            LengthField(offset=1, size="varint"),
            b"\x30\x80",
            "LengthField(offset=1, size='varint') waits for the rest of its varint length "
            "field at offset 1 (2 bytes here)",
        ),
        (
            LengthField(offset=4, size=2),
            MBAP_REQUEST[:8],
            "the length field of LengthField(offset=4, size=2) declares a frame of 12 bytes "
            "(header '\\x00\\x01\\x00\\x00\\x00\\x06'): 8 here, 4 more to come",
        ),
    ],
)
def test_what_it_waits_for(framing: LengthField, buffer: bytes, words: str) -> None:
    assert waits_for(framing, buffer) == words


def test_what_it_waits_for_when_the_header_is_wrong() -> None:
    # decode raises first, so a peer never asks; the words stay true all the same.
    framing = LengthField(size=1, adjustment=-2)
    assert waits_for(framing, b"\x01") == "LengthField(size=1, adjustment=-2) cannot frame them"


# -- properties ----------------------------------------------------------------------------------

SIZES: list[Size] = [1, 2, 3, 4, 8, "varint"]


def field_bytes(framing: LengthField, value: int) -> bytes:
    if framing.size == "varint":
        return varint(value)
    return value.to_bytes(framing.size, framing.byteorder)


def frame(framing: LengthField, head: bytes, body: bytes) -> bytes:
    """A frame of ``framing``, built here from its definition: ``head`` (``offset`` bytes),
    the field, ``body`` (``value + adjustment`` bytes)."""
    assert len(head) == framing.offset
    return head + field_bytes(framing, len(body) - framing.adjustment) + body


def header_of(framing: LengthField, whole: bytes) -> int:
    at = framing.offset
    if framing.size != "varint":
        return at + framing.size
    while whole[at] & 0x80:
        at += 1
    return at + 1


def stripped(framing: LengthField, whole: bytes) -> bytes:
    strip = header_of(framing, whole) if framing.strip == "header" else framing.strip
    return whole[strip:]


@st.composite
def framings(draw: st.DrawFn) -> LengthField:
    offset = draw(st.integers(0, 3))
    size = draw(st.sampled_from(SIZES))
    byteorder: Literal["big", "little"] = (
        "big" if size == "varint" else draw(st.sampled_from(["big", "little"]))
    )
    adjustment = draw(st.integers(-6, 6))
    if size == "varint":
        strip: int | Literal["header"] = draw(st.integers(0, offset) | st.just("header"))
    else:
        strip = draw(st.integers(0, offset + size))
    header = offset + (1 if size == "varint" else size)
    limit = draw(st.none() | st.integers(header + max(adjustment, 0), header + 20))
    return LengthField(
        offset=offset,
        size=size,
        byteorder=byteorder,
        adjustment=adjustment,
        strip=strip,
        max_length=limit,
    )


@st.composite
def frames(draw: st.DrawFn, framing: LengthField) -> bytes:
    """A valid frame of ``framing`` (within its max_length)."""
    head = draw(st.binary(min_size=framing.offset, max_size=framing.offset))
    least = max(framing.adjustment, 0)
    most = least + draw(st.sampled_from([12, 12, 300]))
    if framing.size == 1:
        most = min(most, 255 + framing.adjustment)
    body = draw(st.binary(min_size=least, max_size=most))
    whole = frame(framing, head, body)
    assume(len(whole) <= framing.max_length)
    return whole


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_same_messages_however_the_bytes_are_split(data: st.DataObject) -> None:
    framing = data.draw(framings(), label="framing")
    wholes = data.draw(st.lists(frames(framing), max_size=6), label="frames")
    stream = b"".join(wholes)
    expected = [stripped(framing, whole) for whole in wholes]
    assert feed(framing, [stream]) == (expected, b"")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    assert feed(framing, split_at(stream, cuts)) == (expected, b"")
    if len(stream) <= 60:  # every cut, every byte alone, through the incremental Decoder
        assert check_splits(framing, stream, expected) == expected
    for whole, message in zip(wholes, expected, strict=True):  # replies where it can
        if framing.strip == 0 or (
            framing.offset == 0 and framing.strip in ("header", framing.size)
        ):
            assert framing.encode(message) == whole


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_an_unfinished_last_frame_is_the_eof_leftover(data: st.DataObject) -> None:
    framing = data.draw(framings(), label="framing")
    wholes = data.draw(st.lists(frames(framing), max_size=4), label="frames")
    last = data.draw(frames(framing), label="last")
    assume(len(last) >= 2)
    partial = last[: data.draw(st.integers(1, len(last) - 1), label="cut")]
    stream = b"".join(wholes) + partial
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    expected = [stripped(framing, whole) for whole in wholes]
    assert feed(framing, split_at(stream, cuts)) == (expected, partial)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_frame_over_max_length_fails_under_any_slicing(data: st.DataObject) -> None:
    framing = data.draw(framings(), label="framing")
    extra = data.draw(st.integers(1, 8), label="extra")
    assume(framing.max_length <= 100)  # not the 16 MiB default
    body = b"x" * (framing.max_length + extra)  # whatever the header: too long
    assume(framing.size == "varint" or len(body) - framing.adjustment < 1 << (8 * framing.size))
    head = bytes(framing.offset)
    stream = frame(framing, head, body)
    before = data.draw(st.lists(frames(framing), max_size=3), label="before")
    stream = b"".join(before) + stream
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    with pytest.raises(FramingError) as excinfo:
        feed(framing, split_at(stream, cuts))
    assert f"over the limit of {framing.max_length} bytes of {framing!r}" in str(excinfo.value)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), way=st.sampled_from(["feed", "take"]))
def test_the_decoder_gives_what_decode_gives(data: st.DataObject, way: str) -> None:
    """Valid frames, framing bytes and junk, cut anywhere: the incremental decoder delivers
    what decoding the whole buffer on every segment does, raising the same error at the same
    segment; and the same as one decode of the whole stream, or an error too."""
    framing = data.draw(framings(), label="framing")
    parts = st.one_of(
        frames(framing),
        st.sampled_from([*TOKENS, b"\x80", b"\xff\xff", b"\x00\x01"]),
        st.binary(min_size=1, max_size=4),
    )
    stream = b"".join(data.draw(st.lists(parts, max_size=10), label="parts"))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    chunks = split_at(stream, cuts)
    expected = per_segment(framing, chunks, {})
    assert incrementally(framing, chunks, {}, way) == expected
    whole = per_segment(framing, [stream], {})
    if whole[2] is None:
        assert expected == whole
    assert (expected[2] is None) == (whole[2] is None)
    drops = data.draw(
        st.dictionaries(st.integers(0, len(chunks)), st.integers(1, 6), max_size=4), label="drops"
    )
    assert incrementally(framing, chunks, drops, "take") == per_segment(framing, chunks, drops)


@settings(max_examples=40, deadline=None)
@given(framing=framings())
def test_repr_makes_an_equal_framing(framing: LengthField) -> None:
    rebuilt = eval(repr(framing), vars(fakepeer))  # the repr is the call that makes it
    assert rebuilt == framing
    assert hash(rebuilt) == hash(framing)


@settings(max_examples=100, deadline=None)
@given(
    size=st.sampled_from([1, 2, 4, 8]),
    byteorder=st.sampled_from(["big", "little"]),
    includes_prefix=st.booleans(),
    data=st.data(),
)
def test_length_prefixed_is_a_length_field(
    size: int, byteorder: Literal["big", "little"], includes_prefix: bool, data: st.DataObject
) -> None:
    """LengthPrefixed(n) is LengthField(size=n, strip=n); with includes_prefix, the length
    counts the prefix: adjustment=-n. The same messages, replies, limits and errors."""
    prefixed = LengthPrefixed(size, byteorder, includes_prefix=includes_prefix)
    field = LengthField(
        size=size, byteorder=byteorder, adjustment=-size if includes_prefix else 0, strip=size
    )
    assert field.max_length == prefixed.max_length
    messages = data.draw(st.lists(st.binary(max_size=20), max_size=5), label="messages")
    assert [field.encode(m) for m in messages] == [prefixed.encode(m) for m in messages]
    junk = st.one_of(
        st.sampled_from(TOKENS), st.binary(min_size=1, max_size=9), st.just(b"\xff" * 8)
    )
    parts = st.one_of(st.sampled_from(messages or [b""]).map(prefixed.encode), junk)
    stream = b"".join(data.draw(st.lists(parts, max_size=8), label="parts"))

    def outcome(framing: Framing) -> object:
        try:
            return framing.decode(stream, False)
        except FramingError:
            return FramingError

    assert outcome(field) == outcome(prefixed)


def test_long_frames_in_small_segments_are_decoded_in_linear_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a timing: decode is handed each byte about once, not once per segment."""
    cases = [
        (LengthField(size=4, strip=4), [b"\x00\x80\x00\x00" + b"z" * (8 << 20)]),
        (LengthField(offset=4, size=2), [bytes(4) + b"\xff\xf9" + b"y" * 65529] * 16),
        (LengthField(offset=1, size="varint"), [b"\x30" + varint(60 << 10) + b"x" * (60 << 10)]),
    ]
    for framing, wholes in cases:
        handed = counting_decode(monkeypatch, framing)
        stream = b"".join(wholes)
        decoder = Decoder(framing)
        buffer = bytearray()
        received: list[bytes] = []
        for start in range(0, len(stream), 128):
            received += decoder.feed(buffer, stream[start : start + 128])
        assert received == [stripped(framing, whole) for whole in wholes]
        assert not buffer
        assert sum(handed) < 4 * len(stream)
        assert len(handed) <= 2 * len(wholes) + 1
        monkeypatch.undo()


# -- end to end, over real sockets ---------------------------------------------------------------


def read_mbap(sock: socket.socket) -> bytes:
    """One Modbus/TCP frame, as a client reads it: the 6-byte header, then its length."""
    header = recv_exactly(sock, 6)
    return header + recv_exactly(sock, int.from_bytes(header[4:6], "big"))


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"{len(data)} of {count} bytes")
        data += chunk
    return data


def test_modbus_requests_and_replies_of_another_length() -> None:
    peer = FakePeer(framing=LengthField(offset=4, size=2), name="plc")
    peer.expect(MBAP_REQUEST).reply(MBAP_RESPONSE)
    write = bytes.fromhex("0002 0000 0006 01 06 0001 0003")  # write single register: echoed
    peer.expect(write).reply(write)
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        for byte in MBAP_REQUEST:  # one byte a segment: the framing waits for the frame
            sock.sendall(bytes([byte]))
        assert read_mbap(sock) == MBAP_RESPONSE
        sock.sendall(write)
        assert read_mbap(sock) == write
    assert peer.received == [MBAP_REQUEST, write]


def test_a_bad_length_field_fails_the_connection_with_the_diagnosis() -> None:
    peer = FakePeer(framing=LengthField(offset=1, size=4, adjustment=-4), name="pg")
    peer.always(fakepeer.ANY)
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(FramingError) as excinfo,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        sock.sendall(PG_SYNC + b"Q\x00\x00\x00\x01")
        assert sock.recv(10) == b""  # the peer closed the connection
    assert str(excinfo.value).startswith(
        "connection #1: the length field declares 1 bytes, and with adjustment=-4 the frame "
        "would be 2 bytes, shorter than its own 5-byte header (offset 1 + a 4-byte length "
        "field) of LengthField(offset=1, adjustment=-4)\n  header:    'Q\\x00\\x00\\x00\\x01'"
    )


def test_a_reply_that_is_not_a_frame_fails_where_the_script_wrote_it() -> None:
    peer = FakePeer(framing=LengthField(offset=4, size=2))
    peer.expect(MBAP_REQUEST).reply(lambda _: MBAP_RESPONSE[:-1])  # one byte short
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(ScriptError) as excinfo,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        sock.sendall(MBAP_REQUEST)
        sock.recv(100)
    assert "a reply of 12 bytes is not the frame its length field declares" in str(excinfo.value)
    assert "test_lengthfield.py" in str(excinfo.value)


def test_unexpected_frames_are_reported_whole() -> None:
    peer = FakePeer(framing=LengthField(size=2, strip=2))
    peer.expect(b"hello")
    with (  # noqa: PT012 - the client, then the stop
        pytest.raises(UnexpectedData) as excinfo,
        peer.serve(),
        socket.create_connection(peer.address, timeout=TIMEOUT) as sock,
    ):
        sock.sendall(b"\x00\x03bye")
        sock.recv(10)
    assert "'bye'" in str(excinfo.value)
