"""Tests of ``fakepeer._conversation``: the state machine, driven by hand with fake timestamps.

``perform`` plays the runtime: it reports back what the actions did (``sent``, ``closed``,
``held``), as ``_runtime._PeerProtocol._do`` does, and skips waits.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fakepeer import (
    ANY,
    Framing,
    FramingError,
    IncompleteMessage,
    LengthPrefixed,
    Lines,
    Raw,
    ReplyFailed,
    Rule,
    StxEtx,
    UnexpectedData,
    UnmetExpectations,
)
from fakepeer._actions import Action, Call, Close, HalfClose, Hold, Reset, Wait, Write
from fakepeer._conversation import MAX_BUFFER, Conversation
from fakepeer._matchers import all_of, as_matcher, contains, exact, prefix, regex
from fakepeer._matching import Matcher, MatchOutcome
from fakepeer._state import ConnectionRecord as Connection
from fakepeer._state import Phase

WHERE = "test_conversation.py:1"
T0 = 1000.0


def expect(conversation: Conversation, spec: object) -> Rule:
    return conversation.add_rule("expect", as_matcher(spec), WHERE)


def always(conversation: Conversation, spec: object) -> Rule:
    return conversation.add_rule("always", as_matcher(spec), WHERE)


def on_connect(conversation: Conversation) -> Rule:
    return conversation.add_rule("connect", None, WHERE)


def resolve(
    conversation: Conversation, connection: Connection, actions: list[Action], at: float
) -> list[Action]:
    """``actions`` with each ``Call`` answered, as the runtime does: the reply callable gets
    the match and (here) the core's record of the connection."""
    while len(actions) == 1 and isinstance(actions[0], Call):
        call = actions[0]
        error: Exception | None = None
        result: object = None
        try:
            args = (call.value, connection) if call.wants_connection else (call.value,)
            result = call.function(*args)
        except Exception as exc:
            error = exc
        actions = conversation.replied(connection, result, error, at)
    return actions


def perform(
    conversation: Conversation, connection: Connection, actions: Iterable[Action], at: float
) -> None:
    """Report ``actions`` back as the runtime would after executing them (waits skipped)."""
    for action in actions:
        if connection.ended:
            return
        if isinstance(action, Write):
            conversation.sent(connection, action.data, at)
        elif isinstance(action, Close):
            conversation.closed(connection, at, "closed")
        elif isinstance(action, Reset):
            conversation.closed(connection, at, "reset")
        elif isinstance(action, HalfClose):
            conversation.closed(connection, at, "half-closed")
        elif isinstance(action, Hold):
            conversation.held(connection, at)


def writes(actions: Iterable[Action]) -> list[bytes]:
    return [action.data for action in actions if isinstance(action, Write)]


def connect(conversation: Conversation, at: float = T0) -> tuple[Connection, list[Action]]:
    connection, actions = conversation.connect(
        f"127.0.0.1:{50000 + len(conversation.connections)}", at
    )
    actions = resolve(conversation, connection, actions, at)
    perform(conversation, connection, actions, at)
    return connection, actions


def send(
    conversation: Conversation, connection: Connection, data: bytes, at: float = T0
) -> list[Action]:
    """The client sent ``data`` in one segment: return the actions, after performing them."""
    actions = resolve(conversation, connection, conversation.receive(connection, data, at), at)
    perform(conversation, connection, actions, at)
    return actions


def rendered(conversation: Conversation) -> list[str]:
    return conversation.transcript.render(times=False).splitlines()


# -- greetings -----------------------------------------------------------------------------


def test_greeting_on_every_connection() -> None:
    conversation = Conversation(Lines(b"\r\n"))
    greeting = on_connect(conversation).send(b"220 ready").after(0.1).send("220-more")
    first, actions = conversation.connect("127.0.0.1:5001", T0)
    assert actions == [Write(b"220 ready\r\n"), Wait(0.1), Write(b"220-more\r\n")]
    assert (first.id, first.client, first.open) == (1, "127.0.0.1:5001", True)
    second, actions = conversation.connect("127.0.0.1:5002", T0 + 1)
    assert writes(actions) == [b"220 ready\r\n", b"220-more\r\n"]
    assert second.id == 2
    assert conversation.connections == [first, second]
    assert conversation.count(greeting) == 2
    # A greeting is not an expectation: nothing is waiting.
    assert conversation.done
    assert conversation.verdict() is None


def test_connect_rules_run_in_order_and_can_end_the_connection() -> None:
    conversation = Conversation(Raw())
    on_connect(conversation).send(b"one")
    on_connect(conversation).send(b"two").close()
    _, actions = conversation.connect("c", T0)
    assert actions == [Write(b"one"), Write(b"two"), Close()]


