"""The pytest plugin, end to end with pytester: fixtures, verdicts, options, report text."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CLIENT = """
import socket

def talk(address, *lines, read=True):
    with socket.create_connection(address, timeout=5) as sock:
        stream = sock.makefile("rb")
        answers = []
        for line in lines:
            sock.sendall(line + b"\\n")
            if read:
                answers.append(stream.readline())
        stream.close()
        return answers
"""


BASE_INI = (
    "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    # hypothesis's plugin costs about a second per session and these runs do not use it
    "addopts = -p no:hypothesispytest\n"
)


@pytest.fixture(autouse=True)
def base_ini(pytester: pytest.Pytester) -> None:
    """Inner runs use pytest-asyncio's explicit loop scope, like any current project."""
    pytester.makeini(BASE_INI)


@pytest.fixture
def client_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(client=CLIENT)


def test_passing_sync_test(pytester: pytest.Pytester, client_module: None) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fakepeer import Lines
        from client import talk

        @pytest.mark.fakepeer(framing=Lines())
        def test_ping(fake_peer):
            fake_peer.expect(b"PING").reply(b"PONG")
            assert talk(fake_peer.address, b"PING") == [b"PONG\\n"]
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=1)


def test_wrong_bytes_fail_the_test_with_diagnosis(
    pytester: pytest.Pytester, client_module: None
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fakepeer import Lines
        from client import talk

        @pytest.mark.fakepeer(framing=Lines(), name="pinger")
        def test_ping(fake_peer):
            fake_peer.expect(b"PING").reply(b"PONG")
            talk(fake_peer.address, b"PONK", read=False)
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*UnexpectedData: connection #1 received data that no rule expected",
            "*received:  'PONK'",
            "*expected:  expect #1 'PING' (test_wrong_bytes_fail_the_test_with_diagnosis.py:7)",
            "*the data differs at byte 1: expected 'ING', received 'ONK'",
            "*fake peer 'pinger' on 127.0.0.1:*",
            "*#1 connected  from 127.0.0.1:*",
            "*#1 unexpected 'PONK'",
        ]
    )
    # The transcript is in the failure itself: no duplicate report section.
    assert "- fakepeer 'pinger' -" not in result.stdout.str()
    # One failure, reported once: not a second error at teardown.
    assert "ERROR" not in result.stdout.str()


def test_client_that_stops_early_lists_unmet(
    pytester: pytest.Pytester, client_module: None
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fakepeer import Lines
        from client import talk

        @pytest.mark.fakepeer(framing=Lines())
        def test_login(fake_peer):
            fake_peer.expect(b"LOGIN").reply(b"OK")
            fake_peer.expect(b"GET").reply(b"DATA")
            fake_peer.expect(b"QUIT").reply(b"BYE")
            talk(fake_peer.address, b"LOGIN")
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*UnmetExpectations: 2 expectations were not met when the peer stopped "
            "(1 connection(s), 1 message(s) received):",
            "*expect #2 'GET' (test_client_that_stops_early_lists_unmet.py:8): never met",
            "*expect #3 'QUIT' (test_client_that_stops_early_lists_unmet.py:9): never met",
        ]
    )


def test_failing_test_body_gets_transcript_section(
    pytester: pytest.Pytester, client_module: None
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fakepeer import Lines
        from client import talk

        @pytest.mark.fakepeer(framing=Lines())
        def test_body_fails(fake_peer):
            fake_peer.expect(b"PING").reply(b"PONG")
            assert talk(fake_peer.address, b"PING") == [b"PANG\\n"]
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: assert*PONG*PANG*",
            "*- fakepeer 'fake peer' -*",
            "*#1 received   'PING' -> expect #1 'PING'*",
            "*#1 sent       'PONG\\n'",
        ]
    )
    assert "ERROR" not in result.stdout.str()


def test_passing_test_has_no_section(pytester: pytest.Pytester, client_module: None) -> None:
    pytester.makepyfile(
        """
        from client import talk

        def test_ok(fake_peer):
            fake_peer.expect(b"PING\\n").reply(b"PONG\\n")
            assert talk(fake_peer.address, b"PING") == [b"PONG\\n"]
        """
    )
    result = pytester.runpytest("-W", "error", "-rA")
    result.assert_outcomes(passed=1)
    assert "fakepeer 'fake peer'" not in result.stdout.str()


