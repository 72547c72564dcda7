"""Pictures of a conversation: a :class:`~fakepeer.Transcript` as a sequence diagram.

Three forms, all pure functions of the transcript (no I/O, no clock):

- :func:`svg`: a self-contained SVG (no fonts, scripts or links to fetch), one row per event,
  top to bottom: a time column (ms since the peer started serving), one lifeline per client
  connection on the left (``#1``, ``#2``, ...), the peer's lifeline on the right. A message
  received is an arrow from the client to the peer, one sent an arrow back, labelled with the
  escaped message (shortened; the whole of it, or its hexdump when it is binary, shows on
  hover: an SVG ``<title>``). What happened to a connection (connected, eof, half-closed,
  closed, reset, lost, hanging, stopped, error) is a mark on its lifeline; the peer's own
  events (a fault switched on or off, ...) are marks on the peer's. The rule a message
  matched and other notes stand right of the peer's lifeline. The transcript's "N events not
  kept" line is a gap row.
- :func:`html`: a self-contained HTML page: a title (the peer's name and address), the
  diagnosis if given, and the SVG.
- :func:`mermaid`: Mermaid ``sequenceDiagram`` text, one line per event, for pasting into an
  issue or a Markdown page.

Every event kept is in each form: in the SVG, a ``<g>`` with ``data-event`` (its index in
:attr:`Transcript.events <fakepeer.Transcript.events>`), ``data-kind`` and
``data-connection``; a gap row is a ``<g class="gap">`` with ``data-omitted``.

Problems are what made or will make the test fail: ``unexpected`` data, an ``error``, a
connection ``lost`` to an error (not one the client closed: note ``closed by the client``),
a message ``received`` that a close left ``(incomplete)``, and a connection's bytes that are
no message yet while the peer serves (``pending``: a dashed arrow that stops halfway, the
last row of its connection; see ``FakePeer.report()``). They are drawn red, their
``<g>`` has the class ``problem`` and ``data-problem="true"``; in Mermaid their arrows end
in a cross (``-x``) and their notes start with ``✖``. What faults did is not a problem but
the test's own doing: a fault switched on or off (``fault``) and data a fault kept from being
sent (``dropped``) are orange, class ``fault``. A ``reset``, ``hanging`` or ``closed`` is
what the script said: a plain mark.

Sizes are bounded whatever the transcript's (whose budget is per connection, so it grows
with the number of connections): a picture draws at most :data:`MAX_ROWS` rows, the first
and the last half of them, with one row between them that says how many events were not
drawn (``str(peer.transcript)``, the text report, has them all). Each row has a bounded
length plus its hover text: the message (cut after :data:`TITLE_LIMIT` bytes) or its hexdump
(of :data:`DUMP_LIMIT` bytes at most), until the hover texts of a picture reach
:data:`HOVER_CHARS` characters; past that, a row's hover text is its first line, shortened.
An SVG or HTML page is then about 0.6 MB at most for plain traffic and 4 MB in the worst
case. The Mermaid text is also cut to :data:`MERMAID_CHARS` characters (``max_chars``), under
Mermaid's own limit. Time is linear in the number of events. Many connections share at most
:data:`MAX_LANES` lifelines: past that number, a connection takes the lifeline of one that
ended.

This module draws the SVG and the HTML page. What every form shows (the rows, the
lifelines, each event's label and note, which events are problems) is decided once in
``fakepeer._sequence``; the Mermaid text is written by ``fakepeer._mermaid``. Both are
exported from here too.
"""

from __future__ import annotations

import html as _html
import re
from typing import TYPE_CHECKING, Final, NamedTuple

