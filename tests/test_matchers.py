"""Tests of ``fakepeer._matchers``: what a rule matches, in message and in stream mode."""

from __future__ import annotations

import functools
import json as stdlib_json
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fakepeer
from fakepeer import (
    ANY,
    Matcher,
    ScriptError,
    all_of,
    any_of,
    contains,
    exact,
    json,
    not_,
    predicate,
    prefix,
    regex,
)
from fakepeer._byte_matchers import Exact, Predicate_, Regex
from fakepeer._matchers import Json, as_matcher
from fakepeer._matching import NEED_MORE, Matched, MatchOutcome, closeness


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
            "a dict or list (JSON), a callable taking the message bytes, or a fakepeer "
            "matcher (ANY, prefix(), contains(), json(), all_of(), ...)",
        ),
        (
            None,
            "cannot match against None: use bytes, str, a compiled re.Pattern, "
            "a dict or list (JSON), a callable taking the message bytes, or a fakepeer "
            "matcher (ANY, prefix(), contains(), json(), all_of(), ...)",
        ),
        (
            [b"PING"],
            "json(): cannot match bytes b'PING' at $[0]: "
            "use dict, list, str, int, float (finite), bool or None",
        ),
        (
            (b"PING",),
            "cannot match against (b'PING',): use bytes, str, a compiled re.Pattern, "
            "a dict or list (JSON), a callable taking the message bytes, or a fakepeer "
            "matcher (ANY, prefix(), contains(), json(), all_of(), ...)",
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


# -- the factories -------------------------------------------------------------------------


def matches(matcher: Matcher, data: bytes) -> bool:
    """Message mode, as a bool."""
    return isinstance(matcher.match(data, stream=False), Matched)


def test_factories_are_public_and_closeness_is_not() -> None:
    for name in ("all_of", "any_of", "contains", "exact", "json", "not_", "predicate"):
        assert name in fakepeer.__all__
    assert "prefix" in fakepeer.__all__
    assert "regex" in fakepeer.__all__
    assert "closeness" not in fakepeer.__all__
    assert not hasattr(fakepeer, "closeness")


@pytest.mark.parametrize(
    ("matcher", "description"),
    [
        (exact(b"PING"), "'PING'"),
        (exact("é"), "'\\xc3\\xa9'"),
        (prefix(b"GET "), "prefix 'GET '"),
        (prefix("GET "), "prefix 'GET '"),
        (contains(b"\r\n\r\n"), "contains '\\r\\n\\r\\n'"),
        (regex(rb"PING \d+"), "regex 'PING \\d+'"),
        (regex(r"PING \d+"), "regex 'PING \\d+'"),
        (regex(b"ping", re.IGNORECASE), "regex 'ping' (IGNORECASE)"),
        (regex("a.b", re.IGNORECASE | re.DOTALL), "regex 'a.b' (IGNORECASE|DOTALL)"),
        (regex(re.compile(rb"x")), "regex 'x'"),
        (regex(b"a\nb\x00|\xff"), "regex 'a\\nb\\x00|\\xff'"),
        (predicate(is_ping), "predicate is_ping"),
        (predicate(is_ping, "a ping"), "a ping"),
        (json({"op": "get"}), 'json {"op": "get"}'),
        (json({"name": "zoë", "tags": ("a",)}), 'json {"name": "zoë", "tags": ["a"]}'),
        (json(None), "json null"),
        (all_of(prefix("A"), contains("B")), "all_of(prefix 'A', contains 'B')"),
        (any_of(b"X", re.compile(rb"Y+")), "any_of('X', regex 'Y+')"),
        (not_(b"QUIT"), "not_('QUIT')"),
        (not_(any_of(ANY)), "not_(any_of(ANY))"),
    ],
    ids=repr,
)
def test_describe(matcher: Matcher, description: str) -> None:
    assert matcher.describe() == description
    assert repr(matcher) == description


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (b"PING", Exact),
        (re.compile(rb"x"), Regex),
        (is_ping, Predicate_),
        ({"op": "get"}, Json),
        ([1, 2], Json),
        ([], Json),
    ],
    ids=["bytes", "regex", "predicate", "dict", "list", "empty list"],
)
def test_as_matcher_kinds(spec: object, kind: type[Matcher]) -> None:
    assert type(as_matcher(spec)) is kind