@pytest.mark.parametrize("mode", ["strict", "auto"])
@pytest.mark.parametrize("scope", ["function", "module", "session"])
def test_pytest_asyncio_modes_and_loop_scopes(
    pytester: pytest.Pytester, client_module: None, mode: str, scope: str
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = {scope}
        asyncio_default_test_loop_scope = {scope}
        """
    )
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from fakepeer import Lines

        @pytest.mark.asyncio
        @pytest.mark.fakepeer(framing=Lines())
        async def test_streams(fake_peer):
            fake_peer.on_connect().send(b"HELLO")
            fake_peer.expect(b"PING").reply(b"PONG")
            reader, writer = await asyncio.open_connection(*fake_peer.address)
            assert await reader.readline() == b"HELLO\\n"
            writer.write(b"PING\\n")
            assert await reader.readline() == b"PONG\\n"
            writer.close()
            await writer.wait_closed()
            await fake_peer.wait_until_done_async()

        @pytest.mark.asyncio
        async def test_unmet_fails(fake_peer):
            fake_peer.expect(b"NEVER")
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*UnmetExpectations: 1 expectation was not met*"])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_backends(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makepyfile(
        f"""
        import anyio
        import pytest
        from fakepeer import Lines

        @pytest.fixture
        def anyio_backend():
            return "{backend}"

        @pytest.mark.anyio
        @pytest.mark.fakepeer(framing=Lines())
        async def test_anyio_client(fake_peer):
            fake_peer.expect(b"PING").reply(b"PONG")
            async with await anyio.connect_tcp(*fake_peer.address) as stream:
                await stream.send(b"PING\\n")
                assert await stream.receive() == b"PONG\\n"
            await fake_peer.wait_until_done_async()
        """
    )
    result = pytester.runpytest("-W", "error", "-p", "anyio")
    result.assert_outcomes(passed=1)


def test_factory_makes_more_peers(pytester: pytest.Pytester, client_module: None) -> None:
    pytester.makepyfile(
        """
        from fakepeer import Lines
        from client import talk

        def test_two(fake_peer_factory):
            primary = fake_peer_factory(framing=Lines(), name="primary")
            replica = fake_peer_factory(framing=Lines(b"\\r\\n"), name="replica")
            primary.expect(b"READ").reply(b"1")
            replica.expect(b"READ").reply(b"2")
            assert primary.port != replica.port
            assert talk(primary.address, b"READ") == [b"1\\n"]
            with __import__("socket").create_connection(replica.address) as sock:
                sock.sendall(b"READ\\r\\n")
                assert sock.recv(10) == b"2\\r\\n"

        def test_unmet_on_second(fake_peer_factory):
            fake_peer_factory(name="one")
            fake_peer_factory(name="two").expect(b"X")
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*UnmetExpectations*", "*fake peer 'two' on 127.0.0.1:*"])


def test_marker_typo_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.fakepeer(framming=None)
        def test_typo(fake_peer):
            pass
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*TypeError: unknown fakepeer option(s): framming; "
            "the options are: framing, reply_framing, name, host, port, unix, transport, "
            "timeout, seed, external, max_send_buffer, transcript_budget, max_clients, serve_in, "
            "tls, tls_hostnames, tls_min_version, tls_max_version, tls_alpn, tls_client_cert"
        ]
    )


def test_timeout_option_precedence_and_header(pytester: pytest.Pytester) -> None:
    pytester.makeini(BASE_INI + "fakepeer_timeout = 7\n")
    pytester.makepyfile(
        """
        import pytest

        def test_ini(fake_peer):
            assert fake_peer.timeout == EXPECTED

        @pytest.mark.fakepeer(timeout=0.25)
        def test_marker(fake_peer):
            assert fake_peer.timeout == 0.25
        """.replace("EXPECTED", "float(__import__('os').environ['EXPECTED'])")
    )
    pytester._monkeypatch.setenv("EXPECTED", "7")
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "fakepeer: *, timeout=7s, host=127.0.0.1, serve_in=hub, "
            "loop watchdog=0.5s via SIGUSR2, fault seed=*"
        ]
    )
    pytester._monkeypatch.setenv("EXPECTED", "2.5")
    result = pytester.runpytest("-W", "error", "--fakepeer-timeout", "2.5")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "fakepeer: *, timeout=2.5s, host=127.0.0.1, serve_in=hub, "
            "loop watchdog=0.5s via SIGUSR2, fault seed=*"
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--fakepeer-timeout", "soon"],
            "*--fakepeer-timeout: expected a number of seconds, got 'soon'",
        ),
        (
            ["--fakepeer-timeout", "-1"],
            "*--fakepeer-timeout: expected a positive number of seconds, got '-1'",
        ),
    ],
)
def test_bad_timeout_names_its_source(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_timeout_names_its_source(pytester: pytest.Pytester) -> None:
    pytester.makeini(BASE_INI + "fakepeer_timeout = never\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini fakepeer_timeout: expected a number of seconds, got 'never'"]
    )