from ._eventlines import MESSAGES as _MESSAGES
from ._mermaid import MERMAID_CHARS, mermaid
from ._sequence import (
    LABEL_CHARS,
    MAX_LANES,
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
from ._show import hexdump, is_binary, show
from ._transcript import Event

if TYPE_CHECKING:
    from ._transcript import Transcript

__all__ = [
    "DUMP_LIMIT",
    "HOVER_CHARS",
    "MAX_LANES",
    "MAX_ROWS",
    "MERMAID_CHARS",
    "TITLE_LIMIT",
    "html",
    "is_problem",
    "mermaid",
    "svg",
]

#: Bytes of a message shown whole in its hover text (the rest is counted).
TITLE_LIMIT: Final = 2000

#: Bytes of binary data shown as a hexdump in its hover text (from each end when cut).
DUMP_LIMIT: Final = 4096

#: Characters of hover text (escaped) in one picture before rows get a shortened one.
HOVER_CHARS: Final = 1_000_000

#: Characters of a hover text once :data:`HOVER_CHARS` is used up.
_SHORT_HOVER: Final = 200

_ROW: Final = 24  # pixels a row
_TOP: Final = 64  # the participants' boxes above the first row
_TIME_X: Final = 84  # right edge of the time column
_LANE_X: Final = 150  # the first client lifeline
_LANE_GAP: Final = 110
_CHAR: Final = 7.3  # width of a character of the 12 px monospace font, about
_LABELS: Final = int(LABEL_CHARS * _CHAR) + 40  # the room for labels left of the peer
_NOTES: Final = int(NOTE_CHARS * _CHAR) + 30  # and for notes right of it

_RED: Final = "#c62828"
_ORANGE: Final = "#e65100"
_INK: Final = "#263238"
_GREY: Final = "#607d8b"
_FONT: Final = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"

#: The marks of a connection's lifeline, by kind.
_MARKS: Final = {
    "connected": "▶",
    "eof": "⊣",
    "half-closed": "⊢",
    "closed": "■",
    "reset": "✕",
    "lost": "✕",
    "hanging": "⋯",
    "stopped": "‖",
    "error": "✖",
    "state": "◆",
    "fault": "⚡",
    "tls": "◈",
    "accept": "⚡",
}


def _category(event: Event) -> str:
    if is_problem(event):
        return "problem"
    if event.kind in ("fault", "dropped", "accept"):  # (accept: a connect-phase fault's doing)
        return "fault"
    return ""


def _line(event: Event, zero: float, *, times: bool, addresses: bool) -> str:
    """The event as the text transcript shows it, in full: the hover text of its row."""
    stamp = f"{(event.at - zero) * 1000:.3f} ms  " if times else ""
    who = f"#{event.connection} " if event.connection else "peer "
    parts = [f"{stamp}{who}{event.kind}"]
    data = event.data
    size = event.size if event.size >= 0 else len(data)
    binary = bool(data) and is_binary(data)
    if binary:
        parts.append(f"{size} bytes:")
    elif data or event.kind in _MESSAGES:
        parts.append(show(data, TITLE_LIMIT))
        if size > len(data):
            parts.append(f"({size} bytes in all, {size - len(data)} not kept)")
    note = event_note(event, addresses=addresses)
    if note:
        parts.append(note)
    text = " ".join(parts)
    if binary:
        if size > len(data):  # cut to fit the budget: its two ends
            middle = (len(data) + 1) // 2
            back = data[max(middle, len(data) - DUMP_LIMIT // 2) :]
            text += "\n" + hexdump(data[: min(middle, DUMP_LIMIT // 2)])
            text += f"\n... ({size} bytes in all, {size - len(data)} not kept)"
            text += "\n" + hexdump(back, start=size - len(back))
        else:
            text += "\n" + hexdump(data[:DUMP_LIMIT])
            if len(data) > DUMP_LIMIT:
                text += f"\n... ({len(data)} bytes in all)"
    return text


#: A title that says its kind twice: ``fake peer 'fake peer'``, ``proxy 'proxy'``.
_STUTTER: Final = re.compile(r"(.+) '(.*)'", re.DOTALL)


def _heading(name: str) -> str:
    """The page's heading: the peer's title, said once when its name is its kind."""
    found = _STUTTER.fullmatch(name)
    if found and found[1] == found[2]:
        return f"the {found[1]}"
    return name


#: Characters XML 1.0 does not allow, even escaped, and those HTML forbids (DEL and the C1
#: controls): shown as ``\\xNN`` or ``\\uNNNN``.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _x(text: object) -> str:
    """XML-escaped text (attributes and content alike)."""
    text = _NOT_XML.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", str(text)
    )
    return _html.escape(text, quote=True)


class _Layout(NamedTuple):
    """Where things go in the SVG."""

    lane_of: dict[int, int]  # connection -> lifeline
    members: list[list[int]]  # lifeline -> connections
    lane_x: list[int]
    peer_x: int
    width: int
    height: int
    zero: float
    times: bool
    addresses: bool


_HALO: Final = 'paint-order="stroke" stroke="#ffffff" stroke-width="4" stroke-linejoin="round"'


def _room(events: list[Event], addresses: bool) -> tuple[int, int]:
    """Pixels for the labels left of the peer's lifeline and the notes right of it: as much
    as the longest text drawn there needs (an upper bound), between a floor that keeps the
    peer's box in view and the room of the longest text allowed."""
    longest_label = longest_note = 0
    for event in events:
        label = len(event_label(event)) + len(event.kind) + 8  # "#N " and the kind before it
        note = len(event_note(event, addresses=addresses))
        if event.connection:
            longest_label = max(longest_label, label)
        else:  # the peer's own events are written as notes
            note += label + 1
        longest_note = max(longest_note, note)
    labels = int(min(longest_label, LABEL_CHARS + 12) * _CHAR) + 40
    notes = int(min(longest_note, NOTE_CHARS) * _CHAR) + 30
    return min(max(labels, 220), _LABELS), min(max(notes, 150), _NOTES)


def svg(
    transcript: Transcript,
    *,
    times: bool = True,
    addresses: bool = True,
    max_rows: int | None = MAX_ROWS,
) -> str:
    """The transcript as a self-contained SVG document (see the module's documentation).

    ``times`` and ``addresses`` as in :meth:`Transcript.render
    <fakepeer.Transcript.render>`: without them, the same conversation draws the same.
    ``max_rows``: the rows drawn at most (``None``: all of them).
    """
    rows = drawn_rows(transcript, max_rows)
    lane_of, members = share_lanes(rows)
    lanes = max(len(members), 1)
    labels, notes = _room([row for _, row in rows if not isinstance(row, Gap)], addresses)
    peer_x = _LANE_X + (lanes - 1) * _LANE_GAP + labels
    width = peer_x + notes
    height = _TOP + max(len(rows), 1) * _ROW + 24
    lane_x = [_LANE_X + lane * _LANE_GAP for lane in range(lanes)]
    zero = transcript.started or 0.0
    layout = _Layout(lane_of, members, lane_x, peer_x, width, height, zero, times, addresses)
    out = _header(transcript, layout)
    if not rows:
        out.append(f'<text x="{_LANE_X}" y="{_TOP + 16}" fill="{_GREY}">(nothing happened)</text>')
    hover = [HOVER_CHARS]  # what is left of the hover texts' budget
    for number, (index, row) in enumerate(rows):
        top = _TOP + number * _ROW
        if isinstance(row, Gap):
            out.append(_gap(row, top, layout))
        else:
            out.append(_event(row, index, top, layout, hover))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _header(transcript: Transcript, layout: _Layout) -> list[str]:
    """The SVG's start: its title, the arrow heads, the participants and their lifelines."""
    width, height, peer_x = layout.width, layout.height, layout.peer_x
    name, where = peer_title(transcript, addresses=layout.addresses)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fakepeer-diagram" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="{_x(_FONT)}" font-size="12">',
        f"<title>{_x(f'{name} {where}'.strip())}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        "<defs>",
    ]
    for marker, color in (("ink", _INK), ("red", _RED), ("orange", _ORANGE)):
        out.append(
            f'<marker id="fp-{marker}" viewBox="0 0 10 10" refX="10" refY="5" '
            f'markerWidth="7" markerHeight="7" orient="auto">'
            f'<path d="M0,0L10,5L0,10z" fill="{color}"/></marker>'
        )
    out.append("</defs>")
    bottom = height - 12
    if layout.times:
        out.append(
            f'<text x="{_TIME_X}" y="{_TOP - 20}" text-anchor="end" fill="{_GREY}">ms</text>'
        )
    for lane, x in enumerate(layout.lane_x):
        numbers = layout.members[lane] if layout.members else []
        label = lane_name(numbers) if numbers else ""
        out.append(
            f'<g class="lifeline client" data-connections="{" ".join(map(str, numbers))}">'
            f'<line x1="{x}" y1="{_TOP - 14}" x2="{x}" y2="{bottom}" stroke="{_GREY}" '
            f'stroke-dasharray="4 3"/>'
            f'<rect x="{x - 48}" y="{_TOP - 46}" width="96" height="32" rx="4" fill="#e3f2fd" '
            f'stroke="#1565c0"/>'
            f'<text x="{x}" y="{_TOP - 34}" text-anchor="middle" fill="{_INK}">client</text>'
            f'<text x="{x}" y="{_TOP - 20}" text-anchor="middle" fill="{_INK}" '
            f'font-weight="bold">{_x(label)}</text></g>'
        )
    out.append(
        f'<g class="lifeline peer"><line x1="{peer_x}" y1="{_TOP - 14}" x2="{peer_x}" '
        f'y2="{bottom}" stroke="{_INK}" stroke-width="2"/>'
        f'<rect x="{peer_x - 120}" y="{_TOP - 46}" width="240" height="32" rx="4" '
        f'fill="#ede7f6" stroke="#4527a0"/>'
        f'<text x="{peer_x}" y="{_TOP - 34}" text-anchor="middle" fill="{_INK}" '
        f'font-weight="bold">{_x(shorten(name, 30))}</text>'
        f'<text x="{peer_x}" y="{_TOP - 20}" text-anchor="middle" fill="{_GREY}">'
        f"{_x(shorten(where, 32))}</text></g>"
    )
    return out


def _gap(gap: Gap, top: int, layout: _Layout) -> str:
    """The row that stands for events left out."""
    x = layout.lane_x[layout.lane_of.get(gap.connection, 0)] if gap.connection else _LANE_X
    if gap.cut:
        shown = f"... {gap.omitted:,} events not drawn: str(peer.transcript) has them"
    else:
        shown = f"... {gap.omitted:,} events not kept (over the transcript budget)"
    classes = "gap cut" if gap.cut else "gap"
    return (
        f'<g class="{classes}" data-connection="{gap.connection}" '
        f'data-omitted="{gap.omitted}"><title>{_x(gap.text)}</title>'
        f'<rect x="{_TIME_X + 6}" y="{top + 3}" width="{layout.width - _TIME_X - 12}" '
        f'height="{_ROW - 6}" fill="#eceff1" stroke="{_GREY}" stroke-dasharray="3 3"/>'
        f'<text x="{x + 8}" y="{top + _ROW // 2 + 4}" fill="{_INK}" {_HALO}>'
        f"{_x(shown)}</text></g>"
    )


def _hover(line: str, budget: list[int]) -> str:
    """The escaped hover text of a row: ``line`` while ``budget[0]`` characters last (and
    takes from them), else its first line, shortened."""
    text = _x(line)
    if len(text) <= budget[0]:
        budget[0] -= len(text)
        return text
    budget[0] = 0
    first = shorten(line.split("\n", 1)[0], _SHORT_HOVER)
    return _x(
        f"{first}\n(shortened: the picture's hover texts are too long; "
        "str(peer.transcript) has it all)"
    )


def _event(event: Event, index: int, top: int, layout: _Layout, hover: list[int]) -> str:
    """One event's row: a ``<g>`` with its hover text, time, arrow or mark, label, note."""
    mid = top + _ROW // 2
    lane = layout.lane_of.get(event.connection, 0)
    x = layout.lane_x[lane] if event.connection else layout.peer_x
    peer_x, width = layout.peer_x, layout.width
    category = _category(event)
    color, marker = {"problem": (_RED, "red"), "fault": (_ORANGE, "orange")}.get(
        category, (_INK, "ink")
    )
    classes = " ".join(filter(None, ["event", f"kind-{event.kind}", category]))
    attrs = (
        f'class="{_x(classes)}" data-event="{index}" data-kind="{_x(event.kind)}" '
        f'data-connection="{event.connection}"'
    )
    if category == "problem":
        attrs += ' data-problem="true"'
    line = _line(event, layout.zero, times=layout.times, addresses=layout.addresses)
    fill = {
        "problem": '"#ffebee" fill-opacity="0.75"',
        "fault": '"#fff3e0" fill-opacity="0.75"',
    }.get(category, '"#ffffff" fill-opacity="0"')
    parts = [
        f"<g {attrs}>",
        f"<title>{_hover(line, hover)}</title>",
        f'<rect x="{_TIME_X + 6}" y="{top + 1}" width="{width - _TIME_X - 12}" '
        f'height="{_ROW - 2}" fill={fill}/>',
    ]
    if layout.times:
        stamp = f"{(event.at - layout.zero) * 1000:.3f}"
        parts.append(
            f'<text x="{_TIME_X}" y="{mid + 4}" text-anchor="end" fill="{_GREY}">{stamp}</text>'
        )
    shared = bool(event.connection) and len(layout.members[lane]) > 1
    tag = f"#{event.connection} " if shared else ""
    label = event_label(event)
    note = event_note(event, addresses=layout.addresses)
    weight = ' font-weight="bold"' if category == "problem" else ""
    if event.kind in TO_PEER or event.kind in TO_CLIENT:
        start, end = (x, peer_x) if event.kind in TO_PEER else (peer_x, x)
        dash = ' stroke-dasharray="6 4"' if event.kind in ("dropped", "pending") else ""
        if event.kind in ("dropped", "pending"):  # kept from being sent, or no message yet:
            end = (start + end) // 2  # it stops halfway
        crossed = event.kind in ("dropped", "unexpected", "pending")  # a cross, no head
        head = "" if crossed else f' marker-end="url(#fp-{marker})"'
        parts.append(
            f'<line x1="{start}" y1="{mid + 3}" x2="{end}" y2="{mid + 3}" stroke="{color}" '
            f'stroke-width="1.5"{head}{dash}/>'
        )
        if crossed:
            parts.append(
                f'<text x="{end - 5 if end > start else end + 5}" y="{mid + 8}" '
                f'text-anchor="middle" fill="{color}" font-size="15" font-weight="bold">'
                "✕</text>"
            )
        if event.kind not in ("received", "sent", "matched"):
            label = f"{event.kind} {label}"
        parts.append(
            f'<text x="{x + 8}" y="{mid - 1}" fill="{color}"{weight} {_HALO}>'
            f"{_x(shorten(tag + label, LABEL_CHARS + 12))}</text>"
        )
    else:
        mark = _MARKS.get(event.kind, "●")
        parts.append(
            f'<text x="{x}" y="{mid + 5}" text-anchor="middle" fill="{color}" '
            f'font-size="14" {_HALO}>{mark}</text>'
        )
        text = tag + (event.kind if not label else f"{event.kind} {label}")
        if event.connection:
            parts.append(
                f'<text x="{x + 12}" y="{mid + 4}" fill="{color}"{weight} {_HALO}>'
                f"{_x(shorten(text, LABEL_CHARS))}</text>"
            )
        else:
            note = f"{text} {note}".strip()
    if note:
        parts.append(
            f'<text x="{peer_x + 14}" y="{mid + 4}" fill="{color if category else _GREY}" '
            f"{_HALO}>{_x(shorten(note, NOTE_CHARS))}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


_CSS: Final = """\
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5em;
  color: #263238; background: #fafafa; }
h1 { font-size: 1.3em; margin: 0 0 .2em; overflow-wrap: anywhere; }
p.where { color: #607d8b; margin: 0 0 1em; overflow-wrap: anywhere; }
pre.diagnosis { background: #ffebee; border-left: 4px solid #c62828; padding: .8em 1em;
  white-space: pre-wrap; overflow-x: auto; }
div.diagram { overflow-x: auto; background: #ffffff; border: 1px solid #cfd8dc; }
svg.fakepeer-diagram g.event:hover > rect:first-of-type { fill: #fff9c4; fill-opacity: 1; }
p.hint { color: #607d8b; font-size: .9em; }
"""


def html(
    transcript: Transcript,
    *,
    diagnosis: str | None = None,
    times: bool = True,
    addresses: bool = True,
    max_rows: int | None = MAX_ROWS,
) -> str:
    """A self-contained HTML page: the peer's name and address as its title, ``diagnosis``
    (preformatted) if given, and :func:`svg` of the transcript."""
    name, where = peer_title(transcript, addresses=addresses)
    heading = _heading(name)
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{_x(f'{heading} {where}'.strip())}</title>",
        f"<style>\n{_CSS}</style></head>",
        "<body>",
        f"<h1>What {_x(heading)} saw</h1>",
    ]
    if where:
        body.append(f'<p class="where">{_x(where)}</p>')
    if diagnosis:
        body.append(f'<pre class="diagnosis">{_x(diagnosis)}</pre>')
    body.append(
        '<p class="hint">One row per event, times in ms since the peer started; hover over '
        "a row for the whole message (a hexdump when it is binary). A long conversation "
        f"shows its first and last {(max_rows or 0) // 2:,} rows: the text report has all of "
        "it.</p>"
        if max_rows
        else '<p class="hint">One row per event, times in ms since the peer started; hover '
        "over a row for the whole message (a hexdump when it is binary).</p>"
    )
    picture = svg(transcript, times=times, addresses=addresses, max_rows=max_rows)
    body.append(f'<div class="diagram">\n{picture}</div>')
    body.append("</body>\n</html>\n")
    return "\n".join(body)