def test_as_matcher_json_copies_what_the_script_wrote() -> None:
    expected: dict[str, object] = {"op": "get"}
    matcher = as_matcher(expected)
    expected["op"] = "put"
    assert matches(matcher, b'{"op": "get"}')
    assert not matches(matcher, b'{"op": "put"}')


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda: exact(42), "exact() takes bytes or str, not int 42"),  # type: ignore[arg-type]
        (
            lambda: prefix(b""),
            "prefix(b'') matches everything and consumes nothing "
            "(use fakepeer.ANY to accept anything)",
        ),
        (lambda: prefix(None), "prefix() takes bytes or str, not NoneType None"),  # type: ignore[arg-type]
        (
            lambda: contains(""),
            "contains(b'') matches everything and consumes nothing "
            "(use fakepeer.ANY to accept anything)",
        ),
        (
            lambda: regex(b"PING (\\d+"),
            "regex b'PING (\\\\d+' does not compile: "
            "missing ), unterminated subpattern at position 5",
        ),
        (
            lambda: regex("[a-"),
            "regex '[a-' does not compile: unterminated character set at position 0",
        ),
        (
            lambda: regex(b"x", re.UNICODE),
            "regex b'x' does not compile: cannot use UNICODE flag with a bytes pattern",
        ),
        (
            lambda: regex(re.compile(b"x"), re.IGNORECASE),
            "regex(re.compile(b'x'), flags=re.IGNORECASE): flags cannot be given with a "
            "compiled pattern; pass them to re.compile()",
        ),
        (
            lambda: regex(42),  # type: ignore[arg-type]
            "regex() takes a bytes or str pattern or a compiled re.Pattern, not int 42",
        ),
        (
            lambda: regex(r"\u00e9"),
            "could not turn the str pattern '\\\\u00e9' into a bytes pattern",
        ),
        (lambda: predicate(b"PING"), "predicate() takes a callable, not bytes b'PING'"),  # type: ignore[arg-type]
        (
            lambda: predicate(is_ping, 42),  # type: ignore[arg-type]
            "predicate(): the description must be a str, not int",
        ),
        (
            lambda: json({1: "one"}),
            "json(): the key 1 at $ is not a str; JSON object keys are strings",
        ),
        (
            lambda: json({"user": {"tags": {"a"}}}),
            "json(): cannot match set {'a'} at $.user.tags: "
            "use dict, list, str, int, float (finite), bool or None",
        ),
        (
            lambda: json([1, {"a b": b"x"}]),
            "json(): cannot match bytes b'x' at $[1][\"a b\"]: "
            "use dict, list, str, int, float (finite), bool or None",
        ),
        (
            lambda: json(float("inf")),
            "json(): cannot match float inf at $: "
            "use dict, list, str, int, float (finite), bool or None",
        ),
        (all_of, "all_of() needs at least one matcher"),
        (any_of, "any_of() needs at least one matcher"),
        (lambda: all_of(b"A", 42), "cannot match against 42"),
    ],
)
def test_script_errors(write: Callable[[], object], message: str) -> None:
    with pytest.raises(ScriptError) as excinfo:
        write()
    assert str(excinfo.value).startswith(message)


def test_regex_compile_error_keeps_the_re_error() -> None:
    with pytest.raises(ScriptError) as excinfo:
        regex(b"(")
    assert isinstance(excinfo.value.__cause__, re.error)


# -- prefix and contains ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "data", "stream", "outcome"),
    [
        (prefix(b"GET "), b"GET /index", False, Matched(b"GET /index", 10)),
        (prefix(b"GET "), b"GET ", False, Matched(b"GET ", 4)),
        (prefix(b"GET "), b"GET", False, None),
        (prefix(b"GET "), b"POST /", False, None),
        (prefix(b"GET "), b"", False, None),
        # In stream mode a prefix consumes just its bytes, like exact.
        (prefix(b"GET "), b"GET /index", True, Matched(b"GET ", 4)),
        (prefix(b"GET "), b"GE", True, NEED_MORE),
        (prefix(b"GET "), b"", True, NEED_MORE),
        (prefix(b"GET "), b"GEX", True, None),
        (contains(b"\r\n"), b"a\r\nb\r\n", False, Matched(b"a\r\nb\r\n", 6)),
        (contains(b"\r\n"), b"\r\n", False, Matched(b"\r\n", 2)),
        (contains(b"\r\n"), b"a\rb\n", False, None),
        (contains(b"\r\n"), b"", False, None),
        # In stream mode, up to and including the first occurrence; it never refuses.
        (contains(b"\r\n"), b"a\r\nb\r\n", True, Matched(b"a\r\n", 3)),
        (contains(b"\r\n"), b"abc\r", True, NEED_MORE),
        (contains(b"\r\n"), b"abc", True, NEED_MORE),
        (contains(b"\r\n"), b"", True, NEED_MORE),
    ],
    ids=repr,
)
def test_prefix_and_contains(
    matcher: Matcher, data: bytes, stream: bool, outcome: MatchOutcome
) -> None:
    assert matcher.match(data, stream=stream) == outcome


