"""The diagnoses of issue 15: the Raw line-end hint (6), a truthful ``all_of`` explanation
in stream mode (7), "the script was empty", binary ``received`` lines as a hexdump and a
predicate that says what it returned or raised (8). The core is driven by hand (as in
``test_conversation.py``); the end-to-end cases use real sockets and pytester."""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import (
    ConversationError,
    FakePeer,
    FramingError,
    LengthPrefixed,
    Lines,
    Raw,
    UnexpectedData,
    all_of,
    any_of,
    contains,
    exact,
    not_,
    predicate,
    prefix,
)
from fakepeer._actions import Close, Write
from fakepeer._conversation import Conversation
from fakepeer._explain import line_hint
from fakepeer._matchers import AllOf, AnyOf, Not, as_matcher
from fakepeer._matching import Matched, Matcher, explain
from fakepeer._show import DUMP_LIMIT, show_value

pytest_plugins = ["pytester"]

WHERE = "test_diagnoses_issue15.py:1"
T0 = 1000.0

LINES_HINT = (
    "  hint:      the client seems to send lines ending in '\\r\\n', which Raw() (the default "
    'framing) leaves to the next rule to match: use FakePeer(framing=Lines(b"\\r\\n")), '
    "which cuts the bytes into lines (a rule then matches a line without its end) and ends "
    "each reply with '\\r\\n'"
)
EMPTY_HINT = (
    "  hint:      write the script before the client connects and sends: before serve(), or "
    "before starting the client (a rule added while the client talks races with its bytes)"
)


def conversation_of(framing: object, *rules: tuple[str, object]) -> Conversation:
    conversation = Conversation(framing)  # type: ignore[arg-type]
    for kind, spec in rules:
        conversation.add_rule(kind, as_matcher(spec), WHERE)
    return conversation


def diagnosis(conversation: Conversation, *chunks: bytes, eof: bool = False) -> str:
    """What the conversation reports after a client sent ``chunks`` (then EOF, if ``eof``)."""
    connection, _ = conversation.connect("127.0.0.1:50000", T0)
    for chunk in chunks:
        conversation.receive(connection, chunk, T0)
    if eof:
        conversation.eof(connection, T0)
    problem = conversation.verdict()
    assert problem is not None
    return problem.diagnosis


# -- 6: the Raw line-end hint --------------------------------------------------------------


def test_raw_ping_quit_over_lines_gets_the_hint() -> None:
    conversation = Conversation(Raw())
    conversation.add_rule("expect", as_matcher("PING"), WHERE).reply("PONG")
    conversation.add_rule("expect", as_matcher("QUIT"), WHERE)
    connection, _ = conversation.connect("127.0.0.1:50000", T0)
    actions = conversation.receive(connection, b"PING\r\nQUIT\r\n", T0)
    assert actions == [Write(b"PONG"), Close()]  # the trap: PONG without its line end
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.diagnosis.splitlines() == [
        "connection #1 received data that no rule expected",
        "  received:  '\\r\\nQUIT\\r\\n'",
        f"  expected:  expect #2 'QUIT' ({WHERE})",
        "             the data differs at byte 0: expected 'QUIT', received '\\r\\nQUIT\\r\\n'",
        LINES_HINT,
    ]


def test_a_bare_line_end_left_after_the_last_expectation_gets_the_hint() -> None:
    text = diagnosis(conversation_of(Raw(), ("expect", "PING")), b"PING\n")
    assert text.splitlines()[1:] == [
        "  received:  '\\n'",
        "  expected:  nothing more: the script's one expectation was met",
        "  hint:      the client seems to send lines ending in '\\n', which Raw() (the default "
        "framing) leaves to the next rule to match: use FakePeer(framing=Lines()), which cuts "
        "the bytes into lines (a rule then matches a line without its end) and ends each reply "
        "with '\\n'",
    ]


