"""A stream cut into segments, decoded two ways, for the framings' properties: as the peer
did before ``Decoder`` (``decode`` on the whole buffer at every segment), and through a
``Decoder`` (which skips ``decode`` with a framing's ``waiting`` and ``mark``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import pytest
from hypothesis import strategies as st

from fakepeer import Framing, FramingError
from fakepeer._framing import Decoder

#: The messages delivered, the bytes left buffered (``b""`` after an error), the
#: FramingError's text and the index of the segment that raised it (``len(chunks)`` for
#: the decode at EOF).
Outcome: TypeAlias = tuple[list[bytes], bytes, str | None, int | None]

#: Segment sizes, used in turn: 1 byte often, up to 40.
SIZES = st.lists(st.one_of(st.just(1), st.integers(1, 40)), min_size=1, max_size=6)


def segments(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """``data`` cut into segments of ``sizes`` bytes, in turn."""
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(data[start : start + size])
        start += size
    return chunks


def per_segment(framing: Framing, chunks: Sequence[bytes]) -> Outcome:
    """``decode`` on the whole buffer at every segment, then at EOF."""
    buffer = b""
    messages: list[bytes] = []
    for index, chunk in enumerate([*chunks, None]):
        buffer += chunk or b""
        try:
            decoded, consumed = framing.decode(buffer, chunk is None)
        except FramingError as error:
            return messages, b"", str(error), index
        messages.extend(decoded)
        buffer = buffer[consumed:]
    return messages, buffer, None, None


def through_decoder(framing: Framing, chunks: Sequence[bytes], way: str = "feed") -> Outcome:
    """The same through a ``Decoder``: ``feed`` (as the peer decodes) or appending then
    ``take`` (as a handler's ``receive``); ``take(buffer, True)`` at EOF."""
    decoder = Decoder(framing)
    buffer = bytearray()
    messages: list[bytes] = []
    for index, chunk in enumerate([*chunks, None]):
        try:
            if chunk is None:
                messages.extend(decoder.take(buffer, True))
            elif way == "feed":
                messages.extend(decoder.feed(buffer, chunk))
            else:
                buffer += chunk
                messages.extend(decoder.take(buffer, False))
        except FramingError as error:
            return messages, b"", str(error), index
    return messages, bytes(buffer), None, None


def counting_decode(monkeypatch: pytest.MonkeyPatch, framing: Framing) -> list[int]:
    """Count the bytes handed to ``framing``'s decode, by patching its class."""
    handed: list[int] = []
    cls = type(framing)
    original = cls.decode

    def decode(self: Framing, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        handed.append(len(buffer))
        return original(self, buffer, eof)

    monkeypatch.setattr(cls, "decode", decode)
    return handed


def feed_all(framing: Framing, stream: bytes, size: int) -> tuple[list[bytes], bytes]:
    """``stream`` fed through a ``Decoder`` in segments of ``size`` bytes: the messages, and
    the bytes left."""
    decoder = Decoder(framing)
    buffer = bytearray()
    received: list[bytes] = []
    for start in range(0, len(stream), size):
        received += decoder.feed(buffer, stream[start : start + size])
    return received, bytes(buffer)