@pytest.mark.parametrize(
    ("matcher", "data", "explanation"),
    [
        (prefix(b"GET "), b"POST /", "differs at byte 0: expected 'GET ', received 'POST /'"),
        (prefix(b"GET "), b"GEt /", "differs at byte 2: expected 'T ', received 't /'"),
        (prefix(b"GET "), b"GE", "is 2 byte(s) short of the prefix"),
        (prefix(b"GET "), b"GET /", "matches prefix 'GET '"),
        (contains(b"\r\n"), b"a\nb", "does not contain '\\r\\n'"),
        (contains(b"\r\n"), b"a\r\n", "matches contains '\\r\\n'"),
        (exact(b"PING"), b"PING", "matches 'PING'"),
        (
            predicate(is_ping, "a ping"),
            b"PONG",
            "does not match a ping: the predicate is_ping "
            f"(test_matchers.py:{is_ping.__code__.co_firstlineno}) returned False",
        ),
        (
            regex(rb"a\d"),
            b"xa1y",
            "does not match regex 'a\\d' as a whole: it matches only bytes 1 to 3 of 4",
        ),
        (regex(rb"x*"), b"abc", "does not match regex 'x*'"),
    ],
    ids=repr,
)
def test_explain(matcher: Matcher, data: bytes, explanation: str) -> None:
    assert matcher.explain(data) == explanation


def test_regex_factory_forms() -> None:
    assert matches(regex(rb"PING \d+"), b"PING 42")
    assert matches(regex(bytearray(rb"PING \d+")), b"PING 42")  # type: ignore[arg-type]
    assert matches(regex(r"PING \d+"), b"PING 42")
    assert matches(regex("café"), "café".encode())
    assert matches(regex(b"ping", re.IGNORECASE), b"PiNg")
    assert not matches(regex(b"ping"), b"PiNg")
    compiled = re.compile(rb"(\w+)=(\d+)")
    outcome = regex(compiled).match(b"a=1", stream=False)
    assert isinstance(outcome, Matched)
    assert isinstance(outcome.value, re.Match)
    assert outcome.value.groups() == (b"a", b"1")


def test_predicate_factory() -> None:
    matcher = predicate(is_ping, "a ping")
    assert matcher.match(b"PING 1", stream=False) == Matched(b"PING 1", 6)
    assert matcher.match(b"PONG", stream=False) is None
    assert matcher.match(b"PONG", stream=True) is NEED_MORE


# -- json ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "data", "ok"),
    [
        ({"op": "get"}, b'{"op": "get"}', True),
        ({"op": "get"}, b'{"op": "get", "id": 7}', True),
        ({"op": "get"}, b' {"id":7,"op":"get"}\n', True),
        ({"op": "get"}, b'{"op": "put"}', False),
        ({"op": "get"}, b'{"id": 7}', False),
        ({"op": "get"}, b'["op", "get"]', False),
        ({}, b'{"anything": [1, 2]}', True),
        ({}, b"[]", False),
        # Nested objects are subsets too.
        ({"user": {"name": "alice"}}, b'{"user": {"name": "alice", "age": 30}}', True),
        ({"user": {"name": "alice"}}, b'{"user": {"name": "bob"}}', False),
        ({"user": {"name": "alice"}}, b'{"user": "alice"}', False),
        # Arrays: same length, each item a subset.
        ([1, 2], b"[1, 2]", True),
        ([1, 2], b"[1, 2, 3]", False),
        ([1, 2], b"[2, 1]", False),
        ([], b"[]", True),
        ([], b"[0]", False),
        ([{"a": 1}], b'[{"a": 1, "b": 2}]', True),
        ([{"a": 1}], b'[{"b": 2}]', False),
        ((1, 2), b"[1, 2]", True),
        # Numbers compare by value; booleans are not numbers; null is only null.
        (1, b"1", True),
        (1, b"1.0", True),
        (1.5, b"1.5", True),
        (1, b"true", False),
        (True, b"1", False),
        (True, b"true", True),
        (False, b"0", False),
        (0, b"false", False),
        (None, b"null", True),
        (None, b"0", False),
        (None, b"false", False),
        ("1", b"1", False),
        ("zoë", '"zoë"'.encode(), True),
        ("zoë", b'"zo\\u00eb"', True),
        # Not JSON at all.
        ({"op": "get"}, b'{"op": "get"', False),
        ({"op": "get"}, b'{"op": "get"} x', False),
        ({"op": "get"}, b'{"op": "get"}{}', False),
        ({"op": "get"}, b'{"op": "get", "x": NaN}', False),
        ("é", b'"\xe9"', False),
        (1, b"", False),
        (1, b"  ", False),
    ],
    ids=repr,
)
def test_json_message_mode(expected: object, data: bytes, ok: bool) -> None:
    outcome = json(expected).match(data, stream=False)
    if ok:
        assert isinstance(outcome, Matched)
        assert outcome.consumed == len(data)
        assert outcome.value == stdlib_json.loads(data)
    else:
        assert outcome is None


