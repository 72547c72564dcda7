"""What a picture of a transcript shows, whatever its form: its rows, lifelines and texts.

The SVG and HTML pictures (``fakepeer._diagram``) and the Mermaid text (``fakepeer._mermaid``)
draw the same thing: the rows of :func:`drawn_rows` (the events kept, a gap where a
connection's events were left out, at most :data:`MAX_ROWS` of them), the lifelines of
:func:`share_lanes` (at most :data:`MAX_LANES`), and for each event the same label, note
and problem (:func:`is_problem`). That is decided here, once; how it is drawn is each form's
own business. The module docstring of ``fakepeer._diagram`` describes the pictures. Pure:
no I/O, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from ._eventlines import MESSAGES as _MESSAGES
from ._show import escape, is_binary
from ._transcript import Event, _Ring

if TYPE_CHECKING:
    from ._transcript import Transcript

__all__ = [
    "LABEL_CHARS",
    "MAX_LANES",
    "MAX_ROWS",
    "NOTE_CHARS",
    "TO_CLIENT",
    "TO_PEER",
    "Gap",
    "Row",
    "drawn_rows",
    "event_label",
    "event_note",
    "is_problem",
    "lane_name",
    "peer_title",
    "share_lanes",
    "shorten",
]

#: Client lifelines drawn at most; more connections share them (see :func:`share_lanes`).
MAX_LANES: Final = 8

#: Rows a picture draws at most (its first and last half), plus one that counts the rest.
MAX_ROWS: Final = 1000

#: Characters of a label or a note drawn on a row before it is shortened with "...".
LABEL_CHARS: Final = 56
NOTE_CHARS: Final = 72

#: Kinds drawn as arrows, by direction.
TO_PEER: Final = frozenset({"received", "matched", "unexpected", "handled", "pending"})
TO_CLIENT: Final = frozenset({"sent", "dropped"})
#: Kinds after which a connection's lifeline is free for another.
_ENDS: Final = frozenset({"closed", "reset", "lost"})


def is_problem(event: Event) -> bool:
    """True when ``event`` is one that made (or will make) the test fail; the module
    docstring of ``fakepeer._diagram`` says which."""
    kind = event.kind
    if kind in ("unexpected", "error", "pending"):
        return True
    if kind == "lost":
        return event.note != "closed by the client"
    return kind == "received" and event.note == "(incomplete)"


class Gap(NamedTuple):
    """A row that stands for events left out: of the transcript (over its budget), or of the
    picture (``cut``: over ``MAX_ROWS``)."""

    connection: int
    text: str
    omitted: int
    cut: bool = False  # rows left out of the picture (MAX_ROWS), not of the transcript


class Row(NamedTuple):
    """One row of a picture: an event kept, or a gap."""

    number: int  # the event's index in transcript.events, or -1 for a gap
    row: Event | Gap


def drawn_rows(transcript: Transcript, limit: int | None = MAX_ROWS) -> list[Row]:
    """The events kept, in order, with a gap where a connection's events were left out; at
    most ``limit`` of these rows (the first and the last half), plus one that stands for
    the rest."""
    rows: list[Row] = []
    index = 0
    for row in transcript._rows(None):
        if isinstance(row, _Ring):
            rows.append(Row(-1, Gap(row.connection, transcript._omission(row), row.dropped)))
        else:
            rows.append(Row(index, row))
            index += 1
    if limit is None or len(rows) <= limit:
        return rows
    head, tail = (limit + 1) // 2, limit // 2
    middle = rows[head : len(rows) - tail]
    events = sum(1 for _, row in middle if not isinstance(row, Gap))
    text = (
        f"... {events:,} events not drawn: a picture draws {limit:,} rows at most, the first "
        f"{head:,} and the last {tail:,}; str(peer.transcript), the text report, has them all"
    )
    cut = Row(-1, Gap(0, text, events, cut=True))
    return [*rows[:head], cut, *rows[len(rows) - tail :]]


def share_lanes(rows: list[Row]) -> tuple[dict[int, int], list[list[int]]]:
    """Each connection's lifeline, and the connections of each lifeline: one each while
    there are at most :data:`MAX_LANES`, else the first free one (or the least used)."""
    numbers = list(dict.fromkeys(row.connection for _, row in rows if row.connection))
    lane_of: dict[int, int] = {}
    members: list[list[int]] = []
    if len(numbers) <= MAX_LANES:
        for number in numbers:
            lane_of[number] = len(members)
            members.append([number])
        return lane_of, members
    busy: set[int] = set()
    for _, row in rows:
        number = row.connection
        if not number:
            continue
        if number not in lane_of:
            free = [lane for lane in range(len(members)) if lane not in busy]
            if len(members) < MAX_LANES:
                lane = len(members)
                members.append([])
            elif free:
                lane = free[0]
            else:
                lane = min(range(len(members)), key=lambda lane: len(members[lane]))
            lane_of[number] = lane
            members[lane].append(number)
            busy.add(lane)
        if isinstance(row, Event) and row.kind in _ENDS:
            busy.discard(lane_of[number])
    return lane_of, members


def lane_name(numbers: list[int]) -> str:
    """The name of a lifeline: its connections (``#1, #2 (+3)`` past three)."""
    if len(numbers) <= 3:
        return ", ".join(f"#{number}" for number in numbers)
    return f"#{numbers[0]}, #{numbers[1]} (+{len(numbers) - 2})"


def shorten(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with "..." when it is longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def event_label(event: Event) -> str:
    """The short text of a message: escaped and quoted, or its size and first bytes."""
    data = event.data
    size = event.size if event.size >= 0 else len(data)
    if data and is_binary(data):
        head = " ".join(f"{byte:02x}" for byte in data[:8])
        more = " ..." if size > 8 else ""
        return f"{size} bytes: {head}{more}"
    if not data and event.kind not in _MESSAGES:
        return ""
    text = f"'{escape(data)}'"
    if len(text) > LABEL_CHARS or size > len(data):
        text = f"'{escape(data[: LABEL_CHARS // 2])}'... ({size} bytes)"
    return text


def event_note(event: Event, *, addresses: bool) -> str:
    """The note drawn for ``event``: without ``addresses``, none for a connection's address."""
    if event.kind == "connected" and not addresses:
        return ""
    return event.note


def peer_title(transcript: Transcript, *, addresses: bool) -> tuple[str, str]:
    """The peer's name, and where it listens (and relays to), if known and wanted."""
    where = []
    if addresses and transcript.address:
        where.append(f"on {transcript.address}")
    if addresses and transcript.upstream:
        where.append(f"to {transcript.upstream}")
    if addresses and transcript.seed is not None:
        where.append(f"fault seed {transcript.seed}")
    name = transcript.title if transcript.title.strip() else _NO_NAME
    return name, ", ".join(where)


#: What stands for a peer whose name is empty or all spaces.
_NO_NAME: Final = "a peer with no name"
