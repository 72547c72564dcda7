"""Tests of ``fakepeer._transcript``: escaping, hexdumps and the rendered transcript."""

from __future__ import annotations

import ast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import Event, Transcript
from fakepeer._transcript import INLINE_LIMIT, escape, hexdump, is_binary, show

# -- escape --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"PING", "PING"),
        (b" ~", " ~"),
        (b'say "hi"', 'say "hi"'),
        (b"\t\n\r", "\\t\\n\\r"),
        (b"\\", "\\\\"),
        (b"'", "\\'"),
        (b"\x00\x1f\x7f\x80\xff", "\\x00\\x1f\\x7f\\x80\\xff"),
        ("é".encode(), "\\xc3\\xa9"),
    ],
)
def test_escape(data: bytes, text: str) -> None:
    assert escape(data) == text


@settings(max_examples=100)
@given(st.binary(max_size=64))
def test_escape_is_printable_ascii_and_reversible(data: bytes) -> None:
    text = escape(data)
    assert text.isascii()
    assert text.isprintable()
    # Inside quotes, the escaped text reads back as the same bytes.
    assert ast.literal_eval(f"b'{text}'") == data


def test_show_quotes_and_cuts() -> None:
    assert show(b"a\n") == "'a\\n'"
    assert show(b"x" * INLINE_LIMIT) == "'" + "x" * INLINE_LIMIT + "'"
    assert show(b"x" * (INLINE_LIMIT + 1)) == "'" + "x" * INLINE_LIMIT + "'... (201 bytes in all)"
    assert show(b"abcdef", limit=3) == "'abc'... (6 bytes in all)"


# -- is_binary -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "binary"),
    [
        (b"", False),
        (b"hello", False),
        (b"line\r\n\tindented\n", False),
        (b"\x00abc", False),  # one odd byte in four: exactly a quarter is not more
        (b"\x00\x01abc", True),
        (b"\x00", True),
        ("héllo".encode(), True),  # 2 odd bytes in 6
        ("hello, wörld".encode(), False),
        ("éé".encode(), True),
        (bytes(range(256)), True),
        (b"\x7f" + b"a" * 3, False),
        (b"\x7f\x7f" + b"a" * 6, False),
        (b"\x7f\x7f" + b"a" * 5, True),
    ],
)
def test_is_binary(data: bytes, binary: bool) -> None:
    assert is_binary(data) is binary


# -- hexdump -------------------------------------------------------------------------------


def test_hexdump_empty() -> None:
    assert hexdump(b"") == ""


def test_hexdump_one_line() -> None:
    assert hexdump(b"AB\x00\n") == "00000000  41 42 00 0a" + " " * 36 + "  |AB..|"


def test_hexdump_lines_of_sixteen_with_offsets_and_indent() -> None:
    assert hexdump(bytes(range(0x30, 0x41)), indent="  ").splitlines() == [
        "  00000000  30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f  |0123456789:;<=>?|",
        "  00000010  40                                               |@|",
    ]


@settings(max_examples=50)
@given(st.binary(max_size=100))
def test_hexdump_shape(data: bytes) -> None:
    lines = hexdump(data).splitlines()
    assert len(lines) == (len(data) + 15) // 16
    for number, line in enumerate(lines):
        chunk = data[number * 16 : number * 16 + 16]
        assert line.startswith(f"{number * 16:08x}  ")
        assert bytes.fromhex(line[10:57]) == chunk
        assert line[59:] == "|" + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk) + "|"


# -- Transcript ----------------------------------------------------------------------------


def conversation(start: float) -> Transcript:
    transcript = Transcript("fake peer 'smtp' on 127.0.0.1:2525")
    transcript.add(Event(start, 1, "connected", note="from 127.0.0.1:51234"))
    transcript.add(Event(start + 0.000051, 1, "sent", b"220 ready\r\n"))
    transcript.add(Event(start + 0.00021, 1, "received", b"HELO me", "-> expect #1 'HELO me'"))
    transcript.add(Event(start + 0.5, 2, "connected", note="from 127.0.0.1:51235"))
    transcript.add(Event(start + 0.6, 0, "error", note="something of the peer itself"))
    transcript.add(Event(start + 1.25, 1, "eof"))
    return transcript