def test_no_connect_rule_no_action() -> None:
    conversation = Conversation(Raw())
    connection, actions = conversation.connect("c", T0)
    assert actions == []
    assert rendered(conversation) == ["fake peer", "  #1 connected  from c"]
    assert repr(connection) == "<ConnectionRecord #1 c answering>"


# -- ordered expectations ------------------------------------------------------------------


def test_expectations_are_met_in_order() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"HELLO").reply(b"HI")
    expect(conversation, b"BYE").reply(b"CIAO").close()
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"HELLO\n") == [Write(b"HI\n")]
    assert not conversation.done
    assert send(conversation, connection, b"BYE\n") == [Write(b"CIAO\n"), Close()]
    assert conversation.done
    assert not connection.open
    assert connection.received == [b"HELLO", b"BYE"]
    assert conversation.verdict() is None


def test_first_connection_is_reset_reconnect_succeeds() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"LOGIN").reset()
    expect(conversation, b"LOGIN").reply(b"WELCOME")
    first, _ = connect(conversation, T0)
    assert send(conversation, first, b"LOGIN\n", T0 + 0.001) == [Reset()]
    assert not first.open
    second, _ = connect(conversation, T0 + 0.002)
    assert send(conversation, second, b"LOGIN\n", T0 + 0.003) == [Write(b"WELCOME\n")]
    assert conversation.verdict() is None
    assert conversation.received == [b"LOGIN", b"LOGIN"]
    assert rendered(conversation) == [
        "fake peer",
        "  #1 connected  from 127.0.0.1:50000",
        f"  #1 received   'LOGIN' -> expect #1 'LOGIN' ({WHERE})",
        "  #1 reset",
        "  #2 connected  from 127.0.0.1:50001",
        f"  #2 received   'LOGIN' -> expect #2 'LOGIN' ({WHERE})",
        "  #2 sent       'WELCOME\\n'",
    ]


def test_times_n_must_be_met_n_times_in_a_row() -> None:
    conversation = Conversation(Lines())
    ping = expect(conversation, b"PING").reply(b"PONG").times(3)
    expect(conversation, b"QUIT")
    connection, _ = connect(conversation)
    for _ in range(3):
        assert send(conversation, connection, b"PING\n") == [Write(b"PONG\n")]
    assert conversation.exhausted(ping)
    assert send(conversation, connection, b"PING\n") == [Close()]
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.expected == f"expect #2 'QUIT' ({WHERE})"


def test_times_n_is_ordered() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"A").times(2)
    expect(conversation, b"B")
    connection, _ = connect(conversation)
    send(conversation, connection, b"A\nB\n")
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.received == b"B"
    assert problem.expected == f"expect #1 'A' x2 ({WHERE})"


# -- always rules --------------------------------------------------------------------------


def test_always_rules_match_whenever_the_next_expectation_does_not() -> None:
    conversation = Conversation(Lines())
    noop = always(conversation, b"NOOP").reply(b"OK")
    expect(conversation, b"DATA").reply(b"GO")
    expect(conversation, b"NOOP").reply(b"EXPECTED")
    connection, _ = connect(conversation)
    actions = send(conversation, connection, b"NOOP\nNOOP\nDATA\nNOOP\nNOOP\n")
    # The next expectation is tried first, so the last-but-one NOOP meets expect #2.
    assert writes(actions) == [b"OK\n", b"OK\n", b"GO\n", b"EXPECTED\n", b"OK\n"]
    assert conversation.count(noop) == 3
    assert conversation.verdict() is None


def test_always_times_n_is_a_maximum() -> None:
    conversation = Conversation(Lines())
    always(conversation, ANY).reply(b"?").times(2)
    connection, _ = connect(conversation)
    assert writes(send(conversation, connection, b"a\nb\n")) == [b"?\n", b"?\n"]
    assert send(conversation, connection, b"c\n") == [Close()]
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.received == b"c"
    assert problem.expected is None


def test_always_rules_are_never_required() -> None:
    conversation = Conversation(Lines())
    always(conversation, b"NOOP").reply(b"OK")
    connect(conversation)
    assert conversation.done
    assert conversation.verdict() is None


# -- unexpected data -----------------------------------------------------------------------


def test_unexpected_message() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"PING").reply(b"PONG")
    always(conversation, b"NOOP")
    connection, _ = connect(conversation)
    actions = send(conversation, connection, b"PONG\nPING\n")
    assert actions == [Close()]
    assert connection.failed
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.received == b"PONG"
    assert problem.expected == f"expect #1 'PING' ({WHERE})"
    assert problem.connection == 1
    assert problem.diagnosis == (
        "connection #1 received data that no rule expected\n"
        "  received:  'PONG'\n"
        f"  expected:  expect #1 'PING' ({WHERE})\n"
        "             the data differs at byte 1: expected 'ING', received 'ONG'"
    )
    assert isinstance(problem, AssertionError)
    # The message after the unexpected one is recorded, but not dispatched.
    assert conversation.problems == [problem]
    assert connection.received == [b"PONG", b"PING"]
    [late] = [event for event in conversation.transcript.events if event.data == b"PING"]
    assert late.note == "(not answered: connection failed)"


