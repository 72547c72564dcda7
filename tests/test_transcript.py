"""Tests of ``fakepeer._transcript`` and ``fakepeer._show``: escaping, hexdumps and the rendered
transcript."""

from __future__ import annotations

import ast
import socket
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer import Event, FakePeer, Lines, ScriptError, Transcript
from fakepeer._show import INLINE_LIMIT, escape, hexdump, is_binary, show
from fakepeer._transcript import DEFAULT_BUDGET, EVENT_OVERHEAD, MIN_BUDGET

# -- escape --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"PING", "PING"),
        (b" ~", " ~"),
        (b'say "hi"', 'say "hi"'),
        (b"\t\n\r", "\\t\\n\\r"),
        (b"\\", "\\\\"),
        (b"'", "\\'"),
        (b"\x00\x1f\x7f\x80\xff", "\\x00\\x1f\\x7f\\x80\\xff"),
        ("é".encode(), "\\xc3\\xa9"),
    ],
)
def test_escape(data: bytes, text: str) -> None:
    assert escape(data) == text


@settings(max_examples=100)
@given(st.binary(max_size=64))
def test_escape_is_printable_ascii_and_reversible(data: bytes) -> None:
    text = escape(data)
    assert text.isascii()
    assert text.isprintable()
    # Inside quotes, the escaped text reads back as the same bytes.
    assert ast.literal_eval(f"b'{text}'") == data


def test_show_quotes_and_cuts() -> None:
    assert show(b"a\n") == "'a\\n'"
    assert show(b"x" * INLINE_LIMIT) == "'" + "x" * INLINE_LIMIT + "'"
    assert show(b"x" * (INLINE_LIMIT + 1)) == "'" + "x" * INLINE_LIMIT + "'... (201 bytes in all)"
    assert show(b"abcdef", limit=3) == "'abc'... (6 bytes in all)"


# -- is_binary -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "binary"),
    [
        (b"", False),
        (b"hello", False),
        (b"line\r\n\tindented\n", False),
        (b"\x00abc", False),  # one odd byte in four: exactly a quarter is not more
        (b"\x00\x01abc", True),
        (b"\x00", True),
        ("héllo".encode(), True),  # 2 odd bytes in 6
        ("hello, wörld".encode(), False),
        ("éé".encode(), True),
        (bytes(range(256)), True),
        (b"\x7f" + b"a" * 3, False),
        (b"\x7f\x7f" + b"a" * 6, False),
        (b"\x7f\x7f" + b"a" * 5, True),
    ],
)
def test_is_binary(data: bytes, binary: bool) -> None:
    assert is_binary(data) is binary


# -- hexdump -------------------------------------------------------------------------------


def test_hexdump_empty() -> None:
    assert hexdump(b"") == ""


def test_hexdump_one_line() -> None:
    assert hexdump(b"AB\x00\n") == "00000000  41 42 00 0a" + " " * 36 + "  |AB..|"


def test_hexdump_lines_of_sixteen_with_offsets_and_indent() -> None:
    assert hexdump(bytes(range(0x30, 0x41)), indent="  ").splitlines() == [
        "  00000000  30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f  |0123456789:;<=>?|",
        "  00000010  40                                               |@|",
    ]


@settings(max_examples=50)
@given(st.binary(max_size=100))
def test_hexdump_shape(data: bytes) -> None:
    lines = hexdump(data).splitlines()
    assert len(lines) == (len(data) + 15) // 16
    for number, line in enumerate(lines):
        chunk = data[number * 16 : number * 16 + 16]
        assert line.startswith(f"{number * 16:08x}  ")
        assert bytes.fromhex(line[10:57]) == chunk
        assert line[59:] == "|" + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk) + "|"


# -- Transcript ----------------------------------------------------------------------------


