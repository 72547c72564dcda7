"""Matchers: does a message (or the front of a raw buffer) satisfy a rule?

Anything the script accepts as a matcher is turned into a :class:`Matcher` by
:func:`as_matcher`; the factories build the others:

===============================  ============================================  ===================
what the script wrote            what it matches                               a reply gets
===============================  ============================================  ===================
``b"PING"``, ``"PING"``          exactly these bytes (a str is UTF-8)          the message
``exact(b"PING")``               the same                                      the message
``prefix(b"GET ")``              messages starting with these bytes            the message
``contains(b"\\r\\n")``          messages containing these bytes               the message
``re.compile(rb"...")``          the whole message (``fullmatch``)             the ``re.Match``
``regex(rb"...", flags)``        the same                                      the ``re.Match``
a callable ``f(bytes)``          messages for which ``f`` returns true         the message
``predicate(f, "about f")``      the same, described as ``about f``            the message
a dict or a list                 see :func:`json`                              the parsed JSON
``json({"op": "get"})``          UTF-8 JSON of which this is a subset          the parsed JSON
``fakepeer.ANY``                 any message                                   the message
``all_of(a, b, ...)``            messages that every part matches              the first part's
``any_of(a, b, ...)``            messages that some part matches               the matching part's
``not_(a)``                      messages that ``a`` does not match            the message
===============================  ============================================  ===================

Each matcher works in two modes. For message framings (``stream=False``) it judges one whole
message and returns :class:`Matched` or ``None``. For :class:`~fakepeer.Raw` (``stream=True``)
it looks at the front of the buffered bytes and either matches a prefix (saying how many bytes
it consumed, always at least one), asks for more bytes (:data:`NEED_MORE`), or refuses
(``None``: no bytes that may still arrive can make it match). In stream mode:

- ``exact`` and ``prefix`` consume their literal bytes (so they behave alike); they wait while
  the buffer is a beginning of the literal and refuse as soon as it is not.
- ``contains`` consumes up to and including the first occurrence of its bytes, and waits until
  they arrive (it never refuses).
- a regex consumes what ``match`` covers at the front, and waits while it does not match (it
  cannot tell "not yet" from "never").
- a predicate and ``ANY`` consume the whole buffer, so what they see depends on how the bytes
  were chunked; a predicate waits while it says no.
- ``json`` consumes one complete JSON value at the front, with the whitespace around it that
  has already arrived. It waits while the buffer is an unfinished beginning of JSON (a bare
  number at the very end waits too: ``12`` may become ``123``), and refuses invalid JSON or a
  complete value that does not match.
- ``all_of``: the first part frames (decides what is consumed, or waits, or refuses); the
  other parts then judge exactly those bytes as a message. Put the framing part first:
  ``all_of(contains(b"\\r\\n\\r\\n"), prefix(b"GET "))``.
- ``any_of``: the first part that matches wins, as with rules; it waits if a part waits and
  none matches, and refuses when every part refuses.
- ``not_``: waits while the inner matcher waits, refuses when it matches the front, and
  consumes the whole buffer when it refuses. It is mostly useful with message framings.

While a matcher waits, the peer asks it again each time more bytes arrive. ``exact``,
``prefix``, ``contains``, ``ANY`` and an ``all_of`` whose first part is one of them go on from
where they stopped (:meth:`Matcher.match_from`), so a long message that arrives in many small
segments costs time linear in its length. The others (a regex, a predicate, ``json``,
``any_of``, ``not_``) judge the whole buffer again each time: time quadratic in the length of
what they wait for, so prefer a literal for a large message.

Mistakes in a matcher (an empty literal, a regex that does not compile, something that is not
JSON) raise :class:`~fakepeer.ScriptError` where the matcher is written.
"""

from __future__ import annotations

import difflib
import json as _json
import math
import re
from collections.abc import Callable
from typing import Final, NamedTuple

from ._errors import ScriptError
from ._show import escape, show

