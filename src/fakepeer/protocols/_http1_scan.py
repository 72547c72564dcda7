"""HTTP/1.1 requests scanned as they arrive: ``HTTPFraming.waiting`` and ``.mark``.

A client may send a long request in many small segments (a chunked upload in 1-byte
chunks). ``decode`` parses the request from its start at every call; these functions let
``fakepeer``'s decoder skip the calls that cannot complete it (the optional ``waiting`` and
``mark`` of a framing, see :mod:`fakepeer.protocols.http1`'s framing), so such a request
costs time linear in its length.

The mark packs a phase (below 8) and two offsets (below 2**64) into one int; 0 is "nothing
scanned":

==========  ==================================================================================
phase       what is known, ``scanned`` and ``position``
==========  ==================================================================================
_HEAD       the request line has no line end up to ``scanned``
_FIELDS     the request line is whole (``decode`` checked it), the head has no empty line up
            to ``scanned``
_LENGTH     the head is whole, with a ``Content-Length``: the request ends at ``position``
_CHUNKS     the head is whole, with chunks: the chunks before ``position`` are whole and
            checked, the size line at ``position`` has no line end up to ``scanned``
_TRAILER    the last chunk (size 0) arrived; the trailer lines before ``position`` too
==========  ==================================================================================

``waiting`` returns None (call ``decode``) as soon as anything is not plainly "more bytes
to come": the request line or the head may be whole, the request may be, a byte is wrong
(or odd: a bare CR or LF, a NUL in the head), ``max_length`` is reached. So ``decode``
stays the one judge of the bytes, and says what is wrong in its own words. A body's framing
is read from the head only by :func:`mark`, after ``decode`` accepted the head.
"""

from __future__ import annotations

import re
from typing import Final

_HEAD, _FIELDS, _LENGTH, _CHUNKS, _TRAILER = range(5)
_CRLF: Final = b"\r\n"
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_MASK: Final = (1 << 64) - 1


def _pack(phase: int, scanned: int = 0, position: int = 0) -> int:
    return phase | scanned << 3 | position << 67


def waiting(buffer: bytearray, mark: int, limit: int) -> int | None:
    """The new mark when ``HTTPFraming.decode(buffer)`` would give ``([], 0)`` and raise
    nothing; None when it must be called. ``buffer`` starts where ``decode`` left off;
    ``limit`` is the framing's ``max_length``."""
    if len(buffer) >= limit:
        return None
    phase, scanned, position = mark & 7, (mark >> 3) & _MASK, mark >> 67
    if phase == _HEAD:  # decode checks the request line as soon as it ends
        return None if buffer.find(b"\n", scanned) >= 0 else _pack(_HEAD, len(buffer))
    if phase == _FIELDS:
        if buffer.find(b"\r\n\r\n", max(scanned - 3, 0)) >= 0 or _odd(buffer, scanned):
            return None
        return _pack(_FIELDS, len(buffer))
    if phase == _LENGTH:
        return None if len(buffer) >= position else mark
    return _chunks(buffer, phase, scanned, position)


def _odd(buffer: bytearray, scanned: int) -> bool:
    """Whether the bytes after ``scanned`` hold a bare LF, a bare CR or a NUL, which a
    recipient rejects in a field (RFC 9112 sections 2.2 and 5.5): ``decode`` judges them
    (a CR last may be a CRLF still arriving: it is judged with the next bytes)."""
    start, end = max(scanned - 1, 0), len(buffer)
    pairs = buffer.count(b"\r\n", start, end)
    return (
        buffer.count(b"\n", scanned, end) != pairs
        or buffer.count(b"\r", start, end - 1) != pairs
        or buffer.find(b"\0", scanned) >= 0
    )


def _chunks(buffer: bytearray, phase: int, scanned: int, position: int) -> int | None:
    """Scan the chunks (then the trailer lines) from ``position`` as ``decode`` would
    (RFC 9112 section 7.1): the mark while the body is not whole, None when it may be or a
    byte is wrong."""
    while True:
        end = buffer.find(_CRLF, max(scanned - 1, position))
        if end < 0:
            return _pack(phase, len(buffer), position)
        if phase == _TRAILER:
            if end == position:  # the empty line: the request is whole
                return None
            position = scanned = end + 2
            continue
        size = buffer[position:end].split(b";")[0].strip(b" \t")
        if not _HEX.fullmatch(size):
            return None
        if int(size, 16) == 0:
            phase, position, scanned = _TRAILER, end + 2, end + 2
            continue
        stop = end + 2 + int(size, 16)
        if stop + 2 > len(buffer):
            return _pack(_CHUNKS, end, position)  # its size line is found again at once
        if buffer[stop : stop + 2] != _CRLF:
            return None
        position = scanned = stop + 2


def mark(rest: bytearray) -> int:
    """The mark for ``rest``, what ``decode`` left: the start of a request that ``decode``
    accepted so far (its request line and head checked when whole)."""
    head_end = rest.find(b"\r\n\r\n")
    if head_end < 0:
        return _pack(_FIELDS if rest.find(b"\n") >= 0 else _HEAD, len(rest))
    codings, lengths = [], []
    for field in bytes(rest[:head_end]).split(_CRLF)[1:]:
        name, _, value = field.partition(b":")
        if name.lower() == b"transfer-encoding":
            codings.append(value.strip(b" \t"))
        elif name.lower() == b"content-length":
            lengths.append(value.strip(b" \t"))
    body = head_end + 4
    if b",".join(codings):  # decode checked that chunked is the last coding
        found = _chunks(rest, _CHUNKS, body, body)
        return 0 if found is None else found
    digits = (lengths[0].lstrip(b"0") or b"0") if lengths else b""
    if not digits.isdigit() or len(digits) > 20:  # no body: decode cut the request already
        return 0
    return _pack(_LENGTH, 0, body + int(digits))