def test_a_literal_followed_by_a_line_end_gets_the_hint() -> None:
    text = diagnosis(conversation_of(Raw(), ("expect", "QUIT")), b"BYE QUIT\r\n")
    assert text.splitlines()[-1] == LINES_HINT


@pytest.mark.parametrize(
    ("framing", "rules", "data"),
    [
        # binary protocols whose bytes contain 0x0a or 0x0d 0x0a
        (Raw(), [("expect", b"\x01\x02")], b"\n\x00\x05hello"),
        (Raw(), [("expect", b"\x01\x02")], b"\r\n\x00\x00\x00\x01"),
        (Raw(), [("expect", b"\x01")], b"\x02\x01\r\n\xff"),
        (Raw(), [("expect", b"OK")], b"\r\n\xff\xfe"),  # not UTF-8
        # text without a line end where it counts
        (Raw(), [("expect", "PING")], b"PONG"),
        (Raw(), [("expect", "PING")], b"PONG\r\n"),
        # a message framing frames lines already
        (Lines(b"\r\n"), [("expect", "PING")], b"\r\nPONG\r\n"),
        (Lines(), [("expect", "QUIT")], b"BYE QUIT\n"),
    ],
)
def test_no_line_hint_for_binary_data_or_message_framings(
    framing: object, rules: list[tuple[str, object]], data: bytes
) -> None:
    text = diagnosis(conversation_of(framing, *rules), data)
    assert "hint:" not in text, text


@settings(max_examples=300)
@given(
    front=st.binary(max_size=8),
    control=st.sampled_from([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]),
    back=st.binary(max_size=8),
    literal=st.binary(min_size=1, max_size=4),
)
def test_no_line_hint_when_a_control_byte_says_binary(
    front: bytes, control: int, back: bytes, literal: bytes
) -> None:
    conversation = conversation_of(Raw(), ("expect", literal))
    data = b"\r\n" + front + bytes([control]) + back + literal + b"\r\n"
    assert line_hint(data, conversation.script.rules(), stream=True) == ""