__all__ = [
    "ANY",
    "NEED_MORE",
    "Matched",
    "Matcher",
    "all_of",
    "any_of",
    "as_matcher",
    "closeness",
    "contains",
    "exact",
    "json",
    "not_",
    "predicate",
    "prefix",
    "regex",
]

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
    """Base class of matchers. Subclasses implement :meth:`match` and :meth:`describe`.

    :meth:`explain` and :meth:`_closeness` have defaults; override them to give better
    diagnoses. A matcher that can go on in stream mode from where it asked for more bytes
    also overrides :meth:`match_from` and sets ``incremental``.
    """

    #: True when :meth:`match_from` looks only at the bytes after ``start``: the peer then
    #: hands it the buffer itself (a ``bytearray``) instead of a copy as ``bytes``.
    incremental: bool = False

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        """Judge ``data``; see the module docstring for the two modes."""
        raise NotImplementedError

    def match_from(self, data: bytes | bytearray, start: int) -> MatchOutcome:
        """``match(data, stream=True)``, knowing that ``data[:start]`` gave :data:`NEED_MORE`.

        The outcome must be the same as :meth:`match`'s; an incremental matcher uses
        ``start`` to look only at the new bytes, and never keeps ``data`` (its value is
        ``bytes``). The default judges the whole of ``data`` again.
        """
        return self.match(bytes(data), stream=True)

    def describe(self) -> str:
        """A short description for transcripts and error messages."""
        raise NotImplementedError

    def explain(self, data: bytes) -> str:
        """Why ``data`` does not match, in one line (the default just restates the rule).

        It is shown after "the data ", so it reads as a verb phrase: "differs at byte 3: ...".
        """
        return f"does not match {self.describe()}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        """How close a non-matching ``data`` comes, in [0, 1] (default 0): a failure lists the
        rules that come closest as its "similar rules"."""
        return 0.0

    def __repr__(self) -> str:
        return self.describe()


# -- literals ------------------------------------------------------------------------------


def _literal(spec: object, factory: str) -> bytes:
    if isinstance(spec, bytes | bytearray | memoryview):
        return bytes(spec)
    if isinstance(spec, str):
        return spec.encode()
    raise ScriptError(f"{factory}() takes bytes or str, not {type(spec).__name__} {spec!r}")


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
        return Matched(data, len(data)) if data == self.expected else None

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
        return _ratio(self.expected, data[: len(self.expected)] if stream else data)


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
        return _ratio(self.expected, data[: len(self.expected)])


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
        needle, data = self.needle[:_RATIO_LIMIT], data[:_RATIO_LIMIT]
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
        found = self.pattern.search(data[:_RATIO_LIMIT])
        covered = (found.end() - found.start()) / len(data) if found and data else 0.0
        return max(covered, _ratio(self.pattern.pattern, data))


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
        if self.predicate(data):
            return Matched(data, len(data))
        return NEED_MORE if stream else None

    def describe(self) -> str:
        if self.description is not None:
            return self.description
        name = getattr(self.predicate, "__qualname__", None) or repr(self.predicate)
        return f"predicate {name}"


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


# -- JSON ----------------------------------------------------------------------------------

_JSON_WHITESPACE: Final = " \t\n\r"
_LITERALS: Final = ("true", "false", "null")
# What can follow the digits of a number that is cut short: "1." "1e" "1e-".
_NUMBER_TAIL: Final = re.compile(r"\.|[eE][-+]?")
_UNFINISHED_ESCAPE: Final = re.compile(r"(\\+)(u[0-9a-fA-F]{0,4})?\Z")
_UNFINISHED_UNICODE: Final = re.compile(r"u[0-9a-fA-F]{0,4}\Z")
#: How much of a value ``explain`` shows before cutting it.
_SHOWN: Final = 60

_Path = tuple[str | int, ...]


class _NotStrictJSON(ValueError):
    """``NaN``, ``Infinity`` and ``-Infinity``: Python reads them, JSON does not have them."""


def _reject_constant(name: str) -> object:
    raise _NotStrictJSON(f"{name} is not valid JSON")


_DECODER: Final = _json.JSONDecoder(parse_constant=_reject_constant)


def _show_json(value: object) -> str:
    text = _json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


def _show_path(path: _Path) -> str:
    parts = ["$"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif step.isidentifier():
            parts.append(f".{step}")
        else:
            parts.append(f"[{_json.dumps(step, ensure_ascii=False)}]")
    return "".join(parts)


def _normalize(value: object, path: _Path) -> object:
    """A private copy of an expected JSON value (tuples become lists), or a ScriptError."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
    elif isinstance(value, list | tuple):
        return [_normalize(item, (*path, index)) for index, item in enumerate(value)]
    elif isinstance(value, dict):
        copy: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ScriptError(
                    f"json(): the key {key!r} at {_show_path(path)} is not a str; "
                    "JSON object keys are strings"
                )
            copy[key] = _normalize(item, (*path, key))
        return copy
    raise ScriptError(
        f"json(): cannot match {type(value).__name__} {value!r} at {_show_path(path)}: "
        "use dict, list, str, int, float (finite), bool or None"
    )


