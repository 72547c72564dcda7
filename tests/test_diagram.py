"""Pictures of the conversation: the transcript as SVG, HTML and Mermaid sequence diagrams.

The README's and the docs' picture is made here: ``FAKEPEER_REGENERATE=1 pytest
tests/test_diagram.py`` rewrites ``docs/images/readme-example.svg`` and the Mermaid blocks
of README.md and docs/diagrams.md from a fresh run of the README's example.
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import re
import socket
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import Event, FakePeer, LengthPrefixed, Lines, Transcript, UnexpectedData, _diagram
from fakepeer._diagram import HOVER_CHARS, svg
from fakepeer._mermaid import MERMAID_CHARS, mermaid
from fakepeer._sequence import MAX_ROWS

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
REGENERATE = "FAKEPEER_REGENERATE=1 pytest tests/test_diagram.py"


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def event_elements(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "data-event" in g.attrib]


def title_of(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    assert title is not None
    return title.text or ""


def mermaid_rows(text: str) -> list[str]:
    """The lines of a Mermaid diagram after its header (the participants)."""
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    return [line for line in lines[1:] if not line.lstrip().startswith("participant ")]


def assert_mermaid_safe(text: str) -> None:
    """Nothing Mermaid reads as syntax inside the text: only its entity codes."""
    for line in text.splitlines()[1:]:
        said = line.split(" as ", 1)[1] if "participant " in line else line.split(": ", 1)[1]
        plain = re.sub(r"#\d+;", "", said)
        for character in "#;%<>&":
            assert character not in plain, line


# -- the pure renderer --------------------------------------------------------------------

#: One event of every kind: (event, problem?, fault?, drawn as an arrow?)
EVERY_KIND = [
    (Event(1.000, 1, "connected", note="from 127.0.0.1:5000"), False, False, False),
    (Event(1.001, 1, "sent", b"220 ready\r\n"), False, False, True),
    (Event(1.002, 1, "received", b"HELO me", "-> expect #1 'HELO me' (t.py:1)"), 0, 0, 1),
    (Event(1.003, 1, "matched", b"MAIL", "-> always 'MAIL' (t.py:2)"), False, False, True),
    (Event(1.004, 1, "unexpected", b"<b>RCPT & co</b>"), True, False, True),
    (Event(1.005, 1, "error", note="connection #1 received data that no rule expected"), 1, 0, 0),
    (Event(1.006, 1, "eof"), False, False, False),
    (Event(1.007, 1, "half-closed"), False, False, False),
    (Event(1.008, 1, "closed"), False, False, False),
    (Event(1.009, 2, "connected", note="from 127.0.0.1:5001"), False, False, False),
    (Event(1.010, 2, "handled", b"\x00\x01\x02\x03\xff", "(by the handler)"), 0, 0, 1),
    (Event(1.011, 2, "state", note="connection None -> 'authed'"), False, False, False),
    (Event(1.012, 2, "hanging", note="(answering nothing more)"), False, False, False),
    (Event(1.013, 2, "dropped", b"PONG", "(by limit_data(0))"), False, True, True),
    (Event(1.014, 2, "stopped", note="(reading: a stop_reading fault)"), False, False, False),
    (Event(1.015, 2, "reset"), False, False, False),
    (Event(1.016, 3, "connected", note="from 127.0.0.1:5002"), False, False, False),
    (Event(1.017, 3, "received", b"half a mes", "(incomplete)"), True, False, True),
    (Event(1.018, 3, "lost", note="[Errno 104] Connection reset by peer"), True, False, False),
    (Event(1.019, 4, "connected", note="from 127.0.0.1:5003"), False, False, False),
    (Event(1.020, 4, "lost", note="closed by the client"), False, False, False),
    (Event(1.021, 0, "fault", note="+ latency(0.1)"), False, True, False),
    (Event(1.022, 0, "error", note="accept() failed: EMFILE; retrying"), True, False, False),
    (Event(1.023, 2, "pending", b"PIN", "(3 bytes, no whole message yet)"), True, False, True),
    (Event(1.024, 4, "tls", note="TLSv1.3, TLS_AES_256_GCM_SHA384, sni 'localhost'"), 0, 0, 0),
    (Event(1.025, 0, "tls", note="handshake failed: tlsv1 alert unknown ca"), False, False, False),
    (
        Event(1.026, 0, "accept", note="a connection reset as accepted (reset_on_accept(1))"),
        0,
        1,
        0,
    ),
]


def every_kind() -> Transcript:
    transcript = Transcript("fake peer 'smtp'")
    transcript.address = "127.0.0.1:2525"
    transcript.started = 0.999
    for event, *_ in EVERY_KIND:
        transcript.add(event)
    return transcript


def test_the_table_covers_every_kind() -> None:
    assert {event.kind for event, *_ in EVERY_KIND} == set(Transcript.KINDS)


@pytest.mark.parametrize("number", range(len(EVERY_KIND)))
def test_svg_draws_each_kind(number: int) -> None:
    event, problem, fault, arrow = EVERY_KIND[number]
    root = parse_svg(every_kind().to_svg())
    elements = event_elements(root)
    assert len(elements) == len(EVERY_KIND)
    element = elements[number]
    assert element.get("data-event") == str(number)
    assert element.get("data-kind") == event.kind
    assert element.get("data-connection") == str(event.connection)
    classes = (element.get("class") or "").split()
    assert ("problem" in classes) == bool(problem)
    assert (element.get("data-problem") == "true") == bool(problem)
    assert ("fault" in classes) == bool(fault)
    assert (element.find(f"{SVG}line") is not None) == bool(arrow)
    texts = " ".join(text.text or "" for text in element.iter(f"{SVG}text"))
    assert f"{(event.at - 0.999) * 1000:.3f}" in texts  # its time, in ms since the start
    title = title_of(element)
    assert event.kind in title
    if event.note:
        assert event.note in title
    if problem:
        fills = [rect.get("fill") for rect in element.iter(f"{SVG}rect")]
        assert "#ffebee" in fills  # red


def test_svg_labels_are_escaped_and_binary_shows_a_hexdump() -> None:
    svg = every_kind().to_svg()
    assert "&lt;b&gt;RCPT &amp; co&lt;/b&gt;" in svg
    assert "<b>" not in svg
    root = parse_svg(svg)
    handled = event_elements(root)[10]
    texts = [text.text or "" for text in handled.iter(f"{SVG}text")]
    assert "handled 5 bytes: 00 01 02 03 ff" in texts
    assert "00000000  00 01 02 03 ff" in title_of(handled)
    # Self-contained: nothing to fetch.
    assert "href" not in svg
    assert "<script" not in svg
    assert "@import" not in svg
    assert "url(" not in svg.replace("url(#fp-", "")


def test_the_peer_and_its_address_head_the_diagram() -> None:
    root = parse_svg(every_kind().to_svg())
    assert title_of(root) == "fake peer 'smtp' on 127.0.0.1:2525"
    lifelines = [g for g in root.iter(f"{SVG}g") if "lifeline" in (g.get("class") or "")]
    assert [g.get("data-connections") for g in lifelines] == ["1", "2", "3", "4", None]
    stable = every_kind().to_svg(times=False, addresses=False)
    assert "127.0.0.1" not in stable
    assert "1.017" not in stable


def test_mermaid_has_one_line_per_event() -> None:
    text = every_kind().to_mermaid()
    assert text.splitlines()[:6] == [
        "sequenceDiagram",
        "    participant c0 as client #35;1",
        "    participant c1 as client #35;2",
        "    participant c2 as client #35;3",
        "    participant c3 as client #35;4",
        "    participant peer as fake peer 'smtp' on 127.0.0.1#58;2525",
    ]
    rows = mermaid_rows(text)
    assert len(rows) == len(EVERY_KIND)
    assert rows[0] == "    Note over c0: 1.000 ms connected from 127.0.0.1:5000"
    assert rows[1] == "    peer->>c0: 2.000 ms '220 ready\\r\\n'"
    assert rows[2] == "    c0->>peer: 3.000 ms 'HELO me' -#62; expect #35;1 'HELO me' (t.py:1)"
    assert rows[4] == "    c0-xpeer: 5.000 ms unexpected '#60;b#62;RCPT #38; co#60;/b#62;'"
    assert rows[5].startswith("    Note over c0: 6.000 ms ✖ error connection #35;1")
    assert rows[13] == "    peer--xc1: 14.000 ms dropped 'PONG' (by limit_data(0))"
    assert rows[21] == "    Note over peer: 22.000 ms ⚡ fault + latency(0.1)"
    assert_mermaid_safe(text)


def test_html_is_a_page_with_the_title_the_diagnosis_and_the_svg() -> None:
    page = every_kind().to_html(diagnosis="connection #1 received <data> that no rule expected")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>fake peer &#x27;smtp&#x27; on 127.0.0.1:2525</title>" in page
    assert "connection #1 received &lt;data&gt; that no rule expected" in page
    found = HtmlSummary.of(page)
    assert found.events == len(EVERY_KIND)
    assert found.problems == sum(1 for _, problem, *_ in EVERY_KIND if problem)
    assert "<script" not in page
    assert "<link" not in page
    assert '<pre class="diagnosis">' not in every_kind().to_html()


def test_nothing_happened() -> None:
    transcript = Transcript("fake peer 'idle'")
    root = parse_svg(transcript.to_svg())
    assert event_elements(root) == []
    assert "(nothing happened)" in transcript.to_svg()
    assert transcript.to_mermaid().splitlines() == [
        "sequenceDiagram",
        "    participant peer as fake peer 'idle'",
    ]


def test_a_cut_transcript_shows_its_gap() -> None:
    transcript = Transcript("fake peer 'flood'", budget=1024)
    for number in range(100):
        transcript.add(Event(number / 1000, 1, "received", b"x" * 20))
    assert transcript.omitted_events
    root = parse_svg(transcript.to_svg())
    assert len(event_elements(root)) == len(transcript)
    gaps = [g for g in root.iter(f"{SVG}g") if g.get("class") == "gap"]
    assert len(gaps) == 1
    assert gaps[0].get("data-omitted") == str(transcript.omitted_events)
    assert "not kept: over the transcript budget of 1,024 bytes" in title_of(gaps[0])
    rows = mermaid_rows(transcript.to_mermaid())
    assert len(rows) == len(transcript) + 1
    assert sum("not kept" in row for row in rows) == 1


def test_many_connections_share_eight_lifelines() -> None:
    transcript = Transcript("fake peer 'busy'")
    for number in range(1, 41):
        transcript.add(Event(number, number, "connected", note="from here"))
        transcript.add(Event(number + 0.5, number, "closed"))
    svg = transcript.to_svg()
    root = parse_svg(svg)
    lifelines = [g for g in root.iter(f"{SVG}g") if "client" in (g.get("class") or "")]
    assert len(lifelines) == 8
    assert len(event_elements(root)) == 80
    assert "#9 connected" in svg  # a shared lifeline says whose event it is
    assert int(root.get("width") or 0) < 2000
    assert len(mermaid_rows(transcript.to_mermaid())) == 80


def test_the_columns_fit_what_they_show() -> None:
    """Short messages make a narrow picture (it is scaled down to fit a page's column, and a
    wide one would be unreadable); long ones widen it, up to the room of the longest label."""
    short = Transcript("fake peer 'p'")
    short.add(Event(0.001, 1, "received", b"PING"))
    short.add(Event(0.002, 1, "sent", b"PONG"))
    long = Transcript("fake peer 'p'")
    long.add(Event(0.001, 1, "received", b"x" * 500, note="expect #1 " + "y" * 500))
    narrow = int(parse_svg(short.to_svg()).get("width") or 0)
    wide = int(parse_svg(long.to_svg()).get("width") or 0)
    assert 500 < narrow < 700
    assert narrow < wide < 1300


KINDS = st.sampled_from(Transcript.KINDS)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ['#1; %%{init}%% <br> & "x" end', "-> x", "\x00\x1b\ud800"]
)


@st.composite
def transcripts(draw: st.DrawFn) -> Transcript:
    budget = draw(st.sampled_from([None, 1024, 4096]))
    transcript = Transcript(draw(TEXT), budget=budget)
    transcript.address = draw(st.sampled_from(["", "127.0.0.1:1", "[::1]:80"]))
    at = 0.0
    for _ in range(draw(st.integers(0, 60))):
        at += draw(st.floats(0, 1))
        kind = draw(KINDS)
        data = draw(st.binary(max_size=300)) if draw(st.booleans()) else b""
        transcript.add(Event(at, draw(st.integers(0, 12)), kind, data, draw(TEXT)))
    return transcript


@settings(max_examples=60, deadline=None)
@given(transcripts())
def test_any_transcript_draws_every_event(transcript: Transcript) -> None:
    events = transcript.events
    root = parse_svg(transcript.to_svg())
    elements = event_elements(root)
    assert [g.get("data-event") for g in elements] == [str(i) for i in range(len(events))]
    assert [g.get("data-kind") for g in elements] == [event.kind for event in events]
    gaps = transcript.render().count(" not kept: over the transcript budget")
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "gap"]) == gaps
    mermaid = transcript.to_mermaid()
    assert len(mermaid_rows(mermaid)) == len(events) + gaps
    assert_mermaid_safe(mermaid)
    found = HtmlSummary.of(transcript.to_html(diagnosis="why"))
    assert found.events == len(events)


class HtmlSummary(html.parser.HTMLParser):
    """What a page holds: its events, problems, and the titles (hover texts) of its rows."""

    def __init__(self) -> None:
        super().__init__()
        self.events = 0
        self.problems = 0
        self.kinds: list[str] = []
        self.titles: list[str] = []
        self._in_title = False
        self.page_title = ""
        self._in_head_title = False

    @classmethod
    def of(cls, page: str) -> HtmlSummary:
        parser = cls()
        parser.feed(page)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "g" and "data-event" in found:
            self.events += 1
            self.kinds.append(found.get("data-kind") or "")
            self.problems += found.get("data-problem") == "true"
        if tag == "title":
            self._in_title = True
            self.titles.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles[-1] += data


# -- real conversations -------------------------------------------------------------------


def readme_bob() -> FakePeer:
    """The README's example, with a client that sends ``USER bob``, over real sockets."""
    peer = FakePeer(framing=Lines(b"\r\n"))
    peer.on_connect().send("+OK ready")
    peer.expect("USER alice").reply("+OK")
    peer.expect("QUIT").reply("+OK bye").close()
    with peer.serve():
        with socket.create_connection(peer.address) as sock, sock.makefile("rb") as reader:
            sock.sendall(b"USER bob\r\nQUIT\r\n")
            assert reader.read() == b"+OK ready\r\n"
        with pytest.raises(UnexpectedData):
            peer.verify()
    return peer


