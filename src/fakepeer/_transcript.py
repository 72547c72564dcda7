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
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["Event", "Transcript", "escape", "hexdump"]

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

#: Event kinds that carry a message: shown even when empty, as ''.
_MESSAGES: Final = frozenset({"received", "matched", "unexpected", "sent", "handled"})

#: Longest bytes shown inline on one event line before it is cut (the rest is counted).
INLINE_LIMIT: Final = 200


def escape(data: bytes) -> str:
    """Printable ASCII as is, everything else escaped; no quotes around it."""
    return "".join([_TABLE[byte] for byte in data])


def is_binary(data: bytes) -> bool:
    """True when more than a quarter of ``data`` is neither printable ASCII nor whitespace."""
    if not data:
        return False
    odd = sum(1 for byte in data if not (0x20 <= byte < 0x7F or byte in (0x09, 0x0A, 0x0D)))
    return odd * 4 > len(data)


def hexdump(data: bytes, indent: str = "") -> str:
    """Classic 16-bytes-a-line hexdump with offsets and an ASCII column."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{byte:02x}" for byte in chunk)
        text = "".join(chr(byte) if 0x20 <= byte < 0x7F else "." for byte in chunk)
        lines.append(f"{indent}{offset:08x}  {hexes:<47}  |{text}|")
    return "\n".join(lines)


def show(data: bytes, limit: int = INLINE_LIMIT) -> str:
    """Quote ``data`` for one line, cutting it after ``limit`` bytes."""
    if len(data) <= limit:
        return f"'{escape(data)}'"
    return f"'{escape(data[:limit])}'... ({len(data)} bytes in all)"


class Event(NamedTuple):
    """One thing that happened: ``kind`` is one of ``Transcript.KINDS``.

    ``connection`` is the connection id (1, 2, ...), or 0 for an event of the peer itself;
    ``data`` the bytes concerned, if any; ``note`` free text (a rule, a reason).
    """

    at: float
    connection: int
    kind: str
    data: bytes = b""
    note: str = ""


class Transcript:
    """An append-only list of :class:`Event` with a text rendering.

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
    )

    def __init__(self, title: str = "fake peer") -> None:
        self.title = title
        self.address = ""  # "host:port" of the peer, once it serves
        self.seed: int | None = None  # the fault seed, once faults were used
        self.upstream = ""  # "host:port" a proxy relays to
        self.events: list[Event] = []
        self.started: float | None = None

    def add(self, event: Event) -> None:
        """Append an event; the first one sets the zero of the rendered times if unset."""
        if self.started is None:
            self.started = event.at
        self.events.append(event)

    def __len__(self) -> int:
        return len(self.events)

    def for_connection(self, connection: int) -> list[Event]:
        """The events of one connection, in order."""
        return [event for event in self.events if event.connection == connection]

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
        events = self.events if connection is None else self.for_connection(connection)
        if not events:
            lines.append("  (nothing happened)")
        zero = self.started or 0.0
        for event in events:
            stamp = f"{(event.at - zero) * 1000:10.3f} ms  " if times else "  "
            who = f"#{event.connection} " if event.connection else ""
            head = f"{stamp}{who}{event.kind:<10}"
            body = []
            binary = bool(event.data) and is_binary(event.data)
            if (event.data or event.kind in _MESSAGES) and not binary:
                body.append(show(event.data))
            elif binary:
                body.append(f"{len(event.data)} bytes:")
            if event.note and (addresses or event.kind != "connected"):
                body.append(event.note)
            lines.append(f"{head} {' '.join(body)}".rstrip())
            if binary:
                lines.append(hexdump(event.data[:4096], indent=" " * (len(stamp) + 4)))
                if len(event.data) > 4096:
                    lines.append(" " * (len(stamp) + 4) + f"... ({len(event.data)} bytes in all)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render(times=False, addresses=False)
