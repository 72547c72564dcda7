"""Where each key of a TOML document is: the line numbers ``tomllib`` does not give.

:func:`locate` reads a document that ``tomllib`` has already accepted and maps the path of
every table, key and array element to the line it starts on::

    version = 1             # ("version",)                 -> 1
    [[expect]]              # ("expect", 0)                -> 2
    match = "PING"          # ("expect", 0, "match")       -> 3
    steps = [               # ("expect", 0, "steps")       -> 4
      { reply = "A" },      # ("expect", 0, "steps", 0)    -> 5, and its "reply" key
    ]

A path is the keys and list indices that reach a value in what ``tomllib.loads`` returns, so
an array of tables (``[[expect]]``, counted by occurrence, nested ones under the latest
element of their parent) and an inline array give the same paths. Strings (multi-line ones
too) and comments are skipped whole, so text that looks like a key inside them counts for
nothing. The scanner is lenient: it assumes valid TOML and never raises on it.

Pure: no I/O. The loader of script files (``_scriptfile``) uses it for its ``FILE:LINE``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["Path", "line_of", "locate"]

#: The keys and indices that reach a value of the parsed document.
Path: TypeAlias = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END = frozenset(",]}#\n")


def locate(text: str) -> dict[Path, int]:
    """The line (from 1) of each table, key and array element of the TOML ``text``."""
    scanner = _Scanner(text)
    scanner.document()
    return scanner.lines


def line_of(lines: Mapping[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor that :func:`locate` found (1 if
    none)."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return 1


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[Path, int] = {}
        self.arrays: dict[Path, int] = {}  # arrays of tables: how many elements so far

    # -- characters ----------------------------------------------------------------------------

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def spaces(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1

    def blank(self) -> None:
        """Spaces, newlines and comments (inside arrays, between statements)."""
        while self.pos < len(self.text):
            char = self.peek()
            if char in (" ", "\t", "\r", "\n"):
                self.advance()
            elif char == "#":
                self.comment()
            else:
                return

    def comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def record(self, path: Path, line: int) -> None:
        self.lines.setdefault(path, line)

    # -- the document --------------------------------------------------------------------------

    def document(self) -> None:
        table: Path = ()
        while True:
            self.blank()
            if self.pos >= len(self.text):
                return
            line = self.line
            if self.peek(2) == "[[":
                self.advance(2)
                table = self.header(self.key(), line, array=True)
                self.spaces()
                self.advance(2)  # ]]
            elif self.peek() == "[":
                self.advance()
                table = self.header(self.key(), line, array=False)
                self.spaces()
                self.advance()  # ]
            else:
                self.pair(table)

    def resolve(self, keys: list[str]) -> Path:
        """The path of a header's keys: an array of tables it passes through means its
        latest element."""
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def header(self, keys: list[str], line: int, *, array: bool) -> Path:
        parent = self.resolve(keys[:-1])
        for end in range(1, len(parent) + 1):
            self.record(parent[:end], line)
        path: Path = (*parent, keys[-1])
        self.record(path, line)
        if array:
            count = self.arrays.get(path, 0)
            self.arrays[path] = count + 1
            path = (*path, count)
            self.record(path, line)
        return path

    def pair(self, table: Path) -> None:
        """``key = value``, the key dotted or not."""
        line = self.line
        keys = self.key()
        path = table
        for key in keys:
            path = (*path, key)
            self.record(path, line)
        self.spaces()
        self.advance()  # =
        self.spaces()
        self.value(path)

    # -- keys ----------------------------------------------------------------------------------

    def key(self) -> list[str]:
        keys = []
        while True:
            self.spaces()
            keys.append(self.simple_key())
            self.spaces()
            if self.peek() != ".":
                return keys
            self.advance()

    def simple_key(self) -> str:
        char = self.peek()
        if char in ('"', "'"):
            start = self.pos
            self.string()
            quoted = self.text[start : self.pos]
            decoded = tomllib.loads(f"k = {quoted}")["k"]
            return str(decoded)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _BARE:
            self.pos += 1
        return self.text[start : self.pos]

    # -- values --------------------------------------------------------------------------------

    def value(self, path: Path) -> None:
        char = self.peek()
        if char in ('"', "'"):
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in _SCALAR_END:
                self.pos += 1

    def string(self) -> None:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            self.advance(3)
            end = self.find_close(quote * 3, escapes=quote == '"')
            self.advance(end - self.pos + 3)
            while self.peek() == quote:  # up to two quotes end the content: '''a''''' is a''
                self.advance()
            return
        self.advance()
        end = self.find_close(quote, escapes=quote == '"')
        self.advance(end - self.pos + 1)

    def find_close(self, delimiter: str, *, escapes: bool) -> int:
        index = self.pos
        while index < len(self.text):
            if escapes and self.text[index] == "\\":
                index += 2
                continue
            if self.text.startswith(delimiter, index):
                return index
            index += 1
        return len(self.text)

    def array(self, path: Path) -> None:
        self.advance()  # [
        index = 0
        while True:
            self.blank()
            if self.peek() in ("]", ""):
                self.advance()
                return
            if self.peek() == ",":
                self.advance()
                continue
            element: Path = (*path, index)
            self.record(element, self.line)
            self.value(element)
            index += 1

    def inline_table(self, path: Path) -> None:
        self.advance()  # {
        while True:
            self.blank()
            if self.peek() in ("}", ""):
                self.advance()
                return
            if self.peek() == ",":
                self.advance()
                continue
            self.pair(path)