@pytest.mark.parametrize(
    ("expected", "data", "outcome"),
    [
        ({"op": "get"}, b'{"op": "get"}', Matched({"op": "get"}, 13)),
        # Whitespace around the value that has arrived goes with it.
        ({"op": "get"}, b' \n{"op": "get"}\r\n{"op"', Matched({"op": "get"}, 17)),
        ({"op": "get"}, b'{"op":"get","id":1}[2]', Matched({"op": "get", "id": 1}, 19)),
        ({"op": "get"}, b"", NEED_MORE),
        ({"op": "get"}, b"  \n", NEED_MORE),
        ({"op": "get"}, b"{", NEED_MORE),
        ({"op": "get"}, b'{"op', NEED_MORE),
        ({"op": "get"}, b'{"op"', NEED_MORE),
        ({"op": "get"}, b'{"op": "g', NEED_MORE),
        ({"op": "get"}, b'{"op": "get"', NEED_MORE),
        ({"op": "get"}, b'{"op": "get", ', NEED_MORE),
        ({"op": "get"}, b'{"op": "get", "x": tr', NEED_MORE),
        ({"op": "get"}, b'{"op": "get", "x": 1.', NEED_MORE),
        ({"op": "get"}, b'{"op": "get", "x": 1e-', NEED_MORE),
        ({"op": "get"}, b'{"op": "get", "x": -', NEED_MORE),
        ({"op": "get"}, b'{"op": "g\\', NEED_MORE),
        ({"op": "get"}, b'{"op": "g\\u00', NEED_MORE),
        ({"op": "get"}, b'{"op": "zo\xc3', NEED_MORE),  # a UTF-8 character cut in two
        # A complete value that does not match, or bytes that can never be JSON: refused.
        ({"op": "get"}, b'{"op": "put"}', None),
        ({"op": "get"}, b"GET /", None),
        ({"op": "get"}, b'{"op": get', None),
        ({"op": "get"}, b'{"op": "get", "x": tx', None),
        ({"op": "get"}, b'{"op": "get", "x": 01', None),
        ({"op": "get"}, b'{"op": "g\\x', None),
        ({"op": "get"}, b'{"op": "get", "x": NaN}', None),
        ({"op": "get"}, b'{"op": "g\xff"}', None),
        # A bare number may still grow until something follows it.
        (12, b"12", NEED_MORE),
        (12, b"12 ", Matched(12, 3)),
        (12, b"12,", Matched(12, 2)),
        (1.5, b"1.", NEED_MORE),
        (1.5, b"1.5e", NEED_MORE),
        (1.5, b"1.5]", Matched(1.5, 3)),
        (True, b"true", Matched(True, 4)),
        (True, b"tru", NEED_MORE),
        ("a", b'"a"', Matched("a", 3)),
    ],
    ids=repr,
)
def test_json_stream_mode(expected: object, data: bytes, outcome: MatchOutcome) -> None:
    assert json(expected).match(data, stream=True) == outcome