def test_the_readme_example_failing() -> None:
    peer = readme_bob()
    events = peer.transcript.events
    assert [event.kind for event in events][:3] == ["connected", "sent", "unexpected"]
    root = parse_svg(peer.transcript.to_svg())
    elements = event_elements(root)
    assert [g.get("data-kind") for g in elements] == [event.kind for event in events]
    problems = [g for g in elements if g.get("data-problem") == "true"]
    assert [g.get("data-kind") for g in problems] == ["unexpected"]
    assert "unexpected 'USER bob'" in "".join(t.text or "" for t in problems[0].iter(f"{SVG}text"))
    page = peer.transcript.to_html(diagnosis=peer.report())
    found = HtmlSummary.of(page)
    assert found.events == len(events)
    assert found.problems == 1
    assert "fake peer &#x27;fake peer&#x27; on 127.0.0.1:" in page
    rows = mermaid_rows(peer.transcript.to_mermaid())
    assert len(rows) == len(events)
    assert "c0-xpeer:" in rows[2]


def test_a_failing_binary_conversation() -> None:
    peer = FakePeer(framing=LengthPrefixed(size=2), name="rpc")
    hello = b"\x01\x00\x00\x07hello"
    peer.expect(hello).reply(bytes(range(40)))
    bad = b"\x02\xff\x00\x13" + bytes(range(200, 230))
    with peer.serve():
        with socket.create_connection(peer.address) as sock:
            sock.sendall(struct.pack(">H", len(hello)) + hello)
            assert sock.recv(100)
            sock.sendall(struct.pack(">H", len(bad)) + bad)
            assert sock.recv(100) == b""  # the peer hangs up on it
        with pytest.raises(UnexpectedData):
            peer.verify()
    events = peer.transcript.events
    assert [event.kind for event in events] == [
        *("connected", "received", "sent", "unexpected", "closed")
    ]
    svg = peer.transcript.to_svg()
    root = parse_svg(svg)
    elements = event_elements(root)
    assert len(elements) == len(events)
    unexpected = elements[3]
    assert unexpected.get("data-problem") == "true"
    labels = [t.text or "" for t in unexpected.iter(f"{SVG}text")]
    assert "unexpected 34 bytes: 02 ff 00 13 c8 c9 ca cb ..." in labels
    assert "00000000  02 ff 00 13 c8 c9 ca cb  cc cd ce cf d0 d1 d2 d3" not in title_of(unexpected)
    assert "00000000  02 ff 00 13 c8 c9 ca cb cc cd ce cf d0 d1 d2 d3" in title_of(unexpected)
    assert "00000020  e4 e5" in title_of(unexpected)
    assert "00000020  1e 1f 20 21 22 23 24 25 26 27" in title_of(elements[2])  # sent, framed
    found = HtmlSummary.of(peer.transcript.to_html(diagnosis=peer.report()))
    assert found.events == 5
    assert found.problems == 1
    assert any("00000000  02 ff 00 13" in title for title in found.titles)


