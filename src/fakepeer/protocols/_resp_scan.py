"""RESP commands scanned as they arrive: ``RESPFraming.waiting`` and ``.mark``.

A client may send a long command in many small segments (a ``SADD`` of 40,000 members in
3000-byte segments). ``decode`` parses the command from its start at every call; these
functions let ``fakepeer``'s decoder skip the calls that cannot complete it (the optional
``waiting`` and ``mark`` of a framing, see :mod:`fakepeer.protocols.resp`'s framing), so
such a command costs time linear in its length.

The mark packs three numbers, each below 2**64, into one int (0: nothing scanned):

``scanned``
    The offset up to which the current line was searched for its end, so that a byte is
    searched once (the line's end may straddle it: the search starts one byte before).
``position``
    For an array of bulk strings (a ``*`` first), the offset of the next element, all before
    it being whole and checked as ``decode`` checks them.
``remaining``
    The elements still to come; 0 while the array's header line (``*<count>``) is not whole.

``waiting`` returns None (call ``decode``) as soon as anything is not plainly "more bytes
to come": the command may be complete, a byte is wrong, ``max_length`` is reached. So
``decode`` stays the one judge of the bytes, and says what is wrong in its own words.
"""

from __future__ import annotations

from typing import Final

#: The most elements a command may have, and the longest bulk string (as resp's decode).
_MAX_ELEMENTS: Final = 1024 * 1024
_MAX_BULK: Final = 512 * 1024 * 1024
_CRLF: Final = b"\r\n"
_MASK: Final = (1 << 64) - 1


def _pack(scanned: int, position: int = 0, remaining: int = 0) -> int:
    return scanned | position << 64 | remaining << 128


def _number(line: bytes | bytearray, low: int, high: int) -> int | None:
    """The number on a ``*`` or ``$`` line, None when ``decode`` refuses it."""
    if not line.isdigit() or len(line) > 20:
        return None
    value = int(line)
    return value if low <= value <= high else None


def waiting(buffer: bytearray, mark: int, limit: int) -> int | None:
    """The new mark when ``RESPFraming.decode(buffer)`` would give ``([], 0)`` and raise
    nothing; None when it must be called. ``buffer`` starts with a command (``decode`` cut
    the ones before it); ``limit`` is the framing's ``max_length``."""
    if not buffer:
        return 0
    if len(buffer) >= limit:
        return None
    scanned, position, remaining = mark & _MASK, (mark >> 64) & _MASK, mark >> 128
    first = buffer[0]
    if first != 0x2A:  # not '*': an inline command, a line of text
        if not (32 <= first < 127 or first in b"\t\r\n") or buffer.find(b"\n", scanned) >= 0:
            return None
        return _pack(len(buffer))
    if remaining == 0:  # the header line, '*<count>\r\n', is not whole yet
        end = buffer.find(_CRLF, max(scanned - 1, 0))
        if end < 0:
            return _pack(len(buffer))
        count = _number(buffer[1:end], 1, _MAX_ELEMENTS)
        if count is None:
            return None
        position = scanned = end + 2
        remaining = count
    return _elements(buffer, position, remaining, scanned, limit)


def _elements(
    buffer: bytearray, position: int, remaining: int, scanned: int, limit: int
) -> int | None:
    """Scan the bulk strings from ``position`` as ``decode`` would: the mark while the
    command is not whole, None when it may be or a byte is wrong."""
    while position < len(buffer):
        if buffer[position] != 0x24:  # not '$'
            return None
        end = buffer.find(_CRLF, max(scanned - 1, position))
        if end < 0:
            return _pack(len(buffer), position, remaining)
        size = _number(buffer[position + 1 : end], 0, _MAX_BULK)
        if size is None:
            return None
        stop = end + 2 + size
        if stop + 2 > limit:
            return None
        if stop + 2 > len(buffer):
            return _pack(end, position, remaining)  # its header line is found again at once
        if buffer[stop : stop + 2] != _CRLF:
            return None
        remaining -= 1
        if remaining == 0:
            return None
        position = scanned = stop + 2
    return _pack(position, position, remaining)


def mark(rest: bytearray) -> int:
    """The mark for what ``decode`` left: 0, the next :func:`waiting` scans it (once)."""
    return 0