def _same_scalar(expected: object, actual: object) -> bool:
    # bool is an int in Python, not in JSON: true never equals 1. Numbers compare by value
    # (JSON has one number type, so 1 equals 1.0).
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    if expected is None:
        return actual is None
    return type(expected) is type(actual) and expected == actual


def _difference(expected: object, actual: object, path: _Path = ()) -> str | None:
    """The first place where ``expected`` is not a subset of ``actual``, or None."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"differs at {_show_path(path)}: expected an object, got {_show_json(actual)}"
        for key, item in expected.items():
            if key not in actual:
                return f"has no key {_show_path((*path, key))}"
            difference = _difference(item, actual[key], (*path, key))
            if difference is not None:
                return difference
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"differs at {_show_path(path)}: expected an array, got {_show_json(actual)}"
        if len(actual) != len(expected):
            return (
                f"differs at {_show_path(path)}: expected {len(expected)} item(s), "
                f"got {len(actual)}"
            )
        for index, (item, got) in enumerate(zip(expected, actual, strict=True)):
            difference = _difference(item, got, (*path, index))
            if difference is not None:
                return difference
        return None
    if _same_scalar(expected, actual):
        return None
    return (
        f"differs at {_show_path(path)}: expected {_show_json(expected)}, got {_show_json(actual)}"
    )


def _score(expected: object, actual: object) -> float:
    """The fraction of ``expected`` that ``actual`` has (1.0 exactly when it is a subset)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return 0.0
        if not expected:
            return 1.0
        return sum(
            _score(item, actual[key]) for key, item in expected.items() if key in actual
        ) / len(expected)
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return 0.0
        if not expected and not actual:
            return 1.0
        pairs = zip(expected, actual, strict=False)
        return sum(_score(item, got) for item, got in pairs) / max(len(expected), len(actual))
    return 1.0 if _same_scalar(expected, actual) else 0.0


