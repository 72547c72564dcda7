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

import re

from ._byte_matchers import ANY, Contains, Exact, Predicate, Predicate_, Prefix, Regex
from ._errors import ScriptError
from ._json import UNFINISHED, Front, dumps, mismatch, normalize, parse, read_front, score
from ._matching import NEED_MORE, Matched, Matcher, MatchOutcome, closeness, explain
from ._show import show

__all__ = [
    "ANY",
    "NEED_MORE",
    "Exact",
    "MatchOutcome",
    "Matched",
    "Matcher",
    "all_of",
    "any_of",
    "as_matcher",
    "closeness",
    "contains",
    "exact",
    "explain",
    "json",
    "not_",
    "predicate",
    "prefix",
    "regex",
]


def _literal(spec: object, factory: str) -> bytes:
    if isinstance(spec, bytes | bytearray | memoryview):
        return bytes(spec)
    if isinstance(spec, str):
        return spec.encode()
    raise ScriptError(f"{factory}() takes bytes or str, not {type(spec).__name__} {spec!r}")


# -- JSON ----------------------------------------------------------------------------------


def _front_value(data: bytes) -> MatchOutcome:
    """One complete JSON value at the front of a raw buffer (see ``fakepeer._json``), in a
    matcher's terms: ``Matched(value, consumed)``, :data:`NEED_MORE` or ``None``."""
    front = read_front(data)
    if isinstance(front, Front):
        return Matched(front.value, front.consumed)
    return NEED_MORE if front is UNFINISHED else None


class Json(Matcher):
    """A UTF-8 JSON message of which ``expected`` is a subset; see :func:`json`."""

    def __init__(self, expected: object) -> None:
        self.expected = normalize(expected)

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream:
            outcome = _front_value(data)
            if isinstance(outcome, Matched) and mismatch(self.expected, outcome.value) is not None:
                return None
            return outcome
        value, problem = parse(data)
        if problem is not None or mismatch(self.expected, value) is not None:
            return None
        return Matched(value, len(data))

    def describe(self) -> str:
        return f"json {dumps(self.expected)}"

    def explain(self, data: bytes) -> str:
        value, problem = parse(data)
        if problem is None:
            return mismatch(self.expected, value) or f"matches {self.describe()}"
        # Not JSON as a whole; if it starts with a value (a raw buffer), say what is wrong
        # with that value first.
        front = _front_value(data)
        if isinstance(front, Matched):
            difference = mismatch(self.expected, front.value)
            if difference is not None:
                return difference
        return f"is not JSON: {problem}"

    def _explain(self, data: bytes, stream: bool) -> str:
        if stream and _front_value(data) is NEED_MORE:
            return (
                "is the unfinished beginning of a JSON value: with Raw framing it waits for "
                "the rest (a number at the end may go on)"
            )
        return self.explain(data)

    def _closeness(self, data: bytes, stream: bool) -> float:
        value, problem = parse(data)
        if problem is not None and stream:
            front = _front_value(data)
            if isinstance(front, Matched):
                value, problem = front.value, None
        return 0.0 if problem is not None else score(self.expected, value)


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
        return self._explain(data, False)

    def _explain(self, data: bytes, stream: bool) -> str:
        first, *others = self.parts
        if not stream:
            for part in self.parts:
                if not isinstance(part.match(data, stream=False), Matched):
                    return explain(part, data)
            return f"matches {self.describe()}"
        outcome = first.match(data, stream=True)
        if not isinstance(outcome, Matched):
            return explain(first, data, stream=True)
        message = data[: outcome.consumed]
        for part in others:
            if not isinstance(part.match(message, stream=False), Matched):
                return self._cut_short(first, message, part, data)
        return f"matches {self.describe()}"

    def _cut_short(self, first: Matcher, message: bytes, part: Matcher, data: bytes) -> str:
        """Why the stream ``data`` did not match: ``first`` consumed just ``message``, which
        ``part`` refused; and how to write it (a reordering that matches ``data``, if any)."""
        count = len(message)
        noun = "byte" if count == 1 else "bytes"
        why = (
            f"does not match {self.describe()} with Raw framing: its first part, "
            f"{first.describe()}, decides what is consumed (here {count} {noun}), and the "
            f"other parts judge only those bytes: {show(message)} {explain(part, message)}"
        )
        for index, candidate in enumerate(self.parts[1:], 1):
            reordered = AllOf((candidate, *self.parts[:index], *self.parts[index + 1 :]))
            if isinstance(reordered.match(data, stream=True), Matched):
                return f"{why}; put the part that frames the message first: {reordered.describe()}"
        return (
            f"{why}; put first a part that frames the whole message (contains(...) of its end), "
            "or use a message framing: FakePeer(framing=...)"
        )

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
        return self._explain(data, False)

    def _explain(self, data: bytes, stream: bool) -> str:
        if len(self.parts) == 1:
            return explain(self.parts[0], data, stream=stream)
        reasons = "; ".join(
            f"{part.describe()} ({explain(part, data, stream=stream)})" for part in self.parts
        )
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
        return self._explain(data, False)

    def _explain(self, data: bytes, stream: bool) -> str:
        outcome = self.inner.match(data, stream=stream)
        if isinstance(outcome, Matched):
            front = f" (its first {outcome.consumed} bytes)" if outcome.consumed < len(data) else ""
            return f"matches {self.inner.describe()}{front}, which it must not"
        if outcome is NEED_MORE:
            return (
                f"may still become {self.inner.describe()}, which it must not: with Raw "
                "framing it waits for more bytes"
            )
        return f"matches {self.describe()}"


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