def conversation(start: float) -> Transcript:
    transcript = Transcript("fake peer 'smtp' on 127.0.0.1:2525")
    transcript.add(Event(start, 1, "connected", note="from 127.0.0.1:51234"))
    transcript.add(Event(start + 0.000051, 1, "sent", b"220 ready\r\n"))
    transcript.add(Event(start + 0.00021, 1, "received", b"HELO me", "-> expect #1 'HELO me'"))
    transcript.add(Event(start + 0.5, 2, "connected", note="from 127.0.0.1:51235"))
    transcript.add(Event(start + 0.6, 0, "error", note="something of the peer itself"))
    transcript.add(Event(start + 1.25, 1, "eof"))
    return transcript


def test_render_with_times() -> None:
    assert conversation(100.0).render().splitlines() == [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "     0.000 ms  #1 connected  from 127.0.0.1:51234",
        "     0.051 ms  #1 sent       '220 ready\\r\\n'",
        "     0.210 ms  #1 received   'HELO me' -> expect #1 'HELO me'",
        "   500.000 ms  #2 connected  from 127.0.0.1:51235",
        "   600.000 ms  error      something of the peer itself",
        "  1250.000 ms  #1 eof",
    ]


def test_str_leaves_out_times_and_addresses() -> None:
    transcript = conversation(100.0)
    transcript.title = "fake peer 'smtp'"
    transcript.address = "127.0.0.1:2525"
    assert str(transcript).splitlines() == [
        "fake peer 'smtp'",
        "  #1 connected",
        "  #1 sent       '220 ready\\r\\n'",
        "  #1 received   'HELO me' -> expect #1 'HELO me'",
        "  #2 connected",
        "  error      something of the peer itself",
        "  #1 eof",
    ]
    assert transcript.render().splitlines()[0] == "fake peer 'smtp' on 127.0.0.1:2525"
    assert str(transcript) == str(conversation(555.0)).replace(" on 127.0.0.1:2525", "")


def test_render_without_times_is_stable() -> None:
    expected = [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "  #1 connected  from 127.0.0.1:51234",
        "  #1 sent       '220 ready\\r\\n'",
        "  #1 received   'HELO me' -> expect #1 'HELO me'",
        "  #2 connected  from 127.0.0.1:51235",
        "  error      something of the peer itself",
        "  #1 eof",
    ]
    assert conversation(0.0).render(times=False).splitlines() == expected
    assert conversation(12345.678).render(times=False) == conversation(0.0).render(times=False)


def test_render_one_connection() -> None:
    transcript = conversation(0.0)
    assert transcript.render(times=False, connection=2).splitlines() == [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "  #2 connected  from 127.0.0.1:51235",
    ]
    assert transcript.render(times=False, connection=3).splitlines() == [
        "fake peer 'smtp' on 127.0.0.1:2525",
        "  (nothing happened)",
    ]
    assert [event.kind for event in transcript.for_connection(1)] == [
        "connected",
        "sent",
        "received",
        "eof",
    ]


def test_render_empty() -> None:
    transcript = Transcript()
    assert len(transcript) == 0
    assert transcript.render() == "fake peer\n  (nothing happened)"


def test_times_are_relative_to_the_start() -> None:
    transcript = Transcript("t")
    transcript.started = 10.0
    transcript.add(Event(10.0015, 1, "eof"))
    assert transcript.started == 10.0
    assert transcript.render().splitlines()[1] == "     1.500 ms  #1 eof"


def test_binary_data_is_a_hexdump() -> None:
    transcript = Transcript("t")
    transcript.add(Event(0.0, 1, "received", bytes(range(20)), "-> always #1"))
    assert transcript.render(times=False).splitlines() == [
        "t",
        "  #1 received   20 bytes: -> always #1",
        "      00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|",
        "      00000010  10 11 12 13                                      |....|",
    ]
    assert transcript.render().splitlines()[1:] == [
        "     0.000 ms  #1 received   20 bytes: -> always #1",
        "                   00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
        "  |................|",
        "                   00000010  10 11 12 13                                      |....|",
    ]


