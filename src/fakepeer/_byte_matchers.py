"""The matchers that judge bytes as they are: literals, a regex, a predicate, ``ANY``.

They are the classes behind :func:`~fakepeer.exact`, :func:`~fakepeer.prefix`,
:func:`~fakepeer.contains`, :func:`~fakepeer.regex` and :func:`~fakepeer.predicate`, apart
from the factories (``fakepeer._matchers``, which check what the script wrote and document
the vocabulary) and from the matchers that read structure (JSON) or compose others. Their
rules in both modes are in the docstring of ``fakepeer._matchers``; the protocol they follow
is ``fakepeer._matching``. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from typing import Final

from ._errors import ScriptError
from ._matching import NEED_MORE, RATIO_LIMIT, Matched, Matcher, MatchOutcome, ratio
from ._show import escape, show

__all__ = ["ANY", "Contains", "Exact", "Predicate", "Predicate_", "Prefix", "Regex"]

#: Makes a named tuple (a :class:`Matched`) from its fields, without its ``__new__``.
_tuple: Final = tuple.__new__

#: The shape of a predicate matcher.
Predicate = Callable[[bytes], object]


# -- literals ------------------------------------------------------------------------------


def _first_difference(expected: bytes, data: bytes) -> str | None:
    """Where ``data`` stops agreeing with ``expected`` byte for byte, if it does."""
    for index, (want, got) in enumerate(zip(expected, data, strict=False)):
        if want != got:
            return (
                f"differs at byte {index}: expected '{escape(expected[index : index + 8])}'"
                f", received '{escape(data[index : index + 8])}'"
            )
    return None


def _literal_stream(expected: bytes, data: bytes) -> MatchOutcome:
    if data.startswith(expected):
        return Matched(expected, len(expected))
    if expected.startswith(data):
        return NEED_MORE
    return None


def _literal_from(expected: bytes, data: bytes | bytearray, start: int) -> MatchOutcome:
    # ``data[:start]`` waited, so it is a beginning of ``expected``: compare only the bytes
    # after it, as far as both go (a differing byte refuses as soon as it arrives).
    end = min(len(data), len(expected))
    if data[start:end] != expected[start:end]:
        return None
    if len(data) >= len(expected):
        return Matched(expected, len(expected))
    return NEED_MORE


class Exact(Matcher):
    """Exactly these bytes: the whole message, or a prefix of the raw buffer."""

    incremental = True

    def __init__(self, expected: bytes) -> None:
        # b"" is a real message with message framings (a blank line); a raw byte stream has
        # no empty message, and the peer refuses b"" with Raw() where the rule is written.
        self.expected = expected

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream:
            return _literal_stream(self.expected, data) if self.expected else None
        if data == self.expected:  # Matched(...) without its __new__: the hot path
            return _tuple(Matched, (data, len(data)))
        return None

    def match_from(self, data: bytes | bytearray, start: int) -> MatchOutcome:
        return _literal_from(self.expected, data, start) if self.expected else None

    def describe(self) -> str:
        return show(self.expected)

    def explain(self, data: bytes) -> str:
        expected = self.expected
        difference = _first_difference(expected, data)
        if difference is not None:
            return difference
        if len(data) > len(expected):
            return f"has {len(data) - len(expected)} extra byte(s) after the expected ones"
        if len(data) < len(expected):
            return f"is {len(expected) - len(data)} byte(s) short of the expected ones"
        return f"matches {self.describe()}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        return ratio(self.expected, data[: len(self.expected)] if stream else data)


class Prefix(Matcher):
    """Messages that start with these bytes; in stream mode, just these bytes."""

    incremental = True

    def __init__(self, expected: bytes) -> None:
        if not expected:
            raise ScriptError(
                "prefix(b'') matches everything and consumes nothing "
                "(use fakepeer.ANY to accept anything)"
            )
        self.expected = expected

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream:
            return _literal_stream(self.expected, data)
        return Matched(data, len(data)) if data.startswith(self.expected) else None

    def match_from(self, data: bytes | bytearray, start: int) -> MatchOutcome:
        return _literal_from(self.expected, data, start)

    def describe(self) -> str:
        return f"prefix {show(self.expected)}"

    def explain(self, data: bytes) -> str:
        expected = self.expected
        difference = _first_difference(expected, data)
        if difference is not None:
            return difference
        if len(data) < len(expected):
            return f"is {len(expected) - len(data)} byte(s) short of the prefix"
        return f"matches {self.describe()}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        return ratio(self.expected, data[: len(self.expected)])


class Contains(Matcher):
    """Messages that contain these bytes; in stream mode, up to their first occurrence."""

    incremental = True

    def __init__(self, needle: bytes) -> None:
        if not needle:
            raise ScriptError(
                "contains(b'') matches everything and consumes nothing "
                "(use fakepeer.ANY to accept anything)"
            )
        self.needle = needle

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        index = data.find(self.needle)
        if not stream:
            return Matched(data, len(data)) if index >= 0 else None
        if index < 0:
            return NEED_MORE
        end = index + len(self.needle)
        return Matched(data[:end], end)

    def match_from(self, data: bytes | bytearray, start: int) -> MatchOutcome:
        # ``data[:start]`` holds no needle: it can only start in its last len - 1 bytes.
        needle = self.needle
        index = data.find(needle, max(0, start - len(needle) + 1))
        if index < 0:
            return NEED_MORE
        end = index + len(needle)
        return Matched(bytes(data[:end]), end)

    def describe(self) -> str:
        return f"contains {show(self.needle)}"

    def explain(self, data: bytes) -> str:
        if self.needle in data:
            return f"matches {self.describe()}"
        return f"does not contain {show(self.needle)}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        """The longest run of the needle found in ``data``, as a fraction of the needle."""
        needle, data = self.needle[:RATIO_LIMIT], data[:RATIO_LIMIT]
        block = difflib.SequenceMatcher(None, needle, data, autojunk=False).find_longest_match()
        return block.size / len(needle)


# -- regex ---------------------------------------------------------------------------------


_CONTROL: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class Regex(Matcher):
    """A regular expression over bytes: ``fullmatch`` on a message, ``match`` on a raw buffer.

    In stream mode a regex cannot tell "not yet" from "never", so it waits for more bytes
    until it matches; bytes it never matches are reported when the connection ends. It is
    not incremental: while it waits, each segment that arrives has it match the whole buffer
    again, so waiting for a large message that arrives in small segments costs time quadratic
    in its length (a literal, :func:`prefix` or :func:`contains` first in an :func:`all_of`
    frames it in linear time).
    """

    def __init__(self, pattern: re.Pattern[bytes] | re.Pattern[str]) -> None:
        if isinstance(pattern.pattern, str):
            try:
                compiled: re.Pattern[bytes] = re.compile(
                    pattern.pattern.encode(), pattern.flags & ~re.UNICODE
                )
            except re.error as exc:
                raise ScriptError(
                    f"could not turn the str pattern {pattern.pattern!r} into a bytes pattern: "
                    f"{exc}; write it as rb'...'"
                ) from exc
        else:
            compiled = pattern
        self.pattern = compiled

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if not stream:
            found = self.pattern.fullmatch(data)
            return Matched(found, len(data)) if found else None
        found = self.pattern.match(data)
        if found is None or found.end() == 0:
            return NEED_MORE
        return Matched(found, found.end())

    def describe(self) -> str:
        source = self.pattern.pattern.decode(errors="backslashreplace")
        # Keep it on one line: a newline in the pattern is shown as the escape that means it.
        shown = "".join(
            char if char.isprintable() else _CONTROL.get(char, repr(char)[1:-1]) for char in source
        )
        text = f"regex '{shown}'"
        flags = self.pattern.flags & ~re.UNICODE
        return f"{text} ({re.RegexFlag(flags).name})" if flags else text

    def explain(self, data: bytes) -> str:
        found = self.pattern.search(data)
        if found is not None and found.end() > found.start():
            return (
                f"does not match {self.describe()} as a whole: it matches only bytes "
                f"{found.start()} to {found.end()} of {len(data)}"
            )
        return f"does not match {self.describe()}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        """The larger of how much of ``data`` a search covers and how alike the source is."""
        found = self.pattern.search(data[:RATIO_LIMIT])
        covered = (found.end() - found.start()) / len(data) if found and data else 0.0
        return max(covered, ratio(self.pattern.pattern, data))


# -- predicate and ANY ---------------------------------------------------------------------


class Predicate_(Matcher):
    """Every message for which the callable returns true (in stream mode: the whole buffer).

    In stream mode it is called again on the whole buffer each time a segment arrives while
    it says no: time quadratic in the length of what it waits for.
    """

    def __init__(self, predicate: Predicate, description: str | None = None) -> None:
        self.predicate = predicate
        self.description = description

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        try:
            result = self.predicate(data)
        except Exception as exc:
            # The script's code raised: say which function, on what (the runtime's failure
            # shows the notes of the exception it reports).
            exc.add_note(f"raised by {self.function()}, called on {show(data, 64)}")
            raise
        if result:
            return Matched(data, len(data))
        return NEED_MORE if stream else None

    def describe(self) -> str:
        if self.description is not None:
            return self.description
        return f"predicate {_name(self.predicate)}"

    def function(self) -> str:
        """The function, for people: ``the predicate <qualified name> (<file>:<line>)``."""
        return f"the predicate {_name(self.predicate)}{_place(self.predicate)}"

    def explain(self, data: bytes) -> str:
        return self._explain(data, False)

    def _explain(self, data: bytes, stream: bool) -> str:
        what = "" if self.description is None else f" {self.description}"
        try:
            result = self.predicate(data)
        except Exception as exc:
            return f"does not match{what}: {self.function()} raised {type(exc).__name__}: {exc}"
        if result:
            return f"matches {self.describe()}"
        said = repr(result)
        if len(said) > 60:
            said = f"{said[:57]}..."
        waits = "; with Raw framing it waits for more bytes" if stream else ""
        return f"does not match{what}: {self.function()} returned {said}{waits}"


def _name(function: object) -> str:
    """A callable's qualified name (``Class.method``, ``f.<locals>.<lambda>``), else its repr."""
    name = getattr(function, "__qualname__", None)
    return name if isinstance(name, str) else repr(function)


def _place(function: object) -> str:
    """`` (file:line)`` where a Python function is defined, else ``""``."""
    code = getattr(function, "__code__", None)
    filename = getattr(code, "co_filename", None)
    line = getattr(code, "co_firstlineno", None)
    if not isinstance(filename, str) or not isinstance(line, int):
        return ""
    return f" ({os.path.basename(filename)}:{line})"


class _Any(Matcher):
    incremental = True

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream and not data:
            return NEED_MORE
        return Matched(data, len(data))

    def match_from(self, data: bytes | bytearray, start: int) -> MatchOutcome:
        return Matched(bytes(data), len(data)) if data else NEED_MORE

    def describe(self) -> str:
        return "ANY"


#: Matches any message (with :class:`~fakepeer.Raw`: whatever bytes have arrived).
ANY: Final[Matcher] = _Any()