@pytest.mark.parametrize(
    ("expected", "data", "explanation"),
    [
        (
            {"user": {"name": "alice"}},
            b'{"user": {"name": "bob"}}',
            'differs at $.user.name: expected "alice", got "bob"',
        ),
        ({"user": {"name": "alice"}}, b'{"user": {}}', "has no key $.user.name"),
        ({"user": {"name": "alice"}}, b'{"usr": {}}', "has no key $.user"),
        (
            {"user": {"name": "alice"}},
            b'{"user": null}',
            "differs at $.user: expected an object, got null",
        ),
        (
            {"items": [1, 2]},
            b'{"items": {"0": 1}}',
            'differs at $.items: expected an array, got {"0": 1}',
        ),
        ({"items": [1, 2]}, b'{"items": [1]}', "differs at $.items: expected 2 item(s), got 1"),
        (
            {"items": [1, {"ok": True}]},
            b'{"items": [1, {"ok": 1}]}',
            "differs at $.items[1].ok: expected true, got 1",
        ),
        (
            {"a b": {"é": 1}},
            '{"a b": {"é": 2}}'.encode(),
            'differs at $["a b"].é: expected 1, got 2',
        ),
        ({"x-y": 1}, b'{"x-y": "1"}', 'differs at $["x-y"]: expected 1, got "1"'),
        (1, b"true", "differs at $: expected 1, got true"),
        (None, b"0", "differs at $: expected null, got 0"),
        (
            "short",
            b'"' + b"x" * 100 + b'"',
            'differs at $: expected "short", got "' + "x" * 59 + "...",
        ),
        ({}, b"nope", "is not JSON: Expecting value: line 1 column 1 (char 0)"),
        ({}, b"", "is not JSON: Expecting value: line 1 column 1 (char 0)"),
        ({}, b'{"a": 1', "is not JSON: Expecting ',' delimiter: line 1 column 8 (char 7)"),
        ({}, b'{"a": NaN}', "is not JSON: NaN is not valid JSON"),
        ({}, b'{"a": "\xff"}', "is not JSON: invalid UTF-8 at byte 7"),
        # A raw buffer holding a value and more: the value is judged first.
        ({"op": "get"}, b'{"op": "put"}{"op"', 'differs at $.op: expected "get", got "put"'),
        (
            {"op": "get"},
            b'{"op": "get"}{"op"',
            "is not JSON: Extra data: line 1 column 14 (char 13)",
        ),
        ({"op": "get"}, b'{"op": "get"}', 'matches json {"op": "get"}'),
    ],
    ids=repr,
)
def test_json_explain(expected: object, data: bytes, explanation: str) -> None:
    assert json(expected).explain(data) == explanation


def test_json_reply_value_is_the_parsed_message() -> None:
    outcome = as_matcher({"op": "get"}).match(b'{"op": "get", "key": "k"}', stream=False)
    assert outcome == Matched({"op": "get", "key": "k"}, 25)


def test_json_deep_nesting_is_not_json_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert json([]).match(deep, stream=False) is None
    assert json([]).match(deep, stream=True) is None
    assert json([]).explain(deep).startswith("is not JSON")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=json_values, ensure_ascii=st.booleans(), compact=st.booleans())
def test_json_matches_its_own_encoding_and_waits_on_every_cut(
    value: object, ensure_ascii: bool, compact: bool
) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    encoded = stdlib_json.dumps(value, ensure_ascii=ensure_ascii, separators=separators)
    data = encoded.encode()
    matcher = json(value)
    assert matcher.match(data, stream=False) == Matched(value, len(data))
    # Any cut of the encoding, even inside a UTF-8 character, is an unfinished beginning.
    for cut in range(len(data)):
        assert matcher.match(data[:cut], stream=True) is NEED_MORE, data[:cut]
    # Followed by more, the value is taken with the whitespace that follows it.
    assert matcher.match(data + b" \n[", stream=True) == Matched(value, len(data) + 2)


@settings(max_examples=50, deadline=None)
@given(
    value=st.dictionaries(st.text(max_size=4), json_values, max_size=4),
    extra=st.dictionaries(st.text(max_size=4), json_values, max_size=3),
)
def test_json_objects_match_any_superset(
    value: dict[str, object], extra: dict[str, object]
) -> None:
    message = stdlib_json.dumps({**extra, **value}).encode()
    assert matches(json(value), message)
    missing = {**value, "\x00missing": 1}
    assert not matches(json(missing), message)
    assert json(missing).explain(message) == 'has no key $["\\u0000missing"]'