def test_long_binary_data_is_cut_after_4096_bytes() -> None:
    transcript = Transcript("t")
    transcript.add(Event(0.0, 1, "sent", b"\x00" * 5000))
    lines = transcript.render(times=False).splitlines()
    assert lines[1] == "  #1 sent       5000 bytes:"
    assert len(lines) == 2 + 4096 // 16 + 1
    assert lines[-2].startswith("      00000ff0  00 00")
    assert lines[-1] == "      ... (5000 bytes in all)"


def test_long_text_data_is_cut_inline() -> None:
    transcript = Transcript("t")
    transcript.add(Event(0.0, 1, "received", b"a" * 300))
    assert transcript.render(times=False).splitlines()[1] == (
        "  #1 received   '" + "a" * INLINE_LIMIT + "'... (300 bytes in all)"
    )


# -- the budget ----------------------------------------------------------------------------

OMITTED = (
    "not kept: over the transcript budget of 1,024 bytes per connection "
    "(FakePeer(transcript_budget=...) changes it)"
)


def lines(*events: Event, budget: int | None = 1024) -> list[str]:
    """``str()`` of a transcript of ``events``, as lines."""
    transcript = Transcript("t", budget=budget)
    for event in events:
        transcript.add(event)
    return str(transcript).splitlines()


def test_the_default_budget() -> None:
    assert DEFAULT_BUDGET == 65536
    assert Transcript().budget == DEFAULT_BUDGET
    assert Transcript("t", budget=None).budget is None
    assert Transcript("t", budget=MIN_BUDGET).budget == 1024


@pytest.mark.parametrize("budget", [0, -1, 1023, 1024.0, True, "65536", 2**16 + 0.5])
def test_a_budget_is_a_whole_number_of_bytes_or_none(budget: object) -> None:
    with pytest.raises(ScriptError) as raised:
        Transcript("t", budget=budget)  # type: ignore[arg-type]
    assert str(raised.value) == (
        f"transcript_budget=... takes a whole number of bytes >= 1024, or None for no limit, "
        f"got {budget!r}"
    )


def flood(count: int, connection: int = 1) -> list[Event]:
    """A connection that sends ``count`` two-digit messages (each costing 130 bytes)."""
    return [
        Event(0.0, connection, "connected"),  # 128 bytes
        *(Event(1.0 + n, connection, "received", b"%02d" % n) for n in range(count)),
        Event(200.0, connection, "closed"),
    ]


def test_within_the_budget_everything_is_kept() -> None:
    # 128 + 6 * 130 + 128 = 1036 bytes: the budget would be 12 bytes short
    assert lines(*flood(5)) == lines(*flood(5), budget=None)
    assert lines(*flood(6)) != lines(*flood(6), budget=None)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        # the first events up to half the budget (388 of 512), the last up to the rest (518)
        (
            100,
            [
                "t",
                "  #1 connected",
                "  #1 received   '00'",
                "  #1 received   '01'",
                f"  #1 ... 95 events (190 bytes) {OMITTED}",
                "  #1 received   '97'",
                "  #1 received   '98'",
                "  #1 received   '99'",
                "  #1 closed",
            ],
        ),
        (
            6,
            [
                "t",
                "  #1 connected",
                "  #1 received   '00'",
                "  #1 received   '01'",
                f"  #1 ... 1 event (2 bytes) {OMITTED}",
                "  #1 received   '03'",
                "  #1 received   '04'",
                "  #1 received   '05'",
                "  #1 closed",
            ],
        ),
        (
            100_000,
            [
                "t",
                "  #1 connected",
                "  #1 received   '00'",
                "  #1 received   '01'",
                f"  #1 ... 99,995 events (488,881 bytes) {OMITTED}",
                "  #1 received   '99997'",
                "  #1 received   '99998'",
                "  #1 received   '99999'",
                "  #1 closed",
            ],
        ),
    ],
)
def test_over_the_budget_the_first_and_last_events_are_kept(
    count: int, expected: list[str]
) -> None:
    transcript = Transcript("t", budget=1024)
    for event in flood(count):
        transcript.add(event)
    assert str(transcript).splitlines() == expected
    assert len(transcript) == 7
    assert transcript.omitted_events == count + 2 - 7
    kept = sum(len(event.data) for event in transcript.events)
    assert kept + transcript.omitted_bytes == sum(len(b"%02d" % n) for n in range(count))
    assert transcript.render(connection=1) == transcript.render()


