"""The Mermaid form of a transcript's picture: ``sequenceDiagram`` text.

One line per row of ``fakepeer._sequence`` (the same rows, lifelines, labels and problems as
the SVG of ``fakepeer._diagram``, whose module docstring describes the pictures), written
so that Mermaid reads no message as syntax, and cut to :data:`MERMAID_CHARS` characters. It
is apart from the SVG and HTML because it shares nothing of their drawing: only what
``fakepeer._sequence`` decides. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from ._sequence import (
    MAX_ROWS,
    NOTE_CHARS,
    TO_CLIENT,
    TO_PEER,
    Gap,
    drawn_rows,
    event_label,
    event_note,
    is_problem,
    lane_name,
    peer_title,
    share_lanes,
    shorten,
)

if TYPE_CHECKING:
    from ._transcript import Transcript

__all__ = ["MERMAID_CHARS", "mermaid"]

#: Characters of Mermaid text at most, by default: under Mermaid's ``maxTextSize`` (50,000),
#: with room for the fence of a Markdown block and a line or two around it.
MERMAID_CHARS: Final = 48_000


#: Characters Mermaid would read as syntax, as its entity codes.
_MERMAID: Final = {ord(c): f"#{ord(c)};" for c in '#;%<>&"`{}'}
_MERMAID_ALIAS: Final = {**_MERMAID, ord(":"): "#58;", ord(","): "#44;", ord("-"): "#45;"}


#: What would end a line of Mermaid (or of Python's ``splitlines()``), or is no character.
_MERMAID_BREAKS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _m(text: str, table: dict[int, str] = _MERMAID) -> str:
    return _MERMAID_BREAKS.sub(lambda m: f"#{ord(m[0])};", text.translate(table))


def mermaid(
    transcript: Transcript,
    *,
    times: bool = True,
    addresses: bool = True,
    max_chars: int | None = MERMAID_CHARS,
    max_rows: int | None = MAX_ROWS,
) -> str:
    """The transcript as Mermaid ``sequenceDiagram`` text: a header (the participants: one
    per client lifeline, then the peer), then exactly one line per event kept and per gap
    (of :func:`drawn_rows`: ``max_rows`` at most). Text that Mermaid would read as syntax is
    written as its entity codes (``#35;``). Past ``max_chars`` characters, the first and
    last lines are kept, a note between them counts the events left out."""
    rows = drawn_rows(transcript, max_rows)
    lane_of, members = share_lanes(rows)
    zero = transcript.started or 0.0
    name, where = peer_title(transcript, addresses=addresses)
    lines = ["sequenceDiagram"]
    for lane, numbers in enumerate(members):
        lines.append(
            f"    participant c{lane} as {_m('client ' + lane_name(numbers), _MERMAID_ALIAS)}"
        )
    peer = _m(shorten(f"{name} {where}".strip(), 100), _MERMAID_ALIAS)
    lines.append(f"    participant peer as {peer}")
    body: list[tuple[str, int]] = []  # each line, and the events it stands for
    for _, row in rows:
        who = f"c{lane_of[row.connection]}" if row.connection else "peer"
        if isinstance(row, Gap):
            body.append((f"    Note over {who}: {_m(row.text)}", row.omitted if row.cut else 0))
            continue
        event = row
        stamp = f"{(event.at - zero) * 1000:.3f} ms " if times else ""
        tag = (
            f"#{event.connection} "
            if row.connection and len(members[lane_of[row.connection]]) > 1
            else ""
        )
        label = event_label(event)
        note = event_note(event, addresses=addresses)
        problem = is_problem(event)
        text = " ".join(filter(None, [label, shorten(note, NOTE_CHARS)]))
        if event.kind in TO_PEER or event.kind in TO_CLIENT:
            if event.kind not in ("received", "sent", "matched"):
                text = f"{event.kind} {text}"
            arrow = "-x" if problem else "->>"
            if event.kind in ("dropped", "pending"):
                arrow = "--x"
            ends = (who, "peer") if event.kind in TO_PEER else ("peer", who)
            body.append((f"    {ends[0]}{arrow}{ends[1]}: {_m(stamp + tag + text)}", 1))
        else:
            mark = "✖ " if problem else ("⚡ " if event.kind in ("fault", "accept") else "")
            text = f"{mark}{tag}{event.kind} {text}".rstrip()
            body.append((f"    Note over {who}: {_m(stamp + text)}", 1))
    if max_chars is not None:
        body = _fit(body, max_chars - sum(len(line) + 1 for line in lines), max_chars)
    lines.extend(line for line, _ in body)
    return "\n".join(lines) + "\n"


def _fit(body: list[tuple[str, int]], room: int, max_chars: int) -> list[tuple[str, int]]:
    """``body``'s lines if they fit in ``room`` characters (a newline each), else as many of
    its first and last lines as fit with a note between them that counts the events of the
    lines left out."""
    if sum(len(line) + 1 for line, _ in body) <= room:
        return body
    front: list[tuple[str, int]] = []
    back: list[tuple[str, int]] = []
    room -= 400  # the note, at most
    first, last = 0, len(body) - 1
    while first <= last:
        line = body[first] if len(front) <= len(back) else body[last]
        if len(line[0]) + 1 > room:
            break
        room -= len(line[0]) + 1
        if len(front) <= len(back):
            front.append(line)
            first += 1
        else:
            back.append(line)
            last -= 1
    events = sum(count for _, count in body[first : last + 1])
    note = (
        f"... {events:,} events not drawn: the text stays under max_chars={max_chars:,} "
        "characters (Mermaid refuses more than 50,000 by default); str(peer.transcript), "
        "the text report, has them all"
    )
    return [*front, (f"    Note over peer: {_m(note)}", events), *reversed(back)]