# -- composition ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "data", "stream", "outcome"),
    [
        (all_of(prefix(b"A"), contains(b"B")), b"AxB", False, Matched(b"AxB", 3)),
        (all_of(prefix(b"A"), contains(b"B")), b"Ax", False, None),
        (all_of(prefix(b"A"), contains(b"B")), b"xB", False, None),
        # The first part's value is what a reply gets.
        (
            all_of(json({"a": 1}), contains(b"b")),
            b'{"a":1,"b":2}',
            False,
            Matched({"a": 1, "b": 2}, 13),
        ),
        # Stream mode: the first part frames, the others judge the framed bytes.
        (all_of(contains(b"\n"), prefix(b"GET ")), b"GET /\nPOST", True, Matched(b"GET /\n", 6)),
        (all_of(contains(b"\n"), prefix(b"GET ")), b"POST /\nGET ", True, None),
        (all_of(contains(b"\n"), prefix(b"GET ")), b"GET /", True, NEED_MORE),
        (all_of(prefix(b"GET "), contains(b"\n")), b"GET /\n", True, None),
        (all_of(prefix(b"GET "), contains(b"\n")), b"POST", True, None),
        (any_of(b"A", b"B"), b"B", False, Matched(b"B", 1)),
        (any_of(b"A", b"B"), b"C", False, None),
        (any_of(prefix(b"A"), contains(b"A")), b"xAy", False, Matched(b"xAy", 3)),
        # Stream mode: the first part that matches wins, even after one that waits.
        (any_of(b"ABC", b"A"), b"AB", True, Matched(b"A", 1)),
        (any_of(b"ABC", b"X"), b"AB", True, NEED_MORE),
        (any_of(b"ABC", b"X"), b"Y", True, None),
        (not_(b"QUIT"), b"PING", False, Matched(b"PING", 4)),
        (not_(b"QUIT"), b"QUIT", False, None),
        (not_(b"QUIT"), b"", False, Matched(b"", 0)),
        # Stream mode: waits while the inner waits, takes the buffer once it refuses.
        (not_(b"QUIT"), b"QU", True, NEED_MORE),
        (not_(b"QUIT"), b"QUITx", True, None),
        (not_(b"QUIT"), b"PING", True, Matched(b"PING", 4)),
        (not_(b"QUIT"), b"", True, NEED_MORE),
    ],
    ids=repr,
)
def test_composition(matcher: Matcher, data: bytes, stream: bool, outcome: MatchOutcome) -> None:
    assert matcher.match(data, stream=stream) == outcome


@pytest.mark.parametrize(
    ("matcher", "data", "explanation"),
    [
        (all_of(prefix(b"A"), contains(b"B")), b"AX", "does not contain 'B'"),
        (
            all_of(prefix(b"A"), contains(b"B")),
            b"XB",
            "differs at byte 0: expected 'A', received 'XB'",
        ),
        (all_of(b"A"), b"A", "matches all_of('A')"),
        (any_of(prefix(b"A")), b"X", "differs at byte 0: expected 'A', received 'X'"),
        (
            any_of(b"A", contains(b"B")),
            b"X",
            "matches none of 'A' (differs at byte 0: expected 'A', received 'X'); "
            "contains 'B' (does not contain 'B')",
        ),
        (not_(prefix(b"Q")), b"QUIT", "matches prefix 'Q', which it must not"),
    ],
    ids=repr,
)
def test_composition_explain(matcher: Matcher, data: bytes, explanation: str) -> None:
    assert matcher.explain(data) == explanation


# -- closeness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "data", "low", "high"),
    [
        (exact(b"PING"), b"PING", 1.0, 1.0),
        (exact(b"PING"), b"PONG", 0.7, 0.8),
        (exact(b"PING"), b"xyz", 0.0, 0.0),
        (exact(b"PING"), b"", 0.0, 0.0),
        (prefix(b"GET "), b"GET /", 1.0, 1.0),
        (prefix(b"GET "), b"GOT /", 0.7, 0.8),
        (contains(b"Hello"), b"say Hallo", 0.6, 0.6),
        (contains(b"Hello"), b"", 0.0, 0.0),
        (regex(rb"PING \d+"), b"PING 42 extra", 0.5, 0.6),
        (regex(rb"PING \d+"), b"PING 42", 1.0, 1.0),
        (json({"a": 1, "b": 2}), b'{"a": 1, "b": 3}', 0.5, 0.5),
        (json({"a": 1, "b": {"c": 1, "d": 1}}), b'{"a": 1, "b": {"c": 1}}', 0.75, 0.75),
        (json([1, 2, 3]), b"[1, 2]", 0.66, 0.67),
        (json({"a": 1}), b"[1]", 0.0, 0.0),
        (json({"a": 1}), b"nope", 0.0, 0.0),
        (predicate(is_ping), b"PONG", 0.0, 0.0),
        (predicate(is_ping), b"PING", 1.0, 1.0),
        (ANY, b"", 1.0, 1.0),
        (all_of(b"PING", prefix(b"P")), b"PONG", 0.7, 0.8),
        (all_of(b"PING", contains(b"x")), b"PONG", 0.0, 0.0),
        (any_of(b"PING", contains(b"x")), b"PONG", 0.7, 0.8),
        (not_(b"PING"), b"PING", 0.0, 0.0),
        (not_(b"PING"), b"PONG", 1.0, 1.0),
        # Nothing that fails to match scores 1.
        (exact(b"x" * 2000), b"x" * 1999, 0.99, 0.99),
    ],
    ids=repr,
)
def test_closeness(matcher: Matcher, data: bytes, low: float, high: float) -> None:
    assert low <= closeness(matcher, data) <= high