def test_the_omission_line_with_times_and_for_a_proxy() -> None:
    transcript = Transcript("proxy 'p'", budget=1024)
    transcript.upstream = "127.0.0.1:9"
    for event in flood(7):
        transcript.add(event)
    rendered = transcript.render().splitlines()
    assert rendered[0] == "proxy 'p' to 127.0.0.1:9"
    assert rendered[3:6] == [
        "  2000.000 ms  #1 received   '01'",
        "               #1 ... 2 events (4 bytes) not kept: over the transcript budget of 1,024 "
        "bytes per connection (Proxy(transcript_budget=...) changes it)",
        "  5000.000 ms  #1 received   '04'",
    ]


def test_an_event_over_the_budget_by_itself_keeps_its_ends() -> None:
    data = b"A" * 100 + b"B" * 5000 + b"C" * 100
    transcript = Transcript("t", budget=1024)
    transcript.add(Event(0.0, 1, "sent", data))
    transcript.add(Event(1.0, 1, "closed"))
    assert str(transcript).splitlines() == [
        "t",
        "  #1 sent       '"
        + "A" * 100
        + "'...'"
        + "C" * 100
        + "' (5200 bytes in all, 4816 not kept)",
        "  #1 closed",
    ]
    [sent, _] = transcript.events
    # what is left of the data: its first and last 192 bytes (half the budget, less 128)
    assert sent == Event(0.0, 1, "sent", data[:192] + data[-192:], size=5200)
    assert transcript.omitted_events == 0
    assert transcript.omitted_bytes == 4816


def test_a_binary_event_over_the_budget_shows_both_ends() -> None:
    data = bytes(range(256)) * 20
    rendered = lines(Event(0.0, 1, "received", data))
    assert rendered[1] == "  #1 received   5120 bytes:"
    assert rendered[2] == "      00000000  " + " ".join(f"{b:02x}" for b in range(16)) + (
        "  |................|"
    )
    assert rendered[13] == "      000000b0  " + " ".join(f"{b:02x}" for b in range(0xB0, 0xC0)) + (
        "  |................|"
    )
    assert rendered[14] == "      ... (5120 bytes in all, 4736 not kept)"
    assert rendered[15] == "      00001340  " + " ".join(f"{b:02x}" for b in range(0x40, 0x50)) + (
        "  |@ABCDEFGHIJKLMNO|"
    )
    assert rendered[-1].startswith("      000013f0  f0 f1")
    assert len(rendered) == 2 + 12 + 1 + 12


def test_the_last_events_keep_the_end_of_a_large_one() -> None:
    transcript = Transcript("t", budget=1024)
    for event in flood(4)[:-1]:
        transcript.add(event)
    transcript.add(Event(10.0, 1, "sent", b"x" * 3000 + b"END"))
    transcript.add(Event(11.0, 1, "closed"))
    *_, sent, closed = transcript.events
    assert sent.size == 3003
    assert sent.data.endswith(b"xEND")
    assert closed.kind == "closed"
    assert str(transcript).splitlines()[-3:] == [
        f"  #1 ... 2 events (4 bytes) {OMITTED}",
        "  #1 sent       '"
        + "x" * 100
        + "'...'"
        + "x" * 97
        + "END' (3003 bytes in all, 2623 not kept)",
        "  #1 closed",
    ]


