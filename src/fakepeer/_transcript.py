"""The transcript: what happened on each connection, when, rendered for humans.

Events are recorded with timestamps passed in by the runtime (the core reads no clock) and
rendered relative to the moment the peer started serving::

    fake peer 'smtp' on 127.0.0.1:40123
      0.000 ms  #1 connected from 127.0.0.1:51234
      0.051 ms  #1 sent      '220 ready\\r\\n'
      0.210 ms  #1 received  'HELO me\\r\\n'
      0.212 ms  #1 matched   expect #1 'HELO me' (test_smtp.py:12)

Bytes are shown escaped (printable ASCII as is, the rest as ``\\n``, ``\\xNN``); data that is
mostly binary is shown as a hexdump below the event line.

Memory is bounded by a byte budget per connection (:data:`DEFAULT_BUDGET`, 64 KiB): each
event costs its data plus :data:`EVENT_OVERHEAD`. Everything is kept while a connection stays
within its budget. Past it, the transcript keeps the connection's first events (up to half the
budget) and its most recent ones (a ring filling the rest), counts the events left out in
between and says so on one line where they were::

      #1 ... 1,598 events (104,726,528 bytes) not kept: over the transcript budget of 65,536
      bytes per connection (FakePeer(transcript_budget=...) changes it)

(one line in the rendering). An event too large for the budget by itself keeps the first and
the last bytes of its data and renders as ``'...'...'...' (N bytes in all, M not kept)``.
The peer's own events (connection 0) have a budget of their own.

A connection's bytes that are no message yet are in no event; :meth:`Transcript.with_pending`
shows them as ``pending`` events after the others, as they stand when a report is made.
"""

from __future__ import annotations

import copy
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Final, NamedTuple

from ._errors import ScriptError
from ._show import INLINE_LIMIT, escape, hexdump, is_binary, show

__all__ = [
    "DEFAULT_BUDGET",
    "EVENT_OVERHEAD",
    "INLINE_LIMIT",
    "Event",
    "Transcript",
    "escape",
    "hexdump",
    "is_binary",
    "show",
]

#: Event kinds that carry a message: shown even when empty, as ''.
_MESSAGES: Final = frozenset({"received", "matched", "unexpected", "sent", "handled", "pending"})

#: Bytes of transcript per connection by default. The transcript is read by a person looking
#: at a failure: 64 KiB holds a few hundred events at each end of a long connection (or the
#: first and last 32 KiB of a stream), far more than anyone reads, while a test's ordinary
#: conversations (well under a KiB a connection) are never cut. It is a ceiling, not an
#: allocation: 10,000 quiet connections cost what their few events cost; a flood costs at
#: most this per connection instead of everything it sent.
DEFAULT_BUDGET: Final = 64 * 1024

#: The smallest budget accepted: below it a cut transcript would show next to nothing.
MIN_BUDGET: Final = 1024

#: What each event counts toward the budget besides its data: about what the event tuple, its
#: timestamp and its note cost in memory, so a flood of tiny messages is bounded too.
EVENT_OVERHEAD: Final = 128

#: An event cut to fit keeps at least this many bytes of its data, else it is left out whole.
_SLIVER: Final = 64

#: Keys of the events kept in a connection's ring: ``position << _SHIFT | sequence``, where
#: position is how many first events (of all connections) came before it.
_SHIFT: Final = 40

#: Bytes of a cut binary event shown as a hexdump at each end.
_DUMP_END: Final = 2048


class Event(NamedTuple):
    """One thing that happened: ``kind`` is one of ``Transcript.KINDS``.

    ``connection`` is the connection id (1, 2, ...), or 0 for an event of the peer itself;
    ``data`` the bytes concerned, if any; ``note`` free text (a rule, a reason). ``size`` is
    -1 when ``data`` is whole; when the transcript cut ``data`` to fit its budget, ``size`` is
    the length it had, and ``data`` holds its first ``(len(data) + 1) // 2`` bytes followed by
    its last ``len(data) // 2``.
    """

    at: float
    connection: int
    kind: str
    data: bytes = b""
    note: str = ""
    size: int = -1