def test_closeness_stream_mode_compares_the_front() -> None:
    assert closeness(exact(b"PING"), b"PING and more", stream=True) == 1.0
    assert closeness(exact(b"PING"), b"PONG and more", stream=True) == 0.75
    assert closeness(exact(b"PING"), b"PONG and more") < 0.5
    assert closeness(json({"a": 1, "b": 2}), b'{"a": 1, "b": 3} {"a"', stream=True) == 0.5


def test_closeness_survives_a_predicate_that_raises() -> None:
    def broken(message: bytes) -> bool:
        raise RuntimeError("boom")

    assert closeness(predicate(broken), b"x") == 0.0
    assert closeness(any_of(predicate(broken), b"y"), b"x") == 0.0


def test_closeness_of_a_matcher_without_a_measure() -> None:
    class Even(Matcher):
        def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
            return Matched(data, len(data)) if len(data) % 2 == 0 else None

        def describe(self) -> str:
            return "even"

    assert closeness(Even(), b"ab") == 1.0
    assert closeness(Even(), b"abc") == 0.0


# -- properties ----------------------------------------------------------------------------

small_bytes = st.lists(st.sampled_from(b"ab\n"), max_size=6).map(bytes)
literals = st.lists(st.sampled_from(b"ab\n"), min_size=1, max_size=3).map(bytes)


def even_length(message: bytes) -> bool:
    return len(message) % 2 == 0


leaf_matchers = st.one_of(
    literals.map(exact),
    literals.map(prefix),
    literals.map(contains),
    literals.map(lambda literal: regex(re.escape(literal) + rb"[ab]*")),
    st.sampled_from([{"a": 1}, [1], 1, "a"]).map(json),
    st.just(predicate(even_length)),
    st.just(ANY),
)
matchers = st.recursive(
    leaf_matchers,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda parts: all_of(*parts)),
        st.lists(children, min_size=1, max_size=3).map(lambda parts: any_of(*parts)),
        children.map(not_),
    ),
    max_leaves=6,
)
messages = small_bytes | st.sampled_from([b'{"a": 1}', b"1", b"[1]", b'"a"', b"ab"])


@settings(max_examples=200, deadline=None)
@given(expected=small_bytes.filter(bool), data=small_bytes)
def test_exact_matches_only_itself(expected: bytes, data: bytes) -> None:
    assert matches(exact(expected), data) == (data == expected)
    assert matches(exact(expected), expected)


@settings(max_examples=200, deadline=None)
@given(start=literals, rest=small_bytes, data=small_bytes)
def test_prefix_matches_itself_followed_by_anything(start: bytes, rest: bytes, data: bytes) -> None:
    assert prefix(start).match(start + rest, stream=False) == Matched(
        start + rest, len(start + rest)
    )
    assert prefix(start).match(start + rest, stream=True) == Matched(start, len(start))
    assert matches(prefix(start), data) == data.startswith(start)


@settings(max_examples=200, deadline=None)
@given(needle=literals, data=small_bytes)
def test_contains_agrees_with_in(needle: bytes, data: bytes) -> None:
    assert matches(contains(needle), data) == (needle in data)
    outcome = contains(needle).match(data, stream=True)
    if needle in data:
        assert isinstance(outcome, Matched)
        assert outcome.value == data[: outcome.consumed]
        assert outcome.value.endswith(needle)
        assert needle not in outcome.value[:-1]
    else:
        assert outcome is NEED_MORE


@settings(max_examples=200, deadline=None)
@given(matcher=matchers, data=messages)
def test_not_is_the_complement_in_message_mode(matcher: Matcher, data: bytes) -> None:
    assert matches(not_(matcher), data) != matches(matcher, data)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(matchers, min_size=1, max_size=4), data=messages)
def test_all_of_and_any_of_agree_with_all_and_any(parts: list[Matcher], data: bytes) -> None:
    results = [matches(part, data) for part in parts]
    assert matches(all_of(*parts), data) == all(results)
    assert matches(any_of(*parts), data) == any(results)


@settings(max_examples=200, deadline=None)
@given(matcher=matchers, data=messages, stream=st.booleans())
def test_matchers_keep_the_outcome_contract(matcher: Matcher, data: bytes, stream: bool) -> None:
    outcome = matcher.match(data, stream=stream)
    if stream:
        assert outcome is None or outcome is NEED_MORE or isinstance(outcome, Matched)
        if isinstance(outcome, Matched) and data:
            assert 0 < outcome.consumed <= len(data)
    else:
        assert outcome is None or isinstance(outcome, Matched)
        if isinstance(outcome, Matched):
            assert outcome.consumed == len(data)
    assert matcher.describe()
    assert "\n" not in matcher.explain(data)


