"""Matchers: does a message (or the front of a raw buffer) satisfy a rule?

Anything the script accepts as a matcher is turned into a :class:`Matcher` by
:func:`as_matcher`:

==========================  ===============================================================
what the script wrote        what it matches
==========================  ===============================================================
``b"PING"`` / ``"PING"``    exactly these bytes (a ``str`` is encoded as UTF-8)
``re.compile(rb"...")``     the whole message (``fullmatch``); the reply gets the ``re.Match``
a callable ``f(bytes)``     every message for which ``f`` returns true
``fakepeer.ANY``            any message
==========================  ===============================================================

Each matcher works in two modes. For message framings (``stream=False``) it judges one whole
message. For :class:`~fakepeer.Raw` (``stream=True``) it looks at the front of the buffered
bytes and either matches a prefix (saying how many bytes it consumed), asks for more bytes
(:data:`NEED_MORE`), or refuses (``None``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

from ._errors import ScriptError
from ._transcript import escape

__all__ = ["ANY", "NEED_MORE", "Matched", "Matcher", "as_matcher"]

#: The shape of a predicate matcher.
Predicate = Callable[[bytes], object]


class Matched(NamedTuple):
    """A successful match: ``value`` is given to reply callables; ``consumed`` bytes are used."""

    value: object
    consumed: int


class _NeedMore:
    def __repr__(self) -> str:
        return "NEED_MORE"


#: Returned in stream mode when the buffered bytes could still become a match.
NEED_MORE: Final = _NeedMore()

MatchOutcome = Matched | _NeedMore | None


class Matcher:
    """Base class of matchers. Subclasses implement :meth:`match` and :meth:`describe`."""

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        """Judge ``data``; see the module docstring for the two modes."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short description for transcripts and error messages."""
        raise NotImplementedError

    def explain(self, data: bytes) -> str:
        """Why ``data`` does not match, in one line (the default just restates the rule)."""
        return f"does not match {self.describe()}"

    def __repr__(self) -> str:
        return self.describe()


class Exact(Matcher):
    """Exactly these bytes: the whole message, or a prefix of the raw buffer."""

    def __init__(self, expected: bytes) -> None:
        if not expected:
            raise ScriptError(
                "expect(b'') can never be met: an empty message is not sent over TCP "
                "(use fakepeer.ANY to accept anything)"
            )
        self.expected = expected

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        expected = self.expected
        if not stream:
            return Matched(data, len(data)) if data == expected else None
        if data.startswith(expected):
            return Matched(expected, len(expected))
        if expected.startswith(data):
            return NEED_MORE
        return None

    def describe(self) -> str:
        return f"'{escape(self.expected)}'"

    def explain(self, data: bytes) -> str:
        expected = self.expected
        for index, (want, got) in enumerate(zip(expected, data, strict=False)):
            if want != got:
                return (
                    f"differs at byte {index}: expected '{escape(expected[index : index + 8])}'"
                    f", received '{escape(data[index : index + 8])}'"
                )
        if len(data) > len(expected):
            return f"has {len(data) - len(expected)} extra byte(s) after the expected ones"
        return f"is {len(expected) - len(data)} byte(s) short of the expected ones"


class Regex(Matcher):
    """A regular expression over bytes: ``fullmatch`` on a message, ``match`` on a raw buffer.

    In stream mode a regex cannot tell "not yet" from "never", so it waits for more bytes
    until it matches; bytes it never matches are reported when the connection ends.
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
        return f"regex '{self.pattern.pattern.decode(errors='backslashreplace')}'"


class Predicate_(Matcher):
    """Every message for which the callable returns true (in stream mode: the whole buffer)."""

    def __init__(self, predicate: Predicate) -> None:
        self.predicate = predicate

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if self.predicate(data):
            return Matched(data, len(data))
        return NEED_MORE if stream else None

    def describe(self) -> str:
        name = getattr(self.predicate, "__qualname__", None) or repr(self.predicate)
        return f"predicate {name}"


class _Any(Matcher):
    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream and not data:
            return NEED_MORE
        return Matched(data, len(data))

    def describe(self) -> str:
        return "ANY"


#: Matches any message (with :class:`~fakepeer.Raw`: whatever bytes have arrived).
ANY: Final[Matcher] = _Any()


def as_matcher(spec: object) -> Matcher:
    """Turn what a script wrote into a :class:`Matcher`, or raise :class:`ScriptError`."""
    if isinstance(spec, Matcher):
        return spec
    if isinstance(spec, bytes | bytearray | memoryview):
        return Exact(bytes(spec))
    if isinstance(spec, str):
        return Exact(spec.encode())
    if isinstance(spec, re.Pattern):
        return Regex(spec)
    if callable(spec):
        return Predicate_(spec)
    raise ScriptError(
        f"cannot match against {spec!r}: use bytes, str, a compiled re.Pattern, "
        "a callable taking the message bytes, or fakepeer.ANY"
    )