def _cut(event: Event, keep: int) -> Event:
    """``event`` with only the first and last bytes of its data, ``keep`` in all."""
    data = event.data
    front = (keep + 1) // 2
    size = event.size if event.size >= 0 else len(data)
    return event._replace(data=data[:front] + data[len(data) - (keep - front) :], size=size)


class _Ring:
    """The events of one connection past the first half of its budget, oldest first: all of
    them while the connection is within its budget, then the most recent that fit ``room``.

    If the connection had no first events (its first was over half the budget), the oldest
    event here is kept when it would be left out: cut to half the budget if need be, it is
    ``pinned`` apart from the others, and ``room`` is what it leaves.
    """

    __slots__ = (
        "connection",
        "dropped",
        "dropped_bytes",
        "events",
        "keys",
        "lost",
        "pinnable",
        "pinned",
        "pinned_key",
        "room",
        "spent",
    )

    def __init__(self, connection: int, room: int, *, pinnable: bool = False) -> None:
        self.connection = connection
        self.room = room  # the budget less what the connection's first events took
        self.spent = 0  # what the events here cost
        self.keys: deque[int] = deque()  # one an event, see _SHIFT
        self.events: deque[Event] = deque()
        self.dropped = 0  # events left out whole, between the first events and these
        self.dropped_bytes = 0  # their data, as it came
        self.lost = 0  # bytes of data not kept: of the events dropped, and cut from the others
        self.pinnable = pinnable
        self.pinned: Event | None = None
        self.pinned_key = 0

    def add(self, event: Event, key: int) -> None:
        """Append ``event`` (cut to fit ``room`` if need be), then make room: cut the oldest
        event here down, by an eighth of its data at least, or leave it out."""
        cost = len(event.data) + EVENT_OVERHEAD
        if cost > self.room:
            self.lost += cost - self.room
            event = _cut(event, self.room - EVENT_OVERHEAD)
            cost = self.room
        events = self.events
        self.keys.append(key)
        events.append(event)
        spent = self.spent + cost
        while spent > self.room:  # the last event alone fits, even once the first is pinned
            oldest = events[0]
            length = len(oldest.data)
            if self.pinnable:
                spent -= length + EVENT_OVERHEAD
                self._pin()
                continue
            if length > _SLIVER:
                keep = length - max(spent - self.room, length // 8)
                if keep >= _SLIVER:
                    events[0] = _cut(oldest, keep)
                    spent -= length - keep
                    self.lost += length - keep
                    break
            self.keys.popleft()
            events.popleft()
            spent -= length + EVENT_OVERHEAD
            self.dropped += 1
            self.dropped_bytes += oldest.size if oldest.size >= 0 else length
            self.lost += length
        self.spent = spent

    def _pin(self) -> None:
        """Keep the oldest event, the connection's first, apart: cut to half the room."""
        self.pinnable = False
        self.pinned_key = self.keys.popleft()
        event = self.events.popleft()
        keep = self.room // 2 - EVENT_OVERHEAD
        if len(event.data) > keep:
            self.lost += len(event.data) - keep
            event = _cut(event, keep)
        self.pinned = event
        self.room -= len(event.data) + EVENT_OVERHEAD


class Transcript:
    """An append-only list of :class:`Event` with a text rendering, within a byte budget per
    connection (``budget``, see the module's documentation; None keeps everything).

    ``render()`` shows everything: times, the peer's and the clients' addresses; it is what
    failures show. ``str(transcript)`` leaves out what changes from run to run (times, ports),
    so the same conversation always renders the same and can be compared as a snapshot.
    """

    KINDS: Final = (
        "connected",
        "received",
        "matched",
        "unexpected",
        "sent",
        "eof",
        "half-closed",
        "closed",
        "reset",
        "hanging",
        "lost",
        "error",
        "state",
        "handled",
        "dropped",
        "stopped",
        "fault",
        "pending",
        "tls",
        "accept",
    )

    def __init__(self, title: str = "fake peer", *, budget: int | None = DEFAULT_BUDGET) -> None:
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_BUDGET
        ):
            raise ScriptError(
                f"transcript_budget=... takes a whole number of bytes >= {MIN_BUDGET}, or None "
                f"for no limit, got {budget!r}"
            )
        self.title = title
        self.address = ""  # "host:port" of the peer, once it serves
        self.seed: int | None = None  # the fault seed, once faults were used
        self.upstream = ""  # "host:port" a proxy relays to
        self.started: float | None = None
        self._budget = budget
        self._limit = sys.maxsize if budget is None else budget
        self._half = self._limit // 2
        self._first: list[Event] = []  # every connection's first events, in order
        self._room = self._half  # less what every event cost: while >= 0, nothing else counts
        self._spent: dict[int, int] | None = None  # then by connection: what its first events
        # cost (more than the budget once it has a ring)
        self._rings: dict[int, _Ring] = {}  # by connection, once past half its budget
        self._sequence = 0  # of the events put in rings
        self._lost = 0  # bytes of data cut from the first events
        self._pending: tuple[Event, ...] = ()  # shown after the events: see with_pending()
        self._watchers: tuple[Callable[[Event], None], ...] = ()  # see _watch()

    @property
    def budget(self) -> int | None:
        """Bytes of transcript per connection (data plus 128 bytes an event), or
        None for no limit."""
        return self._budget

    @property
    def omitted_events(self) -> int:
        """How many events were left out whole, over all connections: ``len(transcript) +
        transcript.omitted_events`` is the number of events added."""
        return sum(ring.dropped for ring in self._rings.values())

    @property
    def omitted_bytes(self) -> int:
        """How many bytes of data were not kept, over all connections: the data of the events
        left out, and what was cut from the events kept in part (see :attr:`Event.size`)."""
        return self._lost + sum(ring.lost for ring in self._rings.values())

    def _watch(self, watcher: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``watcher(event)`` with each event added from now on, whole (before the
        budget cuts it), in order; returns the function that stops it (idempotent).

        The command line's live transcript and journal (``fakepeer run``). ``watcher`` runs
        in the thread that adds the event (the serving loop's, with the peer's lock held):
        it must be quick, must not wait for the peer, and must not raise (an exception is
        the runtime's problem, recorded as the peer's). Nothing is queued, so a slow watcher
        slows the peer down instead of growing memory. Watching and unwatching replace a
        tuple, so either may be done from any thread.
        """
        self._watchers = (*self._watchers, watcher)

        def unwatch() -> None:
            self._watchers = tuple(w for w in self._watchers if w is not watcher)

        return unwatch

    def add(self, event: Event) -> None:
        """Append an event; the first one sets the zero of the rendered times if unset."""
        if self.started is None:
            self.started = event.at
        for watcher in self._watchers:
            watcher(event)
        self._room -= len(event.data) + EVENT_OVERHEAD
        if self._room >= 0:  # all events together within half the budget: so is each connection
            self._first.append(event)
            return
        spent = self._spent
        if spent is None:  # the first time past it: count what each connection has so far
            spent = self._spent = {}
            for earlier in self._first:
                number = earlier.connection
                spent[number] = spent.get(number, 0) + len(earlier.data) + EVENT_OVERHEAD
        connection = event.connection
        total = spent.get(connection, 0) + len(event.data) + EVENT_OVERHEAD
        if total <= self._half:
            spent[connection] = total
            self._first.append(event)
        else:
            self._add_late(event, spent)

    def _add_late(self, event: Event, spent: dict[int, int]) -> None:
        """Add an event of a connection past the first half of its budget; ``spent`` is what
        each connection's first events cost (more than the budget once it has a ring)."""
        connection = event.connection
        ring = self._rings.get(connection)
        if ring is None:
            before = spent.get(connection, 0)
            spent[connection] = self._limit + 1  # from now on, every event of it comes here
            left = self._half - before - EVENT_OVERHEAD
            if before + len(event.data) + EVENT_OVERHEAD > self._limit and left >= _SLIVER:
                # Over the whole budget by itself: its ends are the last of the first events.
                self._lost += len(event.data) - left
                self._first.append(_cut(event, left))
                self._rings[connection] = _Ring(connection, self._limit - self._half)
                return
            ring = _Ring(connection, self._limit - before, pinnable=not before)
            self._rings[connection] = ring
        ring.add(event, len(self._first) << _SHIFT | self._sequence)
        self._sequence += 1

    def with_pending(self, pending: Iterable[Event]) -> Transcript:
        """A view of this transcript that shows ``pending`` events after its own: a
        connection's bytes that are no message yet, as they stand now (``pending`` events,
        see ``FakePeer.report()``). The view shares the events (it is for rendering and
        drawing, not for adding to); this transcript is unchanged."""
        view = copy.copy(self)
        view._pending = tuple(pending)
        return view

    @property
    def events(self) -> list[Event]:
        """The events kept, in the order they were added (a new list)."""
        return [row for row in self._rows(None) if isinstance(row, Event)]

    def __len__(self) -> int:
        """How many events are kept."""
        rings = self._rings.values()
        kept = len(self._first) + sum(len(ring.events) + bool(ring.pinned) for ring in rings)
        return kept + len(self._pending)

    def for_connection(self, connection: int) -> list[Event]:
        """The events of one connection that are kept, in order."""
        events = [event for event in self._first if event.connection == connection]
        ring = self._rings.get(connection)
        if ring is not None:
            if ring.pinned:
                events.append(ring.pinned)
            events.extend(ring.events)
        events.extend(event for event in self._pending if event.connection == connection)
        return events

    def _rows(self, connection: int | None) -> Iterator[Event | _Ring]:
        """The events kept in order, each ring preceded by itself if it left events out."""
        first = self._first
        rings = self._rings.values() if connection is None else [self._rings.get(connection)]
        late: list[tuple[int, int, Event | _Ring]] = []
        for ring in rings:
            if ring is None:
                continue
            if ring.pinned:
                late.append((ring.pinned_key, 1, ring.pinned))
            if ring.dropped:
                late.append((ring.keys[0], 0, ring))
            late.extend((key, 1, event) for key, event in zip(ring.keys, ring.events, strict=True))
        late.sort(key=lambda row: row[:2])
        index = 0
        for key, _, row in late:
            while index < key >> _SHIFT:
                if connection is None or first[index].connection == connection:
                    yield first[index]
                index += 1
            yield row
        for event in first[index:]:
            if connection is None or event.connection == connection:
                yield event
        for event in self._pending:
            if connection is None or event.connection == connection:
                yield event

    def render(
        self, *, times: bool = True, addresses: bool = True, connection: int | None = None
    ) -> str:
        """The transcript as text; ``connection`` limits it to one connection; ``times`` and
        ``addresses`` (the peer's and clients') can be left out."""
        title = self.title
        if addresses and self.upstream:
            title += f" to {self.upstream}"
        if addresses and self.address:
            title += f" on {self.address}"
        if addresses and self.seed is not None:  # varies between runs, like the addresses
            title += f" (fault seed {self.seed})"
        lines = [title]
        rows = list(self._rows(connection))
        if not rows:
            lines.append("  (nothing happened)")
        blank = " " * 15 if times else "  "  # as wide as a time stamp
        for event in rows:
            if isinstance(event, _Ring):
                lines.append(blank + self._omission(event))
            else:
                lines.extend(self._lines(event, times=times, addresses=addresses))
        return "\n".join(lines)

    def _lines(self, event: Event, *, times: bool = True, addresses: bool = True) -> list[str]:
        """The lines of one event as :meth:`render` shows it: one line, then a hexdump of
        binary data (the command line's live transcript shows each event so)."""
        zero = self.started or 0.0
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
        elif data or event.kind in _MESSAGES:
            body.append(show(data))
        if event.note and (addresses or event.kind != "connected"):
            body.append(event.note)
        lines.append(f"{head} {' '.join(body)}".rstrip())
        if binary:
            indent = " " * (len(stamp) + 4)
            if cut:
                middle = (len(data) + 1) // 2
                back = data[max(middle, len(data) - _DUMP_END) :]
                align = (len(back) - event.size) % 16  # offsets in the tail: from 16s
                lines.append(hexdump(data[: min(middle, _DUMP_END)], indent=indent))
                lines.append(f"{indent}... ({event.size} bytes in all, {cut} not kept)")
                start = event.size - len(back) + align
                lines.append(hexdump(back[align:], indent=indent, start=start))
            else:
                lines.append(hexdump(data[:4096], indent=indent))
                if len(data) > 4096:
                    lines.append(f"{indent}... ({len(data)} bytes in all)")
        return lines

    def _omission(self, ring: _Ring) -> str:
        """The line that stands for the events of a connection left out."""
        who = f"#{ring.connection} " if ring.connection else ""
        events = "event" if ring.dropped == 1 else "events"
        owner = "Proxy" if self.upstream else "FakePeer"
        return (
            f"{who}... {ring.dropped:,} {events} ({ring.dropped_bytes:,} bytes) not kept: over "
            f"the transcript budget of {self._limit:,} bytes per connection "
            f"({owner}(transcript_budget=...) changes it)"
        )

    def __str__(self) -> str:
        return self.render(times=False, addresses=False)

    # -- pictures (see fakepeer._diagram) ----------------------------------------------------

    def to_svg(self, *, times: bool = True, addresses: bool = True) -> str:
        """The transcript as a sequence diagram: a self-contained SVG document (``str``).

        One row per event, top to bottom, times in ms since the peer started serving; one
        lifeline per client connection on the left (at most eight: more connections share
        them), the peer's on the right. Messages are arrows labelled with the escaped,
        shortened message; hovering over a row shows the whole of it, or its hexdump when
        it is binary (an SVG ``<title>``). Problems (``unexpected`` data, an ``error``, a
        connection lost to an error, an ``(incomplete)`` message) are red, their ``<g>``
        element has the class ``problem`` and ``data-problem="true"``; every event's has
        ``data-event`` (its index in :attr:`events`), ``data-kind`` and ``data-connection``.
        ``times`` and ``addresses`` as in :meth:`render`. No fonts, scripts or links to
        fetch. Its size is bounded, whatever the number of connections: at most 1,000 rows
        (``fakepeer._diagram.MAX_ROWS``), the first 500 and the last 500, with a row between
        them that says how many events were not drawn (this transcript's text has them all);
        about 0.6 MB for plain traffic, 4 MB at most. Time is linear in the events.
        """
        from ._diagram import svg  # noqa: PLC0415  # _diagram imports this module

        return svg(self, times=times, addresses=addresses)

    def to_html(
        self, *, diagnosis: str | None = None, times: bool = True, addresses: bool = True
    ) -> str:
        """A self-contained HTML page (``str``): the peer's name and address as its title,
        ``diagnosis`` (any text, shown preformatted) if given, then :meth:`to_svg`'s
        diagram (so at most 1,000 rows). Open it in a browser; nothing is fetched."""
        from ._diagram import html  # noqa: PLC0415  # _diagram imports this module

        return html(self, diagnosis=diagnosis, times=times, addresses=addresses)

    def to_mermaid(
        self, *, times: bool = True, addresses: bool = True, max_chars: int | None = 48_000
    ) -> str:
        """The transcript as Mermaid ``sequenceDiagram`` text (``str``), for an issue or a
        Markdown page (in a fenced ``mermaid`` block): the participants (one per client
        lifeline, then the peer), then one line per event and per "not kept" gap. Problems
        are arrows that end in a cross (``-x``) or notes that start with ``✖``. Characters
        Mermaid would read as syntax (``#``, ``;``, ``<``, ...) are written as its entity
        codes (``#35;``).

        ``max_chars`` (``int``, default 48,000; ``None``: no limit) bounds the text's length:
        Mermaid refuses a diagram of more than 50,000 characters by default
        (``maxTextSize``), and a GitHub comment holds 65,536. A longer text keeps its first
        and last lines, with a note between them that counts the events left out (this
        transcript's text has them all). The participants and that note are always there,
        about 2,000 characters at most, so a ``max_chars`` below that may be exceeded. Like
        :meth:`to_svg`, it draws 1,000 rows at most.
        """
        from ._mermaid import mermaid  # noqa: PLC0415  # _mermaid imports this module

        return mermaid(self, times=times, addresses=addresses, max_chars=max_chars)