def test_render_with_times() -> None:
    assert conversation(100.0).render().splitlines() == [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "     0.000 ms  #1 connected  from 127.0.0.1:51234",
        "     0.051 ms  #1 sent       '220 ready\\r\\n'",
        "     0.210 ms  #1 received   'HELO me' -> expect #1 'HELO me'",
        "   500.000 ms  #2 connected  from 127.0.0.1:51235",
        "   600.000 ms  error      something of the peer itself",
        "  1250.000 ms  #1 eof",
    ]


def test_str_leaves_out_times_and_addresses() -> None:
    transcript = conversation(100.0)
    transcript.title = "fake peer 'smtp'"
    transcript.address = "127.0.0.1:2525"
    assert str(transcript).splitlines() == [
        "fake peer 'smtp'",
        "  #1 connected",
        "  #1 sent       '220 ready\\r\\n'",
        "  #1 received   'HELO me' -> expect #1 'HELO me'",
        "  #2 connected",
        "  error      something of the peer itself",
        "  #1 eof",
    ]
    assert transcript.render().splitlines()[0] == "fake peer 'smtp' on 127.0.0.1:2525"
    assert str(transcript) == str(conversation(555.0)).replace(" on 127.0.0.1:2525", "")


def test_render_without_times_is_stable() -> None:
    expected = [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "  #1 connected  from 127.0.0.1:51234",
        "  #1 sent       '220 ready\\r\\n'",
        "  #1 received   'HELO me' -> expect #1 'HELO me'",
        "  #2 connected  from 127.0.0.1:51235",
        "  error      something of the peer itself",
        "  #1 eof",
    ]
    assert conversation(0.0).render(times=False).splitlines() == expected
    assert conversation(12345.678).render(times=False) == conversation(0.0).render(times=False)


def test_render_one_connection() -> None:
    transcript = conversation(0.0)
    assert transcript.render(times=False, connection=2).splitlines() == [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "  #2 connected  from 127.0.0.1:51235",
    ]
    assert transcript.render(times=False, connection=3).splitlines() == [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "  (nothing happened)",
    ]
    assert [event.kind for event in transcript.for_connection(1)] == [
        "connected",
        "sent",
        "received",
        "eof",
    ]


def test_render_empty() -> None:
    transcript = Transcript()
    assert len(transcript) == 0
    assert transcript.render() == "fake peer\n  (nothing happened)"


def test_times_are_relative_to_the_start() -> None:
    transcript = Transcript("t")
    transcript.started = 10.0
    transcript.add(Event(10.0015, 1, "eof"))
    assert transcript.started == 10.0
    assert transcript.render().splitlines()[1] == "     1.500 ms  #1 eof"


def test_binary_data_is_a_hexdump() -> None:
    transcript = Transcript("t")
    transcript.add(Event(0.0, 1, "received", bytes(range(20)), "-> always #1"))
    assert transcript.render(times=False).splitlines() == [
        "t",
        "  #1 received   20 bytes: -> always #1",
        "      00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|",
        "      00000010  10 11 12 13                                      |....|",
    ]
    assert transcript.render().splitlines()[1:] == [
        "     0.000 ms  #1 received   20 bytes: -> always #1",
        "                   00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
        "  |................|",
        "                   00000010  10 11 12 13                                      |....|",
    ]


def test_long_binary_data_is_cut_after_4096_bytes() -> None:
    transcript = Transcript("t")
    transcript.add(Event(0.0, 1, "sent", b"\x00" * 5000))
    lines = transcript.render(times=False).splitlines()
    assert lines[1] == "  #1 sent       5000 bytes:"
    assert len(lines) == 2 + 4096 // 16 + 1
    assert lines[-2].startswith("      00000ff0  00 00")
    assert lines[-1] == "      ... (5000 bytes in all)"


def test_long_text_data_is_cut_inline() -> None:
    transcript = Transcript("t")
    transcript.add(Event(0.0, 1, "received", b"a" * 300))
    assert transcript.render(times=False).splitlines()[1] == (
        "  #1 received   '" + "a" * INLINE_LIMIT + "'... (300 bytes in all)"
    )
