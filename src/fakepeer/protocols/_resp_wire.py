"""RESP on the wire, for :mod:`fakepeer.protocols.resp`: the commands a client sends (cut
off a buffer) and the replies a server sends (checked whole), as the Redis documentation
specifies them (https://redis.io/docs/latest/develop/reference/protocol-spec/).

Built of fakepeer's public API only, as the kit is. Pure functions of bytes.
"""

from __future__ import annotations

from typing import Final

from fakepeer import FramingError

__all__ = [
    "CONTAINERS",
    "CRLF",
    "MAX_BULK",
    "MAX_ELEMENTS",
    "REPLY_TYPES",
    "command_at",
    "reply_problem",
    "show",
    "too_long",
]

#: The most elements a command may have (Redis's own limit).
MAX_ELEMENTS: Final = 1024 * 1024
#: The longest bulk string (Redis's ``proto-max-bulk-len``); ``max_length`` limits it too.
MAX_BULK: Final = 512 * 1024 * 1024
CRLF: Final = b"\r\n"

#: Redis's container commands: those whose first argument is a subcommand (``CLIENT
#: SETINFO``), the only names :func:`~fakepeer.protocols.resp.command` takes with two words.
CONTAINERS: Final = frozenset(
    b"ACL CLIENT CLUSTER COMMAND CONFIG FUNCTION LATENCY MEMORY MODULE OBJECT PUBSUB SCRIPT "
    b"SLOWLOG XGROUP XINFO".split()
)

#: The first byte of every RESP2 and RESP3 reply type.
REPLY_TYPES: Final = frozenset(b"+-:$*_#,(!=%~>|")
#: The types that are one line: simple string, error, integer, null, boolean, double, big
#: number.
_LINES: Final = frozenset(b"+-:_#,(")
#: The types with a length line then that many bytes: bulk string, bulk error, verbatim.
_BLOBS: Final = frozenset(b"$!=")
#: The aggregates, and how many values each counted element is: array, set, push (1);
#: map and attribute (2: a key and a value).
_AGGREGATES: Final = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}


def show(data: bytes, limit: int = 40) -> str:
    """``data`` quoted as the transcript shows bytes, cut after ``limit`` bytes."""
    text = repr(data[:limit])[2:-1]
    return f"'{text}'" + ("..." if len(data) > limit else "")


# -- the client's commands -------------------------------------------------------------------


def _count(line: bytes, what: str, low: int, high: int) -> int:
    """The number on a ``*`` or ``$`` line, or a FramingError saying what is wrong."""
    # Length first: int() refuses more than 4300 digits (ValueError).
    if not line.isdigit() or len(line) > 20 or not low <= int(line) <= high:
        raise FramingError(
            f"RESP: invalid {what} {show(line)}: expected a whole number from {low} to {high}"
        )
    return int(line)


def _multibulk(buffer: bytes, start: int, limit: int) -> tuple[list[bytes], int] | None:
    """The array of bulk strings at ``start`` (a ``*``): its elements and where it ends."""
    end = buffer.find(CRLF, start)
    if end < 0:
        return None
    count = _count(buffer[start + 1 : end], "multibulk length", 1, MAX_ELEMENTS)
    position, elements = end + 2, list[bytes]()
    for _ in range(count):
        if position >= len(buffer):
            return None
        if buffer[position] != ord("$"):
            raise FramingError(
                f"RESP: element {len(elements) + 1} of the command is not a bulk string: "
                f"expected '$', received {show(buffer[position : position + 20])}"
            )
        end = buffer.find(CRLF, position)
        if end < 0:
            return None
        size = _count(buffer[position + 1 : end], "bulk length", 0, MAX_BULK)
        stop = end + 2 + size
        if stop + 2 - start > limit:
            raise too_long(stop + 2 - start, limit)
        if stop + 2 > len(buffer):
            return None
        if buffer[stop : stop + 2] != CRLF:
            raise FramingError(
                f"RESP: the bulk string of {size} byte(s) at element {len(elements) + 1} is "
                f"not followed by '\\r\\n' but by {show(buffer[stop : stop + 2])}"
            )
        elements.append(buffer[end + 2 : stop])
        position = stop + 2
    return elements, position