def test_under_xdist(pytester: pytest.Pytester, client_module: None) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fakepeer import Lines
        from client import talk

        @pytest.mark.parametrize("n", range(8))
        @pytest.mark.fakepeer(framing=Lines())
        def test_many(fake_peer, n):
            fake_peer.expect(b"N").reply(str(n))
            assert talk(fake_peer.address, b"N") == [f"{n}\\n".encode()]
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-W", "error")
    result.assert_outcomes(passed=8)


def test_500_tests_leak_no_thread_and_no_fd(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import asyncio
        import os
        import threading

        import pytest
        from fakepeer._hub import hub

        counts = []

        def snapshot():
            if hub.running:  # a stopped peer's listener may close on the hub's next turn
                hub.run(asyncio.sleep(0), 5)
            return (
                sorted(thread.name for thread in threading.enumerate()),
                sorted(os.listdir("/proc/self/fd")),
            )

        @pytest.hookimpl(trylast=True)
        def pytest_runtest_logfinish(nodeid, location):
            counts.append(snapshot())

        def pytest_sessionfinish(session):
            first, last = counts[0], counts[-1]
            assert len(counts) == 500
            assert first == last, f"after test 1: {first}\\nafter test 500: {last}"
        """
    )
    pytester.makepyfile(
        """
        import socket
        import pytest
        from fakepeer import Lines

        @pytest.mark.parametrize("n", range(500))
        @pytest.mark.fakepeer(framing=Lines())
        def test_one(fake_peer, n):
            fake_peer.on_connect().send(b"HI")
            fake_peer.expect(b"N").reply(str(n))
            with socket.create_connection(fake_peer.address) as sock:
                sock.sendall(b"N\\n")
                stream = sock.makefile("rb")
                assert stream.readline() == b"HI\\n"
                assert stream.readline() == f"{n}\\n".encode()
                stream.close()
        """
    )
    result = pytester.runpytest_subprocess("-W", "error", "-q")
    result.assert_outcomes(passed=500)
    # The conftest's check at session end turns a leak into an internal error and exit 3.
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()


def test_a_problem_the_test_caught_does_not_fail_it_again(
    pytester: pytest.Pytester, client_module: None
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fakepeer import Lines, UnexpectedData
        from client import talk

        @pytest.mark.fakepeer(framing=Lines())
        def test_client_misbehaves_on_purpose(fake_peer):
            fake_peer.expect(b"PING").reply(b"PONG")
            talk(fake_peer.address, b"PONK", read=False)
            with pytest.raises(UnexpectedData, match="received:  'PONK'"):
                fake_peer.wait_until_done()
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=1)


def test_fakepeer_seed_replays_the_faults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket
        from fakepeer import Lines
        import pytest

        @pytest.mark.fakepeer(framing=Lines())
        def test_noisy(fake_peer):
            fake_peer.always(b"PING").reply(b"PONG" * 8)
            fake_peer.faults.corrupt(0.5)
            with socket.create_connection(fake_peer.address, timeout=5) as sock:
                sock.sendall(b"PING\\n")
                data = b""
                while len(data) < 33:
                    data += sock.recv(100)
            print("GOT", data.hex())
        """
    )
    first = pytester.runpytest("-s", "--fakepeer-seed=42")
    second = pytester.runpytest("-s", "--fakepeer-seed=42")
    other = pytester.runpytest("-s", "--fakepeer-seed=43")
    first.stdout.fnmatch_lines(["fakepeer: *, fault seed=42"])

    def got(result: pytest.RunResult) -> str:
        return next(line.split("GOT")[1] for line in result.outlines if "GOT" in line)

    assert got(first) == got(second) != got(other)
    bad = pytester.runpytest("--fakepeer-seed=x")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--fakepeer-seed: expected a whole number, got 'x'"])


def test_xdist_workers_share_the_session_seed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fakepeer.pytest_plugin import _OPTIONS

        @pytest.mark.parametrize("n", range(4))
        def test_seed(fake_peer, request, n):
            seed = request.config.stash[_OPTIONS].seed
            (request.config.rootpath / f"seed-{n}.txt").write_text(str(seed))
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=4)
    header = next(line for line in result.outlines if line.startswith("fakepeer: "))
    session_seed = header.rsplit("fault seed=", 1)[1]
    seen = {(pytester.path / f"seed-{n}.txt").read_text() for n in range(4)}
    assert seen == {session_seed}