def test_unexpected_when_everything_was_met() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"PING")
    connection, _ = connect(conversation)
    send(conversation, connection, b"PING\nMORE\n")
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.diagnosis == (
        "connection #1 received data that no rule expected\n"
        "  received:  'MORE'\n"
        "  expected:  nothing more: the script's one expectation was met"
    )


def test_unexpected_with_an_empty_script() -> None:
    conversation = Conversation(Lines())
    connection, _ = connect(conversation)
    send(conversation, connection, b"HELLO\n")
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.diagnosis.splitlines()[-2:] == [
        "  expected:  nothing: the script was empty when these bytes arrived",
        "  hint:      write the script before the client connects and sends: before serve(), "
        "or before starting the client (a rule added while the client talks races with its "
        "bytes)",
    ]


def test_a_failed_connection_answers_nothing_more() -> None:
    conversation = Conversation(Lines())
    always(conversation, b"PING").reply(b"PONG")
    connection, _ = connect(conversation)
    # Before the runtime has carried out the Close, more bytes arrive.
    assert conversation.receive(connection, b"BAD\n", T0) == [Close()]
    assert connection.open
    assert conversation.receive(connection, b"PING\n", T0) == []
    assert len(conversation.problems) == 1
    assert rendered(conversation)[-1] == (
        "  #1 received   'PING\\n' (not answered: connection failed)"
    )


def test_unexpected_raw_bytes() -> None:
    conversation = Conversation(Raw())
    expect(conversation, b"HELLO")
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"HELP!") == [Close()]
    problem = conversation.verdict()
    assert isinstance(problem, UnexpectedData)
    assert problem.received == b"HELP!"
    assert "the data differs at byte 3: expected 'LO', received 'P!'" in problem.diagnosis


# -- unmet expectations --------------------------------------------------------------------


def test_unmet_when_no_client_connected() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"PING")
    problem = conversation.verdict()
    assert isinstance(problem, UnmetExpectations)
    assert problem.diagnosis == (
        "1 expectation was not met when the peer stopped (no client ever connected; a UDP "
        "client needs FakePeer(transport='udp')):\n"
        f"  expect #1 'PING' ({WHERE}): never met"
    )
    assert problem.unmet == [f"expect #1 'PING' ({WHERE}): never met"]


def test_unmet_partially_met() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"HELLO")
    expect(conversation, b"PING").times(3)
    expect(conversation, b"BYE")
    connection, _ = connect(conversation)
    send(conversation, connection, b"HELLO\nPING\n")
    assert [rule.describe() for rule in conversation.unmet()] == [
        f"expect #2 'PING' x3 ({WHERE})",
        f"expect #3 'BYE' ({WHERE})",
    ]
    problem = conversation.verdict()
    assert isinstance(problem, UnmetExpectations)
    assert problem.diagnosis == (
        "2 expectations were not met when the peer stopped "
        "(1 connection(s), 2 message(s) received):\n"
        f"  expect #2 'PING' x3 ({WHERE}): met 1 of 3 times\n"
        f"  expect #3 'BYE' ({WHERE}): never met"
    )


def test_a_problem_comes_before_unmet_expectations() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"A")
    expect(conversation, b"B")
    connection, _ = connect(conversation)
    send(conversation, connection, b"X\n")
    assert isinstance(conversation.verdict(), UnexpectedData)


# -- reply callables -----------------------------------------------------------------------


def test_reply_callable_gets_the_message_bytes() -> None:
    conversation = Conversation(Lines())
    seen: list[object] = []

    def upper(message: bytes) -> bytes:
        seen.append(message)
        return message.upper()

    always(conversation, lambda message: message.startswith(b"echo ")).reply(upper)
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"echo hi\n") == [Write(b"ECHO HI\n")]
    assert seen == [b"echo hi"]


def test_reply_callable_gets_the_regex_match() -> None:
    conversation = Conversation(Lines(b"\r\n"))
    expect(conversation, re.compile(rb"ADD (\d+) (\d+)")).reply(
        lambda match: str(int(match[1]) + int(match[2]))
    )
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"ADD 2 40\r\n") == [Write(b"42\r\n")]