def command_at(buffer: bytes, start: int, limit: int) -> tuple[list[bytes], int] | None:
    """The command at ``buffer[start:]``: its words (none for an empty inline line) and where
    it ends; None while it is incomplete. Raises FramingError for bytes that cannot be one."""
    if buffer[start] == ord("*"):
        return _multibulk(buffer, start, limit)
    if not 32 <= buffer[start] < 127 and buffer[start] not in b"\t\r\n":
        raise FramingError(
            f"RESP: {show(buffer[start : start + 20])} is no command: a command is an array "
            "('*') of bulk strings, or an inline command, a line of text"
        )
    end = buffer.find(b"\n", start)
    if end < 0:
        return None
    return buffer[start:end].split(), end + 1


def too_long(size: int, limit: int) -> FramingError:
    """The FramingError of a command of ``size`` bytes or more, over ``limit``."""
    return FramingError(
        f"RESP: a command of {size} bytes or more, over the limit of {limit} "
        f"(resp.framing(max_length=...) raises it)"
    )


# -- the server's replies --------------------------------------------------------------------


class _Malformed(Exception):
    """Why bytes are no whole RESP reply (a sentence)."""


def _number(line: bytes, kind: int, low: int) -> int:
    text = line[1:] if line[:1] == b"-" else line
    if not text.isdigit() or int(line) < low:
        raise _Malformed(f"the length {show(line)} of {chr(kind)!r} is no number >= {low}")
    return int(line)


def _value_end(data: bytes, start: int) -> int:
    """Where the one reply at ``data[start:]`` ends, or :class:`_Malformed`. Nested
    aggregates are walked with a stack of the values each still owes (RESP sets no depth
    limit, so no recursion)."""
    owed = [1]  # values still to read, innermost aggregate last
    position = start
    while owed:
        if owed[-1] == 0:
            owed.pop()
            continue
        owed[-1] -= 1
        position, children = _head_end(data, position)
        if children:
            owed.append(children)
    return position


def _head_end(data: bytes, start: int) -> tuple[int, int]:
    """Where the value at ``data[start:]`` ends, its elements excepted, and how many values
    follow as its elements (0 but for an aggregate); or :class:`_Malformed`."""
    if start >= len(data):
        raise _Malformed("it ends before a value the ones before it announce")
    kind = data[start]
    if kind not in REPLY_TYPES:
        raise _Malformed(
            f"{show(data[start : start + 20])} starts with no RESP type byte ('+', '-', ':', "
            "'$', '*', '_', '%'...)"
        )
    end = data.find(CRLF, start)
    if end < 0:
        raise _Malformed(f"{show(data[start : start + 20])} has no '\\r\\n' to end its line")
    line, position = data[start + 1 : end], end + 2
    if kind in _LINES:
        return position, 0
    null = kind in b"$*" and line == b"-1"  # RESP2's null bulk string and null array
    if null:
        return position, 0
    count = _number(line, kind, 0)
    if kind in _BLOBS:
        stop = position + count
        if data[stop : stop + 2] != CRLF:
            raise _Malformed(
                f"the {count} byte(s) after {show(data[start:position])} are not followed "
                "by '\\r\\n'"
            )
        return stop + 2, 0
    return position, count * _AGGREGATES[kind]


def reply_problem(reply: bytes) -> str | None:
    """Why ``reply`` is not one or more whole RESP replies, in words; None if it is."""
    if not reply:
        return "it is empty (a reply callable returns None to send nothing)"
    position = 0
    try:
        while position < len(reply):
            position = _value_end(reply, position)
    except _Malformed as problem:
        return str(problem)
    return None