# -- the pytest option --------------------------------------------------------------------

README_BOB = """
import socket

import pytest
from fakepeer import Lines


@pytest.mark.fakepeer(framing=Lines(b"\\r\\n"))
def test_client_logs_in(fake_peer):
    fake_peer.on_connect().send("+OK ready")
    fake_peer.expect("USER alice").reply("+OK")
    fake_peer.expect("QUIT").reply("+OK bye").close()

    with socket.create_connection(fake_peer.address) as sock:
        sock.sendall(b"USER bob\\r\\nQUIT\\r\\n")
        with sock.makefile("rb") as reader:  # closed: its socket too, though the test fails
            assert reader.read() == b"+OK ready\\r\\n+OK\\r\\n+OK bye\\r\\n"
"""

MORE_TESTS = """

def test_passes(fake_peer):
    with socket.create_connection(fake_peer.address):
        pass


def test_two_peers_and_a_verdict(fake_peer_factory):
    one = fake_peer_factory(name="db")
    two = fake_peer_factory(name="cache <1>")
    with socket.create_connection(two.address) as sock:
        sock.sendall(bytes([0, 255, 1, 2, 3, 4, 5, 6]))
    two.wait_until_done()
"""


def digest(nodeid: str) -> str:
    """The hash of a node id in the name of its diagram's file."""
    return hashlib.sha256(nodeid.encode()).hexdigest()[:10]