def test_reply_callable_gets_the_connection() -> None:
    conversation = Conversation(Lines())
    seen: list[Connection] = []

    def who(message: bytes, connection: Connection) -> str:
        seen.append(connection)
        return f"#{connection.id} said {message.decode()}"

    always(conversation, ANY).reply(who)
    first, _ = connect(conversation)
    second, _ = connect(conversation)
    assert send(conversation, second, b"hi\n") == [Write(b"#2 said hi\n")]
    assert send(conversation, first, b"yo\n") == [Write(b"#1 said yo\n")]
    assert seen == [second, first]


def test_reply_callable_returning_none_writes_nothing() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"QUIET").reply(lambda message: None).send(b"after")
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"QUIET\n") == [Write(b"after\n")]


def test_reply_callable_that_raises() -> None:
    conversation = Conversation(Lines())

    def broken(message: bytes) -> bytes:
        raise KeyError(message)

    rule = expect(conversation, b"GET").send(b"first").reply(broken).send(b"never")
    connection, _ = connect(conversation)
    actions = send(conversation, connection, b"GET\n")
    assert actions == [Write(b"first\n"), Close()]
    problem = conversation.verdict()
    assert isinstance(problem, ReplyFailed)
    assert problem.diagnosis == (
        "the reply callable test_reply_callable_that_raises.<locals>.broken of "
        f"{rule.describe()} raised KeyError: b'GET'"
    )
    assert isinstance(problem.__cause__, KeyError)
    assert problem.__cause__.args == (b"GET",)
    assert problem.connection == 1
    assert connection.failed


def test_reply_callable_returning_an_int() -> None:
    conversation = Conversation(Lines())

    def count(message: bytes) -> bytes:
        return len(message)  # type: ignore[return-value]  # the mistake under test

    rule = expect(conversation, b"COUNT").reply(count)
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"COUNT\n") == [Close()]
    problem = conversation.verdict()
    assert isinstance(problem, ReplyFailed)
    assert problem.diagnosis == (
        "the reply callable test_reply_callable_returning_an_int.<locals>.count of "
        f"{rule.describe()} returned int 5; it must return bytes, str or None"
    )
    assert problem.__cause__ is None


# -- Raw streaming -------------------------------------------------------------------------


def test_raw_prefix_matching_across_segments() -> None:
    conversation = Conversation(Raw())
    expect(conversation, b"HELLO").reply(b"hi")
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"HE") == []
    assert send(conversation, connection, b"LL") == []
    assert send(conversation, connection, b"O") == [Write(b"hi")]
    assert connection.received == [b"HELLO"]
    assert conversation.verdict() is None


def test_raw_several_messages_in_one_segment() -> None:
    conversation = Conversation(Raw())
    expect(conversation, b"HELLO").reply(b"1")
    expect(conversation, b"WORLD").reply(b"2")
    expect(conversation, b"WOW")
    always(conversation, b"!").reply(b"bang")
    connection, _ = connect(conversation)
    actions = send(conversation, connection, b"HELLO!WORLD!WO")
    assert actions == [Write(b"1"), Write(b"bang"), Write(b"2"), Write(b"bang")]
    assert connection.received == [b"HELLO", b"!", b"WORLD", b"!"]
    assert bytes(connection.buffer) == b"WO"


def test_raw_regex_across_segments() -> None:
    conversation = Conversation(Raw())
    expect(conversation, re.compile(rb"LEN (\d+);")).reply(lambda match: match[1] * 2)
    expect(conversation, b"rest!")
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"LEN 1") == []
    assert send(conversation, connection, b"2;rest") == [Write(b"1212")]
    assert bytes(connection.buffer) == b"rest"


def test_raw_reply_gets_the_expected_bytes() -> None:
    conversation = Conversation(Raw())
    expect(conversation, b"AB").reply(lambda value: value + b"!")
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"AB") == [Write(b"AB!")]


def test_raw_transcript() -> None:
    conversation = Conversation(Raw(), "fake peer 'raw'")
    expect(conversation, b"HI").reply(b"yo")
    connection, _ = connect(conversation)
    send(conversation, connection, b"H")
    send(conversation, connection, b"I")
    assert rendered(conversation) == [
        "fake peer 'raw'",
        "  #1 connected  from 127.0.0.1:50000",
        "  #1 received   'H'",
        "  #1 received   'I'",
        f"  #1 matched    'HI' -> expect #1 'HI' ({WHERE})",
        "  #1 sent       'yo'",
    ]


# -- EOF and incomplete messages -----------------------------------------------------------


def test_clean_eof_closes() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"PING")
    connection, _ = connect(conversation)
    send(conversation, connection, b"PING\n")
    assert conversation.eof(connection, T0) == [Close()]
    assert conversation.verdict() is None


