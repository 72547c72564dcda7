"""Tests of ``fakepeer._matchers``: what a rule matches, in message and in stream mode."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import ANY, Matcher, ScriptError
from fakepeer._matchers import (
    NEED_MORE,
    Exact,
    Matched,
    MatchOutcome,
    Predicate_,
    Regex,
    as_matcher,
)


def is_ping(message: bytes) -> bool:
    return message.startswith(b"PING")


def consumed(outcome: MatchOutcome) -> int:
    assert isinstance(outcome, Matched), outcome
    return outcome.consumed


# -- exact ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "data", "outcome"),
    [
        (b"PING", b"PING", Matched(b"PING", 4)),
        (b"PING", b"PIN", None),
        (b"PING", b"PINGS", None),
        (b"PING", b"PONG", None),
        (b"PING", b"", None),
        (b"PING", b"ping", None),
    ],
)
def test_exact_message_mode(expected: bytes, data: bytes, outcome: MatchOutcome) -> None:
    assert as_matcher(expected).match(data, stream=False) == outcome


@pytest.mark.parametrize(
    ("expected", "data", "outcome"),
    [
        (b"PING", b"PING", Matched(b"PING", 4)),
        (b"PING", b"PINGPONG", Matched(b"PING", 4)),
        (b"PING", b"PING\n", Matched(b"PING", 4)),
        (b"PING", b"", NEED_MORE),
        (b"PING", b"P", NEED_MORE),
        (b"PING", b"PIN", NEED_MORE),
        (b"PING", b"PO", None),
        (b"PING", b"XPING", None),
        (b"PING", b"PINX", None),
    ],
)
def test_exact_stream_mode(expected: bytes, data: bytes, outcome: MatchOutcome) -> None:
    assert as_matcher(expected).match(data, stream=True) == outcome


@pytest.mark.parametrize(
    ("expected", "data", "explanation"),
    [
        (b"PING", b"PONG", "differs at byte 1: expected 'ING', received 'ONG'"),
        (b"PING", b"XING", "differs at byte 0: expected 'PING', received 'XING'"),
        (
            b"HELLO WORLD, HOW ARE YOU",
            b"HELLO WORLD! how are you",
            "differs at byte 11: expected ', HOW AR', received '! how ar'",
        ),
        (b"a\tb", b"a\nb", "differs at byte 1: expected '\\tb', received '\\nb'"),
        (b"PING", b"PINGPONG", "has 4 extra byte(s) after the expected ones"),
        (b"PING", b"PI", "is 2 byte(s) short of the expected ones"),
        (b"PING", b"", "is 4 byte(s) short of the expected ones"),
    ],
)
def test_exact_explain(expected: bytes, data: bytes, explanation: str) -> None:
    assert as_matcher(expected).explain(data) == explanation


def test_exact_describe_escapes() -> None:
    assert as_matcher(b"PING").describe() == "'PING'"
    assert as_matcher(b"it's\r\n\x00").describe() == "'it\\'s\\r\\n\\x00'"
    assert repr(as_matcher(b"PING")) == "'PING'"


@settings(max_examples=100)
@given(expected=st.binary(min_size=1, max_size=16), data=st.binary(max_size=24))
def test_exact_stream_mode_agrees_with_prefixes(expected: bytes, data: bytes) -> None:
    outcome = Exact(expected).match(data, stream=True)
    if data.startswith(expected):
        assert outcome == Matched(expected, len(expected))
    elif expected.startswith(data):
        assert outcome is NEED_MORE
    else:
        assert outcome is None


# -- regex ---------------------------------------------------------------------------------


def test_regex_message_mode_is_a_fullmatch() -> None:
    matcher = as_matcher(re.compile(rb"PING (\d+)"))
    outcome = matcher.match(b"PING 42", stream=False)
    assert isinstance(outcome, Matched)
    assert isinstance(outcome.value, re.Match)
    assert outcome.value.group(1) == b"42"
    assert outcome.consumed == 7
    assert matcher.match(b"PING 42 extra", stream=False) is None
    assert matcher.match(b"xPING 42", stream=False) is None
    assert matcher.match(b"PING", stream=False) is None


@pytest.mark.parametrize(
    ("data", "matched"),
    [
        (b"PING 42;rest", b"PING 42;"),
        (b"PING 4;", b"PING 4;"),
        (b"PING 4", None),
        (b"PI", None),
        (b"", None),
        # In stream mode a regex cannot tell "not yet" from "never": it keeps waiting.
        (b"NOPE", None),
    ],
)
def test_regex_stream_mode(data: bytes, matched: bytes | None) -> None:
    """``matched`` is the prefix the regex consumes, or None where it asks for more."""
    outcome = as_matcher(re.compile(rb"PING \d+;")).match(data, stream=True)
    if matched is None:
        assert outcome is NEED_MORE
    else:
        assert isinstance(outcome, Matched)
        assert outcome.consumed == len(matched)
        assert isinstance(outcome.value, re.Match)
        assert outcome.value.group() == matched


def test_regex_stream_mode_never_consumes_nothing() -> None:
    # An empty match would consume no bytes: the matcher must wait instead.
    assert as_matcher(re.compile(rb"x*")).match(b"abc", stream=True) is NEED_MORE
    assert consumed(as_matcher(re.compile(rb"x*")).match(b"xxa", stream=True)) == 2


def test_str_regex_is_converted_to_bytes() -> None:
    matcher = as_matcher(re.compile(r"PING (\d+)"))
    assert isinstance(matcher, Regex)
    assert matcher.pattern.pattern == rb"PING (\d+)"
    outcome = matcher.match(b"PING 7", stream=False)
    assert isinstance(outcome, Matched)
    assert isinstance(outcome.value, re.Match)
    assert outcome.value.group(1) == b"7"


def test_str_regex_keeps_its_flags_and_encodes_utf8() -> None:
    ignoring_case = as_matcher(re.compile("ping", re.IGNORECASE))
    assert ignoring_case.match(b"PiNg", stream=False) is not None
    dotall = as_matcher(re.compile("a.b", re.DOTALL))
    assert dotall.match(b"a\nb", stream=False) is not None
    accented = as_matcher(re.compile("café"))
    assert accented.match("café".encode(), stream=False) is not None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (
            r"\u00e9",
            "could not turn the str pattern '\\\\u00e9' into a bytes pattern: "
            "bad escape \\u at position 0; write it as rb'...'",
        ),
        (
            "(?u)x",
            "could not turn the str pattern '(?u)x' into a bytes pattern: "
            "bad inline flags: cannot use 'u' flag with a bytes pattern at position 3; "
            "write it as rb'...'",
        ),
    ],
)
def test_str_regex_that_cannot_be_bytes_is_a_script_error(pattern: str, message: str) -> None:
    with pytest.raises(ScriptError) as excinfo:
        as_matcher(re.compile(pattern))
    assert str(excinfo.value) == message
    assert isinstance(excinfo.value.__cause__, re.error)


def test_regex_describe() -> None:
    assert as_matcher(re.compile(rb"PING \d+")).describe() == "regex 'PING \\d+'"
    assert as_matcher(re.compile(rb"\xff")).describe() == "regex '\\xff'"
    assert as_matcher(re.compile(rb"a")).explain(b"b") == "does not match regex 'a'"


# -- predicate -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "stream", "outcome"),
    [
        (b"PING 1", False, Matched(b"PING 1", 6)),
        (b"PONG", False, None),
        (b"PING 1", True, Matched(b"PING 1", 6)),
        # In stream mode the predicate judges the whole buffer and waits when it says no.
        (b"PONG", True, NEED_MORE),
        (b"", True, NEED_MORE),
    ],
)
def test_predicate(data: bytes, stream: bool, outcome: MatchOutcome) -> None:
    assert as_matcher(is_ping).match(data, stream=stream) == outcome


def test_predicate_truthiness_is_what_counts() -> None:
    matcher = as_matcher(len)
    assert matcher.match(b"", stream=False) is None
    assert matcher.match(b"x", stream=False) == Matched(b"x", 1)


def test_predicate_describe() -> None:
    assert as_matcher(is_ping).describe() == "predicate is_ping"
    partial = functools.partial(bytes.startswith)
    assert as_matcher(partial).describe() == f"predicate {partial!r}"
    assert isinstance(as_matcher(is_ping), Predicate_)


# -- ANY -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "stream", "outcome"),
    [
        (b"anything", False, Matched(b"anything", 8)),
        (b"", False, Matched(b"", 0)),
        (b"anything", True, Matched(b"anything", 8)),
        (b"", True, NEED_MORE),
    ],
)
def test_any(data: bytes, stream: bool, outcome: MatchOutcome) -> None:
    assert ANY.match(data, stream=stream) == outcome


def test_any_describe_and_identity() -> None:
    assert ANY.describe() == "ANY"
    assert repr(ANY) == "ANY"
    assert as_matcher(ANY) is ANY
    assert repr(NEED_MORE) == "NEED_MORE"


# -- as_matcher ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", [b"PING", "PING", bytearray(b"PING"), memoryview(b"PING")], ids=type
)
def test_as_matcher_bytes_like_and_str_are_exact(spec: object) -> None:
    matcher = as_matcher(spec)
    assert isinstance(matcher, Exact)
    assert matcher.expected == b"PING"
    assert type(matcher.expected) is bytes


def test_as_matcher_str_is_utf8() -> None:
    assert as_matcher("é").match(b"\xc3\xa9", stream=False) is not None


def test_as_matcher_passes_matchers_through() -> None:
    class Even(Matcher):
        def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
            return Matched(data, len(data)) if len(data) % 2 == 0 else None

        def describe(self) -> str:
            return "even"

    even = Even()
    assert as_matcher(even) is even
    assert even.explain(b"abc") == "does not match even"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            42,
            "cannot match against 42: use bytes, str, a compiled re.Pattern, "
            "a callable taking the message bytes, or fakepeer.ANY",
        ),
        (
            None,
            "cannot match against None: use bytes, str, a compiled re.Pattern, "
            "a callable taking the message bytes, or fakepeer.ANY",
        ),
        (
            [b"PING"],
            "cannot match against [b'PING']: use bytes, str, a compiled re.Pattern, "
            "a callable taking the message bytes, or fakepeer.ANY",
        ),
        (
            b"",
            "expect(b'') can never be met: an empty message is not sent over TCP "
            "(use fakepeer.ANY to accept anything)",
        ),
        (
            "",
            "expect(b'') can never be met: an empty message is not sent over TCP "
            "(use fakepeer.ANY to accept anything)",
        ),
    ],
    ids=repr,
)
def test_as_matcher_errors(spec: object, message: str) -> None:
    with pytest.raises(ScriptError) as excinfo:
        as_matcher(spec)
    assert str(excinfo.value) == message


def test_matcher_base_class_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        Matcher().match(b"x", stream=False)
    with pytest.raises(NotImplementedError):
        Matcher().describe()