def test_the_option_writes_a_page_for_each_failing_peer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_login=README_BOB + MORE_TESTS)
    result = pytester.runpytest(
        "--fakepeer-diagrams=pictures", "-p", "no:hypothesispytest", "-p", "no:asyncio"
    )
    result.assert_outcomes(passed=1, failed=2)
    folder = pytester.path / "pictures"
    logs_in = f"test_login.py_test_client_logs_in-{digest('test_login.py::test_client_logs_in')}"
    two = "test_login.py_test_two_peers_and_a_verdict-"
    two += digest("test_login.py::test_two_peers_and_a_verdict")
    assert sorted(path.name for path in folder.iterdir()) == [
        f"{logs_in}.html",
        f"{two}-peer1-db.html",
        f"{two}-peer2-cache_1.html",
    ]
    result.stdout.fnmatch_lines(
        [
            "*- fakepeer 'fake peer' -*",
            "connection #1 received data that no rule expected",
            "*#1 closed",
            f"sequence diagram: pictures/{logs_in}.html",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*- fakepeer 'cache <1>' -*", "sequence diagram: pictures/*-peer2-cache_1.html"]
    )
    page = (folder / f"{logs_in}.html").read_text(encoding="utf-8")
    found = HtmlSummary.of(page)
    assert found.kinds == ["connected", "sent", "unexpected", "received", "closed"]
    assert found.problems == 1
    assert "test_login.py::test_client_logs_in failed (call): AssertionError" in page
    assert "expected:  expect #1 &#x27;USER alice&#x27; (test_login.py:" in page
    parse_svg(page[page.index("<svg") : page.index("</svg>") + 6])
    binary = HtmlSummary.of((folder / f"{two}-peer2-cache_1.html").read_text())
    assert binary.problems >= 1
    assert any("00000000  00 ff 01 02 03 04 05 06" in title for title in binary.titles)


def test_the_option_is_off_by_default_and_an_ini_sets_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_login=README_BOB)
    result = pytester.runpytest(
        "-p", "no:hypothesispytest", "-p", "no:asyncio", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=1)
    assert "sequence diagram" not in result.stdout.str()
    assert [path.name for path in pytester.path.iterdir() if path.is_dir()] == []
    pytester.makeini("[pytest]\nfakepeer_diagrams = ini-pictures\n")
    result = pytester.runpytest(
        "-p", "no:hypothesispytest", "-p", "no:asyncio", "-p", "no:cacheprovider"
    )
    result.stdout.fnmatch_lines(["sequence diagram: ini-pictures/test_login.py_*.html"])
    assert len(list((pytester.path / "ini-pictures").iterdir())) == 1


def test_the_option_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_login=README_BOB + MORE_TESTS)
    result = pytester.runpytest_subprocess(
        "-n", "2", "--fakepeer-diagrams=pictures", "-p", "no:hypothesispytest", "-p", "no:asyncio"
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["sequence diagram: pictures/test_login.py_test_client_*.html"])
    assert len(list((pytester.path / "pictures").iterdir())) == 3


# -- the README's picture -------------------------------------------------------------------

#: Writes the Mermaid text of the fake_peer of each test, beside the option's pages.
MERMAID_CONFTEST = """
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    peer = item.funcargs.get("fake_peer")
    if peer is not None and call.when == "call":
        with open("readme.mmd", "w", encoding="utf-8") as file:
            file.write(peer.transcript.to_mermaid())
    return report
"""


def normalise(text: str) -> str:
    """Leave out what changes from run to run: times and ports."""
    text = re.sub(r"\d+\.\d{3}", "T", text)
    return re.sub(r"127\.0\.0\.1(:|#58;)\d+", r"127.0.0.1\1PORT", text)


MERMAID_BLOCK = re.compile(r"^```mermaid\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_mermaid(document: Path) -> str:
    found = MERMAID_BLOCK.search(document.read_text("utf-8"))
    assert found is not None, f"{document.name} has no mermaid block"
    return found[1]


def test_the_readme_picture_is_current(pytester: pytest.Pytester) -> None:
    """The README's example (its code, from README.md) with a client that sends ``USER
    bob``, drawn by --fakepeer-diagrams, is the picture that README.md and the docs show."""
    readme = (ROOT / "README.md").read_text("utf-8")
    # The whole block, its first line too: the line numbers are those of a copy of it.
    source = re.search(r"```python\n(# test_readme_example\.py\n.*?)```", readme, re.S)
    assert source is not None
    sends = 'sock.sendall(b"USER alice\\r\\nQUIT\\r\\n")'
    assert sends in source[1]
    failing = source[1].replace(sends, sends.replace("alice", "bob"))
    pytester.makepyfile(test_readme_example=failing)
    pytester.makeconftest(MERMAID_CONFTEST)
    # In a process of its own: the example, failing, leaves its socket to the collector.
    result = pytester.runpytest_subprocess(
        "--fakepeer-diagrams=out", "-p", "no:hypothesispytest", "-p", "no:asyncio"
    )
    result.assert_outcomes(failed=1)
    (written,) = (pytester.path / "out").iterdir()
    page = written.read_text("utf-8")
    svg = page[page.index("<svg") : page.index("</svg>") + 6] + "\n"
    parse_svg(svg)
    mermaid = (pytester.path / "readme.mmd").read_text("utf-8")
    image = ROOT / "docs" / "images" / "readme-example.svg"
    documents = [ROOT / "docs" / "diagrams.md"]  # the README shows the SVG, not the text
    # The report the README shows above the picture: the same run's fakepeer section.
    output = result.stdout.str()
    start = output.index("----- fakepeer 'fake peer' -----")
    start = output.rindex("\n", 0, start) + 1
    section = output[start : output.index("\nsequence diagram: ", start)].rstrip() + "\n"
    shown = re.compile(r"^(-+ fakepeer 'fake peer' -+\n.*?)^```", re.M | re.S)
    if os.environ.get("FAKEPEER_REGENERATE"):
        found = shown.search(readme)
        assert found is not None, "README.md shows no fakepeer report section"
        readme = readme[: found.start(1)] + section + readme[found.end(1) :]
        (ROOT / "README.md").write_text(readme, encoding="utf-8")
        image.parent.mkdir(exist_ok=True)
        image.write_text(svg, encoding="utf-8")
        for document in documents:
            text = document.read_text("utf-8")
            found = MERMAID_BLOCK.search(text)
            assert found is not None, f"{document.name} has no mermaid block"
            text = text[: found.start(1)] + mermaid + text[found.end(1) :]
            document.write_text(text, encoding="utf-8")
    stale = f"out of date: `{REGENERATE}` makes it anew"
    assert image.exists(), f"{image.name} {stale}"
    assert normalise(image.read_text("utf-8")) == normalise(svg), f"{image.name} {stale}"
    for document in documents:
        assert normalise(readme_mermaid(document)) == normalise(mermaid), (
            f"the Mermaid block of {document.name} {stale}"
        )
    found = shown.search(readme)
    assert found is not None, "README.md shows no fakepeer report section"
    aligned = re.compile(r"^ +T ms", re.M)  # the times are right-aligned: 9.999 ms, 10.000 ms
    assert aligned.sub("T ms", normalise(found[1])) == aligned.sub("T ms", normalise(section)), (
        f"README.md's report of the USER bob run {stale}; the run shows:\n{section}"
    )


# -- bounds: many connections, long messages, paste-able Mermaid ------------------------------


def flood(connections: int, exchanges: int = 1) -> Transcript:
    """A peer that saw ``connections`` short connections, each of ``exchanges`` exchanges."""
    transcript = Transcript("fake peer 'pool'")
    rule = "-> always 'PING 1234567890' (test_pool.py:12)"
    at = 0.0
    for number in range(1, connections + 1):
        transcript.add(Event(at, number, "connected", note="from 127.0.0.1:5000"))
        for _ in range(exchanges):
            transcript.add(Event(at, number, "received", b"PING 1234567890\r\n", rule))
            transcript.add(Event(at, number, "sent", b"PONG\r\n"))
        transcript.add(Event(at, number, "closed"))
        at += 1e-4
    return transcript


def test_twenty_thousand_connections_draw_a_bounded_picture() -> None:
    """Each connection has its own budget: the pictures' rows are bounded, not the budget's
    (27 MB of SVG and seconds per form for 10,000 connections before)."""
    transcript = flood(20_000)
    events = len(transcript.events)
    svg = transcript.to_svg()
    assert len(svg) < 1_000_000
    root = parse_svg(svg)
    elements = event_elements(root)
    assert len(elements) == MAX_ROWS
    assert elements[0].get("data-event") == "0"
    assert elements[-1].get("data-event") == str(events - 1)
    assert elements[MAX_ROWS // 2].get("data-event") == str(events - MAX_ROWS // 2)
    (cut,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "gap cut"]
    assert cut.get("data-omitted") == str(events - MAX_ROWS)
    assert f"... {events - MAX_ROWS:,} events not drawn: a picture draws 1,000 rows" in (
        title_of(cut)
    )
    assert "str(peer.transcript), the text report, has them all" in title_of(cut)
    assert int(root.get("height") or 0) < (MAX_ROWS + 2) * 24 + 100
    assert len(transcript.to_html()) < 1_000_000
    assert len(transcript.to_mermaid()) < 50_000


def test_long_binary_messages_share_a_hover_budget() -> None:
    """Hexdumps of 4 KiB on each of a thousand rows would make 30 MB: past HOVER_CHARS, a
    row's hover text is its first line."""
    transcript = Transcript("fake peer 'blobs'")
    for number in range(1, 1201):
        transcript.add(Event(number / 1000, number, "received", bytes(range(256)) * 16))
    svg = transcript.to_svg()
    assert len(svg) < HOVER_CHARS + 2_000_000
    titles = [title_of(g) for g in event_elements(parse_svg(svg))]
    assert "00000000  00 01 02 03" in titles[0]
    assert titles[-1].endswith(
        "(shortened: the picture's hover texts are too long; str(peer.transcript) has it all)"
    )
    assert "00000000" not in titles[-1]
    assert len(transcript.to_html()) < HOVER_CHARS + 2_000_000


@settings(max_examples=60, deadline=None)
@given(transcripts(), st.integers(1, 30))
def test_at_most_max_rows_are_drawn(transcript: Transcript, cap: int) -> None:
    events = len(transcript.events)
    gaps = transcript.render().count(" not kept: over the transcript budget")
    rows = events + gaps
    cut = rows > cap
    root = parse_svg(svg(transcript, max_rows=cap))
    drawn = [
        g
        for g in root.iter(f"{SVG}g")
        if "data-event" in g.attrib or "gap" in g.attrib.get("class", "")
    ]
    assert len(drawn) == min(rows, cap) + cut
    cuts = [g for g in drawn if g.get("class") == "gap cut"]
    assert len(cuts) == cut
    shown = len([g for g in drawn if "data-event" in g.attrib])
    if cut:
        assert cuts[0].get("data-omitted") == str(events - shown)
        assert drawn.index(cuts[0]) == (cap + 1) // 2
    else:
        assert shown == events
    text = mermaid(transcript, max_rows=cap, max_chars=None)
    assert len(mermaid_rows(text)) == min(rows, cap) + cut
    assert_mermaid_safe(text)
    assert HtmlSummary.of(_diagram.html(transcript, max_rows=cap)).events == shown


def test_mermaid_stays_under_its_limit() -> None:
    """Four connections within the default budget made 109,822 characters: Mermaid refuses
    more than 50,000 and a GitHub comment holds 65,536."""
    transcript = flood(4, 20_000)
    whole = mermaid(transcript, max_chars=None, max_rows=None)
    assert len(whole) > 80_000
    text = transcript.to_mermaid()
    assert len(text) <= MERMAID_CHARS < 50_000
    rows, all_rows = mermaid_rows(text), mermaid_rows(whole)
    assert rows[0] == all_rows[0]
    assert rows[-1] == all_rows[-1]
    notes = [row for row in rows if "events not drawn" in row]
    left_out = sum(
        int(re.findall(r"\.\.\. ([\d,]+) events", row)[0].replace(",", "")) for row in notes
    )

    def events(rows: list[str]) -> int:
        return sum("not kept" not in row and "not drawn" not in row for row in rows)

    assert events(rows) + left_out == events(all_rows) == len(transcript.events)
    assert len(notes) == 1  # the one of max_chars: the rows past MAX_ROWS were not needed
    assert "the text stays under max_chars=48,000 characters" in text
    assert_mermaid_safe(text)
    small = transcript.to_mermaid(max_chars=10_000)
    assert 9_000 < len(small) <= 10_000
    assert len(transcript.to_mermaid(max_chars=None)) > 50_000


# -- hostile names and text ---------------------------------------------------------------


def test_del_and_c1_controls_are_escaped() -> None:
    """HTML forbids U+007F-U+009F even as character references."""
    transcript = Transcript("a\x7fb\x85c\x9fd")
    transcript.add(Event(0.001, 1, "received", "x\x7f\x80y".encode(), "n\x9bm"))
    for text in (transcript.to_html(diagnosis="why\x7f"), transcript.to_svg()):
        assert not re.search("[\x7f-\x9f]", text)
        assert "a\\x7fb\\x85c\\x9fd" in text


@pytest.mark.parametrize("name", ["", "   "])
def test_a_peer_with_no_name_has_a_title(name: str) -> None:
    page = Transcript(name).to_html()
    assert "<title>a peer with no name</title>" in page
    assert "<h1>What a peer with no name saw</h1>" in page
    assert "<title>a peer with no name</title>" in Transcript(name).to_svg()


def test_the_heading_says_the_name_once_and_wraps() -> None:
    assert "<h1>What the fake peer saw</h1>" in Transcript("fake peer 'fake peer'").to_html()
    assert "<h1>What the proxy saw</h1>" in Transcript("proxy 'proxy'").to_html()
    page = Transcript("fake peer 'db'").to_html()
    assert "<h1>What fake peer &#x27;db&#x27; saw</h1>" in page
    assert "h1 { font-size: 1.3em; margin: 0 0 .2em; overflow-wrap: anywhere; }" in page


# -- the option's file names and diagnosis ----------------------------------------------------

#: The hostile review's names: node ids and peer names that made 5 files of 12 diagrams.
NAMES_TESTS = """
import socket

import pytest
from fakepeer import Lines


def talk(peer, line=b"HELLO\\r\\n"):
    with socket.create_connection(peer.address) as sock:
        sock.sendall(line)
        sock.recv(100)


@pytest.mark.fakepeer(framing=Lines())
@pytest.mark.parametrize("who", ["a/b", "a_b", "a b", "a:b", "a\\\\b"])
def test_param_ids(fake_peer, who):
    fake_peer.expect(who).reply("ok")
    talk(fake_peer, who.encode() + b"!\\r\\n")


LONG = "x" * 130


@pytest.mark.fakepeer(framing=Lines())
@pytest.mark.parametrize("tail", [LONG + "1", LONG + "2"], ids=[LONG + "1", LONG + "2"])
def test_long_ids(fake_peer, tail):
    fake_peer.expect("A").reply("ok")
    talk(fake_peer, tail.encode() + b"\\r\\n")


def test_peer_names(fake_peer_factory):
    names = ["x y", "x/y", "db", "db", "db4"]
    peers = [fake_peer_factory(framing=Lines(), name=n) for n in names]
    for i, peer in enumerate(peers):
        peer.expect("A").reply("ok")
        talk(peer, f"from {names[i]} #{i}\\r\\n".encode())
"""


def test_each_diagram_has_a_file_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_names=NAMES_TESTS)
    args = ["--fakepeer-diagrams=pictures", "-p", "no:hypothesispytest", "-p", "no:asyncio"]
    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=8)
    announced = re.findall(r"^sequence diagram: (\S+)$", result.stdout.str(), re.M)
    assert len(announced) == 12
    assert len(set(announced)) == 12
    folder = pytester.path / "pictures"
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted(Path(path).name for path in announced)
    assert len({name.lower() for name in names}) == 12
    assert all(len(name) < 200 for name in names)
    assert "test_names.py_test_peer_names-" in names[-1]
    assert [name.split("-peer", 1)[1] for name in names if "-peer" in name] == [
        "1-x_y.html",
        "2-x_y.html",
        "3-db.html",
        "4-db.html",
        "5-db4.html",
    ]
    for path in announced:  # each page is the diagram of its own test and peer
        page = (pytester.path / path).read_text("utf-8")
        assert page.count('<pre class="diagnosis">') == 1
    # Stable: the same failures name the same files again (and overwrite them).
    again = pytester.runpytest(*args)
    assert re.findall(r"^sequence diagram: (\S+)$", again.stdout.str(), re.M) == announced
    assert sorted(path.name for path in folder.iterdir()) == names


def test_the_diagnosis_says_the_problem_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_once="""
import socket

import pytest
from fakepeer import Lines


@pytest.mark.fakepeer(framing=Lines())
def test_unexpected(fake_peer):
    fake_peer.expect("A").reply("ok")
    with socket.create_connection(fake_peer.address) as sock:
        sock.sendall(b"B\\r\\n")
        sock.recv(10)
"""
    )
    result = pytester.runpytest(
        "--fakepeer-diagrams=pictures", "-p", "no:hypothesispytest", "-p", "no:asyncio"
    )
    result.assert_outcomes(failed=1)
    (path,) = (pytester.path / "pictures").iterdir()
    page = path.read_text("utf-8")
    diagnosis = page[page.index('<pre class="diagnosis">') : page.index("</pre>")]
    assert diagnosis.count("received data that no rule expected") == 1
    assert diagnosis.startswith(
        '<pre class="diagnosis">test_once.py::test_unexpected failed (call): '
        "fakepeer.UnexpectedData: connection #1 received data that no rule expected\n"
    )
    assert "expected:  expect #1 &#x27;A&#x27; (test_once.py:" in diagnosis
    assert "#1 connected" not in diagnosis  # the transcript: the diagram shows it
