"""Bytes shown to people: escaped on one line, or as a hexdump when they are binary.

Every diagnosis shows bytes the same way: the transcript's lines, the pictures, the matchers'
descriptions and explanations, the framings' errors. Those modules all import this one, so
it is apart from the transcript's record (which is about what happened and what is kept):
a matcher or a framing needs these four functions, not the transcript.

A diagnosis shows the bytes of its ``received:`` or ``leftover:`` line by the transcript's
rule (:func:`show_value`): text on the line, binary bytes (:func:`is_binary`) as a hexdump
under it.

Printable ASCII is shown as is, the rest as ``\\n``, ``\\xNN``; a quote and a backslash are
escaped, so ``show`` can put quotes around the text. Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DUMP_LIMIT", "INLINE_LIMIT", "escape", "hexdump", "is_binary", "show", "show_value"]

_ESCAPES: Final = {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x5C: "\\\\",
    0x27: "\\'",
}
_TABLE: Final = [
    _ESCAPES.get(byte, chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}")
    for byte in range(256)
]

#: Longest bytes shown inline on one event line before it is cut (the rest is counted).
INLINE_LIMIT: Final = 200
#: Longest binary bytes a diagnosis line shows as a hexdump (16 lines) before it is cut.
DUMP_LIMIT: Final = 256


def escape(data: bytes) -> str:
    """Printable ASCII as is, everything else escaped; no quotes around it."""
    return "".join([_TABLE[byte] for byte in data])


def is_binary(data: bytes) -> bool:
    """True when more than a quarter of ``data`` is neither printable ASCII nor whitespace."""
    if not data:
        return False
    odd = sum(1 for byte in data if not (0x20 <= byte < 0x7F or byte in (0x09, 0x0A, 0x0D)))
    return odd * 4 > len(data)


def hexdump(data: bytes, indent: str = "", *, start: int = 0) -> str:
    """Classic 16-bytes-a-line hexdump with offsets (counted from ``start``) and an ASCII
    column."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{byte:02x}" for byte in chunk)
        text = "".join(chr(byte) if 0x20 <= byte < 0x7F else "." for byte in chunk)
        lines.append(f"{indent}{start + offset:08x}  {hexes:<47}  |{text}|")
    return "\n".join(lines)


def show(data: bytes, limit: int = INLINE_LIMIT) -> str:
    """Quote ``data`` for one line, cutting it after ``limit`` bytes."""
    if len(data) <= limit:
        return f"'{escape(data)}'"
    return f"'{escape(data[:limit])}'... ({len(data)} bytes in all)"


def show_value(data: bytes, indent: str, limit: int = INLINE_LIMIT) -> str:
    """``data`` as the value of a diagnosis line (``received:  ...``), by the transcript's
    rule: text quoted on the line (:func:`show`, cut after ``limit`` bytes); binary bytes
    (:func:`is_binary`) as ``N bytes:`` and a hexdump on the lines below, each starting with
    ``indent`` (the column of the value), cut after :data:`DUMP_LIMIT` bytes."""
    if not is_binary(data):
        return show(data, limit)
    noun = "byte" if len(data) == 1 else "bytes"
    lines = [f"{len(data):,} {noun}:", hexdump(data[:DUMP_LIMIT], indent)]
    if len(data) > DUMP_LIMIT:
        lines.append(f"{indent}... ({len(data):,} bytes in all)")
    return "\n".join(lines)