@pytest.mark.parametrize(
    ("framing", "data", "leftover", "shown", "why"),
    [
        (Lines(), b"PING\nPI", b"PI", "'PI'", ""),
        (Lines(b"\r\n"), b"PING\r\nPI\r", b"PI\r", "'PI\\r'", ""),
        # With Raw framing the expectation waited on these very bytes: it says why.
        (
            Raw(),
            b"PINGPI",
            b"PI",
            "'PI'",
            "\n             the data is 2 byte(s) short of the expected ones",
        ),
    ],
)
def test_incomplete_message_at_eof(
    framing: Framing, data: bytes, leftover: bytes, shown: str, why: str
) -> None:
    conversation = Conversation(framing)
    expect(conversation, b"PING").reply(b"PONG")
    expect(conversation, b"PING")
    connection, _ = connect(conversation)
    send(conversation, connection, data)
    actions = conversation.eof(connection, T0)
    assert actions[-1] == Close()
    problem = conversation.verdict()
    assert isinstance(problem, IncompleteMessage)
    assert problem.leftover == leftover
    assert problem.connection == 1
    assert problem.diagnosis == (
        f"connection #1 ended in the middle of a message ({framing!r})\n"
        f"  leftover:  {shown}\n"
        f"  expected:  expect #2 'PING' ({WHERE}){why}"
    )


def test_incomplete_message_at_eof_closes_once() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"PING")
    connection, _ = connect(conversation)
    send(conversation, connection, b"PI")
    assert conversation.eof(connection, T0) == [Close()]


def test_raw_regex_that_never_matched_is_incomplete_at_eof() -> None:
    conversation = Conversation(Raw())
    expect(conversation, re.compile(rb"\d+;"))
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"abc") == []
    conversation.eof(connection, T0)
    problem = conversation.verdict()
    assert isinstance(problem, IncompleteMessage)
    assert problem.leftover == b"abc"


def test_lost_with_leftover_is_incomplete() -> None:
    conversation = Conversation(Lines())
    connection, _ = connect(conversation)
    send(conversation, connection, b"half")
    conversation.lost(connection, T0, "ConnectionResetError: reset by peer")
    assert not connection.open
    problem = conversation.verdict()
    assert isinstance(problem, IncompleteMessage)
    assert problem.leftover == b"half"
    assert rendered(conversation)[-1] == "  #1 lost       ConnectionResetError: reset by peer"


def test_lost_twice_and_closed_after_lost_record_once() -> None:
    conversation = Conversation(Lines())
    connection, _ = connect(conversation)
    conversation.lost(connection, T0, None)
    conversation.lost(connection, T0, "again")
    conversation.closed(connection, T0, "closed")
    assert rendered(conversation)[-1] == "  #1 lost       closed by the client"
    assert len(conversation.transcript) == 2


def test_eof_on_a_hanging_connection_does_not_judge_the_buffer() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"WAIT").hang()
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"WAIT\n") == [Hold()]
    assert connection.phase is Phase.HANGING
    assert send(conversation, connection, b"more\npartial") == []
    assert conversation.eof(connection, T0) == [Close()]
    assert conversation.verdict() is None


# -- waits and endings ---------------------------------------------------------------------


def test_after_gives_waits_in_order() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"SLOW").after(0.2).reply(b"1").after(0).send(b"2").after(1.5).close()
    connection, _ = connect(conversation)
    assert conversation.receive(connection, b"SLOW\n", T0) == [
        Wait(0.2),
        Write(b"1\n"),
        Wait(0.0),
        Write(b"2\n"),
        Wait(1.5),
        Close(),
    ]


def test_hang_gives_hold_and_nothing_more_is_answered() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"PING").reply(b"PONG").hang()
    always(conversation, ANY).reply(b"?")
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"PING\n") == [Write(b"PONG\n"), Hold()]
    assert send(conversation, connection, b"ANYTHING\n") == []
    assert conversation.verdict() is None
    assert rendered(conversation)[-2:] == [
        "  #1 hanging    (answering nothing more)",
        "  #1 received   'ANYTHING\\n' (not answered: connection hanging)",
    ]


def test_half_close_then_keep_reading() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"PING").reply(b"PONG").half_close()
    expect(conversation, b"THANKS")
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"PING\n") == [Write(b"PONG\n"), HalfClose()]
    assert connection.open
    assert send(conversation, connection, b"THANKS\n") == []
    assert conversation.verdict() is None


def test_data_after_close_is_recorded_not_answered() -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"QUIT").reply(b"BYE").close()
    connection, _ = connect(conversation)
    assert send(conversation, connection, b"QUIT\n") == [Write(b"BYE\n"), Close()]
    assert send(conversation, connection, b"NOOP\n") == []
    assert conversation.verdict() is None


# The same bytes in one segment instead of two must not change the outcome: after an action
# that ends the conversation on a connection (close, reset, hang), the messages that follow
# in the same segment are not dispatched, exactly as when they arrive in a later segment.


