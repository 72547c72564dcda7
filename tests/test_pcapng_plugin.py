"""``--fakepeer-pcapng=DIR`` (and the ini key ``fakepeer_pcapng``): a failing test's peers
written as pcapng captures, named in its report; nothing for a passing test."""

from __future__ import annotations

import hashlib

import pytest

from _pcap_reader import read

TESTS = """
import socket

import pytest
from fakepeer import Lines


@pytest.mark.fakepeer(framing=Lines(), name="kv")
def test_fails(fake_peer):
    fake_peer.expect(b"PING").reply(b"PONG")
    with socket.create_connection(fake_peer.address, timeout=5) as sock:
        sock.sendall(b"PING\\n")
        assert sock.recv(100) == b"PONG\\n"
    assert False, "the test's own failure"


def test_passes(fake_peer):
    fake_peer.expect(b"HI")
    with socket.create_connection(fake_peer.address, timeout=5) as sock:
        sock.sendall(b"HI")


def test_two_peers_fail(fake_peer_factory):
    fake_peer_factory(name="db")
    fake_peer_factory(name="cache")
    assert False
"""

ARGS = ("-p", "no:hypothesispytest", "-p", "no:asyncio", "-p", "no:cacheprovider")


def stem(nodeid: str) -> str:
    """The start of the name of a test's capture files: its id made safe, and its hash."""
    name = nodeid.replace("::", "_")
    return f"{name}-{hashlib.sha256(nodeid.encode()).hexdigest()[:10]}"


def test_a_failing_test_writes_its_capture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kv=TESTS)
    result = pytester.runpytest("--fakepeer-pcapng=captures", *ARGS)
    result.assert_outcomes(passed=1, failed=2)
    folder = pytester.path / "captures"
    fails = stem("test_kv.py::test_fails")
    two = stem("test_kv.py::test_two_peers_fail")
    assert sorted(path.name for path in folder.iterdir()) == [
        f"{fails}.pcapng",
        f"{two}-peer1-db.pcapng",
        f"{two}-peer2-cache.pcapng",
    ]
    result.stdout.fnmatch_lines(
        ["*- fakepeer 'kv' -*", "*#1 received*", f"pcapng capture: captures/{fails}.pcapng"]
    )
    result.stdout.fnmatch_lines(
        ["*- fakepeer 'cache' -*", "pcapng capture: captures/*-cache.pcapng"]
    )
    capture = read((folder / f"{fails}.pcapng").read_bytes())
    assert capture.comments[0].startswith("fake peer 'kv' on 127.0.0.1:")
    assert [p.payload for p in capture.packets if p.payload] == [b"PING\n", b"PONG\n"]


def test_the_option_is_off_by_default_and_an_ini_sets_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kv=TESTS)
    result = pytester.runpytest("-k", "test_fails", *ARGS)
    result.assert_outcomes(failed=1)
    assert "pcapng" not in result.stdout.str()
    assert [path.name for path in pytester.path.iterdir() if path.is_dir()] == []
    pytester.makeini("[pytest]\nfakepeer_pcapng = ini-captures\n")
    result = pytester.runpytest("-k", "test_fails", *ARGS)
    result.assert_outcomes(failed=1)
    written = [path.name for path in (pytester.path / "ini-captures").iterdir()]
    assert written == [f"{stem('test_kv.py::test_fails')}.pcapng"]
    result.stdout.fnmatch_lines([f"pcapng capture: ini-captures/{written[0]}"])


def test_the_help_names_the_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help", *ARGS)
    result.stdout.fnmatch_lines(
        ["*--fakepeer-pcapng=DIR*", "*each failing test to DIR as a pcapng capture for*"]
    )