def test_a_connection_that_starts_over_half_the_budget_keeps_its_first_event() -> None:
    first = Event(0.0, 1, "received", b"GET " + b"/" * 600)  # 732 bytes: over half of 1024
    rendered = lines(first, *flood(50)[1:])
    assert (
        rendered[1]
        == "  #1 received   'GET "
        + "/" * 96
        + "'...'"
        + "/" * 100
        + "' (604 bytes in all, 220 not kept)"
    )
    assert rendered[2] == f"  #1 ... 48 events (96 bytes) {OMITTED}"
    assert rendered[3:] == [
        "  #1 received   '48'",
        "  #1 received   '49'",
        "  #1 closed",
    ]


def test_each_connection_has_its_own_budget_and_they_interleave_in_order() -> None:
    events = [
        event
        for trio in zip(flood(20, 1), flood(20, 2), flood(20, 0), strict=True)
        for event in trio
    ]
    events.insert(30, Event(9.5, 3, "connected"))  # a quiet connection, amid what is left out
    events.append(Event(300.0, 3, "closed"))
    rendered = lines(*events)
    assert rendered == [
        "t",
        "  #1 connected",
        "  #2 connected",
        "  connected",
        "  #1 received   '00'",
        "  #2 received   '00'",
        "  received   '00'",
        "  #1 received   '01'",
        "  #2 received   '01'",
        "  received   '01'",
        "  #3 connected",
        f"  #1 ... 15 events (30 bytes) {OMITTED}",
        "  #1 received   '17'",
        f"  #2 ... 15 events (30 bytes) {OMITTED}",
        "  #2 received   '17'",
        f"  ... 15 events (30 bytes) {OMITTED}",
        "  received   '17'",
        "  #1 received   '18'",
        "  #2 received   '18'",
        "  received   '18'",
        "  #1 received   '19'",
        "  #2 received   '19'",
        "  received   '19'",
        "  #1 closed",
        "  #2 closed",
        "  closed",
        "  #3 closed",
    ]
    transcript = Transcript("t", budget=1024)
    for event in events:
        transcript.add(event)
    assert transcript.omitted_events == 45
    assert transcript.render(connection=2, times=False).splitlines()[1:] == [
        line for line in rendered if line.startswith("  #2 ")
    ]
    assert [event.kind for event in transcript.for_connection(3)] == ["connected", "closed"]
    assert [event.data for event in transcript.for_connection(0)][-4:] == [b"17", b"18", b"19", b""]
    assert transcript.events == sorted(transcript.events, key=events.index)


def test_no_budget_keeps_everything() -> None:
    transcript = Transcript("t", budget=None)
    events = flood(2000)
    for event in events:
        transcript.add(event)
    assert transcript.events == events
    assert len(transcript) == 2002
    assert (transcript.omitted_events, transcript.omitted_bytes) == (0, 0)


# -- the budget: properties ----------------------------------------------------------------


def sizes() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, 40), st.integers(0, 3000), st.just(0))