@pytest.mark.parametrize(
    "segments", [[b"QUIT\n", b"NOOP\n"], [b"QUIT\nNOOP\n"]], ids=["two segments", "one segment"]
)
def test_messages_after_close_are_not_answered_however_segmented(
    segments: list[bytes],
) -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"QUIT").reply(b"BYE").close()
    connection, _ = connect(conversation)
    actions = [action for segment in segments for action in send(conversation, connection, segment)]
    assert actions == [Write(b"BYE\n"), Close()]
    assert conversation.verdict() is None


@pytest.mark.parametrize(
    "segments", [[b"WAIT\n", b"PING\n"], [b"WAIT\nPING\n"]], ids=["two segments", "one segment"]
)
def test_messages_after_hang_are_not_answered_however_segmented(segments: list[bytes]) -> None:
    conversation = Conversation(Lines())
    expect(conversation, b"WAIT").hang()
    always(conversation, b"PING").reply(b"PONG")
    connection, _ = connect(conversation)
    actions = [action for segment in segments for action in send(conversation, connection, segment)]
    assert actions == [Hold()]


@pytest.mark.parametrize(
    "segments", [[b"AB", b"CD"], [b"ABCD"]], ids=["two segments", "one segment"]
)
def test_raw_bytes_after_reset_are_not_answered_however_segmented(segments: list[bytes]) -> None:
    conversation = Conversation(Raw())
    expect(conversation, b"AB").reset()
    always(conversation, b"CD").reply(b"late")
    connection, _ = connect(conversation)
    actions = [action for segment in segments for action in send(conversation, connection, segment)]
    assert actions == [Reset()]
    assert conversation.verdict() is None


# -- the buffer limit ----------------------------------------------------------------------


class UnlimitedLines:
    """Lines without a ``max_length`` of their own: only the conversation's limit applies."""

    streaming = False

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        *messages, rest = buffer.split(b"\n")
        return messages, len(buffer) - len(rest)

    def encode(self, message: bytes) -> bytes:
        return message + b"\n"

    def __repr__(self) -> str:
        return "UnlimitedLines()"