@settings(max_examples=200, deadline=None)
@given(matcher=matchers, data=messages, stream=st.booleans())
def test_closeness_is_a_fraction_and_one_means_a_match(
    matcher: Matcher, data: bytes, stream: bool
) -> None:
    score = closeness(matcher, data, stream=stream)
    assert 0.0 <= score <= 1.0
    assert (score == 1.0) == isinstance(matcher.match(data, stream=stream), Matched)


@settings(max_examples=200, deadline=None)
@given(expected=st.binary(min_size=1, max_size=24), data=st.binary(max_size=24))
def test_closeness_of_exact_peaks_at_the_expected_bytes(expected: bytes, data: bytes) -> None:
    best = closeness(exact(expected), expected)
    assert best == 1.0
    score = closeness(exact(expected), data)
    assert score <= best
    if data != expected:
        assert score < 1.0


# -- going on from where a stream match waited ---------------------------------------------------


def same_outcome(got: MatchOutcome, want: MatchOutcome) -> bool:
    if not (isinstance(got, Matched) and isinstance(want, Matched)):
        return got is want
    if isinstance(want.value, re.Match):
        assert isinstance(got.value, re.Match)
        return (got.value.group(), got.consumed) == (want.value.group(), want.consumed)
    assert type(got.value) is not bytearray  # never the peer's buffer itself
    return got == want


#: Matchers that go on from where they waited, with literals up to 4 bytes that may straddle
#: two segments.
incremental_matchers = st.one_of(
    st.sampled_from([exact, prefix, contains]).flatmap(
        lambda factory: st.lists(st.sampled_from(b"ab\n"), min_size=1, max_size=4).map(
            lambda literal: factory(bytes(literal))
        )
    ),
    st.just(ANY),
    st.tuples(literals.map(contains), literals).map(lambda parts: all_of(*parts)),
)


@settings(max_examples=400, deadline=None)
@given(
    matcher=incremental_matchers | matchers,
    stream=st.lists(st.sampled_from(b"ab\n"), max_size=16).map(bytes),
    cuts=st.lists(st.integers(0, 16), max_size=8),
)
def test_match_from_gives_what_match_gives_on_the_whole_buffer(
    matcher: Matcher, stream: bytes, cuts: list[int]
) -> None:
    """The buffer grows segment by segment; while the matcher waits, it goes on from where it
    waited, on a bytearray (the peer's buffer), and must say what match says of the whole."""
    start = 0
    for end in [*sorted({min(cut, len(stream)) for cut in cuts}), len(stream)]:
        if end < start:
            continue
        want = matcher.match(stream[:end], stream=True)
        got = matcher.match_from(bytearray(stream[:end]), start)
        assert same_outcome(got, want), (got, want)
        if got is not NEED_MORE:
            return
        start = end


@pytest.mark.parametrize(
    ("matcher", "incremental"),
    [
        (exact(b"A"), True),
        (prefix(b"A"), True),
        (contains(b"A"), True),
        (ANY, True),
        (all_of(contains(b"\n"), prefix(b"GET ")), True),
        (all_of(regex(rb"A+"), b"AA"), False),
        (any_of(b"A", b"B"), False),
        (not_(b"A"), False),
        (regex(rb"A+"), False),
        (predicate(even_length), False),
        (json({"a": 1}), False),
    ],
)
def test_which_matchers_are_incremental(matcher: Matcher, incremental: bool) -> None:
    assert matcher.incremental is incremental


def test_a_literal_refuses_as_soon_as_a_differing_byte_arrives() -> None:
    matcher = exact(b"HELLO")
    assert matcher.match_from(bytearray(b"HE"), 0) is NEED_MORE
    assert matcher.match_from(bytearray(b"HELX"), 2) is None
    assert matcher.match_from(bytearray(b"HELLO!"), 2) == Matched(b"HELLO", 5)
    assert contains(b"END").match_from(bytearray(b"xxEN"), 0) is NEED_MORE
    assert contains(b"END").match_from(bytearray(b"xxEND!"), 4) == Matched(b"xxEND", 5)


@pytest.mark.parametrize(
    ("make", "label"),
    [
        (exact, ""),
        (prefix, "prefix "),
        (contains, "contains "),
    ],
    ids=["exact", "prefix", "contains"],
)
def test_a_long_literal_is_described_in_one_short_line(
    make: Callable[[bytes], Matcher], label: str
) -> None:
    # A 64 KiB literal once filled the transcript's rule column with 64 KiB of it.
    described = make(b"y" * 65535).describe()
    assert described == f"{label}'{'y' * 200}'... (65535 bytes in all)"
