"""One transcript event as the lines a transcript shows it (its rendering, the command
line's live transcript): the time, the connection, the kind, the data escaped or, when
mostly binary, as a hexdump below, and the note."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._show import INLINE_LIMIT, escape, hexdump, is_binary, show

if TYPE_CHECKING:
    from ._transcript import Event

__all__ = ["DUMP_END", "MESSAGES", "event_lines"]

#: Event kinds that carry a message: shown even when empty, as ''.
MESSAGES: Final = frozenset({"received", "matched", "unexpected", "sent", "handled", "pending"})

#: Bytes of a cut binary event shown as a hexdump at each end.
DUMP_END: Final = 2048


def event_lines(
    event: Event, zero: float, *, times: bool = True, addresses: bool = True
) -> list[str]:
    """The lines of one event as ``Transcript.render`` shows it, times counted from
    ``zero``: one line, then a hexdump of binary data."""
    lines: list[str] = []
    stamp = f"{(event.at - zero) * 1000:10.3f} ms  " if times else "  "
    who = f"#{event.connection} " if event.connection else ""
    head = f"{stamp}{who}{event.kind:<10}"
    body = []
    data = event.data
    cut = event.size - len(data) if event.size > len(data) else 0
    binary = bool(data) and is_binary(data)
    if binary:
        body.append(f"{len(data) + cut} bytes:")
    elif cut:
        middle = (len(data) + 1) // 2
        front, back = data[:middle], data[middle:]
        half = INLINE_LIMIT // 2
        body.append(
            f"'{escape(front[:half])}'...'{escape(back[-half:])}' "
            f"({event.size} bytes in all, {cut} not kept)"
        )
    elif data or event.kind in MESSAGES:
        body.append(show(data))
    if event.note and (addresses or event.kind != "connected"):
        body.append(event.note)
    lines.append(f"{head} {' '.join(body)}".rstrip())
    if binary:
        indent = " " * (len(stamp) + 4)
        if cut:
            middle = (len(data) + 1) // 2
            back = data[max(middle, len(data) - DUMP_END) :]
            align = (len(back) - event.size) % 16  # offsets in the tail: from 16s
            lines.append(hexdump(data[: min(middle, DUMP_END)], indent=indent))
            lines.append(f"{indent}... ({event.size} bytes in all, {cut} not kept)")
            start = event.size - len(back) + align
            lines.append(hexdump(back[align:], indent=indent, start=start))
        else:
            lines.append(hexdump(data[:4096], indent=indent))
            if len(data) > 4096:
                lines.append(f"{indent}... ({len(data)} bytes in all)")
    return lines
