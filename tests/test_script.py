"""Tests of ``fakepeer._script``: rules chain, and a wrong script fails where it is written.

Rules are made through :class:`fakepeer.FakePeer` (never served here: no socket is opened)
because ``FakePeer.expect`` is what records the ``file:line`` a rule names.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, cast

import pytest

from fakepeer import Connection, Error, FakePeer, Lines, ScriptError
from fakepeer._script import After, Close, HalfClose, Hang, Reply, Reset, Send

HERE = os.path.basename(__file__)


def line() -> int:
    """The line this is called from."""
    return sys._getframe(1).f_lineno


def raised_at(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """``file:line`` of the deepest frame of this test file in the traceback."""
    frames = [frame for frame in traceback.extract_tb(excinfo.tb) if frame.filename == __file__]
    return f"{HERE}:{frames[-1].lineno}"


@pytest.fixture
def peer() -> FakePeer:
    return FakePeer(framing=Lines())


def echo(message: bytes) -> bytes:
    return message


def echo_with_connection(message: bytes, connection: Connection) -> bytes:
    return message


# -- chaining and steps --------------------------------------------------------------------


def test_methods_chain_and_record_steps_in_order(peer: FakePeer) -> None:
    rule = peer.expect(b"PING")
    assert rule.reply(b"PONG") is rule
    assert rule.after(0.5) is rule
    assert rule.send("more") is rule
    assert rule.after(1) is rule
    assert rule.half_close() is rule
    assert rule.close() is rule
    assert rule.steps == [
        Reply(b"PONG"),
        After(0.5),
        Send(b"more"),
        After(1.0),
        HalfClose(),
        Close(),
    ]
    step = rule.steps[3]
    assert isinstance(step, After)
    assert type(step.seconds) is float


@pytest.mark.parametrize(
    ("data", "step"),
    [
        (b"PONG", Reply(b"PONG")),
        ("PONG", Reply(b"PONG")),
        ("café", Reply("café".encode())),
        (bytearray(b"x"), Reply(b"x")),
        (b"", Reply(b"")),
    ],
    ids=repr,
)
def test_reply_data(peer: FakePeer, data: Any, step: Reply) -> None:
    assert peer.expect(b"PING").reply(data).steps == [step]


@pytest.mark.parametrize(
    ("function", "wants_connection"),
    [
        (echo, False),
        (echo_with_connection, True),
        (lambda match, connection=None: b"", True),  # by keyword (a wrapper passes it)
        (lambda *args: b"", False),  # no second *required* positional parameter
        (lambda match, *, flag=False: b"", False),
        (lambda match, qos=0: b"", False),  # its own default, not the connection
    ],
)
def test_reply_callable_arity(
    peer: FakePeer, function: Callable[..., bytes], wants_connection: bool
) -> None:
    rule = peer.expect(b"PING").reply(function)
    [step] = rule.steps
    assert isinstance(step, Reply)
    assert step.wants_connection is wants_connection
    assert getattr(step.function, "function", step.function) is function


def test_endings(peer: FakePeer) -> None:
    assert peer.expect(b"A").reset().steps == [Reset()]
    assert peer.expect(b"B").hang().steps == [Hang()]
    assert peer.expect(b"C").half_close().close().steps == [HalfClose(), Close()]
    assert peer.expect(b"D").half_close().reset().steps == [HalfClose(), Reset()]
    assert peer.expect(b"E").half_close().after(1).hang().steps == [HalfClose(), After(1.0), Hang()]


def test_on_connect_sends(peer: FakePeer) -> None:
    rule = peer.on_connect().send(b"220 ready").after(0).close()
    assert rule.steps == [Send(b"220 ready"), After(0.0), Close()]
    assert rule.matcher is None


def test_times_and_limits(peer: FakePeer) -> None:
    expect = peer.expect(b"PING")
    always = peer.always(b"NOOP")
    assert expect.limit == 1
    assert always.limit is None
    assert expect.times(3) is expect
    assert expect.limit == 3
    assert always.times(2).limit == 2
    conversation = peer._conversation
    assert not conversation.exhausted(expect)
    conversation.counts[expect] = 3
    assert conversation.exhausted(expect)
    conversation.counts[always] = 1000
    assert not conversation.exhausted(always.times(2000))


# -- description and where -----------------------------------------------------------------


def test_where_names_the_test_file_and_line(peer: FakePeer) -> None:
    written = line() + 1
    rule = peer.expect(b"PING")
    assert rule.where == f"{HERE}:{written}"
    assert rule.describe() == f"expect #1 'PING' ({HERE}:{written})"
    assert repr(rule) == f"<Rule expect #1 'PING' ({HERE}:{written})>"


def test_describe_counts_rules_by_kind(peer: FakePeer) -> None:
    first = peer.expect(b"A")
    always = peer.always(re.compile(rb"NOOP \d+")).times(5)
    second = peer.expect("B").times(2)
    greeting = peer.on_connect()
    assert first.describe() == f"expect #1 'A' ({first.where})"
    assert always.matcher is not None
    assert always.describe() == f"always #1 {always.matcher.describe()} x5 ({always.where})"
    assert second.describe() == f"expect #2 'B' x2 ({second.where})"
    assert greeting.describe() == f"on_connect ({greeting.where})"
    assert {first.kind, always.kind, greeting.kind} == {"expect", "always", "connect"}
    for rule in (first, always, second, greeting):
        assert rule.where.startswith(f"{HERE}:")


# -- mistakes fail where they are written ----------------------------------------------------

Build = Callable[[FakePeer], object]

# Each lambda writes one mistake on one line; the error must be raised right there, with this
# message ({where} is that line, as the rule names it).
MISTAKES: list[tuple[str, Build, str]] = [
    (
        "times(0)",
        lambda p: p.expect(b"PING").times(0),
        ".times() takes a whole number >= 1, got 0",
    ),
    (
        "times(-1)",
        lambda p: p.expect(b"PING").times(-1),
        ".times() takes a whole number >= 1, got -1",
    ),
    (
        "times(True)",
        lambda p: p.expect(b"PING").times(True),
        ".times() takes a whole number >= 1, got True",
    ),
    (
        "times(1.5)",
        lambda p: p.always(b"PING").times(cast(Any, 1.5)),
        ".times() takes a whole number >= 1, got 1.5",
    ),
    (
        "times on on_connect",
        lambda p: p.on_connect().times(2),
        ".times() on an on_connect rule: it runs once per connection",
    ),
    (
        "after(-1)",
        lambda p: p.expect(b"PING").after(-1),
        ".after() takes a finite number of seconds >= 0, got -1",
    ),
    (
        "after(nan)",
        lambda p: p.expect(b"PING").after(float("nan")),
        ".after() takes a finite number of seconds >= 0, got nan",
    ),
    (
        "after(inf)",
        lambda p: p.expect(b"PING").after(float("inf")),
        ".after() takes a finite number of seconds >= 0, got inf",
    ),
    (
        "after(True)",
        lambda p: p.expect(b"PING").after(True),
        ".after() takes seconds as a number, got True",
    ),
    (
        "after('1')",
        lambda p: p.expect(b"PING").after(cast(Any, "1")),
        ".after() takes seconds as a number, got '1'",
    ),
    (
        "reply after hang",
        lambda p: p.expect(b"PING").hang().reply(b"PONG"),
        ".reply() after .hang() on expect #1 'PING' ({where}): "
        "nothing can happen on a connection after hang()",
    ),
    (
        "send after close",
        lambda p: p.expect(b"PING").close().send(b"PONG"),
        ".send() after .close() on expect #1 'PING' ({where}): "
        "nothing can happen on a connection after close()",
    ),
    (
        "send after reset",
        lambda p: p.expect(b"PING").reset().send(b"PONG"),
        ".send() after .reset() on expect #1 'PING' ({where}): "
        "nothing can happen on a connection after reset()",
    ),
    (
        "after after close",
        lambda p: p.always(b"PING").close().after(1),
        ".after() after .close() on always #1 'PING' ({where}): "
        "nothing can happen on a connection after close()",
    ),
    (
        "close after close",
        lambda p: p.expect(b"PING").close().close(),
        ".close() after .close() on expect #1 'PING' ({where}): "
        "nothing can happen on a connection after close()",
    ),
    (
        "reply after half_close",
        lambda p: p.expect(b"PING").half_close().reply(b"PONG"),
        ".reply() after .half_close() on expect #1 'PING' ({where}): "
        "the peer can no longer write on that connection",
    ),
    (
        "send after half_close and a wait",
        lambda p: p.expect(b"PING").half_close().after(1).send(b"x"),
        ".send() after .half_close() on expect #1 'PING' ({where}): "
        "the peer can no longer write on that connection",
    ),
    (
        "send after on_connect close",
        lambda p: p.on_connect().close().send(b"hi"),
        ".send() after .close() on on_connect ({where}): "
        "nothing can happen on a connection after close()",
    ),
    (
        "reply on on_connect",
        lambda p: p.on_connect().reply(b"hello"),
        ".reply() on on_connect ({where}): a connect rule has no message to reply to; use .send()",
    ),
    (
        "reply callable without parameters",
        lambda p: p.expect(b"PING").reply(lambda: b"PONG"),
        "reply callable '<lambda>.<locals>.<lambda>' must accept (match) or (match, connection): "
        "the connection goes to a second required positional parameter, or to one named "
        "connection",
    ),
    (
        "reply callable with three parameters",
        lambda p: p.expect(b"PING").reply(lambda a, b, c: b"PONG"),
        "reply callable '<lambda>.<locals>.<lambda>' must accept (match) or (match, connection): "
        "the connection goes to a second required positional parameter, or to one named "
        "connection",
    ),
    (
        "reply of an int",
        lambda p: p.expect(b"PING").reply(cast(Any, 5)),
        ".reply() takes bytes or str, got int 5",
    ),
    (
        "send of None",
        lambda p: p.expect(b"PING").send(cast(Any, None)),
        ".send() takes bytes or str, got NoneType None",
    ),
]


@pytest.mark.parametrize(
    ("build", "message"), [(b, m) for _, b, m in MISTAKES], ids=[name for name, _, _ in MISTAKES]
)
def test_mistake_raises_where_written(peer: FakePeer, build: Build, message: str) -> None:
    written = f"{HERE}:{build.__code__.co_firstlineno}"
    with pytest.raises(ScriptError) as excinfo:
        build(peer)
    assert str(excinfo.value) == message.format(where=written)
    assert raised_at(excinfo) == written
    assert isinstance(excinfo.value, Error)
    assert isinstance(excinfo.value, ValueError)


def test_a_rejected_step_is_not_added(peer: FakePeer) -> None:
    rule = peer.expect(b"PING").reply(b"PONG").hang()
    with pytest.raises(ScriptError):
        rule.send(b"late")
    with pytest.raises(ScriptError):
        rule.times(0)
    assert rule.steps == [Reply(b"PONG"), Hang()]
    assert rule.limit == 1


def test_a_rejected_reply_callable_is_not_added(peer: FakePeer) -> None:
    rule = peer.expect(b"PING")
    with pytest.raises(ScriptError):
        rule.reply(lambda: b"")
    assert rule.steps == []
