"""Bytes that are no message yet: every report of a failing test shows them, and what the
peer would report of them, whenever it is made (mid-test, the call's, the teardown's).

The newcomer's case: a client sends ``PING`` without the ``\\r\\n`` its framing needs, keeps
its socket open and times out waiting for the reply; the report showed ``#1 connected`` and
nothing else.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\naddopts = -p no:hypothesispytest\n"

#: A framing of the test's own: a one-byte length, then the message.
CUSTOM = """
class OneByteLength:
    streaming = False

    def decode(self, buffer, eof):
        messages, position = [], 0
        while position < len(buffer) and position + 1 + buffer[position] <= len(buffer):
            size = buffer[position]
            messages.append(bytes(buffer[position + 1 : position + 1 + size]))
            position += 1 + size
        return messages, position

    def encode(self, message):
        return bytes([len(message)]) + message

    def __repr__(self):
        return "OneByteLength()"
"""

#: framing (as code), what the client sends, what the report says the peer waits for.
CASES = {
    "lines": (
        'Lines(b"\\r\\n")',
        b"PING",
        "no whole message yet: Lines(b'\\r\\n') waits for b'\\r\\n'",
    ),
    "length-prefixed": (
        "LengthPrefixed(size=1)",
        b"\x05PING",  # one byte too long
        "no whole message yet: the length prefix '\\x05' of LengthPrefixed(size=1) declares "
        "5 bytes (6 with the prefix): 5 here, 1 more to come",
    ),
    "raw": (
        "Raw()",
        b"PIN",
        "no rule matched them yet: expect #1 'PING' (test_newcomer.py:*) needs more bytes",
    ),
    "custom": (
        "OneByteLength()",
        b"\x05PING",
        "no whole message yet: OneByteLength() cut no whole message from them",
    ),
}


#: How the report names each framing.
REPRS = {
    "lines": "Lines(b'\\r\\n')",
    "length-prefixed": "LengthPrefixed(size=1)",
    "raw": "Raw()",
    "custom": "OneByteLength()",
}


@pytest.fixture(autouse=True)
def ini(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(framings=CUSTOM)


def shown(data: bytes) -> str:
    """``data`` as the report quotes it (printable ASCII here, and \\x05)."""
    return "'" + data.decode("latin-1").replace("\x05", "\\x05") + "'"


def sync_test(framing: str, data: bytes, *, close: bool, mid_test: bool = False) -> str:
    ending = "sock.close()" if close else "KEEP.append(sock)  # held past the test body"
    report = "print(fake_peer.report())" if mid_test else ""
    return f"""
import socket

import pytest
from fakepeer import LengthPrefixed, Lines, Raw
from framings import OneByteLength

KEEP = []


@pytest.fixture(scope="module", autouse=True)
def held():
    yield  # past the peer's teardown: the connection stays open until then
    for sock in KEEP:
        sock.close()


@pytest.mark.fakepeer(framing={framing})
def test_forgot_the_end(fake_peer):
    fake_peer.expect("PING").reply("PONG")
    sock = socket.create_connection(fake_peer.address, timeout=5)
    sock.sendall({data!r})
    {ending}
    {report}
    pytest.fail("no reply from the peer")
"""


def outlook(data: bytes, waits: str) -> list[str]:
    count = len(data)
    return [
        "still serving; stopped now, the peer would report IncompleteMessage:",
        f"  connection #1 holds {count} bytes, {waits}",
        f"    pending:   {shown(data)}",
        *([] if "rule" in waits else ["    expected:  expect #1 'PING' (test_newcomer.py:*)"]),
        "  1 expectation not met yet:",
        "    expect #1 'PING' (test_newcomer.py:*)",
        "",
        "fake peer 'fake peer' on 127.0.0.1:*",
        "*#1 connected  from 127.0.0.1:*",
        *(["*#1 received   'PIN'"] if "rule" in waits else []),
        f"*#1 pending    {shown(data)} ({count} bytes, {waits})",
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_shows_bytes_that_are_no_message_yet(
    pytester: pytest.Pytester, case: str
) -> None:
    """The connection is still open when the report is made: the bytes sit in its buffer."""
    framing, data, waits = CASES[case]
    pytester.makepyfile(test_newcomer=sync_test(framing, data, close=False))
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)  # and no error at teardown: the verdict was shown
    result.stdout.fnmatch_lines(["*- fakepeer 'fake peer' -*", *outlook(data, waits)])
    # The teardown's IncompleteMessage is the one the report foresaw: shown once.
    assert result.stdout.str().count(f"pending:   {shown(data)}") == 1
    assert "leftover" not in result.stdout.str()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_shows_an_incomplete_message_when_the_client_closed(
    pytester: pytest.Pytester, case: str
) -> None:
    """The client closed before the test failed: the peer reads its close before the
    report is made, and judges the bytes left."""
    framing, data, _ = CASES[case]
    pytester.makepyfile(test_newcomer=sync_test(framing, data, close=True))
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- fakepeer 'fake peer' -*",
            f"connection #1 ended in the middle of a message ({REPRS[case]})",
            f"  leftover:  {shown(data)}",
        ]
    )
    assert result.stdout.str().count("leftover") == 1


def test_a_report_made_mid_test_shows_them(pytester: pytest.Pytester) -> None:
    framing, data, waits = CASES["lines"]
    pytester.makepyfile(test_newcomer=sync_test(framing, data, close=False, mid_test=True))
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- Captured stdout call -*", *outlook(data, waits)])


IN_LOOP = """
import asyncio
import socket

