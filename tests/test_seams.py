"""Tests of the core's seams: the connection state table, the words of a failure
(``_explain``, pure), and the public test helpers (``fakepeer.testing``)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from fakepeer import (
    ANY,
    FakePeer,
    Fixed,
    FramingError,
    IncompleteMessage,
    LengthPrefixed,
    Lines,
    Raw,
    ReplyFailed,
    ScriptError,
    StxEtx,
    UnexpectedData,
    UnmetExpectations,
)
from fakepeer._explain import waits_for
from fakepeer._state import TRANSITIONS, ConnectionRecord, Phase, Transition
from fakepeer.testing import Rehearsal, check_framing, splits

# -- the state table ---------------------------------------------------------------------------

A, H, F, G, X, C = (
    Phase.ANSWERING,
    Phase.HALF_CLOSED,
    Phase.FINISHING,
    Phase.HANGING,
    Phase.FAILED,
    Phase.CLOSED,
)

MOVES = [
    (A, Transition.HALF_CLOSE, H),
    (H, Transition.HALF_CLOSE, H),
    (A, Transition.FINISH, F),
    (H, Transition.FINISH, F),
    (G, Transition.FINISH, G),
    (F, Transition.HOLD, G),
    (A, Transition.HOLD, G),
    (G, Transition.FAIL, X),
    (F, Transition.FAIL, X),
    (X, Transition.FINISH, X),
    (X, Transition.END, C),
    (A, Transition.END, C),
    (C, Transition.FAIL, C),
    (C, Transition.HALF_CLOSE, C),
]


@pytest.mark.parametrize(("before", "event", "after"), MOVES)
def test_a_connection_moves_by_the_table(before: Phase, event: Transition, after: Phase) -> None:
    record = ConnectionRecord(1, "c", FakePeer().transcript, FakePeer()._conversation.script, "s")
    record.phase = before
    record.move(event)
    assert record.phase is after


def test_closed_is_final_and_only_answering_phases_answer() -> None:
    assert all(
        C not in moves for event, moves in TRANSITIONS.items() if event is not Transition.END
    )
    answering = {phase for phase in Phase if phase in (A, H)}
    record = ConnectionRecord(1, "c", FakePeer().transcript, FakePeer()._conversation.script, "s")
    for phase in Phase:
        record.phase = phase
        assert record.answering == (phase in answering)
        assert record.open == (phase is not C)


# -- the words of a failure ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framing", "buffer", "words"),
    [
        (Lines(), b"PING", "Lines(b'\\n') waits for b'\\n'"),
        (
            LengthPrefixed(2),
            b"\x00",
            "LengthPrefixed(size=2) waits for the rest of its 2-byte length prefix (1 of 2 "
            "bytes here)",
        ),
        (
            LengthPrefixed(2),
            b"\x00\x05ab",
            "the length prefix '\\x00\\x05' of LengthPrefixed(size=2) declares 5 bytes (7 with "
            "the prefix): 4 here, 3 more to come",
        ),
        (Fixed(4), b"ab", "Fixed(4) waits for 2 more of its 4 bytes"),
        (StxEtx(), b"\x02ab", "StxEtx() waits for ETX (0x03) to end the frame"),
        (Raw(), b"ab", "Raw() cut no whole message from them"),
    ],
)
def test_what_a_framing_waits_for(framing: object, buffer: bytes, words: str) -> None:
    assert waits_for(framing, buffer) == words  # type: ignore[arg-type]


def test_unexpected_data_names_the_head_and_a_similar_rule() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect(b"HELLO")
    peer.always(b"PIN")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, b"PING\n") == []
    with pytest.raises(UnexpectedData) as info:
        rehearsal.verify()
    lines = info.value.diagnosis.splitlines()
    assert lines[0] == "connection #1 received data that no rule expected"
    assert lines[1] == "  received:  'PING'"
    assert lines[2].startswith("  expected:  expect #1 'HELLO' (test_seams.py:")
    assert lines[4] == "  similar rules:"
    assert lines[5].startswith("    always #1 'PIN' (test_seams.py:")


# -- fakepeer.testing --------------------------------------------------------------------------


def test_a_rehearsal_answers_as_the_peer_would_without_sockets() -> None:
    peer = FakePeer(framing=Lines(b"\r\n"))
    peer.on_connect().send(b"220 ready")
    peer.expect(b"HELO x").reply(lambda message, connection: f"250 hi #{connection.id}")
    peer.expect(b"QUIT").reply(b"221 bye").close()
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, b"HELO x\r\nQU") == [b"250 hi #1\r\n"]
    assert rehearsal.send(client, b"IT\r\n") == [b"221 bye\r\n"]
    assert not client.open
    rehearsal.verify()
    assert peer.received == [b"HELO x", b"QUIT"]
    assert "#1 sent       '220 ready\\r\\n'" in peer.transcript.render(times=False)


def test_a_rehearsal_reports_unmet_expectations_and_failing_callables() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect(b"A").reply(lambda message: 1 / 0)
    peer.expect(b"B")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, b"A\nB\n") == []  # the callable failed: B is not answered
    with pytest.raises(ReplyFailed, match="raised ZeroDivisionError: division by zero"):
        rehearsal.verify()
    unmet = FakePeer(framing=Lines())
    unmet.expect(b"X")
    quiet = Rehearsal(unmet)
    quiet.close(quiet.connect())
    with pytest.raises(UnmetExpectations, match=r"expect #1 'X' .*: never met"):
        quiet.verify()


def test_a_rehearsal_pushes_from_a_reply_callable_in_order() -> None:
    peer = FakePeer(framing=Lines())

    def push(message: bytes, connection: object) -> bytes:
        connection.send(b"pushed")  # type: ignore[attr-defined]
        return b"reply"

    peer.always(ANY).reply(push)
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, b"x\n") == [b"pushed\n", b"reply\n"]
    rendered = peer.transcript.render(times=False)
    assert rendered.index("'pushed\\n'") < rendered.index("'reply\\n'")


def test_a_rehearsal_takes_only_a_new_fake_peer() -> None:
    with pytest.raises(ScriptError, match="Rehearsal\\(\\) takes a FakePeer, got 3"):
        Rehearsal(3)  # type: ignore[arg-type]
    peer = FakePeer()
    Rehearsal(peer)
    with pytest.raises(ScriptError, match="takes a new FakePeer, never served nor rehearsed"):
        Rehearsal(peer)
    with pytest.raises(RuntimeError, match="already served"), peer.serve():
        pass  # a rehearsed peer is taken, as a served one is


def test_a_rehearsal_refuses_what_needs_a_serving_peer() -> None:
    peer = FakePeer(framing=Lines())

    @peer.handler
    async def echo(connection: object) -> None:  # pragma: no cover - never runs
        pass

    with pytest.raises(ScriptError, match=r"taken over by a handler .*needs a serving peer"):
        Rehearsal(peer).connect()
    later = FakePeer(framing=Lines())

    async def slow(message: bytes) -> bytes:  # pragma: no cover - never awaited
        return b"late"

    later.always(b"x").reply(slow)
    rehearsal = Rehearsal(later)
    with pytest.raises(ScriptError, match="an async reply callable needs a serving peer"):
        rehearsal.send(rehearsal.connect(), b"x\n")


def test_a_rehearsal_verifies_as_the_stop_does() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect(b"PING").reply(b"PONG")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, "PING\nPA") == [b"PONG\n"]  # str: UTF-8
    with pytest.raises(IncompleteMessage, match=r"cut off by the peer's stop.*\n  leftover:  'PA'"):
        rehearsal.verify()
    with pytest.raises(ScriptError, match=r"send\(\) after verify\(\): the rehearsal is over"):
        rehearsal.send(client, b"x\n")


def test_a_rehearsal_knows_closed_and_stopped_connections() -> None:
    peer = FakePeer(framing=Lines())
    peer.on_connect().send(b"hello")
    peer.expect(b"BYE").reply(b"bye").close()
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.greeting() == [b"hello\n"]
    assert rehearsal.send(client, b"BYE\n") == [b"bye\n"]
    with pytest.raises(ScriptError, match="on connection #1, which is closed"):
        rehearsal.send(client, b"MORE\n")
    with pytest.raises(ScriptError, match="takes bytes or str, got 3"):
        rehearsal.send(rehearsal.connect(), 3)  # type: ignore[arg-type]
    faulty = FakePeer(framing=Lines())
    faulty.always(b"x").reply(b"y")
    faulty.faults.stop_reading()
    stopped = Rehearsal(faulty)
    one = stopped.connect()
    with pytest.raises(ScriptError, match="a stop_reading fault stopped reading"):
        stopped.send(one, b"x\n")
    resetting = FakePeer(framing=Lines())
    resetting.always(b"x").reply(b"y")
    resetting.faults.reset_peer(0.1)  # its delay is skipped, as the waits are
    reset = Rehearsal(resetting)
    two = reset.connect()
    assert not two.open
    assert "#1 reset" in resetting.transcript.render(times=False)


def test_splits_cover_every_cut() -> None:
    assert list(splits(b"abc")) == [[b"abc"], [b"a", b"b", b"c"], [b"a", b"bc"], [b"ab", b"c"]]
    assert list(splits(bytearray(b"ab"))) == [[b"ab"], [b"a", b"b"], [b"a", b"b"]]
    assert list(splits(b"")) == [[]]
    with pytest.raises(ScriptError, match=r"splits\(\) takes the data as bytes, got 'ab'"):
        list(splits("ab"))  # type: ignore[arg-type]


def test_check_framing_passes_a_good_framing_and_names_a_bad_one() -> None:
    assert check_framing(Lines(), b"a\nbc\n", [b"a", b"bc"]) == [b"a", b"bc"]
    with pytest.raises(
        AssertionError, match=r"Lines\(b'\\n'\) cut \[b'a'\] from b'a\\n', expected"
    ):
        check_framing(Lines(), b"a\n", [b"b"])
    with pytest.raises(FramingError):
        check_framing(LengthPrefixed(1, max_length=2), b"\x09abc")
    with pytest.raises(IncompleteMessage, match=r"leaves bytes .*\n  leftover:  'b'"):
        check_framing(Lines(), b"a\nb")
    assert check_framing(Lines(), b"a\nb", eof=False) == [b"a"]
    assert check_framing(Lines(), memoryview(b"a\n")) == [b"a"]
    # A generator of expected messages is read once; a framing's own error stays itself.
    assert check_framing(Lines(), b"a\nb\n", (m for m in [b"a", b"b"])) == [b"a", b"b"]
    with pytest.raises(FramingError):
        check_framing(LengthPrefixed(1, max_length=3), b"\x09abc", [b"abc"])
    with pytest.raises(IncompleteMessage):
        check_framing(Lines(), b"a\nb", [b"a"])


def test_check_framing_takes_eof_as_a_bool() -> None:
    with pytest.raises(ScriptError, match=r"eof=\.\.\.\) takes True or False, got 'no'"):
        check_framing(Lines(), b"a\n", eof="no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("framing", "data", "expected", "words"),
    [
        (Lines, b"a\n", None, "framing must be an instance, not the class: use Lines()"),
        (None, b"a\n", None, "needs a framing that cuts messages; Raw() is a stream"),
        (Raw(), b"a", None, "needs a framing that cuts messages; Raw() is a stream"),
        (Lines(), "a\n", None, "takes the data as bytes, got 'a\\n'"),
        (Lines(), b"ab\n", b"ab", "takes a sequence of messages (bytes), got b'ab'"),
        (Lines(), b"ab\n", ["ab"], "takes a sequence of messages (bytes), got ['ab']"),
    ],
)
def test_check_framing_says_what_is_wrong_with_its_arguments(
    framing: object, data: object, expected: object, words: str
) -> None:
    with pytest.raises(ScriptError, match=re.escape(words)):
        check_framing(framing, data, expected)  # type: ignore[arg-type]


class _SegmentBound:
    """A broken framing: one message per segment, whatever the bytes (a common bug)."""

    streaming = False
    max_length = None

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        return ([bytes(buffer)] if buffer else []), len(buffer)

    def encode(self, data: bytes) -> bytes:
        return data


def test_check_framing_catches_a_framing_that_depends_on_segments() -> None:
    with pytest.raises(AssertionError, match="depends on how the bytes are split"):
        check_framing(_SegmentBound(), b"ab")


# -- the layers ------------------------------------------------------------------------------


def test_the_import_contracts_name_every_module() -> None:
    """A new module must join a layer of the contracts (pyproject.toml), or lint-imports
    would not look at it."""
    root = Path(__file__).parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    contracts = {c["name"].split()[1]: c for c in config["tool"]["importlinter"]["contracts"]}
    core, runtime, plugin = contracts["core"], contracts["runtime"], contracts["pytest"]
    kits = contracts["protocol"]
    every = {f"fakepeer.{path.stem}" for path in (root / "src" / "fakepeer").glob("*.py")}
    every -= {"fakepeer.__init__", "fakepeer.__main__"}
    on_disk = every - {"fakepeer.faults", "fakepeer._version"}
    layered = set(core["source_modules"]) | {
        name for name in core["forbidden_modules"] if name.startswith("fakepeer.")
    }
    assert layered == on_disk
    assert not set(core["source_modules"]) & set(core["forbidden_modules"])
    private = {name for name in every if name.split(".")[1].startswith("_")}
    assert set(plugin["forbidden_modules"]) == private
    assert set(kits["forbidden_modules"]) == private  # a kit is built as a user would build one
    above = set(runtime["source_modules"]) | set(runtime["forbidden_modules"])
    assert above <= set(core["forbidden_modules"])  # the runtime and what is above it


def test_the_architecture_page_names_every_module() -> None:
    """docs/architecture.md's layer table is the contributor's map: a module it does not
    name is one a newcomer cannot find (it went stale once, after three splits)."""
    root = Path(__file__).parent.parent
    page = (root / "docs" / "architecture.md").read_text()
    table = page[page.index("## The layers") : page.index("## Events in, actions out")]
    modules = {path.stem for path in (root / "src" / "fakepeer").glob("*.py")}
    named = {name for name in modules if f"`{name}`" in table or f"`fakepeer.{name}`" in table}
    assert sorted(modules - named - {"__init__", "__main__"}) == []


def test_modules_stay_small() -> None:
    """No module of the package over about 500 lines (issue 13): a module that grows past
    it has two concerns waiting to be told apart."""
    root = Path(__file__).parent.parent / "src" / "fakepeer"
    sizes = {path.name: len(path.read_text().splitlines()) for path in root.rglob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 540} == {}


# -- errors are never changed once raised --------------------------------------------------------


def test_what_a_test_sees_is_a_copy_and_the_record_stays_as_found() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect(b"PING")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    rehearsal.send(client, b"who?\n")
    recorded = peer._conversation.problems[0]
    first, second = peer.problem(), peer.problem()
    assert isinstance(first, UnexpectedData)
    assert first is not recorded
    assert second is not first
    assert type(second) is type(recorded)
    assert first.diagnosis == recorded.diagnosis == second.diagnosis
    assert isinstance(recorded, UnexpectedData)
    assert first.received == recorded.received == b"who?"
    assert "#1 unexpected" in first.transcript
    assert recorded.transcript == ""  # the record was never given the report's transcript
    assert recorded.others == ()
    with pytest.raises(UnexpectedData) as raised:
        rehearsal.verify()
    assert raised.value is not recorded
    assert recorded.__traceback__ is None  # raising a copy leaves the record untouched


# -- the repository itself -----------------------------------------------------------------------

CONFLICT = re.compile(rb"^(<<<<<<<|>>>>>>>)( |$)|^=======$", re.MULTILINE)


def test_no_file_holds_a_merge_conflict_marker() -> None:
    root = Path(__file__).resolve().parent.parent
    texts = [
        path
        for folder in ("src", "tests", "docs", "benchmarks", ".ci")
        for path in (root / folder).rglob("*")
        if path.is_file() and path.suffix in {".py", ".md", ".toml", ".json", ".txt", ""}
    ]
    texts += [root / name for name in ("README.md", "CHANGELOG.md", "pyproject.toml")]
    assert len(texts) > 100
    marked = [str(path.relative_to(root)) for path in texts if CONFLICT.search(path.read_bytes())]
    assert marked == []