def test_a_client_that_never_completes_a_message_fails() -> None:
    # Lines() checks its own max_length (see test_framing.py); this is the conversation's
    # fallback for framings that do not.
    conversation = Conversation(UnlimitedLines())
    connection, _ = connect(conversation)
    chunk = b"x" * 65536
    for _ in range(MAX_BUFFER // len(chunk)):
        assert send(conversation, connection, chunk) == []
    assert send(conversation, connection, b"x") == [Close()]
    problem = conversation.verdict()
    assert isinstance(problem, FramingError)
    assert problem.diagnosis == (
        f"connection #1: the client sent {MAX_BUFFER + 1} bytes without completing a message, "
        f"over the limit of {MAX_BUFFER} bytes of UnlimitedLines()\n"
        f"  buffered:  '{'x' * 64}'"
    )


def test_the_buffer_limit_counts_incomplete_bytes_only() -> None:
    # A long line (under the limit) completed by a segment that also brings many short lines:
    # no run of bytes without a delimiter ever exceeds MAX_BUFFER, so nothing may fail.
    conversation = Conversation(Lines(max_length=MAX_BUFFER))
    expect(conversation, ANY)
    always(conversation, b"y")
    connection, _ = connect(conversation)
    long_line = b"x" * (MAX_BUFFER - 60_000)
    for start in range(0, len(long_line), 65536):
        send(conversation, connection, long_line[start : start + 65536])
    send(conversation, connection, b"\n" + b"y\n" * 60_000)
    assert conversation.verdict() is None
    assert len(connection.received) == 60_001


# -- property: slicing never changes the outcome --------------------------------------------


def run(
    framing: Framing, script: list[tuple[bytes, int]], chunks: Sequence[bytes]
) -> tuple[list[Action], list[bytes], object]:
    """Play ``script`` (expectations with a repeat count, each replying) against ``chunks``."""
    conversation = Conversation(framing)
    for index, (literal, times) in enumerate(script):
        rule = expect(conversation, literal).times(times)
        rule.reply(b"r%d" % index).after(0.01 * index).reply(lambda value: b"<" + value + b">")
    always(conversation, b"\x00NOOP").send(b"ok")
    connection, actions = connect(conversation)
    for chunk in chunks:
        actions.extend(send(conversation, connection, chunk))
    actions.extend(conversation.eof(connection, T0))
    verdict = conversation.verdict()
    return actions, list(connection.received), verdict and verdict.diagnosis


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(min(point, len(data)) for point in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


literals = st.binary(min_size=1, max_size=6).filter(lambda b: b"\n" not in b and b"\x00" not in b)
scripts = st.lists(st.tuples(literals, st.integers(1, 3)), min_size=1, max_size=5)


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[tuple[bytes, int]], list[bytes], list[int]]:
    """A script, what the client sends (each expected message, NOOPs between), cut points."""
    script = draw(scripts)
    messages = []
    for literal, times in script:
        for _ in range(times):
            if draw(st.booleans()):
                messages.append(b"\x00NOOP")
            messages.append(literal)
    points = draw(st.lists(st.integers(0, 200), max_size=12))
    return script, messages, points


@settings(max_examples=100, deadline=None)
@given(conversations())
def test_lines_slicing_never_changes_the_actions(
    case: tuple[list[tuple[bytes, int]], list[bytes], list[int]],
) -> None:
    script, messages, points = case
    data = b"".join(message + b"\n" for message in messages)
    whole = run(Lines(), script, [data])
    assert whole[1] == messages
    assert whole[2] is None
    assert run(Lines(), script, cut(data, points)) == whole


@settings(max_examples=100, deadline=None)
@given(conversations())
def test_raw_slicing_never_changes_the_actions(
    case: tuple[list[tuple[bytes, int]], list[bytes], list[int]],
) -> None:
    script, messages, points = case
    # With Raw, an always rule may take bytes the next expectation is still waiting for;
    # the NOOPs here start with a byte no literal has, so no rule is ambiguous.
    data = b"".join(messages)
    whole = run(Raw(), script, [data])
    assert whole[1] == messages
    assert whole[2] is None
    sliced = run(Raw(), script, cut(data, points))
    assert writes(sliced[0]) == writes(whole[0])
    assert sliced == whole


# -- long messages in small segments: each byte is looked at about once --------------------------


class Whole(Matcher):
    """``inner`` judging the whole buffer again on every segment, as before match_from."""

    def __init__(self, inner: Matcher) -> None:
        self.inner = inner

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        return self.inner.match(data, stream=stream)

    def describe(self) -> str:
        return self.inner.describe()

    def explain(self, data: bytes) -> str:
        return self.inner.explain(data)

    def _explain(self, data: bytes, stream: bool) -> str:
        return self.inner._explain(data, stream)

    def _closeness(self, data: bytes, stream: bool) -> float:
        return self.inner._closeness(data, stream)

    def __getattr__(self, name: str) -> object:  # its literal, for the Raw line-end hint
        return getattr(self.inner, name)


class Counted(Matcher):
    """``inner``, counting the bytes it is asked to look at, and the copies it is handed:
    anything but the buffer itself or a segment as it arrived (up to ``SEGMENT`` bytes, on
    an empty buffer) is a copy."""

    def __init__(self, inner: Matcher) -> None:
        self.inner = inner
        self.incremental = inner.incremental
        self.looked_at = 0
        self.copies = 0

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        self.looked_at += len(data)
        self.copies += len(data) > SEGMENT
        return self.inner.match(data, stream=stream)

    def match_from(self, data: bytes | bytearray, start: int) -> MatchOutcome:
        self.looked_at += len(data) - start
        self.copies += type(data) is not bytearray and len(data) > SEGMENT
        return self.inner.match_from(data, start)

    def describe(self) -> str:
        return self.inner.describe()


#: Raw rules, some incremental, some not, some limited in count or state.
RAW_RULES: list[tuple[str, object]] = [
    ("expect", b"HELLO"),
    ("expect", prefix(b"GET ")),
    ("expect", contains(b"END")),
    ("expect", regex(rb"N[0-9];")),
    ("expect", ANY),
    ("always", contains(b"\n")),
    ("always", all_of(contains(b";"), prefix(b"X"))),
    ("always2", b"!"),
    ("goto", b"S"),
    ("when", exact(b"EN")),
    # Rules that take bytes while an expectation waits on them.
    ("expect", b"!!!"),
    ("always", prefix(b"a")),
    ("expect", contains(b"aa!")),
]
RAW_TOKENS = [b"HELLO", b"HEL", b"GET ", b"END", b"EN", b"\n", b";", b"X", b"!", b"S", b"N1;", b"a"]


def raw_run(
    rules: list[int], chunks: list[bytes], wrap: Callable[[Matcher], Matcher]
) -> tuple[list[str], list[str], list[bytes], bytes]:
    conversation = Conversation(Raw())
    for index in rules:
        kind, spec = RAW_RULES[index]
        matcher = wrap(as_matcher(spec))
        if kind == "goto":
            conversation.add_rule("always", matcher, WHERE).goto("s").reply(b"went")
        elif kind == "when":
            conversation.add_rule("always", matcher, WHERE).when("s").reply(b"when")
        elif kind == "always2":
            conversation.add_rule("always", matcher, WHERE).times(2).reply(b"twice")
        else:
            conversation.add_rule(kind, matcher, WHERE).reply(f"#{index}".encode())
    connection, _ = connect(conversation)
    for chunk in chunks:
        send(conversation, connection, chunk)
    perform(conversation, connection, conversation.eof(connection, T0), T0)
    problems = [problem.diagnosis for problem in conversation.problems]
    return rendered(conversation), problems, connection.received, bytes(connection.buffer)


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(st.integers(0, len(RAW_RULES) - 1), min_size=1, max_size=6),
    parts=st.lists(
        st.sampled_from(RAW_TOKENS) | st.lists(st.sampled_from(b"!ax\n"), max_size=2).map(bytes),
        max_size=10,
    ),
    points=st.lists(st.integers(0, 40), max_size=10),
)
# An always rule takes the byte an expectation waited on: the expectation starts over.
@example(rules=[10, 7], parts=[b"!", b"a!!", b"!"], points=[1])
@example(rules=[12, 11], parts=[b"a", b"a", b"a!"], points=[1, 2])
def test_raw_matching_goes_on_from_where_it_waited_as_if_it_matched_the_whole_buffer(
    rules: list[int], parts: list[bytes], points: list[int]
) -> None:
    """The same transcript, failures and messages as when every rule judges the whole buffer
    again on every segment, however the bytes are cut."""
    data = b"".join(parts)
    chunks = cut(data, points)
    assert raw_run(rules, chunks, lambda matcher: matcher) == raw_run(rules, chunks, Whole)


