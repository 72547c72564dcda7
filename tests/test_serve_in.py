"""The ``fake_peer`` fixture served in an asyncio test's own loop (``serve_in='loop'``)."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

INI = (
    "[pytest]\n"
    "asyncio_default_fixture_loop_scope = function\n"
    "addopts = -p no:hypothesispytest -p no:cacheprovider\n"
)

TESTS = """\
import asyncio
import socket
import threading

import re

import pytest
from fakepeer import Lines
from fakepeer._hub import hub


async def ping(address):
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"PING\\n")
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return line


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines(), serve_in="loop")
async def test_in_the_loop(fake_peer):
    served_by = []
    def pong(message):
        served_by.append(threading.current_thread().name)
        return b"PONG"

    fake_peer.expect(b"PING").reply(pong)
    before = hub.handovers
    assert await ping(fake_peer.address) == b"PONG\\n"
    assert served_by == ["MainThread"]
    assert hub.handovers == before


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines(), serve_in="loop")
async def test_unmet_in_the_loop_fails_the_test(fake_peer):
    fake_peer.expect(b"PING").reply(b"PONG")
    fake_peer.expect(b"NEVER")
    assert await ping(fake_peer.address) == b"PONG\\n"


@pytest.mark.fakepeer(framing=Lines(), serve_in="loop")
def test_a_sync_test_is_served_on_the_hub(fake_peer):
    fake_peer.expect(b"PING").reply(b"PONG")
    with socket.create_connection(fake_peer.address, timeout=5) as sock:
        sock.sendall(b"PING\\n")
        assert sock.recv(16) == b"PONG\\n"


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines(), serve_in="loop")
async def test_a_blocking_client_in_the_loop(fake_peer):
    fake_peer.expect(b"PING").reply(b"PONG")
    with socket.create_connection(fake_peer.address, timeout=30) as sock:
        sock.sendall(b"PING\\n")
        assert sock.recv(16) == b"PONG\\n"  # BLOCKING_LINE
"""


def test_serve_in_loop(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_loop=TESTS)
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "fakepeer: 0" in out
    assert "serve_in=hub" in out  # the session default, in the header
    assert "FAILED test_loop.py::test_unmet_in_the_loop_fails_the_test - fakepeer.Unmet" in out
    assert "expect #2 'NEVER' (test_loop.py:" in out
    assert re.search(
        r"FAILED test_loop.py::test_a_blocking_client_in_the_loop - fakepeer\.Loop", out
    )
    # interrupted at the watchdog's limit (0.5 s; later on a loaded machine), not at the
    # client's 30 s timeout
    blocked = re.search(r"fakepeer\.LoopBlocked: the event loop was blocked for (\d+\.\d+) s", out)
    assert blocked is not None, out
    assert float(blocked[1]) < 20
    assert "BLOCKING_LINE" in out
    assert (
        "fakepeer:    this test's fake_peer is served in the test's own event loop "
        "(serve_in='loop'), so it cannot answer while that loop is blocked: a blocking client "
        "needs the peer on the hub (@pytest.mark.fakepeer(serve_in='hub')) or an async "
        "client instead, and the script's reply callables and handlers must not block either"
    ) in out
    duration = re.search(r"in (\d+\.\d+)s", out.splitlines()[-1])
    assert duration is not None
    assert float(duration.group(1)) < 20  # the blocking test failed at once, not at 30 s


def test_the_ini_key_sets_it_for_the_session(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "fakepeer_serve_in = loop\n")
    pytester.makepyfile(
        """
        import asyncio
        import threading
        import pytest
        from fakepeer import Lines

        @pytest.mark.asyncio
        @pytest.mark.fakepeer(framing=Lines())
        async def test_one(fake_peer):
            where = []
            fake_peer.expect(b"HI").reply(lambda m: where.append(threading.current_thread().name))
            reader, writer = await asyncio.open_connection(*fake_peer.address)
            writer.write(b"HI\\n")
            await writer.drain()
            await fake_peer.wait_until_done_async()
            writer.close()
            await writer.wait_closed()
            assert where == ["MainThread"]
        """
    )
    result = pytester.runpytest_subprocess("-W", "error")
    result.assert_outcomes(passed=1)
    assert "serve_in=loop" in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            (),
            "fakepeer_serve_in = sideways\n",
            "ini fakepeer_serve_in: expected 'hub' or 'loop', got 'sideways'",
        ),
        (("--fakepeer-serve-in", "up"), "", "argument --fakepeer-serve-in: invalid choice: 'up'"),
    ],
)
def test_a_wrong_value_is_a_usage_error(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    pytester.makeini(INI + ini)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_wrong_marker_value_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.fakepeer(serve_in="thread")
        def test_one(fake_peer):
            pass
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*test_one*fakepeer serve_in: expected 'hub' or 'loop', got 'thread'*"]
    )


def test_the_factory_cannot_serve_in_a_loop_that_runs_already(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_one(fake_peer_factory):
            fake_peer_factory(serve_in="loop")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ScriptError: fake_peer_factory(serve_in='loop') serves a peer in the test's "
            "loop when it is made before that loop runs (in a sync fixture); where a loop "
            "runs already (the test body, an async fixture), serve in it with "
            "'async with FakePeer(...).serve()'"
        ]
    )
