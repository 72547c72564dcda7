"""The matcher protocol: what the conversation asks of a matcher, and what it answers.

A :class:`Matcher` judges a whole message (``stream=False``) or the front of a raw buffer
(``stream=True``) and answers :class:`Matched`, :data:`NEED_MORE` (stream mode: not yet) or
``None`` (no); :func:`closeness` ranks the rules a message did not match, for a failure's
"similar rules". The conversation, the script and the assertions need only this; the matchers
themselves (``fakepeer._byte_matchers``, ``fakepeer._matchers``) build on it, and the
vocabulary a script writes, with the rules of each matcher in both modes, is in the
docstring of ``fakepeer._matchers``. Pure: no I/O.
"""

from __future__ import annotations

import difflib
from typing import Final, NamedTuple, TypeAlias

__all__ = [
    "NEED_MORE",
    "RATIO_LIMIT",
    "MatchOutcome",
    "Matched",
    "Matcher",
    "closeness",
    "explain",
    "ratio",
]


class Matched(NamedTuple):
    """A successful match: ``value`` is given to reply callables; ``consumed`` bytes are used."""

    value: object
    consumed: int


class _NeedMore:
    def __repr__(self) -> str:
        return "NEED_MORE"


#: Returned in stream mode when the buffered bytes could still become a match.
NEED_MORE: Final = _NeedMore()

#: What :meth:`Matcher.match` returns: a :class:`Matched`, :data:`NEED_MORE` (stream mode
#: only) or ``None``.
MatchOutcome: TypeAlias = Matched | _NeedMore | None


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
        """Judge ``data``, a whole message (``stream=False``) or the front of a raw buffer
        (``stream=True``); see the docstring of ``fakepeer._matchers`` for the two modes."""
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

    def _explain(self, data: bytes, stream: bool) -> str:
        """:meth:`explain` in a mode: why ``data`` does not match with ``stream`` (the front
        of a raw buffer) or without it (a whole message). The default is :meth:`explain`,
        which judges a whole message; a matcher that behaves otherwise in stream mode
        overrides this, so that an explanation never says "matches" of what did not."""
        return self.explain(data)

    def _closeness(self, data: bytes, stream: bool) -> float:
        """How close a non-matching ``data`` comes, in [0, 1] (default 0): a failure lists the
        rules that come closest as its "similar rules"."""
        return 0.0

    def __repr__(self) -> str:
        return self.describe()


# -- closeness -----------------------------------------------------------------------------

#: The most a matcher that does not match can score, so that 1.0 always means "matches".
_BELOW_MATCH: Final = 0.99
#: Bytes compared by the fuzzy measures, which are quadratic in the worst case.
RATIO_LIMIT: Final = 512


def ratio(expected: bytes, data: bytes) -> float:
    """``difflib`` similarity of two byte strings, bounded in cost for long inputs."""
    if not expected and not data:
        return 1.0
    matcher = difflib.SequenceMatcher(
        None, expected[:RATIO_LIMIT], data[:RATIO_LIMIT], autojunk=False
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


def explain(matcher: Matcher, data: bytes, *, stream: bool = False) -> str:
    """Why ``data`` does not match ``matcher`` with ``stream`` or without it, in one line
    that reads after "the data " (see :meth:`Matcher._explain`). Never raises: a matcher
    that raises while it explains is said to have raised."""
    try:
        if (
            stream
            and type(matcher)._explain is Matcher._explain  # judges whole messages only
            and isinstance(matcher.match(data, stream=False), Matched)
        ):
            return (
                f"would match {matcher.describe()} as a whole message, but the framing is "
                "Raw(), which gives a matcher the front of a byte stream: this matcher needs "
                "a message framing (a protocol kit's own: FakePeer(framing=<kit>.framing()))"
            )
        return matcher._explain(data, stream)
    except Exception as exc:  # the diagnosis must not hide the real failure
        return f"does not match {matcher.describe()}: it raised {type(exc).__name__}: {exc}"