def test_the_hint_end_to_end(pytester: pytest.Pytester) -> None:
    """The issue's case, a real client over a real socket, through the plugin."""
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:hypothesispytest\n"
    )
    pytester.makepyfile(
        """
        import socket

        def test_ping(fake_peer):
            fake_peer.expect("PING").reply("PONG")
            fake_peer.expect("QUIT")
            with socket.create_connection(fake_peer.address, timeout=5) as sock:
                sock.sendall(b"PING\\r\\nQUIT\\r\\n")
                while sock.recv(100):  # until the peer closes
                    pass
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*UnexpectedData: connection #1 received data that no rule expected",
            "*received:  '\\r\\nQUIT\\r\\n'",
            "*expected:  expect #2 'QUIT' (test_the_hint_end_to_end.py:5)",
            "*hint:      the client seems to send lines ending in '\\r\\n'*"
            'FakePeer(framing=Lines(b"\\r\\n"))*',
        ]
    )


# -- 7: all_of in stream mode ----------------------------------------------------------------

REQUEST = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"


def test_all_of_that_frames_by_its_first_part_says_why_and_how() -> None:
    text = diagnosis(
        conversation_of(Raw(), ("expect", all_of(prefix("CONNECT "), contains("\r\n\r\n")))),
        REQUEST,
    )
    assert text.splitlines()[2:] == [
        f"  expected:  expect #1 all_of(prefix 'CONNECT ', contains '\\r\\n\\r\\n') ({WHERE})",
        "             the data does not match all_of(prefix 'CONNECT ', contains '\\r\\n\\r\\n') "
        "with Raw framing: its first part, prefix 'CONNECT ', decides what is consumed (here "
        "8 bytes), and the other parts judge only those bytes: 'CONNECT ' does not contain "
        "'\\r\\n\\r\\n'; put the part that frames the message first: "
        "all_of(contains '\\r\\n\\r\\n', prefix 'CONNECT ')",
    ]
    assert "the data matches" not in text
    # The fix it names works: the request is taken whole.
    fixed = conversation_of(Raw(), ("expect", all_of(contains("\r\n\r\n"), prefix("CONNECT "))))
    connection, _ = fixed.connect("c", T0)
    fixed.receive(connection, REQUEST, T0)
    assert fixed.verdict() is None
    assert connection.received == [REQUEST]


def test_all_of_with_no_reordering_that_works_names_a_message_framing() -> None:
    matcher = all_of(prefix("AB"), not_("AB"))
    assert explain(matcher, b"ABC", stream=True) == (
        "does not match all_of(prefix 'AB', not_('AB')) with Raw framing: its first part, "
        "prefix 'AB', decides what is consumed (here 2 bytes), and the other parts judge only "
        "those bytes: 'AB' matches 'AB', which it must not; put first a part that "
        "frames the whole message (contains(...) of its end), or use a message framing: "
        "FakePeer(framing=...)"
    )
    # Judged as a whole message, it matches: the text says so only there.
    assert isinstance(matcher.match(b"ABC", stream=False), Matched)


@pytest.mark.parametrize(
    ("matcher", "data", "stream", "text"),
    [
        (not_(b"QUIT"), b"QUITX", True, "matches 'QUIT' (its first 4 bytes), which it must not"),
        (
            not_(b"QUIT"),
            b"QU",
            True,
            "may still become 'QUIT', which it must not: with Raw framing it waits for more bytes",
        ),
        (not_(b"QUIT"), b"QUIT", False, "matches 'QUIT', which it must not"),
        (
            any_of(all_of(prefix("A"), contains("Z")), "B"),
            b"AZ",
            True,
            "matches none of all_of(prefix 'A', contains 'Z') (does not match all_of(prefix 'A', "
            "contains 'Z') with Raw framing: its first part, prefix 'A', decides what is "
            "consumed (here 1 byte), and the other parts judge only those bytes: 'A' does not "
            "contain 'Z'; put the part that frames the message first: all_of(contains 'Z', "
            "prefix 'A')); 'B' (differs at byte 0: expected 'B', received 'AZ')",
        ),
    ],
)
def test_composites_explain_in_their_mode(
    matcher: Matcher, data: bytes, stream: bool, text: str
) -> None:
    assert not isinstance(matcher.match(data, stream=stream), Matched)
    assert explain(matcher, data, stream=stream) == text


LEAVES = st.sampled_from(
    [exact("AB"), exact("A"), prefix("A"), prefix("AB"), contains("B"), contains("\n")]
)
MATCHERS = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: all_of(*parts))
        | st.lists(inner, min_size=1, max_size=3).map(lambda parts: any_of(*parts))
        | inner.map(not_)
    ),
    max_leaves=6,
)


def judged_alike(matcher: Matcher) -> list[Matcher]:
    """``matcher`` and the parts it judges on the same bytes in the same mode (any_of's
    parts, not_'s inner), whose claims an explanation may make about those bytes."""
    found = [matcher]
    if isinstance(matcher, AnyOf):
        for part in matcher.parts:
            found += judged_alike(part)
    elif isinstance(matcher, Not):
        found += judged_alike(matcher.inner)
    elif isinstance(matcher, AllOf):
        found += judged_alike(matcher.parts[0])  # the first part sees the same bytes
    return found


@settings(max_examples=500)
@given(
    matcher=MATCHERS,
    data=st.binary(min_size=1, max_size=6).map(
        lambda raw: bytes(b"AB\nZ"[byte % 4] for byte in raw)
    ),
    stream=st.booleans(),
)
def test_an_explanation_says_matches_only_of_what_matches(
    matcher: Matcher, data: bytes, stream: bool
) -> None:
    """Whenever a diagnosis says the data "matches" a matcher, it does, in that mode."""
    if isinstance(matcher.match(data, stream=stream), Matched):
        return
    text = explain(matcher, data, stream=stream)
    for part in judged_alike(matcher):
        claim = re.compile(rf"(?<!does not )(?<!none of )matches {re.escape(part.describe())}")
        if claim.search(text) is not None:
            if isinstance(part, AllOf) and part is not matcher:
                continue  # (a first part's own first part: judged on the same bytes below)
            assert isinstance(part.match(data, stream=stream), Matched), (part, text)
    assert claim_free(matcher, text)


def claim_free(matcher: Matcher, text: str) -> bool:
    """The explanation of a matcher that did not match never says it matches."""
    return re.search(
        rf"(?<!does not )(?<!none of )matches {re.escape(matcher.describe())}(?!\w)", text
    ) is None or isinstance(matcher, Not)


# -- 8a: a script written too late -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "sent", "expected"),
    [
        ([], b"HELLO\n", "nothing: the script was empty when these bytes arrived"),
        (
            [("connect", None)],
            b"HELLO\n",
            "nothing: the script had no rule for messages when these bytes arrived",
        ),
        (
            [("always", "PING")],
            b"HELLO\n",
            "nothing: the script has no expectations, and none of its other rules took the data",
        ),
        ([("expect", "A")], b"A\nHELLO\n", "nothing more: the script's one expectation was met"),
        (
            [("expect", "A"), ("expect", "B"), ("expect", "C")],
            b"A\nB\nC\nHELLO\n",
            "nothing more: all 3 expectations were met",
        ),
    ],
)
def test_what_an_exhausted_or_empty_script_expected(
    rules: list[tuple[str, object]], sent: bytes, expected: str
) -> None:
    conversation = Conversation(Lines())
    for kind, spec in rules:
        conversation.add_rule(kind, None if spec is None else as_matcher(spec), WHERE)
    lines = diagnosis(conversation, sent).splitlines()
    assert lines[1:3] == ["  received:  'HELLO'", f"  expected:  {expected}"]
    assert (EMPTY_HINT in lines) == (not rules or rules == [("connect", None)])


def test_a_script_written_after_the_client_sent_says_so() -> None:
    peer = FakePeer(framing=Lines())
    with (  # noqa: PT012 - the serve block is the subject
        pytest.raises(UnexpectedData) as failure,
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"HELLO\n")
        assert sock.recv(100) == b""  # the peer failed the connection: it closed
        peer.expect("HELLO")  # too late
    assert failure.value.diagnosis.splitlines()[1:] == [
        "  received:  'HELLO'",
        "  expected:  nothing: the script was empty when these bytes arrived",
        EMPTY_HINT,
    ]


# -- 8b: binary bytes as a hexdump -----------------------------------------------------------


def test_binary_received_bytes_are_a_hexdump() -> None:
    text = diagnosis(conversation_of(Raw(), ("expect", b"\x01\x02")), b"\x00\x01\xff\xfebinary")
    assert text.splitlines()[1:3] == [
        "  received:  10 bytes:",
        "             00000000  00 01 ff fe 62 69 6e 61 72 79                    |....binary|",
    ]


def test_short_printable_text_stays_on_the_line() -> None:
    text = diagnosis(conversation_of(Raw(), ("expect", "PING")), b"PONG\t!")
    assert text.splitlines()[1] == "  received:  'PONG\\t!'"


def test_a_long_binary_value_is_cut_after_the_dump_limit() -> None:
    data = bytes(range(256)) * 2
    shown = show_value(data, "  ").splitlines()
    assert shown[0] == "512 bytes:"
    assert len(shown) == 1 + DUMP_LIMIT // 16 + 1
    assert shown[1].startswith("  00000000  00 01 02")
    assert shown[-1] == "  ... (512 bytes in all)"


def test_binary_leftover_bytes_are_a_hexdump() -> None:
    text = diagnosis(conversation_of(LengthPrefixed(2)), b"\x00\x09\x00\x01\x02", eof=True)
    assert text.splitlines()[1:3] == [
        "  leftover:  5 bytes:",
        "             00000000  00 09 00 01 02                                   |.....|",
    ]


def test_over_the_buffer_limit_binary_bytes_are_a_hexdump() -> None:
    conversation = Conversation(Raw())
    conversation.add_rule("expect", as_matcher(all_of(contains(b"\xff"), prefix(b"\x00"))), WHERE)
    connection, _ = conversation.connect("c", T0)
    chunk = b"\x00\x01" * 512
    for _ in range(conversation.limit // len(chunk) + 1):
        conversation.receive(connection, chunk, T0)
    problem = conversation.verdict()
    assert isinstance(problem, FramingError)
    lines = problem.diagnosis.splitlines()
    assert lines[1] == "  buffered:  64 bytes:"
    assert lines[2] == f"{' ' * 13}00000000  {'00 01 ' * 7}00 01  |{'.' * 16}|"


# -- 8c: a predicate that does not match ----------------------------------------------------


def starts_with_x(message: bytes) -> bool:
    return message.startswith(b"X")


def returns_none(message: bytes) -> None:
    return None


LINE_X = starts_with_x.__code__.co_firstlineno
LINE_NONE = returns_none.__code__.co_firstlineno


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        (
            predicate(starts_with_x, "an X command"),
            "does not match an X command: the predicate starts_with_x "
            f"(test_diagnoses_issue15.py:{LINE_X}) returned False",
        ),
        (
            starts_with_x,
            "does not match: the predicate starts_with_x "
            f"(test_diagnoses_issue15.py:{LINE_X}) returned False",
        ),
        (
            returns_none,
            "does not match: the predicate returns_none "
            f"(test_diagnoses_issue15.py:{LINE_NONE}) returned None",
        ),
        (len, "does not match: the predicate len returned 0"),  # no source: no place
    ],
)
def test_a_predicate_says_what_it_was_and_what_it_returned(spec: object, why: str) -> None:
    data = b"" if spec is len else b"hello"
    conversation = conversation_of(Lines(), ("expect", spec))
    lines = diagnosis(conversation, data + b"\n").splitlines()
    assert lines[3] == f"             the data {why}"