import pytest
from fakepeer import Lines

KEEP = []


@pytest.fixture(scope="module", autouse=True)
def held():
    yield
    for sock in KEEP:
        sock.close()


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines(b"\\r\\n"), serve_in="loop")
async def test_forgot_the_end(fake_peer):
    fake_peer.expect("PING").reply("PONG")
    sock = socket.create_connection(fake_peer.address, timeout=5)
    KEEP.append(sock)
    sock.setblocking(False)
    sock.sendall(b"PING")
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 100), 0.3)
    except TimeoutError:
        print(fake_peer.report())
        pytest.fail("no reply from the peer")
"""


def test_served_in_the_tests_loop(pytester: pytest.Pytester) -> None:
    """In the test's loop: the report made mid-test shows what the loop read; the call's
    report is made after the loop stopped the peer, which judged the bytes."""
    _, data, waits = CASES["lines"]
    pytester.makepyfile(test_newcomer=IN_LOOP)
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- Captured stdout call -*",
            *outlook(data, waits),
            "*- fakepeer 'fake peer' -*",
            "connection #1 was cut off by the peer's stop in the middle of a message "
            "(Lines(b'\\r\\n'))",
            "  leftover:  'PING'",
            "  expected:  expect #1 'PING' (test_newcomer.py:*)",
        ]
    )


def test_the_diagram_marks_the_pending_row(pytester: pytest.Pytester) -> None:
    framing, data, _ = CASES["lines"]
    pytester.makepyfile(test_newcomer=sync_test(framing, data, close=False))
    result = pytester.runpytest("-W", "error", "--fakepeer-diagrams=pictures")
    result.assert_outcomes(failed=1)
    (page,) = (pytester.path / "pictures").iterdir()
    text = page.read_text()
    assert 'data-kind="pending"' in text
    assert 'class="event kind-pending problem"' in text
    assert "still serving; stopped now, the peer would report IncompleteMessage:" in text
    assert "pending:   &#x27;PING&#x27;" in text


NEWS_AT_TEARDOWN = """
import socket

import pytest
from fakepeer import Lines


@pytest.fixture
def client(fake_peer):
    sock = socket.create_connection(fake_peer.address, timeout=5)
    yield sock
    sock.sendall(b"PONK\\n")  # in the fixture's teardown, after the report was made
    sock.close()


@pytest.mark.fakepeer(framing=Lines())
def test_body_fails(fake_peer, client):
    fake_peer.expect("PING").reply("PONG")
    client.sendall(b"PING\\n")
    assert client.recv(100) == b"PONG\\n"
    pytest.fail("the body fails")
"""


def test_a_problem_that_comes_after_the_report_fails_the_teardown(
    pytester: pytest.Pytester,
) -> None:
    """What the failure's report could not show (bytes that came after it) is the
    teardown's error, shown once."""
    pytester.makepyfile(test_news=NEWS_AT_TEARDOWN)
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_body_fails*",
            "*UnexpectedData: connection #1 received data that no rule expected",
            "*received:  'PONK'",
        ]
    )
    # Once in the failures (the short summary repeats whole messages where CI is set).
    failures = result.stdout.str().split("short test summary info")[0]
    assert failures.count("received:  'PONK'") == 1


BLOCKED_HUB = """
import socket
import time

import pytest
from fakepeer import Lines


def slow(match):
    time.sleep(3)
    return b"PONG"


@pytest.mark.fakepeer(framing=Lines())
def test_fails_while_the_hub_is_blocked(fake_peer):
    fake_peer.expect("PING").reply(slow)
    with socket.create_connection(fake_peer.address) as sock:
        sock.sendall(b"PING\\nPIN")
        time.sleep(0.2)  # the hub is now in slow(): nothing waits on it here
        assert False, "the client gave up"
"""


def test_a_report_made_while_the_hub_is_blocked_says_so_and_does_not_fail(
    pytester: pytest.Pytester,
) -> None:
    """The call phase's report settles the peer first; a hub blocked by the script's code
    made that an INTERNALERROR that ended the session. The report says what blocked it and
    shows what the hub had read; the stop then fails the test's teardown with HubBlocked."""
    pytester.makeini(INI)
    pytester.makepyfile(test_blocked=BLOCKED_HUB)
    result = pytester.runpytest_subprocess("--loop-watchdog=0", timeout=60)
    assert "INTERNALERROR" not in result.stdout.str()
    # Said once, in the failure's report: the stop does not raise it again.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: the client gave up*",
            "*- fakepeer 'fake peer' -*",
            "(what the hub had read before it blocked: the fakepeer hub thread made no progress"
            "*: code of the test's script is blocking it: */test_blocked.py:9 in slow)",
            "",
            "*connection #1 holds 3 bytes, no whole message yet*",
            "*",
            "fake peer 'fake peer' on 127.0.0.1:*",
            "* ms  #1 connected  from 127.0.0.1:*",
            "* ms  #1 received   'PING' -> expect #1 'PING' (test_blocked.py:15)",
            "* ms  #1 pending    'PIN' (3 bytes, no whole message yet*",
        ]
    )
    assert " -" not in result.stdout.str().split("#1 connected")[0][-20:]  # no negative time