def _parse(data: bytes) -> tuple[object, str | None]:
    """The message as JSON: ``(value, None)``, or ``(None, why it is not JSON)``."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"
    try:
        return _DECODER.decode(text), None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return None, str(exc) if isinstance(exc, ValueError) else "nested too deeply"


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _JSON_WHITESPACE:
        index += 1
    return index


def _could_continue(text: str, error: _json.JSONDecodeError) -> bool:
    """Whether more text could still make ``text`` start with a complete JSON value.

    The decoder stops at the first thing it cannot use, so ``text[:error.pos]`` is a valid
    beginning; the question is whether what is left is an unfinished token or a real mistake.
    """
    rest = text[error.pos :]
    if not rest.strip(_JSON_WHITESPACE):
        return True
    message = error.msg
    if message == "Expecting value":
        return rest == "-" or any(literal.startswith(rest) for literal in _LITERALS)
    if message.startswith("Unterminated string"):
        unfinished = _UNFINISHED_ESCAPE.search(rest)
        if unfinished is not None and len(unfinished.group(1)) % 2:
            rest = rest[: unfinished.end(1) - 1]
        try:
            _DECODER.decode(rest + '"')
        except ValueError:
            return False
        return True
    if message.startswith("Invalid \\uXXXX escape"):
        return _UNFINISHED_UNICODE.match(rest) is not None
    if message.startswith("Expecting") and error.pos > 0:  # a delimiter or a property name
        return text[error.pos - 1].isdigit() and _NUMBER_TAIL.fullmatch(rest) is not None
    return False


def _front_value(data: bytes) -> MatchOutcome:
    """One complete JSON value at the front of a raw buffer: ``Matched(value, consumed)``.

    Bytes that are not UTF-8 are carried through the decoding as lone surrogates so that a
    multi-byte character cut by the chunking waits like any unfinished string.
    """
    text = data.decode("utf-8", "surrogateescape")
    start = _skip_whitespace(text, 0)
    if start == len(text):
        return NEED_MORE
    try:
        value, end = _DECODER.raw_decode(text, start)
    except _json.JSONDecodeError as exc:
        return NEED_MORE if _could_continue(text, exc) else None
    except (ValueError, RecursionError):  # NaN and friends, or absurd nesting
        return None
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (end == len(text) or _NUMBER_TAIL.fullmatch(text, end) is not None)
    ):
        return NEED_MORE  # a number at the very end may still grow: "12" -> "123"
    stop = _skip_whitespace(text, end)
    try:
        consumed = len(text[:stop].encode())
    except UnicodeEncodeError:
        return None  # invalid UTF-8 inside the value
    return Matched(value, consumed)


class Json(Matcher):
    """A UTF-8 JSON message of which ``expected`` is a subset; see :func:`json`."""

    def __init__(self, expected: object) -> None:
        self.expected = _normalize(expected, ())

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream:
            outcome = _front_value(data)
            if (
                isinstance(outcome, Matched)
                and _difference(self.expected, outcome.value) is not None
            ):
                return None
            return outcome
        value, problem = _parse(data)
        if problem is not None or _difference(self.expected, value) is not None:
            return None
        return Matched(value, len(data))

    def describe(self) -> str:
        return f"json {_json.dumps(self.expected, ensure_ascii=False)}"

    def explain(self, data: bytes) -> str:
        value, problem = _parse(data)
        if problem is None:
            return _difference(self.expected, value) or f"matches {self.describe()}"
        # Not JSON as a whole; if it starts with a value (a raw buffer), say what is wrong
        # with that value first.
        front = _front_value(data)
        if isinstance(front, Matched):
            difference = _difference(self.expected, front.value)
            if difference is not None:
                return difference
        return f"is not JSON: {problem}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        value, problem = _parse(data)
        if problem is not None and stream:
            front = _front_value(data)
            if isinstance(front, Matched):
                value, problem = front.value, None
        return 0.0 if problem is not None else _score(self.expected, value)


# -- composition ---------------------------------------------------------------------------


def _parts(specs: tuple[object, ...], factory: str) -> tuple[Matcher, ...]:
    if not specs:
        raise ScriptError(f"{factory}() needs at least one matcher")
    return tuple(as_matcher(spec) for spec in specs)


class AllOf(Matcher):
    """Messages every part matches; in stream mode the first part frames, the rest judge."""

    def __init__(self, parts: tuple[Matcher, ...]) -> None:
        self.parts = parts
        # In stream mode it waits exactly when its first part waits.
        self.incremental = parts[0].incremental

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        first, *others = self.parts
        outcome = first.match(data, stream=stream)
        if not isinstance(outcome, Matched):
            return outcome if stream else None
        message = data[: outcome.consumed]
        if all(isinstance(part.match(message, stream=False), Matched) for part in others):
            return outcome
        return None

    def match_from(self, data: bytes | bytearray, start: int) -> MatchOutcome:
        first, *others = self.parts
        outcome = first.match_from(data, start)
        if not isinstance(outcome, Matched):
            return outcome
        message = bytes(data[: outcome.consumed])
        if all(isinstance(part.match(message, stream=False), Matched) for part in others):
            return outcome
        return None

    def describe(self) -> str:
        return f"all_of({', '.join(part.describe() for part in self.parts)})"

    def explain(self, data: bytes) -> str:
        for part in self.parts:
            if not isinstance(part.match(data, stream=False), Matched):
                return part.explain(data)
        return f"matches {self.describe()}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        return min(closeness(part, data, stream=stream) for part in self.parts)


class AnyOf(Matcher):
    """Messages some part matches; the first part that matches gives the value."""

    def __init__(self, parts: tuple[Matcher, ...]) -> None:
        self.parts = parts

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        waiting = False
        for part in self.parts:
            outcome = part.match(data, stream=stream)
            if isinstance(outcome, Matched):
                return outcome
            waiting = waiting or outcome is NEED_MORE
        return NEED_MORE if waiting and stream else None

    def describe(self) -> str:
        return f"any_of({', '.join(part.describe() for part in self.parts)})"

    def explain(self, data: bytes) -> str:
        if len(self.parts) == 1:
            return self.parts[0].explain(data)
        reasons = "; ".join(f"{part.describe()} ({part.explain(data)})" for part in self.parts)
        return f"matches none of {reasons}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        return max(closeness(part, data, stream=stream) for part in self.parts)


class Not(Matcher):
    """Messages the inner matcher does not match (see the module docstring for streams)."""

    def __init__(self, inner: Matcher) -> None:
        self.inner = inner

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream and not data:
            return NEED_MORE
        outcome = self.inner.match(data, stream=stream)
        if isinstance(outcome, Matched):
            return None
        if outcome is NEED_MORE and stream:
            return NEED_MORE
        return Matched(data, len(data))

    def describe(self) -> str:
        return f"not_({self.inner.describe()})"

    def explain(self, data: bytes) -> str:
        return f"matches {self.inner.describe()}, which it must not"


# -- the factories -------------------------------------------------------------------------


def exact(data: bytes | str) -> Matcher:
    """Exactly these bytes (a ``str`` is encoded as UTF-8): what ``expect(b"...")`` means.

    ``exact(b"")`` is a :class:`~fakepeer.ScriptError`: TCP never delivers an empty message.
    """
    return Exact(_literal(data, "exact"))


def prefix(data: bytes | str) -> Matcher:
    """Messages starting with ``data``: ``prefix(b"GET ")`` matches ``b"GET /index"``.

    With :class:`~fakepeer.Raw` framing it consumes just ``data``, like :func:`exact`.
    """
    return Prefix(_literal(data, "prefix"))


def contains(data: bytes | str) -> Matcher:
    """Messages containing ``data`` anywhere.

    With :class:`~fakepeer.Raw` framing it consumes up to and including the first occurrence
    of ``data`` (so ``contains(b"\\r\\n\\r\\n")`` takes an HTTP head), waiting until it comes.
    """
    return Contains(_literal(data, "contains"))


def regex(pattern: bytes | str | re.Pattern[bytes] | re.Pattern[str], flags: int = 0) -> Matcher:
    """A regular expression that must match the whole message (``fullmatch``).

    ``pattern`` is bytes, str (compiled, then turned into a bytes pattern of its UTF-8
    encoding) or a compiled pattern (then ``flags`` must be 0). A reply callable receives the
    ``re.Match``. A pattern that does not compile is a :class:`~fakepeer.ScriptError`.

    With :class:`~fakepeer.Raw` framing, while it waits it matches the whole buffer again
    each time a segment arrives: waiting for a large message sent in small segments costs
    time quadratic in its length (put a :func:`contains` or :func:`prefix` first in an
    :func:`all_of` to frame it in linear time).
    """
    if isinstance(pattern, re.Pattern):
        if flags:
            raise ScriptError(
                f"regex({pattern!r}, flags={flags!r}): flags cannot be given with a compiled "
                "pattern; pass them to re.compile()"
            )
        return Regex(pattern)
    if isinstance(pattern, bytearray | memoryview):
        pattern = bytes(pattern)
    if not isinstance(pattern, bytes | str):
        raise ScriptError(
            f"regex() takes a bytes or str pattern or a compiled re.Pattern, "
            f"not {type(pattern).__name__} {pattern!r}"
        )
    try:
        compiled: re.Pattern[bytes] | re.Pattern[str] = re.compile(pattern, flags)
    except (re.error, ValueError, TypeError) as exc:
        raise ScriptError(f"regex {pattern!r} does not compile: {exc}") from exc
    return Regex(compiled)


def predicate(function: Predicate, description: str | None = None) -> Matcher:
    """Every message for which ``function(message)`` is true.

    ``description`` replaces the default ``predicate <function name>`` in transcripts and
    failures: ``predicate(lambda m: len(m) > 3, "more than 3 bytes")``. With
    :class:`~fakepeer.Raw` framing the function sees the whole buffer, and a false result
    waits for more bytes: it is called again on the whole buffer for each segment that
    arrives, time quadratic in the length of what it waits for.
    """
    if not callable(function):
        raise ScriptError(
            f"predicate() takes a callable, not {type(function).__name__} {function!r}"
        )
    if description is not None and not isinstance(description, str):
        raise ScriptError(
            f"predicate(): the description must be a str, not {type(description).__name__}"
        )
    return Predicate_(function, description)


def json(expected: object) -> Matcher:
    """A UTF-8 JSON message of which ``expected`` is a subset.

    ``json({"op": "get", "user": {"name": "alice"}})`` matches
    ``{"op": "get", "id": 7, "user": {"name": "alice", "age": 30}}``. The rules, recursively:
    an object matches if it has every key of the expected one with a matching value (more keys
    are fine); an array matches if it has as many items, each matching; any other value must
    be equal. ``true``/``false`` never equal a number (in Python ``True == 1``, not here);
    numbers compare by value (``1`` equals ``1.0``); ``NaN`` and ``Infinity`` are not JSON.
    A message that is not UTF-8 JSON does not match. A reply callable receives the parsed
    value. ``expected`` must be built from dict (str keys), list, tuple, str, int, finite
    float, bool and None, or it is a :class:`~fakepeer.ScriptError`.
    """
    return Json(expected)


def all_of(*matchers: object) -> Matcher:
    """Messages that every one of ``matchers`` matches (anything a rule takes as a matcher).

    A reply callable receives the first part's value. With :class:`~fakepeer.Raw` framing
    the first part decides how many bytes are consumed and the others judge those bytes.
    """
    return AllOf(_parts(matchers, "all_of"))


def any_of(*matchers: object) -> Matcher:
    """Messages that at least one of ``matchers`` matches; the first that matches wins."""
    return AnyOf(_parts(matchers, "any_of"))


def not_(matcher: object) -> Matcher:
    """Messages that ``matcher`` does not match: ``always(not_(b"QUIT")).reply(b"?")``.

    With :class:`~fakepeer.Raw` framing it consumes the whole buffer once ``matcher``
    refuses it, so it is mostly useful with message framings.
    """
    return Not(as_matcher(matcher))


def as_matcher(spec: object) -> Matcher:
    """Turn what a script wrote into a :class:`Matcher`, or raise :class:`ScriptError`.

    bytes and str mean :func:`exact`, a compiled pattern :func:`regex`, a dict or list
    :func:`json`, any other callable :func:`predicate`; a :class:`Matcher` is kept as it is.
    """
    if isinstance(spec, Matcher):
        return spec
    if isinstance(spec, bytes | bytearray | memoryview):
        return Exact(bytes(spec))
    if isinstance(spec, str):
        return Exact(spec.encode())
    if isinstance(spec, re.Pattern):
        return Regex(spec)
    if isinstance(spec, dict | list):
        return Json(spec)
    if callable(spec):
        return Predicate_(spec)
    raise ScriptError(
        f"cannot match against {spec!r}: use bytes, str, a compiled re.Pattern, "
        "a dict or list (JSON), a callable taking the message bytes, or a fakepeer matcher "
        "(ANY, prefix(), contains(), json(), all_of(), ...)"
    )


# -- closeness -----------------------------------------------------------------------------

#: The most a matcher that does not match can score, so that 1.0 always means "matches".
_BELOW_MATCH: Final = 0.99
#: Bytes compared by the fuzzy measures, which are quadratic in the worst case.
_RATIO_LIMIT: Final = 512


def _ratio(expected: bytes, data: bytes) -> float:
    """``difflib`` similarity of two byte strings, bounded in cost for long inputs."""
    if not expected and not data:
        return 1.0
    matcher = difflib.SequenceMatcher(
        None, expected[:_RATIO_LIMIT], data[:_RATIO_LIMIT], autojunk=False
    )
    # Cutting long inputs can only hide differences: never score above what the lengths allow.
    upper = 2 * min(len(expected), len(data)) / (len(expected) + len(data))
    return min(matcher.ratio(), upper)


def closeness(matcher: Matcher, data: bytes, *, stream: bool = False) -> float:
    """How close ``data`` comes to matching ``matcher``, in [0, 1], to rank similar rules.

    1.0 exactly when it matches (a matcher that does not match scores at most 0.99). Below
    that: the ``difflib`` ratio against the literal for :func:`exact` (against the front of
    the same length for :func:`prefix`, and for ``exact`` in stream mode); the longest run of
    the needle found for :func:`contains`; for a regex the larger of the fraction of ``data``
    a search covers and the ratio against the pattern source; for :func:`json` the fraction of
    expected leaves present and equal (0 for data that is not JSON); the minimum of the parts
    for :func:`all_of`, the maximum for :func:`any_of`; 0 for predicates and :func:`not_`.
    Pure, and it never raises: a predicate that raises scores 0.
    """
    try:
        if isinstance(matcher.match(data, stream=stream), Matched):
            return 1.0
        score = matcher._closeness(data, stream)
    except Exception:  # a predicate that raises: the ranking must not hide the real failure
        return 0.0
    return max(0.0, min(_BELOW_MATCH, float(score)))