@settings(max_examples=300, deadline=None)
@given(
    budget=st.sampled_from([1024, 1500, 4096]),
    added=st.lists(st.tuples(st.integers(0, 3), sizes(), st.booleans()), max_size=120),
)
def test_the_budget_holds_and_keeps_the_ends(
    budget: int, added: list[tuple[int, int, bool]]
) -> None:
    events = [
        Event(float(n), connection, "sent", (b"%d," % n * size)[:size] if text else bytes(size))
        for n, (connection, size, text) in enumerate(added)
    ]
    transcript = Transcript("t", budget=budget)
    for event in events:
        transcript.add(event)
    kept = transcript.events
    assert len(transcript) == len(kept)
    assert len(kept) + transcript.omitted_events == len(events)
    data = sum(len(event.data) for event in events)
    assert sum(len(event.data) for event in kept) + transcript.omitted_bytes == data
    assert [event.at for event in kept] == sorted(event.at for event in kept)  # in order
    for connection in range(4):
        theirs = [event for event in events if event.connection == connection]
        ours = transcript.for_connection(connection)
        assert ours == [event for event in kept if event.connection == connection]
        assert sum(len(event.data) + EVENT_OVERHEAD for event in ours) <= budget
        if not theirs:
            assert ours == []
            continue
        # the first events, then the last: each one whole, or its first and last bytes
        times = [event.at for event in theirs]
        head = 0
        while head < len(ours) and ours[head].at == times[head]:
            head += 1
        assert head >= 1
        assert [event.at for event in ours[head:]] == times[len(times) - (len(ours) - head) :]
        assert ours[-1].at == theirs[-1].at
        for mine in ours:
            original = events[int(mine.at)]
            if mine.size < 0:
                assert mine == original
            else:
                assert mine.size == len(original.data) > len(mine.data)
                front = (len(mine.data) + 1) // 2
                assert mine.data[:front] == original.data[:front]
                assert (
                    mine.data[front:]
                    == original.data[len(original.data) - len(mine.data) + front :]
                )
                assert mine._replace(data=original.data, size=-1) == original
        if sum(len(event.data) + EVENT_OVERHEAD for event in theirs) <= budget:
            assert ours == theirs


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300)), max_size=60))
def test_within_the_budget_the_rendering_is_as_without_one(added: list[tuple[int, int]]) -> None:
    events = [Event(n / 1000, c, "received", b"m" * size) for n, (c, size) in enumerate(added)]
    spent: dict[int, int] = {}
    for event in events:
        spent[event.connection] = spent.get(event.connection, 0) + len(event.data) + EVENT_OVERHEAD
    bounded, unbounded = Transcript("t", budget=4096), Transcript("t", budget=None)
    for event in events:
        bounded.add(event)
        unbounded.add(event)
    if all(total <= 4096 for total in spent.values()):
        assert bounded.render() == unbounded.render()
        assert bounded.events == unbounded.events == events
    else:
        assert bounded.omitted_events or bounded.omitted_bytes


# -- the budget: memory --------------------------------------------------------------------


def test_100_mb_through_a_connection_is_held_in_under_1_mib() -> None:
    chunk = 64 * 1024
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        transcript = Transcript("proxy 'bulk'")
        transcript.add(Event(0.0, 1, "connected", note="from 127.0.0.1:1"))
        for n in range(1600):
            data = n.to_bytes(4, "big") * (chunk // 4)  # new bytes every time
            transcript.add(Event(n / 1000, 1, "received", data, "-> always #1 ANY"))
        transcript.add(Event(2.0, 1, "closed"))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1024 * 1024, held
    assert transcript.omitted_events == 1598
    rendered = str(transcript).splitlines()
    assert [line for line in rendered if not line.startswith("      ")] == [
        "proxy 'bulk'",
        "  #1 connected",
        "  #1 received   65536 bytes: -> always #1 ANY",  # its first and last bytes
        "  #1 ... 1,598 events (104,726,528 bytes) not kept: over the transcript budget of "
        "65,536 bytes per connection (FakePeer(transcript_budget=...) changes it)",
        "  #1 received   65536 bytes: -> always #1 ANY",
        "  #1 closed",
    ]


def test_400_000_one_line_messages_are_bounded_too() -> None:
    transcript = Transcript("t")
    for n in range(400_000):
        transcript.add(Event(n, 1, "received", b"PING", "-> always #1 'PING'"))
    assert len(transcript) <= DEFAULT_BUDGET // EVENT_OVERHEAD
    assert len(transcript) + transcript.omitted_events == 400_000


def test_a_reply_is_recorded_when_it_is_sent_not_when_its_request_came() -> None:
    # A reply callable that took 0.3 s was recorded as sent at the request's own time.
    def slow(message: bytes) -> bytes:
        time.sleep(0.3)  # shorter than the loop watchdog's limit
        return b"PONG"

    peer = FakePeer(framing=Lines())
    peer.expect(b"PING").reply(slow)
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(b"PING\n")
        assert sock.recv(16) == b"PONG\n"
    at = {event.kind: event.at for event in peer.transcript.for_connection(1)}
    assert at["sent"] - at["received"] >= 0.3, peer.render_transcript()