def test_with_raw_framing_a_waiting_predicate_says_why_at_the_end() -> None:
    text = diagnosis(conversation_of(Raw(), ("expect", starts_with_x)), b"hello", eof=True)
    assert text.splitlines()[1:] == [
        "  leftover:  'hello'",
        f"  expected:  expect #1 predicate starts_with_x ({WHERE})",
        "             the data does not match: the predicate starts_with_x "
        f"(test_diagnoses_issue15.py:{LINE_X}) returned False; with Raw framing it waits for "
        "more bytes",
    ]


def test_a_predicate_that_raises_is_named_in_the_failure() -> None:
    def boom(message: bytes) -> bool:
        raise ValueError("bad message")

    line = boom.__code__.co_firstlineno
    peer = FakePeer(framing=Lines())
    peer.expect(boom)
    with (  # noqa: PT012 - the serve block is the subject
        pytest.raises(ConversationError) as failure,
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"hello\n")
        assert sock.recv(100) == b""  # the peer failed the connection: it closed
    assert failure.value.diagnosis.splitlines() == [
        "connection #1: handling an event raised ValueError: bad message",
        "  raised by the predicate test_a_predicate_that_raises_is_named_in_the_failure."
        f"<locals>.boom (test_diagnoses_issue15.py:{line}), called on 'hello'",
    ]
    assert isinstance(failure.value.__cause__, ValueError)


def test_with_raw_framing_an_incomplete_message_says_why_the_expectation_did_not_take_it() -> None:
    conversation = Conversation(Raw())
    conversation.add_rule("expect", as_matcher(b"PING"), WHERE).when("authed")
    conversation.add_rule("always", as_matcher(contains(b"\n")), WHERE)  # it waits
    text = diagnosis(conversation, b"PING", eof=True)
    assert text.splitlines()[1:] == [
        "  leftover:  'PING'",
        f"  expected:  expect #1 'PING' [when 'authed'] ({WHERE})",
        "             the data matches, but needs connection state 'authed' (connection #1 "
        "is in 'start')",
    ]
