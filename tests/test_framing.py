"""Tests of ``fakepeer._framing``: cutting a byte stream into messages, framing replies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import Framing, Lines, Raw, ScriptError
from fakepeer._framing import check_framing


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (clamped, sorted, duplicates give empty chunks)."""
    points = sorted(min(max(cut, 0), len(data)) for cut in cuts)
    chunks = []
    start = 0
    for point in points:
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return chunks


def feed(framing: Framing, chunks: Sequence[bytes]) -> tuple[list[bytes], bytes]:
    """Drive ``decode`` like the conversation does: buffer, decode, keep the rest; then EOF.

    Returns the messages and the bytes left unconsumed at EOF.
    """
    buffer = b""
    messages: list[bytes] = []
    for chunk in chunks:
        buffer += chunk
        decoded, consumed = framing.decode(buffer, False)
        assert 0 <= consumed <= len(buffer)
        messages.extend(decoded)
        buffer = buffer[consumed:]
    decoded, consumed = framing.decode(buffer, True)
    messages.extend(decoded)
    return messages, buffer[consumed:]


# -- Raw -----------------------------------------------------------------------------------


def test_raw_is_streaming_and_has_no_messages() -> None:
    raw = Raw()
    assert raw.streaming is True
    assert raw.decode(b"HELLO\n", False) == ([], 0)
    assert raw.decode(b"HELLO\n", True) == ([], 0)
    assert raw.decode(b"", True) == ([], 0)


@pytest.mark.parametrize("message", [b"", b"PING", b"a\nb\r\n", bytes(range(256))])
def test_raw_encode_is_identity(message: bytes) -> None:
    assert Raw().encode(message) == message


def test_raw_equality_repr_and_hash() -> None:
    assert Raw() == Raw()
    assert hash(Raw()) == hash(Raw())
    assert Raw() != Lines()
    assert repr(Raw()) == "Raw()"
    assert isinstance(Raw(), Framing)


# -- Lines: decode tables ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delimiter", "buffer", "eof", "messages", "consumed"),
    [
        (b"\n", b"", False, [], 0),
        (b"\n", b"PING", False, [], 0),
        (b"\n", b"PING\n", False, [b"PING"], 5),
        (b"\n", b"PING\nPO", False, [b"PING"], 5),
        (b"\n", b"A\nB\nC\n", False, [b"A", b"B", b"C"], 6),
        (b"\n", b"\n\n", False, [b"", b""], 2),
        (b"\n", b"a\r\n", False, [b"a\r"], 3),
        (b"\r\n", b"EHLO me\r\n", False, [b"EHLO me"], 9),
        (b"\r\n", b"EHLO me\r", False, [], 0),
        (b"\r\n", b"a\nb\r\nc", False, [b"a\nb"], 5),
        (b"\r\n", b"a\r\r\n", False, [b"a\r"], 4),
        (b"END", b"oneENDtwoENDthr", False, [b"one", b"two"], 12),
        (b"\x00", b"\x01\x00\x02\x00", False, [b"\x01", b"\x02"], 4),
        # At EOF a last line without a delimiter is left unconsumed (reported as incomplete).
        (b"\n", b"PING", True, [], 0),
        (b"\n", b"PING\nPO", True, [b"PING"], 5),
        (b"\n", b"PING\n", True, [b"PING"], 5),
        (b"\n", b"", True, [], 0),
    ],
)
def test_lines_decode(
    delimiter: bytes, buffer: bytes, eof: bool, messages: list[bytes], consumed: int
) -> None:
    assert Lines(delimiter).decode(buffer, eof) == (messages, consumed)


@pytest.mark.parametrize(
    ("delimiter", "message", "framed"),
    [
        (b"\n", b"PONG", b"PONG\n"),
        (b"\r\n", b"250 ok", b"250 ok\r\n"),
        (b"\n", b"", b"\n"),
        (b"END", b"x", b"xEND"),
    ],
)
def test_lines_encode_appends_the_delimiter(
    delimiter: bytes, message: bytes, framed: bytes
) -> None:
    assert Lines(delimiter).encode(message) == framed


def test_lines_default_and_str_delimiter() -> None:
    assert Lines().delimiter == b"\n"
    assert Lines("\r\n").delimiter == b"\r\n"
    assert Lines("\r\n") == Lines(b"\r\n")
    assert hash(Lines("\r\n")) == hash(Lines(b"\r\n"))
    assert Lines(b"\n") != Lines(b"\r\n")
    assert Lines() != Raw()
    assert repr(Lines(b"\r\n")) == "Lines(b'\\r\\n')"
    assert Lines().streaming is False
    assert isinstance(Lines(), Framing)


@pytest.mark.parametrize(
    ("delimiter", "message"),
    [
        (b"", "Lines() needs a non-empty bytes delimiter, got b''"),
        ("", "Lines() needs a non-empty bytes delimiter, got b''"),
        (5, "Lines() needs a non-empty bytes delimiter, got 5"),
        (None, "Lines() needs a non-empty bytes delimiter, got None"),
    ],
)
def test_lines_rejects_a_bad_delimiter(delimiter: object, message: str) -> None:
    with pytest.raises(ScriptError) as excinfo:
        Lines(cast(Any, delimiter))
    assert str(excinfo.value) == message
    assert isinstance(excinfo.value, ValueError)