def counting_decode(monkeypatch: pytest.MonkeyPatch, framing: Framing) -> list[int]:
    """Count the bytes handed to ``framing``'s decode, by patching its class."""
    handed: list[int] = []
    cls = type(framing)
    original = cls.decode

    def decode(self: Framing, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        handed.append(len(buffer))
        return original(self, buffer, eof)

    monkeypatch.setattr(cls, "decode", decode)
    return handed


#: The size of a segment in the linear-time tests.
SEGMENT = 128


def in_segments(data: bytes, size: int = SEGMENT) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


MIB = 1 << 20


@pytest.mark.parametrize(
    ("matcher", "data"),
    [
        (exact(b"x" * MIB), b"x" * MIB),
        (contains(b"END"), b"x" * (MIB - 3) + b"END"),
        (all_of(contains(b"\r\n\r\n"), prefix(b"GET ")), b"GET " + b"h" * (MIB - 8) + b"\r\n" * 2),
        (ANY, b"x" * MIB),
    ],
    ids=["exact", "contains", "all_of", "ANY"],
)
def test_raw_matching_of_a_long_message_in_small_segments_is_linear(
    matcher: Matcher, data: bytes
) -> None:
    """Not a timing: 1 MiB in 128-byte segments, and the rule looks at each byte about once,
    on the buffer itself, never on a copy."""
    conversation = Conversation(Raw())
    counted = Counted(matcher)
    conversation.add_rule("always", counted, WHERE).reply(b"done")
    connection, _ = connect(conversation)
    actions: list[Action] = []
    chunks = in_segments(data)
    for chunk in chunks:
        actions += send(conversation, connection, chunk)
    if matcher is ANY:  # takes whatever arrived: each segment
        assert connection.received == chunks
    else:
        assert writes(actions) == [b"done"]
        assert connection.received == [data]
    assert conversation.verdict() is None
    assert not connection.buffer
    assert counted.looked_at < 4 * len(data)
    assert counted.copies == 0


@pytest.mark.parametrize(
    ("framing", "messages"),
    [
        (Lines(), [b"y" * (60 << 10)] * 17),
        (StxEtx(), [b"y" * (60 << 10)] * 17),
        (LengthPrefixed(), [b"z" * (8 << 20)]),
    ],
    ids=["Lines", "StxEtx", "LengthPrefixed"],
)
def test_a_long_message_in_small_segments_is_decoded_in_linear_time(
    monkeypatch: pytest.MonkeyPatch, framing: Framing, messages: list[bytes]
) -> None:
    """Not a timing: decode is handed each byte about once, through Conversation.receive."""
    handed = counting_decode(monkeypatch, framing)
    conversation = Conversation(framing)
    always(conversation, ANY).reply(b"ok")
    connection, _ = connect(conversation)
    actions: list[Action] = []
    stream = b"".join(framing.encode(message) for message in messages)
    for chunk in in_segments(stream):
        actions += send(conversation, connection, chunk)
    perform(conversation, connection, conversation.eof(connection, T0), T0)
    assert connection.received == messages
    assert len(writes(actions)) == len(messages)
    assert conversation.verdict() is None
    assert sum(handed) < 4 * len(stream)