# -- Lines: slicing never changes the messages -----------------------------------------------

STREAM = b"HELO me\r\nMAIL FROM:<a@b>\r\n\r\nDATA\r\nhi\r\n.\r\n"
STREAM_MESSAGES = [b"HELO me", b"MAIL FROM:<a@b>", b"", b"DATA", b"hi", b"."]


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_lines_split_at_every_byte_boundary(cut: int) -> None:
    assert feed(Lines(b"\r\n"), split_at(STREAM, [cut])) == (STREAM_MESSAGES, b"")


def test_lines_one_byte_at_a_time() -> None:
    chunks = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert feed(Lines(b"\r\n"), chunks) == (STREAM_MESSAGES, b"")


def test_lines_coalesced_messages() -> None:
    assert feed(Lines(b"\r\n"), [STREAM]) == (STREAM_MESSAGES, b"")


@pytest.mark.parametrize("cut", range(len(b"A\nBC") + 1))
def test_lines_leftover_at_eof_is_left_unconsumed(cut: int) -> None:
    assert feed(Lines(), split_at(b"A\nBC", [cut])) == ([b"A"], b"BC")


DELIMITERS = [b"\n", b"\r\n", b"\x00", b"END", b"||", b"\xff\xfe"]


@st.composite
def framed_messages(draw: st.DrawFn) -> tuple[bytes, list[bytes], list[int]]:
    """A delimiter, messages that frame unambiguously with it, and cut points."""
    delimiter = draw(st.sampled_from(DELIMITERS) | st.binary(min_size=1, max_size=3))
    # A message must not contain the delimiter, nor end so that message + delimiter holds
    # the delimiter earlier (possible only for delimiters like b"||" that overlap themselves).
    message = st.binary(max_size=12).filter(lambda m: (m + delimiter).find(delimiter) == len(m))
    messages = draw(st.lists(message, max_size=8))
    stream_length = sum(len(m) + len(delimiter) for m in messages)
    cuts = draw(st.lists(st.integers(0, stream_length), max_size=10))
    return delimiter, messages, cuts


@settings(max_examples=100)
@given(framed_messages())
def test_lines_round_trip_under_any_slicing(case: tuple[bytes, list[bytes], list[int]]) -> None:
    delimiter, messages, cuts = case
    framing = Lines(delimiter)
    stream = b"".join(framing.encode(m) for m in messages)
    assert feed(framing, split_at(stream, cuts)) == (messages, b"")


@settings(max_examples=100)
@given(
    messages=st.lists(st.binary(max_size=10).filter(lambda m: b"\n" not in m), max_size=6),
    tail=st.binary(min_size=1, max_size=10).filter(lambda m: b"\n" not in m),
    cuts=st.lists(st.integers(0, 100), max_size=6),
)
def test_lines_unterminated_tail_is_the_eof_leftover(
    messages: list[bytes], tail: bytes, cuts: list[int]
) -> None:
    framing = Lines()
    stream = b"".join(framing.encode(m) for m in messages) + tail
    assert feed(framing, split_at(stream, cuts)) == (messages, tail)


@settings(max_examples=50)
@given(data=st.binary(max_size=64), cuts=st.lists(st.integers(0, 64), max_size=6))
def test_raw_never_consumes(data: bytes, cuts: list[int]) -> None:
    assert feed(Raw(), split_at(data, cuts)) == ([], data)


# -- check_framing -------------------------------------------------------------------------


def test_check_framing_accepts_framings_and_defaults_to_raw() -> None:
    lines = Lines()
    assert check_framing(lines) is lines
    assert check_framing(None) == Raw()

    class Custom:
        streaming = False

        def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
            return [], 0

        def encode(self, message: bytes) -> bytes:
            return message

    custom = Custom()
    assert check_framing(custom) is custom


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        (Lines, "framing must be an instance, not the class: use Lines()"),
        (Raw, "framing must be an instance, not the class: use Raw()"),
        (
            b"\n",
            "b'\\n' is not a framing: it needs .streaming, .decode(buffer, eof) "
            "and .encode(message)",
        ),
        (
            42,
            "42 is not a framing: it needs .streaming, .decode(buffer, eof) and .encode(message)",
        ),
    ],
)
def test_check_framing_errors(framing: object, message: str) -> None:
    with pytest.raises(ScriptError) as excinfo:
        check_framing(framing)
    assert str(excinfo.value) == message


def test_check_framing_rejects_an_object_missing_encode() -> None:
    class NoEncode:
        streaming = False

        def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
            return [], 0

        def __repr__(self) -> str:
            return "NoEncode()"

    with pytest.raises(ScriptError, match=r"^NoEncode\(\) is not a framing: it needs"):
        check_framing(NoEncode())
